"""Plots: the numbers drawn (bar heights, whiskers, paired differences), stable bytes, `--plot` on the CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from leaderboards.board import build_board
from leaderboards.compare import compare_runs
from leaderboards.definition import load_definition, load_reported
from leaderboards.plots import compare_figure, figure_bytes, leaderboard_figure, run_figure
from leaderboards.runs import read_run
from leaderboards.viewer.data import load_run_view
from tests.support.fake_openai import FakeOpenAI
from tests.test_mtbench_fidelity import MT_DIR, PUBLISHED
from tests.viewer_runs import build_runs, records

needs_mt = pytest.mark.skipif(not MT_DIR.is_dir(), reason="shared MT-Bench data not found at ../shared")


@pytest.fixture(scope="module")
def runs(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_runs(fake_openai, tmp_path_factory.mktemp("plot_runs"), mtbench=MT_DIR.is_dir())


@needs_mt
def test_leaderboard_plot_draws_each_models_value_and_ci(runs: dict[str, Path]) -> None:
    d = load_definition(None)
    board = build_board(
        d,
        [read_run(runs["mt_gpt4"]), read_run(runs["mt_claude"]), read_run(runs["wre_a"])],
        reported=[load_reported(d, d.default_reported)] if d.default_reported else [],
    )
    fig, panels = leaderboard_figure(board)
    titles = [p.title for p in panels]
    assert titles == ["Cons.", "Know.", "Rej.", "MT-Bench Roleplay"]
    know = panels[1]
    assert list(know.groups) == ["All", "En", "Zh"]  # languages side by side
    res = {r.model: r for r in board.rows}
    wre = next(m for m, r in res.items() if r.source == "run" and "all_know" in r.cells)
    i = know.groups["En"].labels.index(wre)
    assert know.groups["En"].values[i] == pytest.approx(22 / 3)
    assert know.groups["Zh"].values[i] is None  # no verdict in zh: no bar, not 0
    mt = panels[3].groups["MT-Bench"]
    assert mt.values[mt.labels.index("gpt-4")] == pytest.approx(PUBLISHED["gpt-4"][2])
    assert mt.values[mt.labels.index("claude-v1")] == pytest.approx(PUBLISHED["claude-v1"][2])
    # the artists: horizontal bars whose widths are exactly the drawn values, whiskers at the CI bounds
    ax = fig.axes[3]
    widths = sorted(round(p.get_width(), 9) for p in ax.patches)
    drawn = sorted(round(v, 9) for v in mt.values if v is not None)
    assert widths == drawn
    ci = board.rows[[r.model for r in board.rows].index("gpt-4")].cells["mtbench_roleplay"].ci
    segs = np.concatenate(
        [c.get_segments() for coll in ax.containers if hasattr(coll, "lines") for c in coll.lines[2]]
    )
    assert any(np.allclose(sorted([s[0][0], s[1][0]]), ci) for s in segs)


@needs_mt
def test_compare_plot_draws_the_per_session_differences(runs: dict[str, Path]) -> None:
    results, _ = compare_runs(runs["mt_gpt4"], runs["mt_claude"], n_boot=200)
    fig, panels = compare_figure(results)
    (panel,) = panels
    # by hand from the records: per question, mean over its two turns of B - A
    a = {
        r["session_id"]: [t["judgments"]["rating"]["score"] for t in r["turns"]]
        for r in records(runs["mt_gpt4"])
    }
    b = {
        r["session_id"]: [t["judgments"]["rating"]["score"] for t in r["turns"]]
        for r in records(runs["mt_claude"])
    }
    expected = sorted((sum(b[q]) - sum(a[q])) / 2 for q in a)
    assert panel.diffs == pytest.approx(expected)
    assert panel.mean == pytest.approx(PUBLISHED["claude-v1"][2] - PUBLISHED["gpt-4"][2])
    heights = [p.get_height() for p in fig.axes[0].containers[0]]  # the BarContainer
    assert heights == pytest.approx(expected)


def test_run_plot_bars_are_the_results(runs: dict[str, Path]) -> None:
    view = load_run_view(runs["wre_b"])
    fig, panels = run_figure(view.results)
    know = next(p for p in panels if p.title == "wikiroleeval knowledge")
    assert know.groups[""].labels == ["all", "en", "zh"]
    assert know.groups[""].values == pytest.approx([6.0, 6.0, 6.0])
    ax = fig.axes[[p.title for p in panels].index("wikiroleeval knowledge")]
    assert [p.get_height() for p in ax.patches] == pytest.approx([6.0, 6.0, 6.0])


def test_plot_bytes_are_deterministic(runs: dict[str, Path]) -> None:
    view = load_run_view(runs["wre_a"])
    for suffix in (".svg", ".png"):
        one = figure_bytes(run_figure(view.results)[0], suffix)
        two = figure_bytes(run_figure(view.results)[0], suffix)
        assert hashlib.sha256(one).digest() == hashlib.sha256(two).digest(), suffix
    svg = figure_bytes(run_figure(view.results)[0], ".svg").decode()
    assert "<dc:date>" not in svg and "Matplotlib v" not in svg


@needs_mt
def test_plot_flags_write_png_and_svg(runs: dict[str, Path], tmp_path: Path) -> None:
    png, svg = tmp_path / "lb.png", tmp_path / "cmp.svg"
    assert (
        main(
            [
                "leaderboard",
                str(runs["mt_gpt4"]),
                str(runs["mt_claude"]),
                "--plot",
                str(png),
                "--out",
                str(tmp_path / "lb.md"),
            ]
        )
        == 0
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        main(
            [
                "compare",
                str(runs["mt_gpt4"]),
                str(runs["mt_claude"]),
                "--plot",
                str(svg),
                "--bootstrap_resamples",
                "100",
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()


def test_bad_plot_name_fails_before_any_work(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lb.md"
    assert (
        main(["leaderboard", str(runs["wre_a"]), "--plot", str(tmp_path / "x.pdf"), "--out", str(out)]) == 2
    )
    assert "--plot" in capsys.readouterr().err and not out.exists()
    assert main(["compare", str(runs["wre_a"]), str(runs["wre_b"]), "--plot", "x.jpg"]) == 2
