"""The committed example tables are exactly what `ditto-bench leaderboard` renders from the committed runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leaderboards.cli import leaderboard_main
from tests.test_leaderboard_build import check_html
from tests.test_mtbench_fidelity import PUBLISHED

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "leaderboards" / "examples"
SPEC = json.loads((EXAMPLES / "tables.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("model", SPEC["runs"])
def test_example_runs_hold_the_published_numbers(model: str) -> None:
    run_dir = EXAMPLES / "runs" / f"mtbench_roleplay-{model}"
    res = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))["tasks"]["mtbench_roleplay"]
    t1, t2, both = PUBLISHED[model]
    assert res["metrics"] == pytest.approx({"turn1": t1, "turn2": t2, "all": both}, abs=1e-12)
    spec = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["spec"]
    assert spec["tasks"]["mtbench_roleplay"]["judge"]["model"] == "gpt-4"
    assert spec["judge_base_url"].startswith("http://127.0.0.1:")  # the replay server, as the table says


@pytest.mark.parametrize("table", SPEC["tables"], ids=lambda t: t["stem"])
def test_committed_tables_are_up_to_date(
    table: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # the table arguments are relative to the repository root
    for fmt, ext in table["formats"].items():
        out = tmp_path / f"{table['stem']}.{ext}"
        assert leaderboard_main([*table["args"], "--format", fmt, "--out", str(out)]) == 0
        committed = EXAMPLES / f"{table['stem']}.{ext}"
        assert out.read_text(encoding="utf-8") == committed.read_text(encoding="utf-8"), (
            f"{committed.name} is stale: run `python leaderboards/examples/make_examples.py`"
        )
        if fmt == "html":
            assert "local endpoint" in check_html(out.read_text(encoding="utf-8"))
