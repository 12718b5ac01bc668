"""The viewer and the HTML leaderboard in headless Chromium (selenium): typing, clicking, what is shown.

Runs are made through the real CLI against the loopback fake judge (tests/viewer_runs.py); expected numbers
come from the scripted verdicts or the records, not from the viewer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tests.support.browser import make_driver, screenshot
from tests.support.fake_openai import FakeOpenAI
from tests.test_mtbench_fidelity import MT_DIR, PUBLISHED
from tests.viewer_runs import PAYLOADS, build_runs, records, write_sweep

needs_mt = pytest.mark.skipif(not MT_DIR.is_dir(), reason="shared MT-Bench data not found at ../shared")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    drv = make_driver()
    try:
        yield drv
    finally:
        drv.quit()


@pytest.fixture(scope="module")
def runs(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_runs(fake_openai, tmp_path_factory.mktemp("browser_runs"), mtbench=MT_DIR.is_dir())


@pytest.fixture(scope="module")
def pages(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pages")
    out = {
        "wre": root / "wre.html",
        "cmp": root / "cmp.html",
        "hostile": root / "hostile.html",
        "sweep": root / "sweep.html",
    }
    assert main(["view", str(runs["wre_a"]), "--out", str(out["wre"])]) == 0
    assert (
        main(
            [
                "view",
                str(runs["wre_a"]),
                str(runs["wre_b"]),
                "--out",
                str(out["cmp"]),
                "--label",
                f"{runs['wre_a']}=A",
                "--label",
                f"{runs['wre_b']}=B",
            ]
        )
        == 0
    )
    assert main(["view", str(runs["hostile"]), "--out", str(out["hostile"])]) == 0
    assert main(["view", str(write_sweep(root, runs)), "--out", str(out["sweep"])]) == 0
    if "mt_gpt4" in runs:
        out["mt"] = root / "mt.html"
        assert main(["view", str(runs["mt_gpt4"]), str(runs["mt_claude"]), "--out", str(out["mt"])]) == 0
    return out


def _open(drv: Any, page: Path, fragment: str = "") -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get("about:blank")
    drv.get(page.as_uri() + fragment)
    WebDriverWait(drv, 20).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def _wait(drv: Any, cond: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout).until(cond)


def _ids(drv: Any) -> list[str]:
    return drv.execute_script(  # in one call: the table may be re-rendered between two element reads
        "return Array.from(document.querySelectorAll('#sessions tbody tr td:first-child'),"
        " e => e.textContent)"
    )


def _select(drv: Any, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(drv.find_element("id", element_id)).select_by_value(value)


def test_run_view_results_filters_search_and_detail(
    browser: Any,
    pages: dict[str, Path],
    runs: dict[str, Path],
) -> None:
    drv = browser
    _open(drv, pages["wre"])
    recs = records(runs["wre_a"])
    all_ids = [r["session_id"] for r in recs]
    zh_ids = [r["session_id"] for r in recs if r["lang"] == "zh"]
    # results table: the numbers from results.json, with CIs and failure counts
    res = json.loads((runs["wre_a"] / "results.json").read_text())["tasks"]["wikiroleeval"]
    row = drv.find_element("css selector", '.result-row[data-split="all"][data-metric="knowledge"]')
    assert row.find_element("css selector", ".value").text == f"{res['metrics']['all']['knowledge']:.3f}"
    lo, hi = res["ci95"]["all"]["knowledge"]
    assert row.find_element("css selector", ".ci").text == f"[{lo:.3f}, {hi:.3f}]"
    zh_row = drv.find_element("css selector", '.result-row[data-split="zh"][data-metric="knowledge"]')
    assert "turns_no_verdict 12" in zh_row.text
    assert _ids(drv) == all_ids
    # filters
    _select(drv, "f-lang", "zh")
    assert _ids(drv) == zh_ids
    _select(drv, "f-lang", "")
    drv.find_element("id", "f-fail").click()
    assert _ids(drv) == zh_ids  # only the zh sessions have failures (knowledge without a verdict)
    drv.find_element("id", "f-fail").click()
    _select(drv, "f-state", "no_verdict")
    assert _ids(drv) == zh_ids
    _select(drv, "f-state", "")
    _select(drv, "f-metric", "knowledge")
    drv.find_element("id", "f-min").send_keys("7")
    assert _ids(drv) == [i for i in all_ids if i not in zh_ids]  # zh has no knowledge score at all
    drv.find_element("id", "f-min").clear()
    drv.find_element("id", "f-max").send_keys("0.5")
    _select(drv, "f-metric", "rejection")
    rej = {r["session_id"]: [t["judgments"]["rejection"]["score"] for t in r["turns"]] for r in recs}
    assert _ids(drv) == [s for s in all_ids if sum(rej[s]) / len(rej[s]) <= 0.5]
    drv.find_element("id", "f-max").clear()
    # sort by a score
    _select(drv, "f-metric", "")
    _select(drv, "f-sort", "consistency:desc")
    cons = {
        r["session_id"]: sum(t["judgments"]["consistency"]["score"] for t in r["turns"]) / len(r["turns"])
        for r in recs
    }
    shown = [
        float(e.text)
        for e in drv.find_elements("css selector", '#sessions td.score[data-metric="consistency"]')
    ]
    assert shown == sorted((round(v, 3) for v in cons.values()), reverse=True)
    # full-text search over messages and completions
    search = drv.find_element("id", "f-search")
    search.send_keys("Baker Street")
    expect = sorted(
        r["session_id"]
        for r in recs
        if "baker street"
        in "\n".join(
            [m["content"] for m in r["messages"]]
            + [c for t in r["turns"] for j in t["judgments"].values() for c in j["completions"]]
        ).lower()
    )
    assert expect
    _wait(drv, lambda d: sorted(_ids(d)) == expect)
    search.clear()
    search.send_keys("The most suitable role is")  # only in judge completions, in every en session
    _wait(drv, lambda d: sorted(_ids(d)) == sorted(i for i in all_ids if i not in zh_ids))
    search.clear()
    search.send_keys("\u200bnothing-like-this")
    _wait(drv, lambda d: _ids(d) == [])
    search.clear()
    search.send_keys(" ")
    _wait(drv, lambda d: len(_ids(d)) == len(all_ids))
    # a session: conversation, judge prompts, every raw completion and parsed verdict
    drv.find_element("link text", zh_ids[0]).click()
    box = _wait(drv, lambda d: d.find_element("id", "session-detail"))
    assert drv.execute_script("return location.hash") == f"#{zh_ids[0]}"
    rec = next(r for r in recs if r["session_id"] == zh_ids[0])
    turns = box.find_elements("css selector", ".turn")
    assert len(turns) == len(rec["turns"])
    know = turns[0].find_element("css selector", '.judgment[data-metric="knowledge"]')
    assert "no_verdict" in know.text
    comps = know.find_elements("css selector", ".completion")
    assert [c.find_element("css selector", "pre").get_attribute("textContent") for c in comps] == rec[
        "turns"
    ][0]["judgments"]["knowledge"]["completions"]
    assert all("parse_error" in c.text for c in comps)
    prompt = know.find_element("css selector", "details.prompt")
    prompt.find_element("tag name", "summary").click()
    assert rec["turns"][0]["judgments"]["knowledge"]["prompt"][0]["content"][:40] in prompt.text
    replies = [p.get_attribute("textContent") for p in box.find_elements("css selector", "pre.reply")]
    assert replies == [m["content"] for m in rec["messages"] if m["role"] == "assistant"]
    screenshot(drv, "viewer_run_session")


def test_shared_link_opens_the_session(browser: Any, pages: dict[str, Path]) -> None:
    _open(browser, pages["wre"], "#wre-0003")
    box = _wait(browser, lambda d: d.find_element("id", "session-detail"))
    assert box.get_attribute("data-key") == "wikiroleeval/wre-0003"
    _open(browser, pages["cmp"], "#r1:wre-0002")
    box = _wait(browser, lambda d: d.find_element("id", "session-detail"))
    assert box.get_attribute("data-key") == "wikiroleeval/wre-0002"
    assert "active" in browser.find_element("id", "tab-run-1").get_attribute("class")


def _turn_scores(run: Path, metric: str) -> dict[tuple[str, int], float | None]:
    return {
        (r["session_id"], t["turn"]): t["judgments"][metric]["score"]
        for r in records(run)
        for t in r["turns"]
    }


def test_compare_view_orders_turns_by_disagreement(
    browser: Any,
    pages: dict[str, Path],
    runs: dict[str, Path],
) -> None:
    drv = browser
    _open(drv, pages["cmp"])
    drv.find_element("id", "tab-compare").click()
    _wait(drv, lambda d: d.find_element("id", "cmp"))
    _select(drv, "c-metric", "knowledge")
    _wait(drv, lambda d: d.find_element("id", "c-metric").get_attribute("value") == "knowledge")
    a, b = _turn_scores(runs["wre_a"], "knowledge"), _turn_scores(runs["wre_b"], "knowledge")
    paired = [k for k in a if a[k] is not None and b[k] is not None]
    assert len(paired) == 21  # the en turns; zh has no knowledge score in A
    mean_delta = sum(b[k] - a[k] for k in paired) / len(paired)  # type: ignore[operator]
    assert drv.find_element("id", "cmp-mean-delta").text == f"{mean_delta:.3f}" == "-1.333"
    deltas = [e.text for e in drv.find_elements("css selector", "#cmp .delta")]
    assert deltas[:21] == ["-1.333"] * 21 and deltas[21:] == ["unpaired"] * (len(a) - 21)
    _select(drv, "c-metric", "consistency")
    _wait(drv, lambda d: d.find_element("id", "c-metric").get_attribute("value") == "consistency")
    a, b = _turn_scores(runs["wre_a"], "consistency"), _turn_scores(runs["wre_b"], "consistency")
    shown = [float(e.text) for e in drv.find_elements("css selector", "#cmp .delta")]
    assert [abs(x) for x in shown] == sorted((abs(b[k] - a[k]) for k in a), reverse=True)  # type: ignore[operator]
    assert sorted(shown) == sorted(b[k] - a[k] for k in a)  # type: ignore[operator]
    assert drv.find_element("css selector", "#compare-view .plot svg")  # paired differences, inline SVG
    first = drv.find_element("css selector", "#cmp tbody tr")
    sid, turn = first.get_attribute("data-key").split("/")[1], int(first.get_attribute("data-turn"))
    first.find_element("tag name", "a").click()
    box = _wait(drv, lambda d: d.find_element("id", "side-by-side"))
    cols = box.find_elements("css selector", f'.turn[data-turn="{turn}"] .col')
    assert len(cols) == 2
    reply = next(
        m["content"]
        for r in records(runs["wre_a"])
        if r["session_id"] == sid
        for m in [x for x in r["messages"] if x["role"] == "assistant"][turn : turn + 1]
    )
    assert [c.find_element("css selector", "pre").get_attribute("textContent") for c in cols] == [
        reply,
        reply,
    ]
    d = b[(sid, turn)] - a[(sid, turn)]  # type: ignore[operator]
    assert f"consistency: {b[(sid, turn)]:.3f} (Δ {'+' if d > 0 else ''}{d:.3f})" in cols[1].text
    screenshot(drv, "viewer_compare")


@needs_mt
def test_mtbench_runs_and_their_comparison(
    browser: Any,
    pages: dict[str, Path],
    runs: dict[str, Path],
) -> None:
    drv = browser
    _open(drv, pages["mt"])
    row = drv.find_element("css selector", '.result-row[data-split="all"][data-metric="rating"]')
    assert row.find_element("css selector", ".value").text == f"{PUBLISHED['gpt-4'][2]:.3f}"
    assert len(_ids(drv)) == 10
    drv.find_element("link text", "q93").click()
    box = _wait(drv, lambda d: d.find_element("id", "session-detail"))
    assert len(box.find_elements("css selector", ".judgment")) == 2
    screenshot(drv, "viewer_mtbench")
    drv.find_element("id", "tab-compare").click()
    _wait(drv, lambda d: d.find_element("id", "cmp"))
    assert (
        drv.find_element("id", "cmp-mean-delta").text
        == f"{PUBLISHED['claude-v1'][2] - PUBLISHED['gpt-4'][2]:.3f}"
    )
    a, b = _turn_scores(runs["mt_gpt4"], "rating"), _turn_scores(runs["mt_claude"], "rating")
    top = max(abs(b[k] - a[k]) for k in a)  # type: ignore[operator]
    assert abs(float(drv.find_element("css selector", "#cmp .delta").text)) == top


def test_hostile_text_is_shown_and_never_executed(browser: Any, pages: dict[str, Path]) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    drv = browser
    _open(drv, pages["hostile"])
    drv.find_element("id", "f-search").send_keys("alert(1)")
    _wait(drv, lambda d: len(_ids(d)) == 2)
    drv.find_element("css selector", "#sessions tbody a").click()
    box = _wait(drv, lambda d: d.find_element("id", "session-detail"))
    replies = [p.get_attribute("textContent") for p in box.find_elements("css selector", "pre.reply")]
    assert replies[:3] == [p + " reply" for p in PAYLOADS]
    comps = [p.get_attribute("textContent") for p in box.find_elements("css selector", ".completion pre")]
    assert "</script><img src=x onerror=alert(3)>" in comps
    drv.execute_script("return new Promise(r => setTimeout(r, 300))")
    with pytest.raises(NoAlertPresentException):
        drv.switch_to.alert.text  # noqa: B018
    state = drv.execute_script(
        "return {title: document.title, pwned: document.body.getAttribute('data-pwned'),"
        " imgs: document.querySelectorAll('#app img').length,"
        " bold: document.querySelectorAll('#app b').length,"
        " scripts: document.scripts.length}"
    )
    assert state["title"] != "pwned" and state["pwned"] is None and state["imgs"] == 0
    assert state["scripts"] == 3
    assert "<b>system</b>" in box.find_element("css selector", ".msg.system pre").get_attribute("textContent")
    screenshot(drv, "viewer_hostile")


def test_sweep_grid_links_into_stage_runs(browser: Any, pages: dict[str, Path]) -> None:
    drv = browser
    _open(drv, pages["sweep"])
    grid = _wait(drv, lambda d: d.find_element("id", "sweep-grid"))
    rows = grid.find_elements("css selector", ".stage-row")
    assert [r.get_attribute("data-stage") for r in rows] == ["train-lr1", "eval-lr1", "eval-lr2"]
    assert not rows[0].find_elements("css selector", "a.stage-link")
    assert "6.000" in rows[2].text  # wre_b's knowledge, all
    screenshot(drv, "viewer_sweep")
    rows[2].find_element("css selector", "a.stage-link").click()
    _wait(drv, lambda d: d.find_elements("id", "results"))
    assert drv.find_element("css selector", "#run-view h2").text.startswith("lr-grid/eval-lr2")
    row = drv.find_element("css selector", '.result-row[data-split="all"][data-metric="knowledge"]')
    assert row.find_element("css selector", ".value").text == "6.000"


def test_html_leaderboard_sorts_and_links_to_viewer(
    browser: Any,
    runs: dict[str, Path],
    tmp_path: Path,
) -> None:
    import shutil

    drv = browser
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(runs["wre_a"], a)
    shutil.copytree(runs["wre_b"], b)
    assert main(["view", str(a)]) == 0  # a has a viewer page, b has none
    out = tmp_path / "board" / "lb.html"
    out.parent.mkdir()
    assert (
        main(
            [
                "leaderboard",
                str(a),
                str(b),
                "--label",
                f"{a}=model-a",
                "--label",
                f"{b}=model-b",
                "--tasks",
                "wikiroleeval",
                "--format",
                "html",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    _open_plain(drv, out)

    def models() -> list[str]:
        return [
            e.text.split("\n")[0].replace("view", "").strip()
            for e in drv.find_elements("css selector", "table.board tbody tr td:first-child")
        ]

    assert models() == ["model-a", "model-b"]
    know = drv.find_element("css selector", 'th.sortable[title="sort by All Know."]')
    know.click()  # descending: A's 7.333 above B's 6.0
    assert models() == ["model-a", "model-b"]
    know.click()
    assert models() == ["model-b", "model-a"]
    cons = drv.find_element("css selector", 'th.sortable[title="sort by All Cons."]')
    cons.click()
    ca = json.loads((a / "results.json").read_text())["tasks"]["wikiroleeval"]["metrics"]["all"][
        "consistency"
    ]
    cb = json.loads((b / "results.json").read_text())["tasks"]["wikiroleeval"]["metrics"]["all"][
        "consistency"
    ]
    assert models() == (["model-a", "model-b"] if ca >= cb else ["model-b", "model-a"])
    links = drv.find_elements("css selector", "a.view")
    assert len(links) == 1
    screenshot(drv, "leaderboard_html")
    links[0].click()
    _wait(drv, lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    assert drv.find_element("css selector", "#run-view h2").text.endswith(f" {a}")  # run a's page


def _open_plain(drv: Any, page: Path) -> None:
    drv.get(page.as_uri())
    _wait(drv, lambda d: d.execute_script("return document.readyState") == "complete")
