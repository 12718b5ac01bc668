"""The ``official`` block: WikiRoleEval as the released pipeline itself scores the same completions
(issue 9 §8, ditto_method.md §2.5). Every expected value below is computed by hand in the comments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tasks.wikiroleeval.official import (
    _Dropped,
    consistency_value,
    knowledge_value,
    official_block,
    rejection_prediction,
)
from tasks.wikiroleeval.scoring import aggregate
from tests.test_e2e_wikiroleeval import _judge_args, _two_sessions, _verdicts
from tests.wre_records import judgment, record, turn
from tests.wre_support import scripted_judge

EN = "Analysis.\nThe most suitable role is [{}]"
ZH = "分析。\n最符合的角色为[{}]"


# --- consistency: strict regex, first match, greedy, raw equality, 0 when none matched -------------------


@pytest.mark.parametrize(
    ("texts", "label", "lang", "expected"),
    [
        ([EN.format("Bob")] * 3, "Bob", "en", 1.0),
        # 2 of 3 matched, 1 of them gold -> 1/2 (the unmatched one is left out, not counted as wrong)
        ([EN.format("Bob"), EN.format("Al"), "no verdict"], "Bob", "en", 0.5),
        (["no verdict", "", "The most suitable role is"], "Bob", "en", 0.0),  # none matched -> 0
        (["THE MOST SUITABLE ROLE IS [Bob]"], "Bob", "en", 0.0),  # case-sensitive: no match -> 0
        (["the most suitable role is [Bob]"], "Bob", "en", 1.0),  # the regex has no "The"
        (["most suitable role is [Bob] or [Al]"], "Bob", "en", 0.0),  # greedy: "Bob] or [Al"
        (["most suitable role is [Al]. Then: most suitable role is [Bob]"], "Bob", "en", 0.0),  # first
        (["The most suitable role is [ Bob ]"], "Bob", "en", 0.0),  # no stripping
        ([EN.format("Bob")], "Bob ", "en", 0.0),  # raw label with a trailing space never matches
        (["The most suitable role is: [Bob]"], "Bob", "en", 0.0),  # a colon breaks the strict phrase
        ([ZH.format("林黛玉")] * 3, "林黛玉", "zh", 1.0),
        (["最符合的角色为【林黛玉】"], "林黛玉", "zh", 0.0),  # 【】 are not the official brackets
        ([EN.format("林黛玉")], "林黛玉", "zh", 0.0),  # the zh session uses the zh regex only
        (["最符合的角色是[林黛玉]"], "林黛玉", "zh", 0.0),  # 是 is not 为
    ],
)
def test_consistency_rule(texts: list[str], label: str, lang: str, expected: float) -> None:
    assert consistency_value(texts, label, lang) == pytest.approx(expected)


# --- rejection: exactly "0"/"1", majority vote (tie -> first seen), none valid -> session dropped -------


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["1", "1", "0"], 1),
        (["0", "1", "1"], 1),
        ([" 1", "1\n", "0"], 0),  # no stripping: only "0" is valid
        (["1", "0", "x"], 1),  # tie: first seen
        (["0", "1", "Answer: 1"], 0),  # tie: first seen
    ],
)
def test_rejection_rule(texts: list[str], expected: int) -> None:
    assert rejection_prediction(texts) == expected


@pytest.mark.parametrize("texts", [["yes", "no", ""], ["1.", "0 ", "**1**"], []])
def test_rejection_without_valid_vote_drops(texts: list[str]) -> None:
    with pytest.raises(_Dropped) as exc:
        rejection_prediction(texts)
    assert exc.value.reason == "rejection_no_valid_vote"


# --- knowledge: int(last line minus "Score: "), mean unclamped, "0" averaged in, all-zero turn -> NaN ---


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["A\n8", "A\nScore: 9", "A\n 7 "], 8.0),  # int() takes surrounding spaces
        (["A\n0", "A\n9", "A\n9"], 6.0),  # a "0" sample is averaged in
        (["A\n0", "A\n0", "A\n0"], None),  # mean 0 -> `s if s else nan` -> excluded
        (["A\n12", "A\n12", "A\n9"], 11.0),  # unclamped
        (["A\n-3", "A\n9", "A\n9"], 5.0),
        (["A\n3", "A\n-3"], None),  # mean exactly 0 -> excluded
    ],
)
def test_knowledge_rule(texts: list[str], expected: float | None) -> None:
    assert knowledge_value(texts) == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    "texts", [["A\n9."], ["A\n9/10"], ["A\n9\n"], ["分析。\n评分：6"], ["A\nScore:9"], ["A\n7 because"]]
)
def test_knowledge_unparseable_drops(texts: list[str]) -> None:
    with pytest.raises(_Dropped) as exc:
        knowledge_value(texts)
    assert exc.value.reason == "knowledge_unparseable"


# --- aggregation: micro-average over kept turns, whole sessions dropped, counted by reason ---------------


def _sessions() -> list[dict[str, Any]]:
    s1 = record(
        "s1",
        "en",
        "Bob",
        [0, 1],
        [
            # cons 1.0; rej pred 0 vs 0 -> 1; know mean(8, 0, 10) = 6.0
            turn([EN.format("Bob")] * 3, ["0", "0", "1"], ["x\n8", "x\n0", "x\n10"]),
            # cons 1/2; rej 1 vs 1 -> 1; know all 0 -> excluded
            turn([EN.format("Bob"), EN.format("Al"), "none"], ["1", "1", "1"], ["x\n0"] * 3),
        ],
    )
    s2 = record("s2", "en", "Al", [0], [turn([EN.format("Al")] * 3, ["yes", "no", "maybe"], ["x\n5"] * 3)])
    s3 = record(
        "s3",
        "zh",
        "林黛玉",
        [1, 0],
        [
            # cons 1.0; rej pred 0 vs 1 -> 0; know 5.0
            turn([ZH.format("林黛玉")] * 3, ["1", "0", "0"], ["x\n4", "x\n5", "x\n6"]),
            # cons 0 (【】 never match); rej 0 vs 0 -> 1; know 7.0
            turn(["最符合的角色为【林黛玉】"] * 3, ["0"] * 3, ["x\n7"] * 3),
        ],
    )
    s4 = record(
        "s4", "zh", "薛宝钗", [0], [turn([ZH.format("薛宝钗")] * 3, ["0"] * 3, ["分析。\n评分：6"] * 3)]
    )
    s5 = record(
        "s5",
        "en",
        "Cy",
        [0, 0],
        [
            turn([EN.format("Cy")] * 3, ["0"] * 3, ["x\n9"] * 3),
            {
                "consistency": [EN.format("Cy")] * 3,
                "rejection": judgment(None, "api_error"),
                "knowledge": ["x\n9"],
            },
        ],
    )
    return [s1, s2, s3, s4, s5]


def test_official_block_golden() -> None:
    block = official_block(_sessions())
    m = block["metrics"]
    # kept: s1 (en, 2 turns) and s3 (zh, 2 turns)
    assert m["all"]["consistency"] == pytest.approx((1 + 0.5 + 1 + 0) / 4)
    assert m["en"]["consistency"] == pytest.approx(0.75)
    assert m["zh"]["consistency"] == pytest.approx(0.5)
    assert m["all"]["rejection"] == pytest.approx(3 / 4)
    assert m["en"]["rejection"] == pytest.approx(1.0) and m["zh"]["rejection"] == pytest.approx(0.5)
    assert m["all"]["knowledge"] == pytest.approx((6 + 5 + 7) / 3)
    assert m["en"]["knowledge"] == pytest.approx(6.0) and m["zh"]["knowledge"] == pytest.approx(6.0)
    assert block["n_scored_turns"]["all"] == {"consistency": 4, "knowledge": 3, "rejection": 4}
    assert (block["n_sessions"], block["n_turns"]) == (2, 4)
    assert block["n_sessions_by_lang"] == {"en": 1, "zh": 1}
    assert block["dropped"] == {
        "sessions": 3,
        "turns": 4,
        "by_reason": {
            "incomplete": {"sessions": 1, "turns": 2},
            "rejection_no_valid_vote": {"sessions": 1, "turns": 1},
            "knowledge_unparseable": {"sessions": 1, "turns": 1},
        },
    }


def test_pending_turn_or_missing_choice_drops_the_session() -> None:
    pending = record("p", "en", "Bob", [0, 0], [turn([EN.format("Bob")] * 3, ["0"] * 3, ["x\n8"] * 3)])
    missing = record("m", "en", "Bob", [0], [turn([EN.format("Bob"), None, None], ["0"] * 3, ["x\n8"] * 3)])
    block = official_block([pending, missing])
    assert block["n_sessions"] == 0 and block["metrics"]["all"]["consistency"] is None
    assert block["dropped"]["by_reason"]["incomplete"] == {"sessions": 2, "turns": 3}


def test_official_and_robust_agree_on_strict_complete_completions() -> None:
    # The documented condition: every call answered, every completion in the strict format, knowledge 1..10,
    # labels already normalised -> both semantics give the same numbers.
    recs = [
        record(
            "a",
            "en",
            "Bob",
            [0, 1],
            [
                turn(
                    [EN.format("Bob"), EN.format("Al"), EN.format("Bob")],
                    ["0", "0", "1"],
                    ["x\n8", "x\n9", "x\n7"],
                ),
                turn([EN.format("Al")] * 3, ["1", "0", "1"], ["Score: 3", "x\n4", "x\n5"]),
            ],
        ),
        record("b", "zh", "林黛玉", [1], [turn([ZH.format("林黛玉")] * 3, ["0", "0", "0"], ["x\n10"] * 3)]),
    ]
    res = aggregate(recs, seed=0, n_boot=50)
    off = res["official"]
    assert off["dropped"]["sessions"] == 0
    for split in ("all", "en", "zh"):
        for metric in ("consistency", "knowledge", "rejection"):
            assert off["metrics"][split][metric] == pytest.approx(res["metrics"][split][metric]), (
                split,
                metric,
            )


def test_official_and_robust_differ_where_the_rules_differ() -> None:
    # Robust: trailing-space label normalised, "0" knowledge out of range, `[ Bob ]` stripped; official: none.
    recs = [
        record(
            "a",
            "en",
            "Bob ",
            [0],
            [turn(["The most suitable role is [ Bob ]"] * 3, ["0"] * 3, ["x\n0", "x\n9", "x\n9"])],
        )
    ]
    res = aggregate(recs, seed=0, n_boot=50)
    assert (
        res["metrics"]["all"]["consistency"] == 1.0
        and res["official"]["metrics"]["all"]["consistency"] == 0.0
    )
    assert res["metrics"]["all"]["knowledge"] == 9.0 and res["official"]["metrics"]["all"]["knowledge"] == 6.0


def test_results_json_has_both_blocks(judge_server: Any, tmp_path: Path) -> None:
    """End to end: the golden judge scenario of test_e2e_wikiroleeval drops both sessions officially
    (session A: turn 2's knowledge line '7/10', before its turn 4 without a valid rejection vote; session B:
    a knowledge line '评分：6'). The first failure in turn order names the reason."""
    path, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(scripted_judge(_verdicts(a, b)))
    out = tmp_path / "run"
    assert (
        main(["judge", "--tasks", "wikiroleeval", "--responses", str(path), *_judge_args(judge_server, out)])
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["schema_version"] == 2
    res = results["tasks"]["wikiroleeval"]
    assert res["semantics"] == "robust" and res["metrics"]["all"]["consistency"] is not None
    off = res["official"]
    assert off["dropped"]["sessions"] == 2 and off["dropped"]["turns"] == 7
    assert off["dropped"]["by_reason"]["knowledge_unparseable"] == {"sessions": 2, "turns": 7}
    assert off["metrics"]["all"] == {"consistency": None, "knowledge": None, "rejection": None}


def test_console_summary_shows_the_official_rows_and_drops(capsys: pytest.CaptureFixture[str]) -> None:
    """The results table printed at the end of a run carries the official numbers (``*`` rows) next to the
    robust ones, and one line with how many sessions and turns the released code kept and dropped, by
    reason."""
    from harness.report import print_results

    res = aggregate(_sessions(), seed=0, n_boot=20)
    print_results({"tasks": {"wikiroleeval": {**res, "version": 2, "usage": {}}}})
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 4}
    assert {"all", "en", "zh", "all*", "en*", "zh*"} <= set(rows)
    assert "0.625" in rows["all*"] and "6.00" in rows["all*"] and "0.750" in rows["all*"]  # golden above
    assert "—" not in rows["en*"]
    text = " ".join(out.split())
    assert "official: the released scoring.py on the same completions, 2 of 5 sessions kept" in text
    assert (
        "dropped 3 sessions / 4 turns (incomplete: 1/2, rejection_no_valid_vote: 1/1, "
        "knowledge_unparseable: 1/1)" in text
    )
