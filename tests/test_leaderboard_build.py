"""Leaderboard: rows from run records, column compatibility checks, reported rows, the four formats."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from leaderboards.board import build_board
from leaderboards.cli import leaderboard_main
from leaderboards.definition import load_definition, load_reported
from leaderboards.render import Style, render
from leaderboards.runs import read_run

VOID = {"meta", "br", "hr", "img", "link", "input"}


def _wre_results(cons: float, know: float, rej: float) -> dict[str, Any]:
    metrics = {s: {"consistency": cons, "knowledge": know, "rejection": rej} for s in ("all", "en", "zh")}
    ci = {s: {m: [v - 0.05, v + 0.05] for m, v in d.items()} for s, d in metrics.items()}
    fails = {
        m: {"parse_error": 0, "api_error": 0, "turns_no_verdict": 1, "turns_api_error": 0, "turns_pending": 0}
        for m in ("consistency", "knowledge", "rejection")
    }
    n = {s: {m: 40 for m in ("consistency", "knowledge", "rejection")} for s in ("all", "en", "zh")}
    return {"metrics": metrics, "ci95": ci, "failures": fails, "n_scored_turns": n, "version": 1}


def _mt_results(both: float, failures: int = 0) -> dict[str, Any]:
    return {
        "metrics": {"turn1": both, "turn2": both, "all": both},
        "ci95": {"all": [both - 1, both + 0.5]},
        "n_valid": 20 - failures,
        "failures": {"not_scored": failures},
        "version": 1,
    }


def make_run(
    root: Path,
    name: str,
    *,
    model: str,
    tasks: dict[str, dict[str, Any]],
    judge: str = "gpt-4",
    templates: str = "t1",
    version: int = 1,
    complete: bool = True,
    mode: str = "run",
) -> Path:
    """A minimal run directory (run.json + results.json) as the engine writes them."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    model_spec: dict[str, Any] = (
        {"model": "local-chat-completions", "model_args": {"model": model, "base_url": "http://x/v1"}}
        if mode == "run"
        else {"responses": f"/data/model_answer/{model}.jsonl"}
    )
    spec = {
        "mode": mode,
        "model": model_spec,
        "limit": None,
        "judge_base_url": "https://api.openai.com/v1",
        "tasks": {
            t: {
                "version": version,
                "n_sessions": 10,
                "judge": {"model": judge, "temperature": 0.0, "samples": 1, "max_tokens": 2048},
                "templates": {"x": templates},
            }
            for t in tasks
        },
    }
    (run_dir / "run.json").write_text(json.dumps({"spec": spec}), encoding="utf-8")
    (run_dir / "results.json").write_text(
        json.dumps({"tasks": tasks, "complete": complete}), encoding="utf-8"
    )
    return run_dir


class _TagChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_html(text: str) -> str:
    """Parse with html.parser: every tag closed in order; returns the visible text."""
    assert text.startswith("<!DOCTYPE html>")
    p = _TagChecker()
    p.feed(text)
    p.close()
    assert p.errors == [] and p.stack == [], (p.errors, p.stack)
    return "".join(p.text)


def test_rows_merge_tasks_and_keep_full_precision(tmp_path: Path) -> None:
    a = make_run(tmp_path, "r1", model="ditto-7b", tasks={"wikiroleeval": _wre_results(0.8234, 5.25, 0.7)})
    b = make_run(tmp_path, "r2", model="ditto-7b", tasks={"mtbench_roleplay": _mt_results(7.175, failures=2)})
    c = make_run(tmp_path, "r3", model="other", tasks={"mtbench_roleplay": _mt_results(6.0)}, mode="judge")
    board = build_board(load_definition(), [read_run(a), read_run(b), read_run(c)])
    assert [r.model for r in board.rows] == [
        "ditto-7b",
        "other",
    ]  # the judge-mode name comes from its answers file
    row = board.rows[0]
    assert row.cells["all_cons"].value == 0.8234  # unrounded until rendering
    assert row.cells["mtbench_roleplay"].failures == 2 and row.cells["all_know"].failures == 1
    md = render(board, "md", Style(ci=True, failures=True))
    assert "| ditto-7b | run | 0.82 [0.77, 0.87] (1 unscored) | 5.25 [5.20, 5.30] (1 unscored) |" in md
    assert "7.18 [6.18, 7.68] (2 unscored)" in md
    assert "mtbench_roleplay: judge gpt-4 (temperature 0.0, 1 sample, max_tokens 2048) via OpenAI API" in md


def test_mixed_judges_are_refused_or_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "a", model="m1", tasks={"mtbench_roleplay": _mt_results(7.0)})
    b = make_run(tmp_path, "b", model="m2", tasks={"mtbench_roleplay": _mt_results(8.0)}, judge="gpt-4o")
    assert leaderboard_main([str(a), str(b)]) == 2
    assert "mtbench_roleplay: runs differ in judge.model" in capsys.readouterr().err
    assert leaderboard_main([str(a), str(b), "--allow_mixed"]) == 0
    out = capsys.readouterr().out
    assert "7.00<sup>a</sup>" in out and "8.00<sup>b</sup>" in out
    assert "mtbench_roleplay (b): judge gpt-4o" in out


@pytest.mark.parametrize(
    ("field", "kwargs"), [("version", {"version": 2}), ("templates", {"templates": "t2"})]
)
def test_other_differences_are_refused(
    tmp_path: Path, field: str, kwargs: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path, "a", model="m1", tasks={"mtbench_roleplay": _mt_results(7.0)})
    b = make_run(tmp_path, "b", model="m2", tasks={"mtbench_roleplay": _mt_results(8.0)}, **kwargs)
    assert leaderboard_main([str(a), str(b)]) == 2
    assert f"runs differ in {field}" in capsys.readouterr().err


def test_same_model_twice_for_one_task_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "a", model="m1", tasks={"mtbench_roleplay": _mt_results(7.0)})
    b = make_run(tmp_path, "b", model="m1", tasks={"mtbench_roleplay": _mt_results(8.0)})
    assert leaderboard_main([str(a), str(b)]) == 2
    assert "comes from two runs" in capsys.readouterr().err
    assert leaderboard_main([str(a), str(b), "--label", f"{b}=m1-seed2"]) == 0
    assert "| m1-seed2 | run |" in capsys.readouterr().out


def test_reported_rows_sit_next_to_the_reproduction(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", model="gpt-4", tasks={"mtbench_roleplay": _mt_results(8.9)})
    definition = load_definition()
    paper = load_reported(definition, "paper")
    fastchat = load_reported(definition, "fastchat")
    assert len(paper.rows) == 19
    board = build_board(definition, [read_run(a)], reported=[paper, fastchat])
    assert [(r.model, r.source, r.origin) for r in board.rows[:3]] == [
        ("gpt-4", "run", str(a)),
        ("GPT-4", "reported", "paper"),
        ("gpt-4", "reported", "fastchat"),
    ]
    ditto72 = next(r for r in board.rows if r.model == "Qwen-72B-Chat +DITTO")
    assert ditto72.cells["all_cons"].printed == "0.9" and ditto72.cells["mtbench_roleplay"].value == 8.43
    md = render(board, "md")
    assert (
        "| Qwen-72B-Chat +DITTO | reported (paper) | 0.90 | 6.64 | 0.82 | 0.87 | 7.03 | 0.87 | 0.93 | 6.09 "
        "| 0.73 | 8.43 |" in md
    )
    assert (
        "| Claude2.1 | reported (paper) | 0.51 | 5.02 | 0.66 | 0.56 | 6.25 | 0.70 | 0.44 | 3.28 | 0.60 | — |"
        in md
    )
    assert "gpt-4-1106-preview" in md  # the paper's judge is named


def test_four_formats(tmp_path: Path) -> None:
    a = make_run(
        tmp_path,
        "a",
        model="Model_&<x>",
        tasks={"wikiroleeval": _wre_results(0.5, 4.0, 0.6), "mtbench_roleplay": _mt_results(6.5, failures=1)},
        complete=False,
    )
    out = tmp_path / "out"
    for fmt in ("md", "csv", "latex", "html"):
        assert leaderboard_main([str(a), "--reported", "--format", fmt, "--out", str(out / f"t.{fmt}")]) == 0
    rows = list(csv.DictReader(io.StringIO((out / "t.csv").read_text(encoding="utf-8"))))
    assert rows[0]["model"] == "Model_&<x>" and rows[0]["source"] == "run"
    assert rows[0]["mtbench_roleplay"] == "6.50" and rows[0]["mtbench_roleplay_failures"] == "1"
    assert rows[0]["mtbench_roleplay_ci_low"] == "5.50" and rows[0]["all_cons_n"] == "40"
    assert "gpt-4 (temperature" in rows[0]["mtbench_roleplay_judge"]
    assert any(r["model"] == "Qwen-Max" and r["mtbench_roleplay"] == "9.65" for r in rows)
    tex = (out / "t.latex").read_text(encoding="utf-8")
    assert "Model\\_\\&<x>" in tex and "\\multicolumn{3}{c}{All}" in tex and "\\cmidrule(lr){3-5}" in tex
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 1
    text = check_html((out / "t.html").read_text(encoding="utf-8"))
    assert "Model_&<x>" in text and "6.50*" in text and "incomplete run" in text
    assert "Qwen-72B-Chat +DITTO" in text


def test_bad_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert leaderboard_main([str(tmp_path / "nope")]) == 2
    assert "not a finished run directory" in capsys.readouterr().err
    assert leaderboard_main([]) == 2
    assert leaderboard_main(["--reported_set", "nope"]) == 2
    assert "no reported set 'nope'" in capsys.readouterr().err
