"""`ditto-bench view` without a browser: what the page carries, how text is made inert, CLI errors, sweeps."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from leaderboards.viewer.data import decode_blob, load_run_view, read_sweep, session_index
from leaderboards.viewer.page import page_fingerprints, render_page, script_json
from tests.support.fake_openai import FakeOpenAI
from tests.test_mtbench_fidelity import MT_DIR
from tests.viewer_runs import PAYLOADS, build_runs, records, write_sweep


@pytest.fixture(scope="module")
def runs(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_runs(fake_openai, tmp_path_factory.mktemp("viewer_runs"), mtbench=MT_DIR.is_dir())


def _page_data(html: str) -> tuple[dict[str, Any], list[list[str]]]:
    data = re.search(r'<script type="application/json" id="ditto-data">(.*?)</script>', html, re.S)
    assert data is not None
    blobs = re.findall(r'<script type="application/json" id="blobs-\d+">(.*?)</script>', html, re.S)
    return json.loads(data.group(1)), [json.loads(b) for b in blobs]


def test_page_carries_every_record_field_and_the_results(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "a.html"
    assert main(["view", str(runs["wre_a"]), "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    data, blobs = _page_data(html)
    recs = records(runs["wre_a"])
    (run,) = data["runs"]
    assert [s["id"] for s in run["sessions"]] == [r["session_id"] for r in recs]
    # every judge prompt, raw completion, parsed verdict and state is in the session's detail, unchanged
    for rec, blob in zip(recs, blobs[0], strict=True):
        detail = decode_blob(blob)
        assert detail["messages"] == rec["messages"]
        assert detail["turns"] == rec["turns"]
        assert "item" not in detail
    res = json.loads((runs["wre_a"] / "results.json").read_text())["tasks"]["wikiroleeval"]
    rows = {(r["split"], r["metric"]): r for r in run["results"]}
    assert rows[("all", "knowledge")]["value"] == res["metrics"]["all"]["knowledge"]
    assert rows[("all", "knowledge")]["ci"] == res["ci95"]["all"]["knowledge"]
    assert (
        rows[("zh", "knowledge")]["failures"]["turns_no_verdict"]
        == res["failures"]["knowledge"]["turns_no_verdict"]
        > 0
    )
    assert "<svg" in html  # the run's plot, inline
    fingerprint = json.loads((runs["wre_a"] / "run.json").read_text())["fingerprint"]
    assert page_fingerprints(out) == [fingerprint]  # what the leaderboard checks before linking
    assert "http" not in re.sub(r'xmlns(:\w+)?="[^"]*"|https://matplotlib.org/?', "", html).replace(
        "http-equiv", ""
    )  # nothing fetched from anywhere


def test_index_states_and_failures_from_real_records(runs: dict[str, Path]) -> None:
    view = load_run_view(runs["wre_a"])
    by_lang = {"en": [], "zh": []}  # type: dict[str, list[dict[str, Any]]]
    for s in view.index:
        by_lang[s["lang"]].append(s)
    assert len(by_lang["en"]) == 5 and len(by_lang["zh"]) == 3
    assert all(s["nf"] == 0 and s["st"] == ["ok"] for s in by_lang["en"])
    k = view.metrics["wikiroleeval"].index("knowledge")
    for s in by_lang["zh"]:
        assert s["nf"] == s["nt"]  # every knowledge judgment of a zh turn has no verdict
        assert "no_verdict" in s["st"] and "parse_error" in s["st"]
        assert all(t[k] is None for t in s["ts"]) and s["sc"][k] is None
    for s in by_lang["en"]:
        assert s["sc"][k] == pytest.approx(22 / 3)


def test_index_of_pending_and_failed_generation() -> None:
    rec = {
        "session_id": "x",
        "task": "t",
        "lang": None,
        "turns": [
            {"turn": 0, "generation": {"status": "error", "error": "boom"}, "judgments": {}},
            {
                "turn": 1,
                "generation": {"status": "ok"},
                "judgments": {"m": {"status": "pending", "completions": [], "parsed": []}},
            },
        ],
    }
    s = session_index(rec, ["m"])
    assert s["st"] == ["generation_error", "pending"] and s["nf"] == 2
    assert s["ts"] == [[None], [None]] and s["sc"] == [None]


def test_model_text_cannot_close_the_data_element(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "h.html"
    assert (
        main(
            [
                "view",
                str(runs["hostile"]),
                "--out",
                str(out),
                "--label",
                f"{runs['hostile']}=</script><script>alert(4)</script>",
            ]
        )
        == 0
    )
    html = out.read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert len(scripts) == 3  # data, blobs, the page's own script: no script element from the run
    body = re.search(r'id="ditto-data">(.*?)</script>', html, re.S).group(1)  # type: ignore[union-attr]
    assert "<" not in body and ">" not in body and "&" not in body
    assert "alert(4)" in json.loads(body)["runs"][0]["label"]
    assert "<title>" in html and "&lt;/script&gt;&lt;script&gt;alert(4)" in html  # autoescaped title
    csp = re.search(r'Content-Security-Policy" content="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    assert (
        "default-src 'none'" in csp
        and "script-src 'sha256-" in csp
        and "unsafe-inline" not in csp.split("style-src")[0]
    )
    _, blobs = _page_data(html)
    texts = json.dumps([decode_blob(b) for b in blobs[0]], ensure_ascii=False)
    assert all(p.replace('"', '\\"') in texts for p in PAYLOADS)  # shown as text, kept whole


def test_script_json_escapes_markup_and_separators() -> None:
    text = script_json({"a": "</script><!-- & \u2028"})
    assert not set("<>&\u2028") & set(text)
    assert json.loads(text) == {"a": "</script><!-- & \u2028"}


@pytest.mark.skipif(not MT_DIR.is_dir(), reason="shared MT-Bench data not found at ../shared")
def test_mtbench_run_rows(runs: dict[str, Path]) -> None:
    view = load_run_view(runs["mt_gpt4"])
    rows = {r.split: r for r in view.results}
    assert (rows["turn1"].value, rows["turn2"].value, rows["all"].value) == pytest.approx((8.4, 9.4, 8.9))
    assert rows["all"].n == 20 and rows["all"].metric == "rating"
    assert view.metrics == {"mtbench_roleplay": ["rating"]}
    assert len(view.index) == 10 and all(s["nt"] == 2 for s in view.index)


def test_default_out_and_replacing_only_own_pages(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["wre_b"], run)
    assert main(["view", str(run)]) == 0
    assert (run / "view.html").is_file()
    assert main(["view", str(run)]) == 0  # its own page: replaced
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my notes</html>", encoding="utf-8")
    capsys.readouterr()
    assert main(["view", str(run), "--out", str(mine)]) == 2
    assert "not written by `ditto-bench view`" in capsys.readouterr().err
    assert mine.read_text(encoding="utf-8") == "<html>my notes</html>"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["view", "{a}", "{b}"], "--out: give the HTML file"),
        (["view", "{a}", "--out", "{tmp}/x.txt"], "expected a .html"),
        (["view", "{tmp}/missing"], "not a directory"),
        (["view", "{tmp}", "--out", "{tmp}/x.html"], "run.json is missing"),
        (["view", "{half}", "--out", "{tmp}/x.html"], "samples.jsonl is missing (the run has not finished"),
        (["view", "{a}", "--label", "oops"], "--label: expected RUN_DIR=NAME"),
        # a label for a directory that is not shown was silently dropped
        (["view", "{a}", "--label", "{b}=B", "--out", "{tmp}/x.html"], "is not one of the run directories"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    half = tmp_path / "half"  # a run killed before its end: run.json and the journal only
    half.mkdir()
    for name in ("run.json", "journal.jsonl"):
        (half / name).write_bytes((runs["wre_a"] / name).read_bytes())
    args = [a.format(a=runs["wre_a"], b=runs["wre_b"], tmp=tmp_path, half=half) for a in argv]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.html").exists()


def test_sweep_grid_links_each_stage_to_its_run(runs: dict[str, Path], tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, runs)
    view, run_dirs = read_sweep(sweep)
    assert [s.name for s in view.stages] == ["train-lr1", "eval-lr1", "eval-lr2"]
    assert [s.run for s in view.stages] == [None, 0, 1]
    assert run_dirs == [sweep / "stages" / "eval-lr1", sweep / "stages" / "eval-lr2"]
    assert view.stages[1].params == {"lr": "1e-05"}
    out = tmp_path / "s.html"
    assert main(["view", str(runs["wre_a"]), str(sweep), "--out", str(out)]) == 0
    data, blobs = _page_data(out.read_text(encoding="utf-8"))
    assert [r["label"] for r in data["runs"]][1:] == ["lr-grid/eval-lr1", "lr-grid/eval-lr2"]
    assert [s["run"] for s in data["sweeps"][0]["stages"]] == [None, 1, 2]  # offset past the first run
    assert len(blobs) == 3


def test_bad_sweep_file_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sweep.json").write_text(json.dumps({"stages": [{"name": "x"}]}), encoding="utf-8")
    assert main(["view", str(tmp_path), "--out", str(tmp_path / "v.html")]) == 2
    assert "stages[0] has no 'dir'" in capsys.readouterr().err
    assert not (tmp_path / "v.html").exists()


def test_page_bytes_are_stable(runs: dict[str, Path]) -> None:
    views = [load_run_view(runs["wre_a"]), load_run_view(runs["wre_b"])]
    assert render_page(views) == render_page(views)


def test_result_rows_of_mtbench_with_categories() -> None:
    from leaderboards.viewer.data import _result_rows

    res = {
        "metrics": {"turn1": 7.0, "turn2": 6.0, "all": 6.5},
        "ci95": {"all": [6.0, 7.0]},
        "n_valid": 4,
        "n_valid_by_turn": {"turn1": 2, "turn2": 2},
        "failures": {"parse_error": 1, "api_error": 0},
        "by_category": {"roleplay": {"all": 8.0}, "math": {"all": 5.0}},
        "ci95_by_category": {"math": {"all": [4.0, 6.0]}},
    }
    rows = {(r.split, r.metric): r for r in _result_rows("mtbench", res)}
    assert rows[("all", "rating")].value == 6.5 and rows[("all", "rating")].n == 4
    assert rows[("turn1", "rating")].n == 2 and rows[("all", "rating")].failures == {
        "parse_error": 1,
        "api_error": 0,
    }
    assert rows[("math all", "rating")].value == 5.0 and rows[("math all", "rating")].ci == [4.0, 6.0]
    assert rows[("roleplay all", "rating")].ci is None


def test_label_matches_the_directory_however_it_is_spelled(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--label wre_a=NAME` names the run given as an absolute path (the label used to be dropped)."""
    run = runs["wre_a"]
    monkeypatch.chdir(run.parent)
    out = tmp_path / "labelled.html"
    assert main(["view", str(run.resolve()), "--label", f"{run.name}=My label", "--out", str(out)]) == 0
    assert "My label" in out.read_text(encoding="utf-8")


def test_viewer_reads_the_typed_record_and_derives_verdicts(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The viewer reads samples.jsonl through harness.schema like score/compare: a verdict edited into the
    file by hand is not shown (the task derives it again), and a damaged line is one error naming it."""
    import shutil

    edited = tmp_path / "edited"
    shutil.copytree(runs["wre_a"], edited)
    lines = (edited / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    rec = json.loads(lines[0])
    judgment = rec["turns"][0]["judgments"]["knowledge"]
    judgment["score"] = 10.0  # stale or hand-edited derived fields
    judgment["verdict"] = {"status": "ok", "value": 10.0}
    lines[0] = json.dumps(rec, ensure_ascii=False)
    (edited / "samples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    original, view = load_run_view(runs["wre_a"]), load_run_view(edited)
    assert view.index == original.index and view.blobs == original.blobs

    rec["turns"] = "damaged"
    lines[0] = json.dumps(rec, ensure_ascii=False)
    (edited / "samples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["view", str(edited), "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "samples.jsonl:1: field 'turns'" in err[0]
    assert not (tmp_path / "x.html").exists()
