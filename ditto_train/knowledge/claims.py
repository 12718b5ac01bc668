"""Wikidata entity JSON → labels, aliases and readable claims (shared by the live API and dumps).

Only statements that say something about the character are kept: item values (occupation, country, work,
spouse, …), dates, quantities and monolingual texts. External identifiers, media files, URLs, coordinates and
plain strings (mostly catalogue codes) are dropped, as are deprecated statements and ``somevalue``/``novalue``
snaks. At most ``MAX_VALUES_PER_PROPERTY`` values per property are kept, so a long list of awards cannot crowd
out everything else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ditto_train.knowledge.schema import LANGS, Lang

KEPT_DATATYPES = frozenset({"wikibase-item", "time", "quantity", "monolingualtext"})
MAX_VALUES_PER_PROPERTY = 5

# Label language preference per record language; simplified Chinese first for zh.
LANG_CHAIN: dict[str, tuple[str, ...]] = {
    "en": ("en", "en-gb", "en-us"),
    "zh": ("zh-cn", "zh-hans", "zh", "zh-sg", "zh-hant", "zh-tw", "zh-hk"),
}
API_LANGUAGES = "|".join(dict.fromkeys(LANG_CHAIN["en"] + LANG_CHAIN["zh"]))

_ENTITY_URI = re.compile(r"(?:https?://www\.wikidata\.org/entity/)?([QP]\d+)$")


@dataclass(frozen=True)
class RawClaim:
    """One kept statement before label resolution."""

    prop: str
    kind: str
    """``item``, ``time``, ``quantity`` or ``text``."""
    value: str
    """Entity id, ISO-like time, amount or text."""
    precision: int = 11
    unit: str | None = None
    """Unit entity id of a quantity (None for unitless)."""


def entity_id(uri_or_id: str) -> str | None:
    """``Q937`` from ``http://www.wikidata.org/entity/Q937`` (or from ``Q937``); None if neither."""
    m = _ENTITY_URI.search(uri_or_id.strip())
    return m.group(1) if m else None


def pick_label(values: Mapping[str, Any], lang: Lang) -> str:
    """The ``labels``/``descriptions`` value for ``lang``, following the language chain ('' if none)."""
    for code in LANG_CHAIN[lang]:
        entry = values.get(code)
        if isinstance(entry, dict) and isinstance(entry.get("value"), str) and entry["value"].strip():
            return str(entry["value"]).strip()
    return ""


def pick_aliases(aliases: Mapping[str, Any], lang: Lang, exclude: str) -> list[str]:
    """All aliases in the language chain of ``lang``, deduplicated, without ``exclude`` (the label)."""
    out: list[str] = []
    for code in LANG_CHAIN[lang]:
        for entry in aliases.get(code) or []:
            text = str(entry.get("value", "")).strip() if isinstance(entry, dict) else ""
            if text and text != exclude and text not in out:
                out.append(text)
    return out


def extract_claims(claims: Mapping[str, Any]) -> list[RawClaim]:
    """Kept statements of an entity, in the entity's property order."""
    out: list[RawClaim] = []
    for prop, statements in claims.items():
        if not isinstance(statements, list):
            continue
        ranked = [s for s in statements if isinstance(s, dict) and s.get("rank") != "deprecated"]
        # A "preferred" statement (e.g. the current name) outranks the normal ones, as on Wikidata itself.
        if any(s.get("rank") == "preferred" for s in ranked):
            ranked = [s for s in ranked if s.get("rank") == "preferred"]
        kept = 0
        for st in ranked:
            claim = _claim_of(prop, st.get("mainsnak") or {})
            if claim is not None:
                out.append(claim)
                kept += 1
                if kept >= MAX_VALUES_PER_PROPERTY:
                    break
    return out


def _claim_of(prop: str, snak: Mapping[str, Any]) -> RawClaim | None:
    if snak.get("snaktype") != "value" or snak.get("datatype") not in KEPT_DATATYPES:
        return None
    dv = snak.get("datavalue") or {}
    value, vtype = dv.get("value"), dv.get("type")
    if vtype == "wikibase-entityid" and isinstance(value, dict) and isinstance(value.get("id"), str):
        return RawClaim(prop, "item", value["id"])
    if vtype == "time" and isinstance(value, dict) and isinstance(value.get("time"), str):
        return RawClaim(prop, "time", value["time"], precision=int(value.get("precision", 11)))
    if vtype == "quantity" and isinstance(value, dict) and value.get("amount") is not None:
        unit = entity_id(str(value.get("unit", "")))
        return RawClaim(prop, "quantity", str(value["amount"]).lstrip("+"), unit=unit)
    if vtype == "monolingualtext" and isinstance(value, dict) and isinstance(value.get("text"), str):
        return RawClaim(prop, "text", value["text"])
    return None


def ids_to_label(claims: Iterable[RawClaim]) -> set[str]:
    """Property, item and unit ids whose labels are needed to verbalise ``claims``."""
    ids: set[str] = set()
    for c in claims:
        ids.add(c.prop)
        if c.kind == "item":
            ids.add(c.value)
        if c.unit:
            ids.add(c.unit)
    return ids


def format_time(value: str, precision: int, lang: Lang) -> str:
    """Wikidata time (``+1879-03-14T00:00:00Z``) at its precision: day, month, year, decade or century."""
    m = re.match(r"([+-])0*(\d+)-(\d\d)-(\d\d)", value)
    if not m:
        return value
    sign, year, month, day = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
    bce = sign == "-"
    if precision <= 7:  # century
        cent = (year - 1) // 100 + 1
        if lang == "zh":
            return f"{'公元前' if bce else ''}{cent}世纪"
        suffix = "th" if 10 <= cent % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(cent % 10, "th")
        return f"{cent}{suffix} century{' BC' if bce else ''}"
    if precision == 8:  # decade
        dec = year - year % 10
        return f"{'公元前' if bce else ''}{dec}年代" if lang == "zh" else f"{dec}s{' BC' if bce else ''}"
    if lang == "zh":
        text = f"{'公元前' if bce else ''}{year}年"
        if precision >= 10 and month:
            text += f"{month}月"
        if precision >= 11 and day:
            text += f"{day}日"
        return text
    if bce:
        return f"{year} BC"
    if precision >= 11 and month and day:
        return f"{year:04d}-{month:02d}-{day:02d}"
    if precision >= 10 and month:
        return f"{year:04d}-{month:02d}"
    return str(year)


def verbalise(
    claims: Iterable[RawClaim], labels: Mapping[str, Mapping[str, str]], lang: Lang
) -> tuple[list[list[str]], list[list[str]]]:
    """``(claims, trans_claims)``: raw ``[pid, value]`` pairs and ``[property label, value label]`` pairs.

    ``labels`` maps an entity id to its labels by language (``{"en": ..., "zh": ...}``); an id without a
    label in ``lang`` falls back to English, then to the id itself.
    """

    def name(eid: str) -> str:
        entry = labels.get(eid) or {}
        return entry.get(lang) or entry.get("en") or eid

    raw: list[list[str]] = []
    trans: list[list[str]] = []
    for c in claims:
        if c.kind == "item":
            shown = name(c.value)
        elif c.kind == "time":
            shown = format_time(c.value, c.precision, lang)
        elif c.kind == "quantity":
            shown = f"{c.value} {name(c.unit)}" if c.unit else c.value
        else:
            shown = c.value
        raw.append([c.prop, c.value])
        trans.append([name(c.prop), shown])
    return raw, trans


def labels_by_lang(entity: Mapping[str, Any]) -> dict[str, str]:
    """``{"en": label, "zh": label}`` of an entity (empty strings dropped)."""
    labels = entity.get("labels") or {}
    out = {lang: pick_label(labels, lang) for lang in LANGS}
    return {k: v for k, v in out.items() if v}
