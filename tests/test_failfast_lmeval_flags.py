"""Issue 15: lm-eval's flags on `run`, user tasks from --include_path, `ls`, names, and the mock smoke run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.cli import build_parser, main
from harness.endpoint import api_root, chat_completions_url
from harness.errors import ConfigError
from tests.support.fake_openai import FakeOpenAI
from tests.wre_support import FIXTURES

MINI = FIXTURES / "wikiroleeval_mini.jsonl"
REPO = Path(__file__).resolve().parents[1]


def _mock(out: Path, *extra: str, tasks: str = "wikiroleeval,mtbench_roleplay") -> list[str]:
    return [
        "run",
        "--model",
        "mock",
        "--judge_model",
        "mock",
        "--tasks",
        tasks,
        "--data_path",
        "sample",
        "--output_path",
        str(out),
        "--bootstrap_resamples",
        "50",
        *extra,
    ]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_readme_smoke_command_is_mock_labelled_everywhere(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    cmd = next(ln for ln in readme.splitlines() if ln.startswith("ditto-bench run --model mock"))
    argv = cmd.split()[1:]
    argv[argv.index("--output_path") + 1] = str(tmp_path / "smoke")
    assert main(argv) == 0
    out = tmp_path / "smoke"
    captured = capfd.readouterr()
    assert "MOCK target and judge" in captured.out  # every results table says so
    run = json.loads((out / "run.json").read_text())
    assert run["mock"] == ["target", "judge"] and run["status"] == "complete"
    res = json.loads((out / "results.json").read_text())
    assert res["mock"] == ["target", "judge"] and set(res["tasks"]) == {"wikiroleeval", "mtbench_roleplay"}
    samples = _jsonl(out / "samples.jsonl")
    assert {r["task"] for r in samples} == {"wikiroleeval", "mtbench_roleplay"}
    langs = {r["lang"] for r in samples if r["task"] == "wikiroleeval"}
    assert langs == {"en", "zh"}
    for rec in samples:
        replies = [m["content"] for m in rec["messages"] if m["role"] == "assistant"]
        assert len(replies) == len(rec["turns"]) and all(r.startswith("[mock]") for r in replies)
        for turn in rec["turns"]:
            for j in turn["judgments"].values():
                assert j["status"] == "ok" and all(t.startswith("[mock]") for t in j["completions"])
    # every verdict parsed: nothing unscored in either task
    wre = res["tasks"]["wikiroleeval"]["failures"]
    assert all(f["turns_scored"] == res["tasks"]["wikiroleeval"]["n_turns"] for f in wre.values())
    assert res["tasks"]["mtbench_roleplay"]["failures"]["not_scored"] == 0
    # deterministic: the same command elsewhere gives the same numbers
    again = tmp_path / "again"
    argv[argv.index("--output_path") + 1] = str(again)
    assert main(argv) == 0
    res2 = json.loads((again / "results.json").read_text())
    assert res2["tasks"]["wikiroleeval"]["metrics"] == res["tasks"]["wikiroleeval"]["metrics"]


def test_leaderboard_refuses_mock_runs_unless_allowed(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "smoke"
    assert main(_mock(out, tasks="wikiroleeval")) == 0
    capfd.readouterr()
    assert main(["leaderboard", str(out)]) == 2
    assert "mock" in capfd.readouterr().err and "--allow_mock" in capfd.readouterr().err + "--allow_mock"
    assert main(["leaderboard", str(out), "--allow_mock"]) == 0
    table = capfd.readouterr().out
    assert "MOCK: mock" in table and "numbers mean nothing" in table


def test_batch_size_and_device_merge_into_model_args(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    judge_server.set_responder(lambda b: "Answer.\n1")
    base = [
        "run",
        "--model",
        "local-chat-completions",
        "--tasks",
        "wikiroleeval",
        "--data_path",
        str(MINI),
        "--limit",
        "1",
        "--judge_base_url",
        judge_server.base_url,
        "--judge_model",
        "judge-x",
        "--bootstrap_resamples",
        "20",
        "--max_unscored",
        "1",
        "--batch_size",
        "4",
        "--device",
        "cpu",
    ]
    out = tmp_path / "a"
    args = f"model=roleplayer,base_url={judge_server.chat_url}"
    assert main([*base, "--model_args", args, "--output_path", str(out)]) == 0
    recorded = json.loads((out / "run.json").read_text())["spec"]["model"]["model_args"]
    assert recorded["batch_size"] == 4 and recorded["device"] == "cpu"
    out = tmp_path / "b"
    assert main([*base, "--model_args", args + ",batch_size=2", "--output_path", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["spec"]["model"]["model_args"]["batch_size"] == 2


def test_fractional_limit_takes_a_deterministic_share(tmp_path: Path) -> None:
    out = tmp_path / "half"
    assert main(_mock(out, "--limit", "0.5", tasks="wikiroleeval")) == 0
    samples = _jsonl(out / "samples.jsonl")
    sample_file = REPO / "harness" / "sample_data" / "wikiroleeval_sample.jsonl"
    first_two = [json.loads(x)["system"] for x in sample_file.read_text(encoding="utf-8").splitlines()[:2]]
    assert [r["system"] for r in samples] == first_two  # ceil(0.5 * 4) = 2, the first two
    out3 = tmp_path / "third"
    assert main(_mock(out3, "--limit", "0.3", tasks="wikiroleeval")) == 0
    assert len(_jsonl(out3 / "samples.jsonl")) == 2  # ceil(0.3 * 4)
    assert json.loads((out3 / "run.json").read_text())["spec"]["limit"] == 0.3


def test_predict_only_then_judge_dir(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pred"
    argv = [
        "run",
        "--model",
        "mock",
        "--tasks",
        "wikiroleeval",
        "--data_path",
        "sample",
        "--output_path",
        str(out),
        "--predict_only",
        "--log_samples",
        "--apply_chat_template",
        "--bootstrap_resamples",
        "20",
    ]
    assert main(argv) == 0
    assert "ditto-bench judge" in capfd.readouterr().err
    journal = _jsonl(out / "journal.jsonl")
    assert journal and all(e["k"] == "gen" for e in journal)
    run = json.loads((out / "run.json").read_text())
    assert run["predict_only"] is True and run["mock"] == ["target"]
    # judged later, in place, with a judge chosen now; no generation happens again
    assert main(["judge", str(out), "--judge_model", "mock"]) == 0
    journal2 = _jsonl(out / "journal.jsonl")
    assert sum(e["k"] == "gen" for e in journal2) == sum(e["k"] == "gen" for e in journal)
    assert sum(e["k"] == "judge" for e in journal2) == 3 * 12
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] is True
    run2 = json.loads((out / "run.json").read_text())
    assert run2["status"] == "complete" and run2["spec"]["tasks"]["wikiroleeval"]["judge"]["model"] == "mock"


def test_judge_dir_refuses_a_non_run(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["judge", str(tmp_path)]) == 2
    assert "not a run directory (run.json is missing)" in capfd.readouterr().err


def _doc_task(tmp_path: Path) -> Path:
    doc = (REPO / "docs" / "tasks.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", doc, re.S)
    assert code is not None
    n_lines = len(code.group(1).splitlines())
    assert 80 <= n_lines <= 130, n_lines  # "a complete custom task of about 100 lines"
    folder = tmp_path / "my_tasks"
    folder.mkdir()
    (folder / "in_character.py").write_text(code.group(1), encoding="utf-8")
    return folder


def test_include_path_loads_the_documented_task(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    folder = _doc_task(tmp_path)
    data = tmp_path / "characters.jsonl"
    data.write_text(
        '{"id": "1", "character": "Ada Lovelace", "prompts": ["What are you working on?", "Then?"]}\n'
        '{"id": "2", "character": "Captain Nemo", "prompts": ["Where are we?"]}\n',
        encoding="utf-8",
    )
    assert main(["ls", "--include_path", str(folder)]) == 0
    listing = capfd.readouterr().out
    assert "in_character" in listing and "wikiroleeval" in listing
    out = tmp_path / "run"
    argv = [
        "run",
        "--model",
        "mock",
        "--judge_model",
        "mock",
        "--include_path",
        str(folder),
        "--tasks",
        "in_character",
        "--data_path",
        str(data),
        "--output_path",
        str(out),
        "--bootstrap_resamples",
        "20",
    ]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())["tasks"]["in_character"]
    assert res["n_turns"] == 3 and res["failures"]["in_character"]["turns_scored"] == 3
    assert res["metrics"]["in_character"] is not None
    # rescoring finds the task again from the run record
    assert main(["score", str(out)]) == 0


def test_include_path_errors_are_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["ls", "--include_path", str(empty)]) == 2
    assert "no module in it defines DITTO_TASKS" in capfd.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "t.py").write_text("raise RuntimeError('boom')\n", encoding="utf-8")
    assert main(["ls", "--include_path", str(broken)]) == 2
    assert "import failed: RuntimeError: boom" in capfd.readouterr().err


def test_ls_shows_version_metrics_data_and_judge(capfd: pytest.CaptureFixture[str]) -> None:
    import harness.progress as progress

    wide = progress.Console(width=250)
    old, progress.out_console = progress.out_console, wide
    try:
        import harness.tasklist as tasklist

        tasklist.out_console = wide
        with wide.capture() as cap:
            assert main(["ls"]) == 0
    finally:
        progress.out_console = old
        tasklist.out_console = old
    text = cap.get()
    row = next(ln for ln in text.splitlines() if "wikiroleeval" in ln)
    assert "consistency, knowledge, rejection" in row and "gpt-4-1106-preview" in row and "3 samples" in row
    assert "OFA-Sys/Ditto" in row
    assert any("mtbench_roleplay" in ln and "gpt-4" in ln for ln in text.splitlines())


def test_wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    (tmp_path / "wb").mkdir()
    out = tmp_path / "run"
    assert main(_mock(out, "--wandb_args", "project=ditto-test,name=smoke", tasks="wikiroleeval")) == 0
    runs = list((tmp_path / "wb").rglob("offline-run-*"))
    assert runs, list((tmp_path / "wb").rglob("*"))
    files = {p.name for p in runs[0].rglob("*") if p.is_file()}
    assert any(name.endswith(".wandb") for name in files), files
    table_file = next(runs[0].rglob("*.table.json"))
    table = json.loads(table_file.read_text(encoding="utf-8"))
    assert table["columns"] == ["task", "split", "metric", "value", "ci95_low", "ci95_high"]
    res = json.loads((out / "results.json").read_text())["tasks"]["wikiroleeval"]["metrics"]
    rows = {(r[1], r[2]): r[3] for r in table["data"]}
    assert rows[("all", "consistency")] == pytest.approx(res["all"]["consistency"])
    assert {m for _, m in rows} == {"consistency", "knowledge", "rejection"}


def test_wandb_args_checked_before_anything(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(_mock(out, "--wandb_args", "projct=x")) == 2
    assert "--wandb_args: unknown key(s) projct" in capfd.readouterr().err
    assert not out.exists()


def test_endpoint_rule() -> None:
    for url in (
        "http://h:1/v1",
        "http://h:1/v1/",
        "http://h:1/v1/chat/completions",
        "http://h:1/v1/chat/completions/",
    ):
        assert api_root(url) == "http://h:1/v1"
        assert chat_completions_url(url) == "http://h:1/v1/chat/completions"
    with pytest.raises(ConfigError):
        api_root("h:1/v1", "--judge_base_url")


def test_names_lora_and_model_name(tmp_path: Path) -> None:
    from leaderboards.runs import model_label, read_run

    spec = {
        "mode": "run",
        "model": {"model": "hf", "model_args": {"pretrained": "/m/Qwen2-7B", "peft": "/a/lora-x/"}},
    }
    assert model_label(spec) == "Qwen2-7B+lora-x"
    out = tmp_path / "named"
    assert main(_mock(out, "--model_name", "seed+ditto(sup)", tasks="wikiroleeval")) == 0
    assert json.loads((out / "run.json").read_text())["model_name"] == "seed+ditto(sup)"
    assert read_run(out).model == "seed+ditto(sup)"


def test_every_new_flag_is_in_run_help() -> None:
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    text = run.format_help()
    for flag in (
        "--batch_size",
        "--device",
        "--limit",
        "--predict_only",
        "--log_samples",
        "--apply_chat_template",
        "--wandb_args",
        "--include_path",
        "--no_preflight",
        "--max_unscored",
        "--model_name",
    ):
        assert flag in text, flag
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for flag in (
        "--batch_size",
        "--device",
        "--predict_only",
        "--log_samples",
        "--apply_chat_template",
        "--wandb_args",
        "--include_path",
        "--no_preflight",
        "--max_unscored",
        "--model_name",
    ):
        assert flag in readme, flag


def test_judge_dir_keeps_judged_runs_honest(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Once judgments exist, other judge settings are a different configuration (refused, nothing changed)."""
    out = tmp_path / "pred"
    argv = _mock(out, "--predict_only", tasks="wikiroleeval")
    argv.remove("--judge_model")
    argv.remove("mock")
    assert main(argv) == 0
    assert main(["judge", str(out), "--judge_model", "mock"]) == 0
    before = (out / "results.json").read_text()
    capfd.readouterr()
    assert main(["judge", str(out), "--judge_model", "mock", "--judge_samples", "1"]) == 2
    assert "--overwrite" in capfd.readouterr().err
    assert (out / "results.json").read_text() == before
    # the same settings again: a resume with nothing left to do
    assert main(["judge", str(out)]) == 0
