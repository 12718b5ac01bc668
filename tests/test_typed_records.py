"""Issue 11, typed records: samples.jsonl and results.json read back through harness.schema; verdicts and
aggregates are derived, never written into a record in place; old runs still load."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import ConfigError
from harness.schema import RECORD_SCHEMA_VERSION, iter_records, load_records, load_results
from leaderboards.board import build_board
from leaderboards.cli import leaderboard_main
from leaderboards.compare import compare_runs
from leaderboards.definition import load_definition
from leaderboards.runs import read_run
from tasks.wikiroleeval.scoring import aggregate
from tests.support.fake_openai import FakeOpenAI
from tests.test_compare import _wre_judged
from tests.test_wre_official import _sessions

REPO = Path(__file__).resolve().parents[1]
DERIVED = ("parsed", "verdict", "score", "rating_status")


def _rewrite(path: Path, edit: Any) -> None:
    recs = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    for r in recs:
        edit(r)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")


def _strip_derived(rec: dict[str, Any]) -> None:
    rec.pop("schema_version", None)
    for t in rec["turns"]:
        for j in t["judgments"].values():
            for k in DERIVED:
                j.pop(k, None)


def test_aggregate_never_modifies_records() -> None:
    recs = _sessions()
    before = copy.deepcopy(recs)
    aggregate(recs, seed=0, n_boot=20)
    assert recs == before


def test_written_records_are_versioned_and_show_derived_verdicts(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    run = _wre_judged(fake_openai, 7, tmp_path / "a")
    lines = [json.loads(x) for x in (run / "samples.jsonl").open(encoding="utf-8")]
    assert all(r["schema_version"] == RECORD_SCHEMA_VERSION for r in lines)
    j = lines[0]["turns"][0]["judgments"]["knowledge"]
    assert j["score"] == 7.0 and j["verdict"]["status"] == "ok"  # the reader's view, backward-compatible
    # ... but reading back drops them: a typed record holds only what happened
    rec = next(iter_records(run / "samples.jsonl"))
    assert not set(DERIVED) & set(rec.turns[0].judgments["knowledge"].model_dump())
    assert load_results(run / "results.json").tasks["wikiroleeval"].official is not None


def test_compare_without_a_score_step(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    """Before: compare failed with "run `ditto-bench score` first" on records without a 'score'."""
    a = _wre_judged(fake_openai, 7, tmp_path / "a")
    b = _wre_judged(fake_openai, 5, tmp_path / "b")
    expected, _ = compare_runs(a, b, seed=0, n_boot=100)
    _rewrite(a / "samples.jsonl", _strip_derived)
    _rewrite(b / "samples.jsonl", _strip_derived)
    results, _ = compare_runs(a, b, seed=0, n_boot=100)
    assert results == expected


def test_compare_ignores_hand_edited_scores(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    a = _wre_judged(fake_openai, 7, tmp_path / "a")
    b = _wre_judged(fake_openai, 5, tmp_path / "b")
    expected, _ = compare_runs(a, b, seed=0, n_boot=100)

    def zero(rec: dict[str, Any]) -> None:
        for t in rec["turns"]:
            for j in t["judgments"].values():
                j["score"] = 0

    _rewrite(b / "samples.jsonl", zero)
    results, _ = compare_runs(a, b, seed=0, n_boot=100)
    assert results == expected


def test_a_version_1_run_rescores_and_gains_the_official_block(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    run = _wre_judged(fake_openai, 7, tmp_path / "a")
    fresh = json.loads((run / "results.json").read_text())
    # make it look like a run of the previous version: no schema keys, no official block
    _rewrite(run / "samples.jsonl", lambda r: r.pop("schema_version"))
    old = dict(fresh)
    old.pop("schema_version")
    old["tasks"] = {
        "wikiroleeval": {k: v for k, v in fresh["tasks"]["wikiroleeval"].items() if k != "official"}
    }
    (run / "results.json").write_text(json.dumps(old), encoding="utf-8")
    assert read_run(run).tasks["wikiroleeval"].results["metrics"] == fresh["tasks"]["wikiroleeval"]["metrics"]
    assert {r.schema_version for r in load_records(run / "samples.jsonl")["wikiroleeval"]} == {1}
    assert main(["score", str(run), "--bootstrap_resamples", "100"]) in (0, 1)
    again = json.loads((run / "results.json").read_text())
    assert again["schema_version"] == 2
    assert again["tasks"]["wikiroleeval"]["official"] == fresh["tasks"]["wikiroleeval"]["official"]
    assert again["tasks"]["wikiroleeval"]["metrics"] == fresh["tasks"]["wikiroleeval"]["metrics"]


def test_committed_example_runs_load_typed() -> None:
    for run in sorted((REPO / "leaderboards" / "examples" / "runs").iterdir()):
        res = load_results(run / "results.json")
        assert res.tasks["mtbench_roleplay"].metrics["all"] is not None
        assert res.tasks["mtbench_roleplay"].official is None


def test_bad_record_lines_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    good = {
        "task": "wikiroleeval",
        "session_id": "s",
        "index": 0,
        "prompts": ["q"],
        "messages": [],
        "turns": [{"turn": 0, "generation": {"status": "given"}, "judgments": {}}],
    }
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "turns": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{path}:2: field 'turns'"):
        list(iter_records(path))
    path.write_text(json.dumps({**good, "schema_version": 99}) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{path}:1: schema_version 99 is newer"):
        list(iter_records(path))


def test_leaderboard_semantics(
    fake_openai: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _wre_judged(fake_openai, 7, tmp_path / "a")
    res = json.loads((run / "results.json").read_text())["tasks"]["wikiroleeval"]
    definition = load_definition()
    robust = build_board(definition, [read_run(run)], tasks=["wikiroleeval"])
    official = build_board(definition, [read_run(run)], tasks=["wikiroleeval"], semantics="official")
    assert robust.semantics == "robust" and official.semantics == "official"
    r_cell, o_cell = robust.rows[0].cells["all_know"], official.rows[0].cells["all_know"]
    assert r_cell.value == pytest.approx(res["metrics"]["all"]["knowledge"]) and r_cell.ci is not None
    assert o_cell.value == pytest.approx(res["official"]["metrics"]["all"]["knowledge"]) and o_cell.ci is None
    assert o_cell.failures == res["official"]["dropped"]["turns"]
    assert any("robust semantics" in n for n in robust.notes)
    assert any("official semantics" in n for n in official.notes)
    # CLI flag; a run without the block shows no number and says how to get one
    assert leaderboard_main([str(run), "--tasks", "wikiroleeval", "--semantics", "official"]) == 0
    assert "official semantics" in capsys.readouterr().out
    doc = json.loads((run / "results.json").read_text())
    del doc["tasks"]["wikiroleeval"]["official"]
    (run / "results.json").write_text(json.dumps(doc), encoding="utf-8")
    board = build_board(definition, [read_run(run)], tasks=["wikiroleeval"], semantics="official")
    assert board.rows[0].cells["all_know"].value is None
    assert any("ditto-bench score" in n for n in board.notes)
    with pytest.raises(SystemExit) as exc:
        leaderboard_main([str(run), "--semantics", "strict"])
    assert exc.value.code == 2
