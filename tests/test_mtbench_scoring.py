"""MT-Bench aggregation: show_result semantics, failures as counted values, per-category means, CIs."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from tasks.mtbench.fastchat_export import judgment_rows
from tasks.mtbench.scoring import aggregate, annotated


def _judgment(status: str, text: str | None) -> dict[str, Any]:
    return {
        "status": status,
        "template": "single-v1",
        "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        "completions": [text] if status == "ok" else [],
        "error": None if status == "ok" else "HTTP 500",
    }


def _record(qid: int, category: str, turns: list[dict[str, Any] | None]) -> dict[str, Any]:
    return {
        "session_id": f"q{qid}",
        "question_id": qid,
        "category": category,
        "prompts": ["a", "b"],
        "messages": [],
        "turns": [{"turn": t, "judgments": {} if j is None else {"rating": j}} for t, j in enumerate(turns)],
    }


def _records() -> list[dict[str, Any]]:
    ok = lambda x: _judgment("ok", f"Rating: [[{x}]]")  # noqa: E731
    return [
        _record(91, "roleplay", [ok(8), ok(6)]),
        _record(92, "roleplay", [ok(9), _judgment("ok", "I cannot rate this.")]),  # turn 2: parse error
        _record(93, "roleplay", [ok("8.5"), _judgment("api_error", None)]),  # turn 2: judge API failure
        _record(101, "reasoning", [ok(2), None]),  # turn 2 never generated
        _record(102, "reasoning", [ok(4), ok(10)]),
    ]


def test_show_result_semantics_and_failures() -> None:
    recs = _records()
    res = aggregate(recs, seed=0, n_boot=200)
    t1: list[float] = [8, 9, 8.5, 2, 4]
    t2: list[float] = [6, 10]
    assert res["metrics"]["turn1"] == pytest.approx(sum(t1) / 5)
    assert res["metrics"]["turn2"] == pytest.approx(sum(t2) / 2)
    # "both turns" is the mean over all valid rows, not the mean of the two turn means
    assert res["metrics"]["all"] == pytest.approx(sum(t1 + t2) / 7)
    assert res["metrics"]["all"] != pytest.approx((sum(t1) / 5 + sum(t2) / 2) / 2)
    assert res["n_valid"] == 7 and res["n_valid_by_turn"] == {"turn1": 5, "turn2": 2}
    f = res["failures"]
    assert (f["parse_error"], f["api_error"], f["generation_missing"], f["not_scored"]) == (1, 1, 1, 3)
    assert res["by_category"]["roleplay"] == pytest.approx({"turn1": 25.5 / 3, "turn2": 6.0, "all": 31.5 / 4})
    assert res["by_category"]["reasoning"] == pytest.approx({"turn1": 3.0, "turn2": 10.0, "all": 16 / 3})
    lo, hi = res["ci95"]["all"]
    assert lo <= res["metrics"]["all"] <= hi and lo < hi
    # derived annotations (a copy; aggregation never writes into the records): failures are states with no
    # score, never 0 or -1
    assert recs == _records()
    views = [annotated(r) for r in recs]
    assert views[1]["turns"][1]["judgments"]["rating"]["rating_status"] == "parse_error"
    assert views[1]["turns"][1]["judgments"]["rating"]["score"] is None
    assert views[2]["turns"][0]["judgments"]["rating"]["score"] == 8.5


def test_fastchat_export_reads_back_with_show_result_logic() -> None:
    recs = _records()
    res = aggregate(recs, seed=0, n_boot=100)
    rows = judgment_rows(recs, model="m", judge_model="gpt-4", tstamp=0.0)
    assert len(rows) == 9  # the turn never generated is not a judgment
    errored = [r for r in rows if r["score"] == -1]
    assert {r["judgment"] for r in errored} == {"I cannot rate this.", "$ERROR$"}
    # show_result.py: keep model/score/turn, drop score == -1, mean per turn and over all rows
    df = pd.DataFrame(rows)[["model", "score", "turn"]]
    df = df[df["score"] != -1]
    assert df[df["turn"] == 1].groupby("model")["score"].mean()["m"] == pytest.approx(res["metrics"]["turn1"])
    assert df[df["turn"] == 2].groupby("model")["score"].mean()["m"] == pytest.approx(res["metrics"]["turn2"])
    assert df.groupby("model")["score"].mean()["m"] == pytest.approx(res["metrics"]["all"])


def test_no_valid_rows_gives_none_not_zero() -> None:
    recs = [_record(91, "roleplay", [_judgment("api_error", None), _judgment("ok", "no number")])]
    res = aggregate(recs, seed=0, n_boot=50)
    assert res["metrics"] == {"turn1": None, "turn2": None, "all": None}
    assert res["n_valid"] == 0 and res["failures"]["not_scored"] == 2
