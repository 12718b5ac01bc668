"""``ditto-bench knowledge`` end to end against the loopback Wikidata/Wikipedia server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ditto_train.knowledge.cli import main
from ditto_train.knowledge.schema import iter_kb
from tests.fixtures.knowledge.wikiserver import WikiFault, WikiServer, write_dump


@pytest.fixture
def wiki() -> Iterator[WikiServer]:
    with WikiServer() as srv:
        yield srv


def _records(path: Path) -> dict[tuple[str, str], dict]:
    return {(p.id, p.lang): p.model_dump() for _, _, p in iter_kb(path)}


def test_live_collection_builds_ranked_bilingual_profiles(wiki: WikiServer, tmp_path: Path) -> None:
    out = tmp_path / "kb.jsonl"
    assert main(["--out", str(out), *wiki.cli_args(), "--contact", "tests@example.org"]) == 0
    recs = _records(out)
    # 6 roles with an English article; Scrooge has no zh article; the zh-only role is dropped.
    assert sorted({k[0] for k in recs}) == sorted(["Q937", "Q7186", "Q129247", "Q7071", "Q4653", "Q1270925"])
    assert sum(1 for k in recs if k[1] == "en") == 6 and sum(1 for k in recs if k[1] == "zh") == 5
    order = [p.id for _, _, p in iter_kb(out) if p.lang == "en"]
    assert order == ["Q937", "Q7186", "Q129247", "Q4653", "Q7071", "Q1270925"]  # by sitelinks, both classes
    ein_en, ein_zh = recs[("Q937", "en")], recs[("Q937", "zh")]
    assert ein_en["label"] == "Albert Einstein" and ein_zh["label"] == "阿尔伯特·爱因斯坦"
    assert ein_en["sitelinks"] == 250 and ein_en["category"] == "real"
    assert ["award received", "Nobel Prize in Physics"] in ein_en["trans_claims"]
    assert ["获奖", "诺贝尔物理学奖"] in ein_zh["trans_claims"]
    assert ["P166", "Q38104"] in ein_en["claims"]
    assert (
        ein_en["summary"].startswith("Albert Einstein (1879–1955)")
        and "== Early life ==" not in ein_en["summary"]
    )
    assert "== Scientific work ==" in ein_en["wiki"]["content"] and ein_en["wiki"]["idx"] == 736
    assert recs[("Q4653", "en")]["category"] == "virtual"
    edward_zh = recs[("Q129247", "zh")]  # sitelink title redirects on zhwiki
    assert (
        edward_zh["wiki_title"] == "爱德华三世 (英格兰)"
        and edward_zh["wiki"]["title"] == "爱德华三世 (英格兰国王)"
    )
    skipped = [json.loads(x) for x in (tmp_path / "kb.jsonl.skipped.jsonl").read_text("utf-8").splitlines()]
    assert {(s["id"], s["lang"], s["reason"]) for s in skipped} == {
        ("Q1270925", "zh", "no_zh_article"),
        ("Q900001", "en", "no_en_article"),
        ("Q900001", "zh", "no_en_article"),
    }
    # polite client: descriptive User-Agent with the contact, and maxlag on MediaWiki calls
    assert all("ditto-bench/" in r["ua"] and "tests@example.org" in r["ua"] for r in wiki.log)
    assert all(r["params"].get("maxlag") == "5" for r in wiki.log if r["path"].endswith("api.php"))
    # the zh-only role costs no zh article request: the English requirement is checked first
    assert not any(r["params"].get("titles") == "测试人物" for r in wiki.log)


def test_rerun_resumes_from_output_and_cache(wiki: WikiServer, tmp_path: Path) -> None:
    out = tmp_path / "kb.jsonl"
    assert main(["--out", str(out), *wiki.cli_args()]) == 0
    first = out.read_bytes()
    n_requests = len(wiki.log)
    assert main(["--out", str(out), *wiki.cli_args()]) == 0  # everything done: nothing re-fetched
    assert out.read_bytes() == first and len(wiki.log) == n_requests
    # simulate a kill mid-write: drop the last record and leave half of it behind
    lines = first.decode("utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][:25], encoding="utf-8")
    assert main(["--out", str(out), *wiki.cli_args(), "--no_cache"]) == 0
    assert out.read_bytes() == first  # torn tail cut, only the missing record re-written
    assert len(wiki.log) - n_requests == 2 + 1 + 1 + 1  # 2 SPARQL + 1 entity batch + labels + 1 article


def test_retries_on_503_429_and_maxlag(
    wiki: WikiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ditto_train.knowledge import http

    sleeps: list[float] = []
    monkeypatch.setattr(http.time, "sleep", sleeps.append)  # record the back-off instead of waiting
    wiki.faults += [WikiFault("/sparql", status=503, retry_after=0), WikiFault("/w/api.php", maxlag=True)]
    wiki.faults.append(WikiFault("/en/w/api.php", status=429, retry_after=7, times=2))
    out = tmp_path / "kb.jsonl"
    assert main(["--out", str(out), *wiki.cli_args(), "--limit", "2"]) == 0
    assert not wiki.faults  # every fault was hit and retried through
    assert sorted(sleeps) == [0.0, 5.0, 7.0, 7.0]  # Retry-After honoured; maxlag waits 5 s
    assert {p.id for _, _, p in iter_kb(out)} == {"Q937", "Q7186"}  # --limit counts roles, not records


def test_persistent_http_error_is_reported_and_retried_next_run(wiki: WikiServer, tmp_path: Path) -> None:
    wiki.faults.append(WikiFault("/zh/w/api.php", status=404, times=1))
    out = tmp_path / "kb.jsonl"
    assert main(["--out", str(out), *wiki.cli_args(), "--limit", "1"]) == 1  # Einstein's zh page failed
    # the failed role is not written (nor marked done) and still holds its --limit slot
    assert not out.exists() or not out.read_text("utf-8").strip()
    assert main(["--out", str(out), *wiki.cli_args(), "--limit", "1"]) == 0
    assert {(p.id, p.lang) for _, _, p in iter_kb(out)} == {("Q937", "en"), ("Q937", "zh")}


def test_dump_source_offline(wiki: WikiServer, tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "subset.json")
    out = tmp_path / "kb.jsonl"
    assert main(["--out", str(out), "--input", str(dump), "--no_wikipedia"]) == 0
    recs = _records(out)
    assert len(recs) == 11 and not wiki.log  # no network at all
    assert recs[("Q7071", "zh")]["trans_claims"][2] == ["出生日期", "701年"]
    assert recs[("Q7071", "en")]["summary"] == ""
    # with Wikipedia (the loopback one) the articles are filled in
    out2 = tmp_path / "kb2.jsonl"
    assert main(["--out", str(out2), "--input", str(dump), *wiki.cli_args()]) == 0
    assert _records(out2)[("Q7071", "en")]["summary"].startswith("Li Bai (701–762)")
    assert not any(r["path"] in ("/sparql", "/w/api.php") for r in wiki.log)


def test_kb_source_reslices(tmp_path: Path, wiki: WikiServer) -> None:
    full = tmp_path / "kb.jsonl"
    assert main(["--out", str(full), *wiki.cli_args()]) == 0
    en = tmp_path / "en.jsonl"
    assert main(["--out", str(en), "--input", str(full), "--langs", "en", "--limit", "4"]) == 0
    assert [p.id for _, _, p in iter_kb(en)] == ["Q937", "Q7186", "Q129247", "Q4653"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--langs", "en,fr"], "--langs"),
        (["--classes", "human"], "--classes"),
        (["--source", "dump"], "needs --input"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_bad_flags_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["--out", str(tmp_path / "kb.jsonl"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_bad_kb_input_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"label": "A", "lang": "en"}\n{"label": "", "lang": "en"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["--out", str(out), "--input", str(src), "--source", "kb"]) == 2
    assert "in.jsonl:2: field 'label'" in capsys.readouterr().err
    assert not out.exists()  # validated before anything is written
