"""End to end: bad inputs fail early and cleanly, --dry_run calls nothing, secrets never reach a file,
and --shuffle_candidates is seeded, recorded and reported by gold position.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tests.support.fake_openai import FakeOpenAI
from tests.wre_support import FIXTURES, RESPONSES, load_items, metric_of, write_items

MINI = FIXTURES / "wikiroleeval_mini.jsonl"
MINI_TURNS = 33  # 4+5+5+3+4+4+3+5 prompts over the 8 sessions of the mini fixture
SECRET = "sk-test-SECRET123"


def _cache_dir() -> Path:
    return Path(os.environ["DITTO_BENCH_CACHE_DIR"])


def _run_cmd(server: FakeOpenAI, out: Path, data: Path, *extra: str, judge_url: bool = True) -> list[str]:
    judge = ["--judge_base_url", server.base_url, "--judge_model", "judge-x"] if judge_url else []
    return [
        "run", "--model", "local-chat-completions",
        "--model_args", f"model=roleplayer,base_url={server.chat_url},max_retries=1",
        "--tasks", "wikiroleeval", "--data_path", str(data), "--output_path", str(out),
        "--gen_kwargs", "max_gen_toks=16", "--bootstrap_resamples", "50", *judge, *extra,
    ]


def _one_error_line(capfd: pytest.CaptureFixture[str]) -> str:
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _break_line3(tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None) -> Path:
    """Copy of the mini fixture whose line 3 is edited (or, with ``edit=None``, is not JSON)."""
    lines = MINI.read_text(encoding="utf-8").splitlines()
    if edit is None:
        lines[2] = lines[2][: len(lines[2]) // 2]
    else:
        obj = json.loads(lines[2])
        edit(obj)
        lines[2] = json.dumps(obj, ensure_ascii=False)
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _drop_evidence(o: dict[str, Any]) -> None:
    o["meta"]["evidence"] = o["meta"]["evidence"][:-1]


def _no_gold(o: dict[str, Any]) -> None:
    o["meta"]["role_consist_cands"] = ["Lise Meitner", "Florence Nightingale", "武则天"]


def _french(o: dict[str, Any]) -> None:
    o["meta"]["lang"] = "fr"


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (_drop_evidence, "field 'meta.evidence'"),
        (_no_gold, "field 'meta.role_consist_cands'"),
        (_french, "field 'meta.lang'"),
        (None, "invalid JSON"),
    ],
    ids=["evidence_length", "gold_not_in_candidates", "lang_fr", "invalid_json"],
)
def test_bad_data_is_one_line_exit_2_and_nothing_written(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str],
    edit: Callable[[dict[str, Any]], None] | None, needle: str,
) -> None:
    bad = _break_line3(tmp_path, edit)
    out = tmp_path / "run"
    assert main(_run_cmd(judge_server, out, bad)) == 2
    line = _one_error_line(capfd)
    assert f"{bad}:3:" in line and needle in line, line
    assert not out.exists()
    assert judge_server.count() == 0
    assert not any(_cache_dir().iterdir())


def test_bad_responses_file_names_the_message(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    items = load_items()
    items[1]["messages"][4]["role"] = "user"  # turn 2's reply is not an assistant message
    bad = write_items(tmp_path / "responses.jsonl", items)
    out = tmp_path / "run"
    rc = main(["judge", "--tasks", "wikiroleeval", "--responses", str(bad), "--output_path", str(out),
               "--judge_base_url", judge_server.base_url])
    assert rc == 2
    line = _one_error_line(capfd)
    assert f"{bad}:2:" in line and "messages[4]" in line, line
    assert not out.exists() and judge_server.count() == 0


def test_missing_data_path(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(_run_cmd(judge_server, out, tmp_path / "nope.jsonl")) == 2
    line = _one_error_line(capfd)
    assert "nope.jsonl" in line and "not found" in line
    assert not out.exists() and judge_server.count() == 0


def test_missing_api_key_fails_before_any_request(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert "OPENAI_API_KEY" not in os.environ
    out = tmp_path / "run"
    # the model is on the loopback server, the judge on the default (OpenAI) base URL
    assert main(_run_cmd(judge_server, out, MINI, "--limit", "1", judge_url=False)) == 2
    line = _one_error_line(capfd)
    assert "OPENAI_API_KEY" in line
    assert judge_server.count() == 0  # not even the model was called
    assert not out.exists()
    assert not any(_cache_dir().iterdir())


@pytest.mark.parametrize("split", [False, True], ids=["n", "split_samples"])
def test_dry_run_counts_calls_and_calls_nothing(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str], split: bool
) -> None:
    out = tmp_path / "run"
    extra = ["--dry_run", *(["--judge_split_samples"] if split else [])]
    # default judge base URL and no key: a dry run needs neither
    assert main(_run_cmd(judge_server, out, MINI, *extra, judge_url=False)) == 0
    text = " ".join(capfd.readouterr().out.split())
    # 3 judgments per turn; with --judge_split_samples one request per sample
    requests = 3 * MINI_TURNS * (3 if split else 1)
    assert f"judge requests: {requests};" in text, text
    m = re.search(r"token estimate ≈ (\d+) prompt \+ (\d+) completion", text)
    assert m is not None, text
    assert int(m.group(1)) > 0 and int(m.group(2)) == 3 * MINI_TURNS * 3 * 150
    assert judge_server.count() == 0
    assert not out.exists()
    assert not any(_cache_dir().iterdir())


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--model_args", "model=roleplayer,num_concurrent"), ("--gen_kwargs", "max_gen_toks")],
)
def test_bad_kv_syntax(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    out = tmp_path / "run"
    argv = _run_cmd(judge_server, out, MINI)
    argv[argv.index(flag) + 1] = value
    assert main(argv) == 2
    line = _one_error_line(capfd)
    assert flag in line, line
    assert not out.exists() and judge_server.count() == 0


@pytest.mark.parametrize(
    ("model", "model_args"),
    [
        ("local-chat-completions", "model=roleplayer,base_url=127.0.0.1:8000/v1"),  # no scheme
        ("hff", "model=roleplayer,base_url={chat_url}"),  # no such backend
    ],
    ids=["base_url_not_a_url", "unknown_model"],
)
def test_bad_backend_config_writes_nothing(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str], model: str, model_args: str
) -> None:
    out = tmp_path / "run"
    argv = _run_cmd(judge_server, out, MINI, "--limit", "1")
    argv[argv.index("--model") + 1] = model
    argv[argv.index("--model_args") + 1] = model_args.format(
        base_url=judge_server.base_url, chat_url=judge_server.chat_url
    )
    assert main(argv) == 2
    line = _one_error_line(capfd)
    assert "--model" in line
    assert judge_server.count() == 0
    assert not out.exists()
    # the corrected command must then simply run in that directory
    assert main(_run_cmd(judge_server, out, MINI, "--limit", "1")) == 0


def test_unknown_task_suggests(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = _run_cmd(judge_server, out, MINI)
    argv[argv.index("--tasks") + 1] = "wikiroleevl"
    assert main(argv) == 2
    line = _one_error_line(capfd)
    assert "wikiroleevl" in line and "did you mean wikiroleeval" in line, line
    assert not out.exists()


def test_secret_never_written(
    judge_server: FakeOpenAI,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    judge_server.set_responder(lambda body: "Answer.\n1" if body["model"] == "judge-x" else "In character.")
    out = tmp_path / "run"
    argv = _run_cmd(judge_server, out, MINI, "--limit", "2")
    i = argv.index("--model_args") + 1
    argv[i] += f",auth_token={SECRET}"  # a secret-looking model arg must be redacted in the run record
    assert main(argv) == 0
    assert judge_server.count(lambda r: r["body"]["model"] == "judge-x" and r["has_auth"]) == 3 * 9
    streams = capfd.readouterr()
    assert SECRET not in streams.out and SECRET not in streams.err
    files = [p for root in (out, _cache_dir()) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "run.json" for p in files) and any(p.suffix == ".sqlite" for p in files)
    for p in files:
        assert b"SECRET123" not in p.read_bytes(), p
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["model_args"]["auth_token"] == "<redacted>"


def _candidates_in(prompt: str) -> list[str]:
    for start, end in (("[Candidates Start]", "[Candidates End]"), ("[候选角色开始]", "[候选角色结束]")):
        if start in prompt:
            block = prompt.split(start, 1)[1].split(end, 1)[0]
            return [line[2:] for line in block.splitlines() if line.startswith("- ")]
    raise AssertionError("not a consistency prompt")


def _first_candidate_judge(body: dict[str, Any]) -> str:
    """A judge with total position bias: it always names the first candidate listed."""
    prompt = body["messages"][-1]["content"]
    metric = metric_of(prompt)
    if metric == "consistency":
        first = _candidates_in(prompt)[0]
        name = first[1:].split("]", 1)[0] if first.startswith("[") else first
        return f"Reasoning.\nThe most suitable role is [{name}]"
    return "Reasoning.\n0" if metric == "rejection" else "Reasoning.\n5"


def _gold_index(cands: list[str], label: str) -> int:
    return next(i for i, c in enumerate(cands) if c == label or c.startswith(f"[{label}]"))


def _shuffle_run(server: FakeOpenAI, out: Path, *extra: str) -> list[dict[str, Any]]:
    argv = [
        "judge", "--tasks", "wikiroleeval", "--responses", str(RESPONSES), "--output_path", str(out),
        "--judge_base_url", server.base_url, "--judge_model", "judge-x",
        "--bootstrap_resamples", "50", *extra,
    ]
    assert main(argv) == 0
    return [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


def test_shuffle_candidates_is_seeded_recorded_and_reported(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    judge_server.set_responder(_first_candidate_judge)
    recs = _shuffle_run(judge_server, tmp_path / "r1", "--shuffle_candidates")
    sent = {r["body"]["messages"][0]["content"] for r in judge_server.requests}
    changed = 0
    expect: dict[int, list[float]] = {}
    for rec in recs:
        data_order = rec["item"]["meta"]["role_consist_cands"]
        assert sorted(rec["candidates"]) == sorted(data_order)
        changed += rec["candidates"] != data_order
        gold = _gold_index(rec["candidates"], rec["label"])
        assert rec["gold_position"] == gold
        for t in rec["turns"]:
            prompt = t["judgments"]["consistency"]["prompt"][0]["content"]
            assert prompt in sent  # what was recorded is what the judge saw
            assert _candidates_in(prompt) == rec["candidates"]
            assert t["judgments"]["consistency"]["score"] == (1.0 if gold == 0 else 0.0)
            expect.setdefault(gold, []).append(1.0 if gold == 0 else 0.0)
    assert changed >= 1
    n_first = judge_server.count()
    assert n_first == 3 * MINI_TURNS

    # same seed, another run dir: identical order (the cache answers, so the prompts are byte-identical)
    recs2 = _shuffle_run(judge_server, tmp_path / "r2", "--shuffle_candidates")
    assert judge_server.count() == n_first
    assert [r["candidates"] for r in recs2] == [r["candidates"] for r in recs]
    assert [[t["judgments"]["consistency"]["prompt"] for t in r["turns"]] for r in recs2] == [
        [t["judgments"]["consistency"]["prompt"] for t in r["turns"]] for r in recs
    ]

    run = json.loads((tmp_path / "r1" / "run.json").read_text())
    assert run["spec"]["shuffle_candidates"] is True and run["config"]["shuffle_candidates"] is True
    res = json.loads((tmp_path / "r1" / "results.json").read_text())["tasks"]["wikiroleeval"]
    by_pos = res["consistency_by_gold_position"]
    assert by_pos == {str(p): {"mean": sum(v) / len(v), "n": len(v)} for p, v in sorted(expect.items())}
    assert sum(v["n"] for v in by_pos.values()) == MINI_TURNS

    # without the flag: the data's order, gold positions as in the file
    recs3 = _shuffle_run(judge_server, tmp_path / "r3")
    for rec in recs3:
        assert rec["candidates"] == rec["item"]["meta"]["role_consist_cands"]
        for t in rec["turns"]:
            assert _candidates_in(t["judgments"]["consistency"]["prompt"][0]["content"]) == rec["candidates"]
    res3 = json.loads((tmp_path / "r3" / "results.json").read_text())["tasks"]["wikiroleeval"]
    assert res3["consistency_by_gold_position"]["0"] == {"mean": 1.0, "n": 3}  # only Alice is listed first
    assert json.loads((tmp_path / "r3" / "run.json").read_text())["spec"]["shuffle_candidates"] is False
