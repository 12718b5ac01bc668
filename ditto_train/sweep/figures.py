"""Figure 5 of the paper from the grid, and one imitation heatmap per metric (matplotlib, Agg backend).

``cross_supervision.png``/``.svg``: one panel per metric (consistency, knowledge, rejection), x = supervision,
y = imitation, the y = x diagonal, each point labelled ``seed ← supervisor`` and coloured by seed (language
``all``). ``imitation_<metric>.png``: seeds × supervisors, cells annotated with the imitation score.
Points whose supervision or imitation is not available are left out (and counted in the panel title).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ditto_train.sweep.spec import SweepSpec
from harness.jsonl import atomic_open

METRICS = ("consistency", "knowledge", "rejection")


def _save(fig: Any, path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    # a fixed date/creator keeps the files byte-stable across re-renders of the same numbers
    meta = {"Date": None} if fmt == "svg" else {"Software": None}
    fig.savefig(buf, format=fmt, dpi=120, metadata=meta)
    with atomic_open(path) as fh:
        fh.write(buf.getvalue())


def write_figures(folder: Path, rows: Sequence[dict[str, Any]], spec: SweepSpec) -> None:
    try:
        import matplotlib
    except ImportError:  # the grid files are written anyway; the figures need the [sweep] extra
        from harness.progress import console

        console.print("figures skipped: matplotlib is not installed (pip install 'ditto-bench[sweep]')")
        return
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    seeds = list(dict.fromkeys(s for s, _ in spec.pairs))
    sups = list(dict.fromkeys(v for _, v in spec.pairs))
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(seeds)}
    rows_all = [r for r in rows if r["lang"] == "all"]
    folder.mkdir(parents=True, exist_ok=True)

    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4.6))
    for ax, metric in zip(axes, METRICS, strict=True):
        pts = [r for r in rows_all if r["metric"] == metric]
        shown = [r for r in pts if r["supervision"] is not None and r["imitation"] is not None]
        xs = [r["supervision"] for r in shown] + [r["imitation"] for r in shown]
        lo, hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
        pad = (hi - lo) * 0.1 or 0.05
        lo, hi = lo - pad, hi + pad
        ax.plot([lo, hi], [lo, hi], linestyle="--", color="grey", linewidth=1, label="y = x")
        for seed in seeds:
            mine = [r for r in shown if r["seed"] == seed]
            if mine:
                ax.scatter(
                    [r["supervision"] for r in mine],
                    [r["imitation"] for r in mine],
                    color=colours[seed],
                    label=seed,
                    zorder=3,
                )
        for r in shown:
            ax.annotate(
                f"{r['seed']} ← {r['supervisor']}",
                (r["supervision"], r["imitation"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
        missing = len(pts) - len(shown)
        ax.set_title(metric + (f" ({missing} not available)" if missing else ""))
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("supervision performance")
        ax.set_ylabel("imitation performance")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Cross-supervision (WikiRoleEval, all languages)")
    fig.tight_layout()
    _save(fig, folder / "cross_supervision.png", "png")
    _save(fig, folder / "cross_supervision.svg", "svg")
    plt.close(fig)

    for metric in METRICS:
        by = {(r["seed"], r["supervisor"]): r["imitation"] for r in rows_all if r["metric"] == metric}
        grid = [[by.get((s, v)) for v in sups] for s in seeds]
        data = [[float("nan") if x is None else x for x in row] for row in grid]
        fig, ax = plt.subplots(figsize=(1.4 * len(sups) + 2.5, 1.0 * len(seeds) + 1.8))
        im = ax.imshow(data, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(sups)), sups, rotation=30, ha="right")
        ax.set_yticks(range(len(seeds)), seeds)
        ax.set_xlabel("supervisor")
        ax.set_ylabel("seed")
        for i, row in enumerate(grid):
            for j, x in enumerate(row):
                ax.text(j, i, "–" if x is None else f"{x:.2f}", ha="center", va="center", color="white")
        fig.colorbar(im, ax=ax)
        ax.set_title(f"imitation: {metric}")
        fig.tight_layout()
        _save(fig, folder / f"imitation_{metric}.png", "png")
        plt.close(fig)
