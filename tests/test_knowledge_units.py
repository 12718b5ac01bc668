"""Unit tests of the knowledge package: claims, SPARQL/extract parsing, schema, resumable JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ditto_train.knowledge.claims import (
    extract_claims,
    format_time,
    pick_aliases,
    pick_label,
    verbalise,
)
from ditto_train.knowledge.jsonl import JsonlAppender, cut_torn_tail, iter_complete_lines
from ditto_train.knowledge.schema import RoleProfile, detect_kind, iter_kb, profile_from_json
from ditto_train.knowledge.wikidata import candidate_query, merge_candidates, parse_sparql_candidates
from ditto_train.knowledge.wikipedia import lead_section, parse_extract
from harness.errors import DataError
from tests.fixtures.knowledge.wikiserver import load_fixtures, write_dump


@pytest.mark.parametrize(
    ("value", "precision", "lang", "expected"),
    [
        ("+1879-03-14T00:00:00Z", 11, "en", "1879-03-14"),
        ("+1879-03-14T00:00:00Z", 11, "zh", "1879年3月14日"),
        ("+0701-00-00T00:00:00Z", 9, "en", "701"),
        ("+0701-00-00T00:00:00Z", 9, "zh", "701年"),
        ("-0551-00-00T00:00:00Z", 9, "en", "551 BC"),
        ("-0551-00-00T00:00:00Z", 9, "zh", "公元前551年"),
        ("+1850-00-00T00:00:00Z", 8, "en", "1850s"),
        ("+1801-00-00T00:00:00Z", 7, "en", "19th century"),
        ("+1201-00-00T00:00:00Z", 7, "en", "13th century"),
        ("+1101-00-00T00:00:00Z", 7, "en", "12th century"),
        ("+1801-00-00T00:00:00Z", 7, "zh", "19世纪"),
        ("+1312-11-00T00:00:00Z", 10, "en", "1312-11"),
    ],
)
def test_format_time_follows_precision(value: str, precision: int, lang: str, expected: str) -> None:
    assert format_time(value, precision, lang) == expected  # type: ignore[arg-type]


def test_claims_keep_informative_values_and_respect_rank() -> None:
    entities, _, _ = load_fixtures()
    einstein = extract_claims(entities["Q937"]["claims"])
    props = [c.prop for c in einstein]
    assert "P214" not in props  # external identifier dropped
    assert "P18" not in props  # media file dropped
    assert ("P2048", "quantity", "1.75", "Q11573") in [(c.prop, c.kind, c.value, c.unit) for c in einstein]
    assert [c.value for c in einstein if c.prop == "P27"] == ["Q183", "Q30"]
    curie = extract_claims(entities["Q7186"]["claims"])
    assert "P40" not in [c.prop for c in curie]  # novalue snak dropped
    edward = extract_claims(entities["Q129247"]["claims"])
    assert [c.value for c in edward if c.prop == "P27"] == ["Q179876"]  # preferred rank wins


def test_verbalise_falls_back_to_english_then_id() -> None:
    entities, _, _ = load_fixtures()
    raw = extract_claims(entities["Q937"]["claims"])
    labels = {
        "P2048": {"en": "height", "zh": "身高"},
        "Q11573": {"en": "metre"},
        "P569": {"en": "date of birth"},
    }
    claims, trans = verbalise(raw, labels, "zh")
    assert ["身高", "1.75 metre"] in trans
    assert ["date of birth", "1879年3月14日"] in trans  # no zh label: English
    assert ["P31", "Q5"] in trans  # no label at all: the ids
    assert len(claims) == len(trans)


def test_label_chain_prefers_simplified_chinese() -> None:
    labels = {"zh-hant": {"value": "愛因斯坦"}, "zh": {"value": "爱因斯坦"}, "en": {"value": "Einstein"}}
    assert pick_label(labels, "zh") == "爱因斯坦"
    assert pick_label({"zh-hant": {"value": "愛因斯坦"}}, "zh") == "愛因斯坦"
    assert pick_label({"de": {"value": "x"}}, "en") == ""
    aliases = {"en": [{"value": "Einstein"}, {"value": "Albert Einstein"}, {"value": "Einstein"}]}
    assert pick_aliases(aliases, "en", exclude="Albert Einstein") == ["Einstein"]


def test_sparql_query_and_parsing() -> None:
    q = candidate_query("Q15632617", 5000, min_sitelinks=10)
    assert "wdt:P31 wd:Q15632617" in q and "LIMIT 5000" in q and "?sitelinks >= 10" in q
    assert 'LANG(?zhLabel) = "zh"' in q and 'LANG(?zhDescription) = "zh"' in q
    _, sparql, _ = load_fixtures()
    humans = parse_sparql_candidates(sparql["Q5"], "real")
    fictional = parse_sparql_candidates(sparql["Q15632617"], "virtual")
    merged = merge_candidates([humans, fictional, humans[:1]])
    assert [c.qid for c in merged][:3] == ["Q937", "Q7186", "Q129247"]
    assert len(merged) == len({c.qid for c in merged}) == 7
    assert [c.sitelinks for c in merged] == sorted((c.sitelinks for c in merged), reverse=True)


def test_extract_parsing_lead_and_missing() -> None:
    text = "Lead one.\n\nLead two.\n\n== Life ==\nBody."
    assert lead_section(text) == "Lead one.\n\nLead two."
    art = parse_extract(
        {"batchcomplete": True, "query": {"pages": [{"pageid": 5, "title": "X", "extract": text}]}}, "X"
    )
    assert (art.pageid, art.summary, art.missing) == (5, "Lead one.\n\nLead two.", False)
    missing = parse_extract({"query": {"pages": [{"ns": 0, "title": "Nope", "missing": True}]}}, "Nope")
    assert missing.missing


def test_profile_schema_defaults_and_errors(tmp_path: Path) -> None:
    p = profile_from_json(
        json.dumps({"label": "Alice", "lang": "en", "wiki_title": "Alice (character)"}), "f:1"
    )
    assert p.id == "Alice (character)" and p.sitelinks == 0 and p.wiki.content == ""
    with pytest.raises(DataError, match=r"kb.jsonl:2: field 'lang'"):
        bad = tmp_path / "kb.jsonl"
        bad.write_text(p.to_json() + "\n" + json.dumps({"label": "B", "lang": "fr"}) + "\n", encoding="utf-8")
        list(iter_kb(bad))
    with pytest.raises(DataError, match="invalid JSON"):
        profile_from_json("{nope", "f:3")


def test_detect_kind(tmp_path: Path) -> None:
    kb = tmp_path / "kb.jsonl"
    kb.write_text(RoleProfile(label="A", lang="en").to_json() + "\n", encoding="utf-8")
    assert detect_kind(kb) == "kb"
    assert detect_kind(write_dump(tmp_path / "dump.json")) == "dump"


def test_jsonl_appender_cuts_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b', encoding="utf-8")
    assert [o["a"] for _, o in iter_complete_lines(path)] == [1, 2]
    with JsonlAppender(path) as w:
        w.write({"a": 4})
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n{"a": 2}\n{"a": 4}\n'
    assert w.torn_bytes == len('{"a": 3, "b')
    path.write_text("no newline at all", encoding="utf-8")
    assert cut_torn_tail(path) == len("no newline at all") and path.read_bytes() == b""
