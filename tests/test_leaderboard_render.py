"""Leaderboard rendering: HTML in labels and notes stays text in Markdown; the HTML page sorts and links runs
to their viewer pages."""

from __future__ import annotations

import re
from pathlib import Path

from leaderboards.board import Board, Cell, Row
from leaderboards.definition import Column
from leaderboards.render import Style, to_html, to_markdown

_COL = Column(id="c", label="Cons.", group="All", task="t", value=("v",), ci=None, n=None, failures=())


def _board(model: str, note: str, run_dirs: list[str] | None = None) -> Board:
    rows = [
        Row(
            model=model,
            source="run",
            origin="x",
            cells={"c": Cell(value=0.5, variant="a")},
            run_dirs=run_dirs or [],
        ),
        Row(model="other", source="run", origin="y", cells={"c": Cell(value=0.75)}),
        Row(model="none", source="run", origin="z", cells={}),
    ]
    return Board(title="T <i>", description="d & <b>", columns=[_COL], rows=rows, notes=[note])


def test_markdown_escapes_html_in_labels_and_notes() -> None:
    md = to_markdown(
        _board("<script>alert(1)</script>", "see <img src=x onerror=alert(2)> and `a<b`"), Style()
    )
    assert "<script>" not in md and "<img" not in md and "<i>" not in md and "<b>" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "- see &lt;img src=x onerror=alert(2)&gt; and `a<b`" in md  # code spans are shown literally
    assert "0.50<sup>a</sup>" in md  # the variant mark is still markup
    assert "# T &lt;i&gt;" in md and "d &amp; &lt;b&gt;" in md


def test_html_cells_carry_sort_values_and_headers_sort(tmp_path: Path) -> None:
    page = to_html(_board("m", "n"), Style())
    assert re.search(r'<th class="sortable" data-col="2"[^>]*>Cons\.</th>', page)
    assert '<td class="num" data-v="0.5">' in page and '<td class="num" data-v="0.75">' in page
    assert '<td class="num" data-v="">—</td>' in page
    assert "<script>" in page and "th.sortable" in page


def _page(fingerprint: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="generator" content="ditto-bench view">\n'
        f'<meta name="ditto-bench-runs" content="{fingerprint}">\n'
    )


def test_html_links_a_run_row_to_its_current_viewer_page_only(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "my run"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"fingerprint": "abc123"}', encoding="utf-8")
    out_dir = tmp_path / "site"
    out_dir.mkdir()

    def links() -> list[str]:
        return re.findall(
            r'<a class="view" href="([^"]+)">',
            to_html(_board("m", "n", [str(run)]), Style(link_base=out_dir)),
        )

    assert links() == []  # no page
    (run / "view.html").write_text("<html>notes of mine</html>", encoding="utf-8")
    assert links() == []  # not a viewer page
    (run / "view.html").write_text(_page("0ff"), encoding="utf-8")
    assert links() == []  # a page of an earlier run in this directory (since overwritten)
    (run / "view.html").write_text(_page("abc123"), encoding="utf-8")
    assert links() == ["../runs/my%20run/view.html"]
