"""Rendering runs (and sweeps) into one self-contained HTML page.

The page carries its data as JSON inside ``<script type="application/json">`` elements, with ``<``, ``>``
and ``&`` written as ``\\u003c`` / ``\\u003e`` / ``\\u0026`` so no text from a run can close the element;
the page script puts every such text into the DOM as text, never as HTML. A Content-Security-Policy allows
only the page's own script (by hash): even a text that reached the DOM as HTML could not run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from harness.errors import ConfigError
from leaderboards.viewer.data import RunView, SweepView

GENERATOR = "ditto-bench view"


def _static(name: str) -> str:
    return resources.files("leaderboards.viewer").joinpath(name).read_text(encoding="utf-8")


def script_json(obj: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` characters, and no
    U+2028/U+2029 (line separators to old JavaScript parsers)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(ch, esc)
    return text


def _run_json(run: RunView) -> dict[str, Any]:
    return {
        "label": run.label,
        "model": run.model,
        "path": str(run.path),
        "mode": run.mode,
        "complete": run.complete,
        "judge": run.judge,
        "results": [asdict(r) for r in run.results],
        "metrics": run.metrics,
        "notes": run.notes,
        "sessions": run.index,
    }


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: _static(f"templates/{name}")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _run_plot(run: RunView) -> str | None:
    from leaderboards.plots import inline_svg, run_figure

    rows = [r for r in run.results if r.value is not None]
    if not rows:
        return None
    fig, _ = run_figure(rows)
    return inline_svg(fig)


def _compare_plot(runs: Sequence[RunView]) -> tuple[str | None, str | None]:
    """The paired per-session differences of the first two runs (B - A), or a note why there is none."""
    from leaderboards.compare import compare_runs
    from leaderboards.plots import compare_figure, inline_svg

    try:
        results, _ = compare_runs(runs[0].path, runs[1].path, n_boot=1000)
        fig, _ = compare_figure(results)
    except ConfigError as exc:
        return None, f"no paired plot: {exc}"
    return inline_svg(fig), None


def render_page(
    runs: Sequence[RunView], sweeps: Sequence[SweepView] = (), *, title: str | None = None, plots: bool = True
) -> str:
    """The HTML page of ``runs`` (one tab each, plus a compare tab for two or more) and ``sweeps``."""
    script = _static("static/viewer.js")
    css = _static("static/viewer.css")
    if "</script" in script.lower() or "</style" in css.lower():
        raise AssertionError("viewer assets must not close their own elements")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    plot_list: list[dict[str, Any]] = []
    notes: list[str] = []
    if plots:
        for i, run in enumerate(runs):
            svg = _run_plot(run)
            if svg:
                plot_list.append({"id": f"plot-run-{i}", "svg": Markup(svg)})
        if len(runs) >= 2:
            svg, note = _compare_plot(runs)
            if svg:
                plot_list.append({"id": "plot-compare", "svg": Markup(svg)})
            if note:
                notes.append(note)
    data = {
        "runs": [_run_json(r) for r in runs],
        "sweeps": [
            {"name": s.name, "path": str(s.path), "stages": [asdict(st) for st in s.stages]} for s in sweeps
        ],
        "notes": notes,
    }
    if title is not None:
        page_title = title
    elif sweeps:
        page_title = "ditto-bench view: sweep " + ", ".join(s.name for s in sweeps)
    else:
        page_title = "ditto-bench view: " + ", ".join(r.label for r in runs)
    return (
        _env()
        .get_template("page.html.jinja")
        .render(
            generator=GENERATOR,
            fingerprints=" ".join(r.fingerprint or "-" for r in runs),
            script_hash=f"sha256-{digest}",
            title=page_title,
            css=Markup(css),
            plots=plot_list,
            data=Markup(script_json(data)),
            blobs=[Markup(script_json(r.blobs)) for r in runs],
            script=Markup(script),
        )
    )


def _head(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(2048)
    except OSError:
        return ""


def written_by_viewer(path: Path) -> bool:
    """Whether an existing file is a page this command wrote (only those may be replaced)."""
    return f'<meta name="generator" content="{GENERATOR}">' in _head(path)


def page_fingerprints(path: Path) -> list[str]:
    """The run fingerprints a viewer page was built from, in order (empty for any other file)."""
    head = _head(path)
    if not written_by_viewer(path):
        return []
    m = re.search(r'<meta name="ditto-bench-runs" content="([0-9a-f -]*)">', head)
    return m.group(1).split() if m else []
