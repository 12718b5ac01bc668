"""Plots of leaderboards, paired comparisons and single runs (matplotlib, Agg backend).

Every ``*_figure`` function returns the figure and the data it drew (plain lists, so tests check the numbers
drawn, not pixels). Output is deterministic: a fixed SVG hash salt, text as paths, no date or software
version in the file's metadata, so the same input gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harness.errors import ConfigError  # noqa: E402
from harness.jsonl import atomic_open  # noqa: E402

if TYPE_CHECKING:
    from leaderboards.board import Board
    from leaderboards.compare import PairedResult
    from leaderboards.viewer.data import ResultRow

PLOT_SUFFIXES = (".png", ".svg")
_RC: Any = {  # Any: matplotlib types rc keys as a Literal union
    "svg.hashsalt": "ditto-bench",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_METADATA = {
    ".svg": {"Date": None, "Creator": None, "Format": None, "Type": None},
    ".png": {"Software": None},
}
_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


@dataclass
class Bars:
    """One group of bars in one panel: a value and (where known) a 95% CI per x label."""

    labels: list[str]
    values: list[float | None]
    ci: list[tuple[float, float] | None] = field(default_factory=list)


@dataclass
class Panel:
    """One subplot: a title and its bar groups (e.g. All / En / Zh), or paired differences."""

    title: str
    groups: dict[str, Bars] = field(default_factory=dict)
    diffs: list[float] = field(default_factory=list)
    mean: float | None = None
    ci: tuple[float, float] | None = None


def _new_figure(n_panels: int, width_each: float = 3.6, height: float = 3.4) -> tuple[Figure, list[Any]]:
    with plt.rc_context(_RC):
        fig = Figure(figsize=(max(4.0, width_each * n_panels), height), dpi=100)
        axes = fig.subplots(1, max(1, n_panels), squeeze=False, sharey=False)[0]
    return fig, list(axes)


def _draw_bars(
    ax: Any, panel: Panel, *, horizontal: bool = False, show_labels: bool = True, title: str | None = None
) -> None:
    """Grouped bars (one group per ``panel.groups`` entry) with CI whiskers; horizontal for long lists of
    models (first label at the top)."""
    labels = list(dict.fromkeys(lbl for g in panel.groups.values() for lbl in g.labels))
    k = max(1, len(panel.groups))
    width = 0.8 / k
    pos = {lbl: (len(labels) - 1 - i if horizontal else i) for i, lbl in enumerate(labels)}
    for gi, (gname, bars) in enumerate(panel.groups.items()):
        xs, hs, ex, ev, lo, hi = [], [], [], [], [], []
        for lbl, v, ci in zip(bars.labels, bars.values, bars.ci or [None] * len(bars.labels), strict=True):
            if v is None:
                continue
            offset = width * (gi + 0.5) - 0.4
            x = pos[lbl] - offset if horizontal else pos[lbl] + offset
            xs.append(x)
            hs.append(v)
            if ci is not None:
                ex.append(x)
                ev.append(v)
                lo.append(v - ci[0])
                hi.append(ci[1] - v)
        color = _COLORS[gi % len(_COLORS)]
        whiskers = {"fmt": "none", "ecolor": "#333333", "elinewidth": 1.0, "capsize": 2.5}
        if horizontal:
            ax.barh(xs, hs, height=width * 0.92, label=gname or None, color=color)
            if ex:
                ax.errorbar(ev, ex, xerr=[lo, hi], **whiskers)
        else:
            ax.bar(xs, hs, width=width * 0.92, label=gname or None, color=color)
            if ex:
                ax.errorbar(ex, ev, yerr=[lo, hi], **whiskers)
    ticks = [pos[lbl] for lbl in labels]
    if horizontal:
        ax.set_yticks(ticks)
        ax.set_yticklabels(labels if show_labels else [""] * len(labels))
    else:
        ax.set_xticks(ticks)
        ax.set_xticklabels(
            labels, rotation=30 if len(labels) > 3 else 0, ha="right" if len(labels) > 3 else "center"
        )
    ax.set_title(panel.title if title is None else title)
    if k > 1:
        ax.legend(fontsize=7, frameon=False)


def _finish(fig: Figure) -> Figure:
    with plt.rc_context(_RC):
        fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------- leaderboard


def leaderboard_panels(board: Board) -> list[Panel]:
    """Per metric label (Cons., Know., ...), one bar group per column group (All, En, Zh) over the rows."""
    panels: dict[str, Panel] = {}
    for col in board.columns:
        title = col.label if col.group in ("All", "En", "Zh") else f"{col.group} {col.label}".strip()
        panel = panels.setdefault(title, Panel(title=title))
        bars = panel.groups.setdefault(col.group, Bars(labels=[], values=[], ci=[]))
        for row in board.rows:
            cell = row.cells.get(col.id)
            name = row.model if row.source == "run" else f"{row.model} (reported)"
            bars.labels.append(name)
            bars.values.append(None if cell is None else cell.value)
            bars.ci.append(None if cell is None else cell.ci)
    return list(panels.values())


def leaderboard_figure(board: Board) -> tuple[Figure, list[Panel]]:
    """Bars with CI whiskers per model, one panel per metric, the languages side by side."""
    panels = leaderboard_panels(board)
    n_models = max((len(b.labels) for p in panels for b in p.groups.values()), default=1)
    fig, axes = _new_figure(len(panels), width_each=3.0, height=max(3.0, 1.2 + 0.32 * n_models))
    with plt.rc_context(_RC):
        for i, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
            _draw_bars(ax, panel, horizontal=True, show_labels=i == 0)
    return _finish(fig), panels


# ----------------------------------------------------------------------------------------------- compare


def compare_panels(results: Sequence[PairedResult], split: str = "all") -> list[Panel]:
    """Per (task, metric) of ``split``: the per-session mean differences B - A, sorted, with the paired
    mean difference and its CI."""
    out: list[Panel] = []
    for r in results:
        if r.split != split:
            continue
        out.append(
            Panel(
                title=f"{r.task} {r.metric}",
                diffs=sorted(r.session_diffs),
                mean=r.diff,
                ci=None if r.ci95 is None else (r.ci95[0], r.ci95[1]),
            )
        )
    return out


def compare_figure(results: Sequence[PairedResult], split: str = "all") -> tuple[Figure, list[Panel]]:
    """One panel per (task, metric): sorted per-session differences as bars, the mean difference as a
    line, its 95% paired-bootstrap CI as a band."""
    panels = compare_panels(results, split)
    if not panels:
        raise ConfigError(f"--plot: no paired result for split {split!r} to draw")
    fig, axes = _new_figure(len(panels))
    with plt.rc_context(_RC):
        for ax, p in zip(axes, panels, strict=True):
            colors = [_COLORS[0] if d >= 0 else _COLORS[3] for d in p.diffs]
            ax.bar(range(len(p.diffs)), p.diffs, width=1.0, color=colors)
            ax.axhline(0.0, color="#555555", linewidth=0.8)
            if p.mean is not None:
                ax.axhline(
                    p.mean, color="#111111", linestyle="--", linewidth=1.0, label=f"mean {p.mean:+.3f}"
                )
            if p.ci is not None:
                ax.axhspan(p.ci[0], p.ci[1], color="#999999", alpha=0.25, label="95% CI")
            ax.set_title(p.title)
            ax.set_xlabel("sessions (sorted)")
            ax.set_ylabel("B - A per session")
            ax.legend(fontsize=7, frameon=False)
    return _finish(fig), panels


# -------------------------------------------------------------------------------------------------- run


def run_panels(rows: Sequence[ResultRow]) -> list[Panel]:
    """Per (task, metric): one bar per split (all, en, zh / turn1, turn2) with its CI."""
    panels: dict[str, Panel] = {}
    for r in rows:
        title = f"{r.task} {r.metric}"
        panel = panels.setdefault(title, Panel(title=title))
        bars = panel.groups.setdefault("", Bars(labels=[], values=[], ci=[]))
        bars.labels.append(r.split)
        bars.values.append(r.value)
        bars.ci.append(None if not r.ci else (float(r.ci[0]), float(r.ci[1])))
    return list(panels.values())


def run_figure(rows: Sequence[ResultRow]) -> tuple[Figure, list[Panel]]:
    """A run's results: per task and metric, the splits' values with CI whiskers."""
    panels = run_panels(rows)
    fig, axes = _new_figure(len(panels), width_each=1.9, height=2.3)
    with plt.rc_context(_RC):
        for ax, panel in zip(axes, panels, strict=True):
            _draw_bars(ax, panel, title=panel.title.replace(" ", "\n", 1))  # task over metric
    return _finish(fig), panels


# ------------------------------------------------------------------------------------------------ output


def check_plot_path(path: Path) -> None:
    """``--plot FILE`` must end in .png or .svg (checked before any work)."""
    if Path(path).suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(f"--plot: {path}: expected a .png or .svg file name")


def figure_bytes(fig: Figure, suffix: str) -> bytes:
    """The figure as PNG or SVG bytes, with stable metadata."""
    suffix = suffix.lower()
    if suffix not in PLOT_SUFFIXES:
        raise ConfigError(f"expected one of {', '.join(PLOT_SUFFIXES)}, got {suffix!r}")
    buf = io.BytesIO()
    with plt.rc_context(_RC):
        fig.savefig(buf, format=suffix[1:], metadata=_METADATA[suffix])
    return buf.getvalue()


def save_figure(fig: Figure, path: Path) -> None:
    """Write PNG or SVG (by the file's suffix) atomically."""
    check_plot_path(path)
    data = figure_bytes(fig, Path(path).suffix)
    with atomic_open(Path(path)) as f:
        f.write(data)


def inline_svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element for inlining into HTML (no XML prolog or doctype)."""
    text = figure_bytes(fig, ".svg").decode("utf-8")
    return text[text.index("<svg") :]
