"""Offline Wikidata: candidates and entities from a JSON dump subset.

Accepted layouts: the official dump format (a JSON array with one entity per line, lines ending in ``,``) and
plain JSONL of entities; optionally ``.gz`` or ``.bz2`` compressed. The file is read twice, streaming: the
first pass keeps only labels (to verbalise claims) and the candidate ranking, the second keeps the selected
entities. Property and value labels come from entities present in the subset; anything else stays an id, so
include the property entities (``P31``, ``P106``, …) in the subset for readable claims.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ditto_train.knowledge.claims import LANG_CHAIN, labels_by_lang
from ditto_train.knowledge.wikidata import CLASS_CATEGORY, Candidate
from harness.errors import DataError


def open_text(path: Path) -> IO[str]:
    """Open a possibly compressed text file for reading."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
        if path.suffix == ".bz2":
            return io.TextIOWrapper(bz2.open(path, "rb"), encoding="utf-8")
        return path.open("r", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def iter_entities(path: Path) -> Iterator[dict[str, Any]]:
    """Stream the entities of a dump (array-per-line or JSONL)."""
    with open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            text = line.strip()
            if text in ("", "[", "]"):
                continue
            text = text.rstrip(",")
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}: invalid JSON in Wikidata dump: {exc.msg}") from None
            if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                yield obj


def _instance_classes(entity: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for st in (entity.get("claims") or {}).get("P31") or []:
        value = ((st.get("mainsnak") or {}).get("datavalue") or {}).get("value")
        if isinstance(value, dict) and isinstance(value.get("id"), str):
            out.add(value["id"])
    return out


def _has_zh(values: dict[str, Any]) -> bool:
    return any(isinstance(values.get(c), dict) and values[c].get("value") for c in LANG_CHAIN["zh"])


def scan_dump(
    path: Path, classes: list[str], top_n: int, min_sitelinks: int = 0
) -> tuple[list[list[Candidate]], dict[str, dict[str, str]]]:
    """First pass: per-class candidate lists (ranked, top ``top_n``) and the label table of all entities."""
    labels: dict[str, dict[str, str]] = {}
    per_class: dict[str, list[Candidate]] = {c: [] for c in classes}
    for ent in iter_entities(path):
        labels[ent["id"]] = labels_by_lang(ent)
        hits = _instance_classes(ent) & set(classes)
        if not hits:
            continue
        # Same constraint as the SPARQL query: a Chinese label and a Chinese description.
        if not (_has_zh(ent.get("labels") or {}) and _has_zh(ent.get("descriptions") or {})):
            continue
        sites = len(ent.get("sitelinks") or {})
        if sites < min_sitelinks:
            continue
        cls = next(c for c in classes if c in hits)
        per_class[cls].append(
            Candidate(ent["id"], sites, CLASS_CATEGORY.get(cls, cls), labels[ent["id"]].get("zh", ""))
        )
    ranked = [sorted(lst, key=lambda c: (-c.sitelinks, int(c.qid[1:])))[:top_n] for lst in per_class.values()]
    return ranked, labels


def load_entities(path: Path, ids: set[str]) -> dict[str, dict[str, Any]]:
    """Second pass: the entities whose id is in ``ids``."""
    return {ent["id"]: ent for ent in iter_entities(path) if ent["id"] in ids}
