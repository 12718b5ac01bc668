"""``ditto-bench generate`` end to end with a scripted supervisor on the fake OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ditto_train.generate.cli import main
from ditto_train.generate.prompts import load_templates
from ditto_train.generate.scripted import prompt_kind, scripted_reply
from ditto_train.knowledge.jsonl import iter_complete_lines
from tasks.wikiroleeval.data import is_gold_candidate, load_wikiroleeval
from tests.fixtures.knowledge.e2e import (
    TEST_ROLE_IDS,
    api_supervisor_args,
    build_fixture_kb,
    make_generated_testset,
)
from tests.support.fake_openai import FakeOpenAI, Fault

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture knowledge base (6 en + 5 zh records), collected once through the loopback server."""
    return build_fixture_kb(tmp_path_factory.mktemp("kb"))


def _args(server: FakeOpenAI, kb: Path, out: Path, *extra: str) -> list[str]:
    return [
        *api_supervisor_args(server.base_url),
        "--knowledge",
        str(kb),
        "--out",
        str(out),
        "--holdout_rate",
        "0",
        "--concurrency",
        "4",
        *extra,
    ]


def _rows(path: Path) -> list[dict[str, Any]]:
    return [obj for _, obj in iter_complete_lines(path)]


def _last_user(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


def test_train_sessions_are_valid_trl_rows(fake_openai: FakeOpenAI, kb: Path, tmp_path: Path) -> None:
    fake_openai.set_responder(scripted_reply)
    out = tmp_path / "train"
    assert main(_args(fake_openai, kb, out)) == 0
    rows = _rows(out / "train.jsonl")
    assert len(rows) == 11 and [r["meta"]["lang"] for r in rows] == ["en"] * 6 + ["zh"] * 5
    hashes = load_templates().hashes
    for row in rows:
        msgs, meta = row["messages"], row["meta"]
        assert msgs[0]["role"] == "system" and [m["role"] for m in msgs[1:]] == ["user", "assistant"] * 6
        assert "Background" not in msgs[0]["content"] and "背景" not in msgs[0]["content"]  # profile removed
        intro = "You are " if meta["lang"] == "en" else "你是"
        assert msgs[0]["content"].startswith(intro + meta["label"])
        assert sorted(meta["query_types"]) == ["contrastive"] * 3 + ["role_specific"] * 3
        partner = meta["partner"]["id"]
        assert partner != meta["id"]
        for qtype, src in zip(meta["query_types"], meta["query_sources"], strict=True):
            assert src == ([meta["id"], partner] if qtype == "role_specific" else [partner, meta["id"]])
        assert meta["filtered"]["malformed_query_samples"] == 2  # one malformed sample of 3, per query prompt
        assert meta["prompt_hashes"] == hashes and meta["supervisor"]["model"] == "scripted-sup"
        assert meta["usage"]["calls"] == 8
        for m in msgs[2::2]:  # every reply answers as the role, from its own profile
            assert meta["label"] in m["content"]
    en0 = rows[0]["messages"]
    assert en0[0]["content"] == "You are Albert Einstein, German-born theoretical physicist (1879–1955)."
    # what the supervisor got: query prompts with n=3 and App. C decoding, one question per response prompt
    bodies = [r["body"] for r in fake_openai.requests]
    queries = [b for b in bodies if prompt_kind(_last_user(b)) == "query"]
    replies = [b for b in bodies if prompt_kind(_last_user(b)) == "response"]
    assert len(queries) == 22 and len(replies) == 66
    assert all(b["n"] == 3 and b["top_p"] == 0.8 and b["repetition_penalty"] == 1.1 for b in queries)
    assert all(b["max_tokens"] == 2048 and b["temperature"] == 1.0 for b in bodies)
    assert all("n" not in b and len(b["messages"]) == 1 for b in replies)
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert report["totals"]["sessions"] == 11 and report["totals"]["turns"] == 66
    assert report["totals"]["turns_by_type"] == {"role_specific": 33, "contrastive": 33}
    assert report["by_lang"]["zh"]["sessions"] == 5 and report["totals"]["roles"] == 6
    assert report["totals"]["filtered"]["malformed_query_samples"] == 22
    assert report["totals"]["usage"]["calls"] == 88 and report["totals"]["usage"]["completion_tokens"] > 0


def test_same_seed_same_data_other_seed_differs(fake_openai: FakeOpenAI, kb: Path, tmp_path: Path) -> None:
    fake_openai.set_responder(scripted_reply)

    def messages(out: Path, seed: str) -> list[Any]:
        assert main(_args(fake_openai, kb, out, "--seed", seed, "--no_cache", "--concurrency", "7")) == 0
        return [r["messages"] for r in _rows(out / "train.jsonl")]

    a, b, c = messages(tmp_path / "a", "7"), messages(tmp_path / "b", "7"), messages(tmp_path / "c", "8")
    assert a == b and a != c


def test_filters_are_counted_and_rejections_recorded(
    fake_openai: FakeOpenAI, kb: Path, tmp_path: Path
) -> None:
    def responder(body: dict[str, Any]) -> str | list[str]:
        text = _last_user(body)
        if (
            prompt_kind(text) == "query"
            and text.startswith("You write")
            and "Name: Albert Einstein\n" in text.split("[Character B]")[0]
        ):
            return ["no json", '{"question": "x"}', "[]"]  # Einstein (en) gets no role-specific questions
        if prompt_kind(text) == "response":
            if "Your name: Marie Curie" in text:
                return "As an AI language model, I cannot pretend to be anyone."
            if "number 2" in text:
                return "I am just an AI assistant."
            if "Your name: Sherlock Holmes" in text and "number 3" in text:
                return "Elementary. " * 500
        return scripted_reply(body)

    fake_openai.set_responder(responder)
    out = tmp_path / "train"
    assert main(_args(fake_openai, kb, out, "--langs", "en")) == 0
    rows = {r["meta"]["label"]: r["meta"] for r in _rows(out / "train.jsonl")}
    rejected = _rows(out / "train.en.rejected.jsonl")
    assert [(r["meta"]["label"], r["reason"]) for r in rejected] == [("Marie Curie", "no_usable_turns")]
    assert rejected[0]["meta"]["filtered"]["breaks_character"] == 6
    ein = rows["Albert Einstein"]
    assert ein["filtered"]["query_sim_failed"] == 1 and ein["filtered"]["malformed_query_samples"] == 3 + 1
    assert ein["query_types"] == ["contrastive", "contrastive"]  # "number 2" dropped
    holmes = rows["Sherlock Holmes"]
    assert holmes["filtered"]["overlong_response"] >= 1 and len(holmes["query_types"]) <= 3
    report = json.loads((out / "report.json").read_text("utf-8"))
    tot = report["totals"]
    assert tot["rejected_sessions"] == 1 and tot["rejected_by_reason"] == {"no_usable_turns": 1}
    # 6 sessions × 2 query prompts × 3 questions, less the prompts with no usable sample (Einstein's own, and
    # the contrastive prompt of any role with Einstein as partner: T_Q(Einstein, X) is X's contrastive one)
    asked = 3 * (2 * 6 - tot["filtered"]["query_sim_failed"])
    dropped = tot["filtered"]["breaks_character"] + tot["filtered"]["overlong_response"]
    assert tot["turns"] + dropped == asked


def test_api_errors_are_not_written_and_retried(fake_openai: FakeOpenAI, kb: Path, tmp_path: Path) -> None:
    fake_openai.set_responder(scripted_reply)
    fake_openai.add_fault(
        Fault("status", status=500, times=1000, match=lambda b: "Your name: Li Bai\n" in _last_user(b))
    )
    out = tmp_path / "train"
    args = _args(
        fake_openai,
        kb,
        out,
        "--langs",
        "en",
        "--supervisor_args",
        f"model=scripted-sup,base_url={fake_openai.base_url},max_retries=0",
    )
    assert main(args) == 1
    assert "Li Bai" not in {r["meta"]["label"] for r in _rows(out / "train.en.jsonl")}
    assert not (out / "train.en.rejected.jsonl").exists()
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert report["this_run"]["api_error_sessions"] == 1 and "HTTP 500" in report["this_run"]["errors"][0]
    fake_openai.reset()
    fake_openai.set_responder(scripted_reply)
    assert main(args) == 0
    assert len(_rows(out / "train.jsonl")) == 6
    seen = {_last_user(r["body"]).split("\n")[0] for r in fake_openai.requests}
    # only Li Bai's session ran again; its query prompts had succeeded before and came from the cache
    assert all(prompt_kind(_last_user(r["body"])) == "response" for r in fake_openai.requests)
    assert all("Your name: Li Bai\n" in _last_user(r["body"]) for r in fake_openai.requests), seen


def test_cache_is_reused_across_output_dirs(fake_openai: FakeOpenAI, kb: Path, tmp_path: Path) -> None:
    fake_openai.set_responder(scripted_reply)
    assert main(_args(fake_openai, kb, tmp_path / "a", "--langs", "zh")) == 0
    n = len(fake_openai.requests)
    assert main(_args(fake_openai, kb, tmp_path / "b", "--langs", "zh")) == 0
    assert len(fake_openai.requests) == n
    report = json.loads((tmp_path / "b" / "report.json").read_text("utf-8"))
    assert report["this_run"]["cached_calls"] == report["this_run"]["calls"] == 40
    a = (tmp_path / "a" / "train.jsonl").read_text("utf-8")
    b = (tmp_path / "b" / "train.jsonl").read_text("utf-8")
    assert [json.loads(x)["messages"] for x in a.splitlines()] == [
        json.loads(x)["messages"] for x in b.splitlines()
    ]


def test_resume_after_kill_9(fake_openai: FakeOpenAI, kb: Path, tmp_path: Path) -> None:
    fake_openai.set_responder(scripted_reply)
    fake_openai.latency = 0.3
    out = tmp_path / "train"
    args = _args(fake_openai, kb, out, "--concurrency", "2")
    code = "import sys; from ditto_train.generate.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    part = out / "train.en.jsonl"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and len(_rows(part)) < 2:
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    before = _rows(part)
    assert 2 <= len(before) < 6, "the run should have been killed part-way"
    prefix = part.read_bytes()
    prefix = prefix[: prefix.rfind(b"\n") + 1]
    fake_openai.reset()
    fake_openai.set_responder(scripted_reply)
    assert main(args) == 0
    assert part.read_bytes().startswith(prefix)  # finished sessions untouched
    rows = _rows(out / "train.jsonl")
    keys = [(r["meta"]["id"], r["meta"]["lang"]) for r in rows]
    assert len(rows) == 11 and len(set(keys)) == 11
    done_labels = {r["meta"]["label"] for r in before}
    for req in fake_openai.requests:  # nothing of a finished session was asked again
        text = _last_user(req["body"])
        if prompt_kind(text) == "response":
            name = re.search(r"^(?:Your name: |你的名字：)(.+)$", text, re.MULTILINE)
            assert name is not None and name.group(1) not in done_labels


def test_changed_configuration_is_refused(
    fake_openai: FakeOpenAI, kb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_openai.set_responder(scripted_reply)
    out = tmp_path / "train"
    assert main(_args(fake_openai, kb, out, "--langs", "zh", "--limit", "2")) == 0
    capsys.readouterr()
    assert main(_args(fake_openai, kb, out, "--langs", "zh", "--limit", "2", "--seed", "9")) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err
    assert "--out " in err and "--output_path" not in err  # the flag generate actually has
    # selection flags (languages, limit) are not part of the fingerprint: extending a run is a resume
    assert main(_args(fake_openai, kb, out, "--langs", "en,zh", "--limit", "3")) == 0
    assert len(_rows(out / "train.jsonl")) == 6
    assert main(_args(fake_openai, kb, out, "--langs", "en", "--limit", "3")) == 0  # nothing left to do
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert report["langs"] == ["en", "zh"] and report["totals"]["sessions"] == 6  # the whole directory
    assert report["this_run"]["already_done"] == 3 and report["this_run"]["written"] == 0
    assert main(_args(fake_openai, kb, out, "--seed", "9", "--overwrite", "--limit", "1")) == 0
    assert len(_rows(out / "train.jsonl")) == 2


def test_generated_test_file_loads_in_the_harness(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    path = make_generated_testset(tmp_path, fake_openai)
    items = load_wikiroleeval(path)
    assert [(i.raw["meta"]["id"], i.lang) for i in items] == [
        ("Q937", "en"),
        ("Q4653", "en"),
        ("Q7071", "en"),
        ("Q937", "zh"),
        ("Q4653", "zh"),
        ("Q7071", "zh"),
    ]
    for it in items:
        meta = it.raw["meta"]
        assert len(it.candidates) == 4 and len(set(it.candidates)) == 4
        assert sum(is_gold_candidate(c, it.label) for c in it.candidates) == 1
        assert it.rejection_labels == [int(t == "contrastive") for t in meta["query_types"]]
        assert sum(it.rejection_labels) == 3 and meta["rejection_labels_source"].startswith("automatic")
        assert (
            all(ev.startswith("- ") for ev in it.evidence) and meta["evidence_source"] == ["supervisor"] * 6
        )
        assert (
            it.system == it.raw["ref_messages"][0]["content"]
            and it.raw["ref_messages"][1]["content"] == it.prompts[0]
        )
        assert meta["wiki"]["content"] and meta["trans_claims"]
        # candidates are "[Name] first sentence", all drawn from the item's own language
        names = [c[1 : c.index("]")] for c in it.candidates]
        has_cjk = [any("\u4e00" <= ch <= "\u9fff" for ch in n) for n in names]
        assert all(has_cjk) if it.lang == "zh" else not any(has_cjk)
    # the train split of the same knowledge base leaves these roles out
    ids = tmp_path / "test_roles.txt"
    assert main(_args(fake_openai, tmp_path / "kb.jsonl", tmp_path / "train", "--holdout_ids", str(ids))) == 0
    train_ids = {r["meta"]["id"] for r in _rows(tmp_path / "train" / "train.jsonl")}
    assert train_ids == {"Q7186", "Q129247", "Q1270925"} and not train_ids & set(TEST_ROLE_IDS)


def test_overlap_evidence_mode(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    path = make_generated_testset(tmp_path, fake_openai, "--evidence", "overlap", "--langs", "en")
    items = load_wikiroleeval(path)
    assert len(items) == 3
    assert not any(prompt_kind(_last_user(r["body"])) == "evidence" for r in fake_openai.requests)
    assert all(s == "overlap" for it in items for s in it.raw["meta"]["evidence_source"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--supervisor", "nope"], "--supervisor 'nope'"),
        (["--langs", "de"], "--langs"),
        (["--split", "test", "--holdout_rate", "0"], "held-out roles"),
        (
            ["--supervisor_args", "model=x,base_url=http://127.0.0.1:9/v1,temperature=3"],
            "unknown key(s) temperature",
        ),
        (["--supervisor_args", "model=x"], "needs base_url"),
        (["--gen_kwargs", "until=stop"], "until"),
        (["--concurrency", "0"], "--concurrency"),
    ],
)
def test_bad_flags_exit_2(
    fake_openai: FakeOpenAI,
    kb: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    assert main(_args(fake_openai, kb, tmp_path / "o", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not fake_openai.requests


def test_bad_knowledge_base_names_the_line(
    fake_openai: FakeOpenAI, kb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    lines = kb.read_text("utf-8").splitlines()
    bad.write_text(
        "\n".join([lines[0], '{"label": "X", "lang": "en", "aliases": "not a list"}', *lines[1:]]) + "\n",
        encoding="utf-8",
    )
    assert main(_args(fake_openai, bad, tmp_path / "o")) == 2
    assert "bad.jsonl:2: field 'aliases'" in capsys.readouterr().err
    tiny = tmp_path / "tiny.jsonl"
    tiny.write_text(lines[0] + "\n", encoding="utf-8")
    assert main(_args(fake_openai, tiny, tmp_path / "o2")) == 2
    assert not fake_openai.requests


def test_api_supervisor_revision_enters_identity_and_cache_keys(
    fake_openai: FakeOpenAI, kb: Path, tmp_path: Path
) -> None:
    """``revision=`` in --supervisor_args: accepted, never sent, and another revision misses the cache."""
    fake_openai.set_responder(scripted_reply)

    def argv(out: str, rev: str) -> list[str]:
        args = _args(fake_openai, kb, tmp_path / out, "--langs", "zh", "--no_preflight")
        i = args.index("--supervisor_args") + 1
        args[i] += f",revision={rev}"
        return args

    assert main(argv("a", "v1")) == 0
    first = len(fake_openai.requests)
    assert first > 0 and all("revision" not in body for body in fake_openai.requests)
    assert main(argv("b", "v1")) == 0  # same revision: every answer from the cache
    assert len(fake_openai.requests) == first
    assert main(argv("c", "v2")) == 0  # the same name re-served as another model: asked again
    assert len(fake_openai.requests) == 2 * first
    stage = json.loads((tmp_path / "c" / "stage.json").read_text("utf-8"))
    assert stage["inputs"]["supervisor"]["id"].endswith("|scripted-sup@v2")
    a = json.loads((tmp_path / "a" / "stage.json").read_text("utf-8"))
    assert a["fingerprint"] != stage["fingerprint"]
    assert main(argv("c", "v1")) == 2  # a changed revision on one --out is a changed configuration


def test_overwrite_removes_only_generate_files_and_lists_them(
    fake_openai: FakeOpenAI, kb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_openai.set_responder(scripted_reply)
    out = tmp_path / "gen"
    assert main(_args(fake_openai, kb, out, "--langs", "zh", "--limit", "1")) == 0
    (out / "notes.json").write_text('{"mine": true}')
    (out / "my_roles.txt").write_text("x")
    capsys.readouterr()
    again = _args(fake_openai, kb, out, "--langs", "zh", "--limit", "1", "--seed", "3", "--overwrite")
    assert main(again) == 0
    removed = next(x for x in capsys.readouterr().err.splitlines() if "removed from" in x)
    listed = set(removed.split(f"{out}: ", 1)[1].split(", "))
    assert listed == {"report.json", "run.json", "train.jsonl", "train.zh.jsonl"}, removed
    assert (out / "notes.json").read_text() == '{"mine": true}' and (out / "my_roles.txt").exists()
