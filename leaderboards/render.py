"""Rendering a :class:`~leaderboards.board.Board` as Markdown, CSV, LaTeX or a standalone HTML page.

Numbers are rounded here (``digits``, 2 by default) and only here. Optional: 95% CIs (``[lo, hi]``) and
failure counts (``(N unscored)``: turns without a usable judgment) in the cells. CSV always carries CI bounds,
n, failure counts, variant marks and the judge per task, one column each.
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from itertools import groupby
from pathlib import Path
from urllib.parse import quote

from leaderboards.board import Board, Cell, Row
from leaderboards.definition import Column

FORMATS = ("md", "csv", "latex", "html")
EMPTY = "—"


@dataclass(frozen=True)
class Style:
    """What goes into a cell besides the value."""

    digits: int = 2
    ci: bool = False
    failures: bool = False
    # HTML: run rows link to RUN_DIR/view.html where it exists, relative to this directory (the output
    # file's folder; None: the working directory)
    link_base: Path | None = None


def _num(x: float, digits: int) -> str:
    """Round half up on the shortest decimal form, so 7.175 shows as 7.18 as a reader expects, not 7.17
    (the binary float just below 7.175)."""
    q = Decimal(1).scaleb(-digits)
    return str(Decimal(repr(float(x))).quantize(q, rounding=ROUND_HALF_UP))


def cell_text(cell: Cell | None, style: Style, sup: Callable[[str], str]) -> str:
    """Plain text of a cell; ``sup`` renders a variant mark in the target format."""
    if cell is None or cell.value is None:
        return EMPTY
    out = _num(cell.value, style.digits)
    if cell.incomplete:
        out += "*"
    if cell.variant:
        out += sup(cell.variant)
    if style.ci and cell.ci is not None:
        out += f" [{_num(cell.ci[0], style.digits)}, {_num(cell.ci[1], style.digits)}]"
    if style.failures and cell.failures:
        out += f" ({cell.failures} unscored)"
    return out


def source_text(row: Row) -> str:
    return "run" if row.source == "run" else f"reported ({row.origin})"


def _groups(columns: list[Column]) -> list[tuple[str, int]]:
    return [(g, len(list(cols))) for g, cols in groupby(columns, key=lambda c: c.group)]


def _header(col: Column) -> str:
    return f"{col.group} {col.label}".strip()


# ------------------------------------------------------------------------------------------------ markdown


def _md_text(text: str) -> str:
    """Text for Markdown that a renderer shows as text: HTML in it (``<``, ``>``, ``&``) is escaped, so a
    label or note like ``<script>`` is never passed through as markup; a line break becomes a space. Code
    spans (`` `...` ``) are left as they are: Markdown shows their content literally."""
    parts = re.split(r"(`[^`\n]*`)", text)
    text = "".join(p if i % 2 else html.escape(p, quote=False) for i, p in enumerate(parts))
    return text.replace("\n", " ")


def _md_escape(text: str) -> str:
    """A table cell: :func:`_md_text`, and ``|`` escaped."""
    return _md_text(text).replace("|", "\\|")


def to_markdown(board: Board, style: Style) -> str:
    """GitHub-flavoured Markdown: title, description, the table, then the notes (judges, sources)."""
    sup = lambda v: f"\x00{v}\x01"  # noqa: E731 - placeholder, becomes <sup> after escaping

    def md_cell(text: str) -> str:
        return _md_escape(text).replace("\x00", "<sup>").replace("\x01", "</sup>")

    lines = [f"# {_md_text(board.title)}", ""]
    if board.description:
        lines += [_md_text(board.description), ""]
    head = ["Model", "Source", *(_header(c) for c in board.columns)]
    lines.append("| " + " | ".join(_md_escape(h) for h in head) + " |")
    lines.append("|---|---|" + "---:|" * len(board.columns))
    for row in board.rows:
        cells = [
            row.model,
            source_text(row),
            *(cell_text(row.cells.get(c.id), style, sup) for c in board.columns),
        ]
        lines.append("| " + " | ".join(md_cell(x) for x in cells) + " |")
    if board.notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {_md_text(n)}" for n in board.notes]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------- csv


def to_csv(board: Board, style: Style) -> str:
    """One line per row; per column: value, CI bounds, n, failures, variant (rounded to ``digits``)."""
    tasks = list(dict.fromkeys(c.task for c in board.columns))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["model", "source", "origin"]
    for c in board.columns:
        header += [
            c.id,
            f"{c.id}_ci_low",
            f"{c.id}_ci_high",
            f"{c.id}_n",
            f"{c.id}_failures",
            f"{c.id}_variant",
        ]
    header += [f"{t}_judge" for t in tasks]
    w.writerow(header)

    def r(x: float | None) -> str:
        return "" if x is None else _num(x, style.digits)

    for row in board.rows:
        line = [row.model, row.source, row.origin]
        for c in board.columns:
            cell = row.cells.get(c.id) or Cell(value=None)
            lo, hi = cell.ci if cell.ci else (None, None)
            line += [
                r(cell.value),
                r(lo),
                r(hi),
                "" if cell.n is None else str(cell.n),
                "" if cell.failures is None else str(cell.failures),
                cell.variant or "",
            ]
        line += [row.judges.get(t, "") for t in tasks]
        w.writerow(line)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------- latex

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "—": "--",
    "†": r"$^\dagger$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(board: Board, style: Style) -> str:
    """A ``table`` with a booktabs ``tabular``: grouped column headers, notes in a footnote-size paragraph."""
    sup = lambda v: f"\x00{v}\x01"  # noqa: E731 - placeholder, turned into $^{v}$ after escaping

    def tex(text: str) -> str:
        return latex_escape(text).replace("\x00", "$^{").replace("\x01", "}$")

    n = len(board.columns)
    lines = [
        "% Generated by `ditto-bench leaderboard`; requires \\usepackage{booktabs}.",
        "\\begin{table}[t]",
        "\\centering",
        "\\small",
        f"\\caption{{{tex(board.title)}}}",
        "\\begin{tabular}{ll" + "r" * n + "}",
        "\\toprule",
    ]
    groups = _groups(board.columns)
    top = ["", ""] + [f"\\multicolumn{{{k}}}{{c}}{{{tex(g)}}}" for g, k in groups]
    lines.append(" & ".join(top) + " \\\\")
    rules, start = [], 3
    for _, k in groups:
        rules.append(f"\\cmidrule(lr){{{start}-{start + k - 1}}}")
        start += k
    lines.append(" ".join(rules))
    lines.append(" & ".join(["Model", "Source", *(tex(c.label) for c in board.columns)]) + " \\\\")
    lines.append("\\midrule")
    for row in board.rows:
        cells = [
            tex(row.model),
            tex(source_text(row)),
            *(tex(cell_text(row.cells.get(c.id), style, sup)) for c in board.columns),
        ]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    if board.notes:
        lines.append("\\par\\smallskip\\footnotesize")
        lines += [tex(note) + "\\par" for note in board.notes]
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- html

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1b1f24; }
h1 { font-size: 1.35rem; } p.desc { max-width: 60rem; color: #444; } table { border-collapse: collapse;
font-size: 0.9rem; } th, td { padding: 0.3rem 0.6rem; border-bottom: 1px solid #ddd; } th { background:
#f3f5f7; } thead tr.groups th { border-bottom: 2px solid #999; } td.num { text-align: right;
font-variant-numeric: tabular-nums; white-space: nowrap; } tr.reported td { color: #555; font-style: italic;
background: #fafafa; } span.badge { font-size: 0.75rem; padding: 0 0.35rem; border-radius: 0.6rem; background:
#e8eef7; } ul.notes { font-size: 0.85rem; color: #333; max-width: 70rem; } th.sortable { cursor: pointer; }
th.sortable::after { content: " \\2195"; color: #999; font-size: 0.75rem; } a.view { font-size: 0.75rem;
margin-left: 0.4rem; } """.strip()

# Click a column header to sort the rows by it (numbers high to low first, then low to high; names A-Z
# first; "—" last).
_SORT_JS = """
document.querySelectorAll("th.sortable").forEach(function (th) {
  th.addEventListener("click", function () {
    var col = +th.getAttribute("data-col"), tbody = document.querySelector("table.board tbody");
    var desc = th.getAttribute("data-dir") !== "desc";
    document.querySelectorAll("th.sortable").forEach(function (h) { h.removeAttribute("data-dir"); });
    th.setAttribute("data-dir", desc ? "desc" : "asc");
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
      if (col === 0) { x = a.cells[0].textContent; y = b.cells[0].textContent; }
      if (x === null || x === "") return (y === null || y === "") ? 0 : 1;
      if (y === null || y === "") return -1;
      var c = col === 0 ? x.localeCompare(y) : parseFloat(x) - parseFloat(y);
      if (col === 0) return desc ? c : -c;  // names: A-Z first, then Z-A
      return desc ? -c : c;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  });
});
""".strip()


def _viewer_links(row: Row, base: Path | None) -> list[str]:
    """Relative links to the viewer pages (RUN_DIR/view.html) of a run row's runs that have one built from
    the run as it is now (a page left from a run since overwritten is not linked)."""
    import json

    from leaderboards.viewer import VIEW_FILE
    from leaderboards.viewer.page import page_fingerprints

    out: list[str] = []
    for d in row.run_dirs:
        page = Path(d) / VIEW_FILE
        try:
            fingerprint = json.loads((Path(d) / "run.json").read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            continue
        if page.is_file() and page_fingerprints(page)[:1] == [fingerprint]:
            rel = os.path.relpath(page.resolve(), (base or Path.cwd()).resolve())
            out.append(quote(Path(rel).as_posix()))
    return out


def to_html(board: Board, style: Style) -> str:
    """A standalone HTML5 page (inline CSS; a small inline script sorts the rows by a clicked column). Run
    rows link to their runs' viewer pages (``ditto-bench view``) where those exist."""
    e = html.escape
    sup = lambda v: f"\x00{v}\x01"  # noqa: E731 - placeholder, becomes <sup> after escaping

    def cell_html(cell: Cell | None) -> str:
        return e(cell_text(cell, style, sup)).replace("\x00", "<sup>").replace("\x01", "</sup>")

    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{e(board.title)}</title>",
        f"<style>\n{_CSS}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{e(board.title)}</h1>",
    ]
    if board.description:
        out.append(f'<p class="desc">{e(board.description)}</p>')
    out.append('<table class="board">')
    out.append("<thead>")
    groups = "".join(f'<th colspan="{k}">{e(g)}</th>' for g, k in _groups(board.columns))
    out.append(
        '<tr class="groups"><th rowspan="2" class="sortable" data-col="0">Model</th>'
        f'<th rowspan="2">Source</th>{groups}</tr>'
    )
    out.append(
        "<tr>"
        + "".join(
            f'<th class="sortable" data-col="{i + 2}" title="sort by {e(_header(c))}">{e(c.label)}</th>'
            for i, c in enumerate(board.columns)
        )
        + "</tr>"
    )
    out.append("</thead>")
    out.append("<tbody>")
    for row in board.rows:
        cls = ' class="reported"' if row.source == "reported" else ""
        src = f'<span class="badge">{e(source_text(row))}</span>'
        cells = ""
        for c in board.columns:
            cell = row.cells.get(c.id)
            v = "" if cell is None or cell.value is None else repr(float(cell.value))
            cells += f'<td class="num" data-v="{v}">{cell_html(cell)}</td>'
        links = "".join(
            f'<a class="view" href="{e(href)}">view{"" if k == 0 else f" {k + 1}"}</a>'
            for k, href in enumerate(_viewer_links(row, style.link_base))
        )
        out.append(f"<tr{cls}><td>{e(row.model)}{links}</td><td>{src}</td>{cells}</tr>")
    out.append("</tbody>")
    out.append("</table>")
    if board.notes:
        out.append('<ul class="notes">')
        out += [f"<li>{e(n)}</li>" for n in board.notes]
        out.append("</ul>")
    out += [f"<script>\n{_SORT_JS}\n</script>", "</body>", "</html>"]
    return "\n".join(out) + "\n"


RENDERERS: dict[str, Callable[[Board, Style], str]] = {
    "md": to_markdown,
    "csv": to_csv,
    "latex": to_latex,
    "html": to_html,
}


def render(board: Board, fmt: str, style: Style | None = None) -> str:
    """Render ``board`` in one of :data:`FORMATS`."""
    if fmt not in RENDERERS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](board, style or Style())
