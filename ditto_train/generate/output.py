"""Output records and files of a generation run.

Layout of ``--out DIR`` (one directory per split):

* ``{split}.{lang}.jsonl`` — finished sessions, appended one line at a time (the resume state);
* ``{split}.{lang}.rejected.jsonl`` — sessions with no usable turn, with the reason and filter counts;
* ``{split}.jsonl`` — all languages merged in knowledge-base order, rewritten atomically at the end of a run:
  the TRL conversational file (train) or the WikiRoleEval test file (test);
* ``run.json`` (configuration fingerprint) and ``report.json`` (counts).

Train rows are TRL's conversational format, ``{"messages": [system, user, assistant, ...], "meta": {...}}``.
Test items follow the official WikiRoleEval layout: ``system``, ``prompts``, ``ref_messages``, and a ``meta``
with the profile fields plus ``role_consist_cands``, ``evidence`` and ``rejection_labels``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ditto_train.generate.kb_index import Entry
from ditto_train.generate.session import Outcome
from ditto_train.knowledge.schema import LANGS, RoleProfile
from harness.jsonl import atomic_open, iter_complete_lines

_SENTENCE_END = re.compile(r"[。！？]|[.!?](?=\s+[A-Z\"“(]|\s*$)")
# Words whose trailing period does not end a sentence ("Dr. Watson", "J. R. R. Tolkien", "c. 1300").
_ABBREV = frozenset(
    "mr mrs ms dr prof st jr sr gen col lt capt sgt rev hon mt no vs ca c u.s e.g i.e".split()
)
LANG_ORDER = LANGS  # the order of the merged files' records
REJECTION_LABELS_SOURCE = "automatic: 1 for contrastive queries (the official set was hand-labelled)"


def part_path(out: Path, split: str, lang: str, rejected: bool = False) -> Path:
    """The per-language append file of a split."""
    return out / f"{split}.{lang}{'.rejected' if rejected else ''}.jsonl"


def done_keys(out: Path, split: str, langs: tuple[str, ...]) -> set[tuple[str, str]]:
    """(role id, lang) of every session already written or rejected (torn last lines ignored)."""
    keys: set[tuple[str, str]] = set()
    for lang in langs:
        for rejected in (False, True):
            for _, obj in iter_complete_lines(part_path(out, split, lang, rejected)):
                meta = obj.get("meta") or {}
                keys.add((str(meta.get("id")), str(meta.get("lang", lang))))
    return keys


def first_sentence(text: str, limit: int = 200) -> str:
    """The first sentence of a summary (for consistency candidates), at most ``limit`` characters."""
    text = " ".join(text.split())
    sentence = text
    for m in _SENTENCE_END.finditer(text):
        if m.group() == ".":
            word = text[: m.start()].rsplit(" ", 1)[-1].lstrip("(").lower()
            if word in _ABBREV or (len(word) == 1 and word.isalpha()):
                continue
        sentence = text[: m.end()]
        break
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


def candidate_text(p: RoleProfile) -> str:
    """``[Name] first sentence of the summary`` (the form of Fig. 3 in the paper)."""
    first = first_sentence(p.summary or p.description)
    return f"[{p.label}] {first}".strip()


def _session_meta(o: Outcome, run_meta: Mapping[str, Any]) -> dict[str, Any]:
    p = o.profile
    assert p is not None
    return {
        "id": p.id,
        "label": p.label,
        "lang": p.lang,
        "category": p.category,
        "partner": {"id": o.partner.id if o.partner else "", "label": o.partner.label if o.partner else ""},
        "query_types": [t.qtype for t in o.turns],
        "query_sources": [list(t.source) for t in o.turns],
        "filtered": dict(o.filtered),
        "usage": dict(o.usage),
        **run_meta,
    }


def _conversation(intro: str, o: Outcome) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": intro}]
    for t in o.turns:
        msgs += [{"role": "user", "content": t.query}, {"role": "assistant", "content": t.response}]
    return msgs


def sft_row(o: Outcome, intro: str, run_meta: Mapping[str, Any]) -> dict[str, Any]:
    """A TRL conversational row: the brief intro as system message, no profile."""
    return {"messages": _conversation(intro, o), "meta": _session_meta(o, run_meta)}


def test_item(o: Outcome, intro: str, candidates: list[str], run_meta: Mapping[str, Any]) -> dict[str, Any]:
    """A WikiRoleEval test item; ``rejection_labels`` come from the query type (automatic labels)."""
    p = o.profile
    assert p is not None
    profile = p.model_dump(mode="json")
    meta = {
        **{
            k: profile[k]
            for k in (
                "label",
                "description",
                "aliases",
                "wiki_title",
                "claims",
                "trans_claims",
                "category",
                "lang",
                "summary",
                "wiki",
            )
        },
        "role_consist_cands": candidates,
        "evidence": ["\n".join(t.evidence or []) for t in o.turns],
        "rejection_labels": [1 if t.qtype == "contrastive" else 0 for t in o.turns],
        "rejection_labels_source": REJECTION_LABELS_SOURCE,
        "evidence_source": [t.evidence_source for t in o.turns],
        "sitelinks": p.sitelinks,
        **_session_meta(o, run_meta),
    }
    return {
        "system": intro,
        "prompts": [t.query for t in o.turns],
        "ref_messages": _conversation(intro, o),
        "type": "ditto-generated",
        "source": f"ditto-bench generate (supervisor {run_meta.get('supervisor', {}).get('model', '?')})",
        "meta": meta,
    }


def rejected_row(o: Outcome, run_meta: Mapping[str, Any]) -> dict[str, Any]:
    """The record of a session without usable turns."""
    return {"status": "rejected", "reason": o.reason, "meta": _session_meta(o, run_meta)}


def merge_parts(out: Path, split: str, order: Mapping[tuple[str, str], int]) -> tuple[Path, int]:
    """Write ``{split}.jsonl``: every finished session of all languages, in knowledge-base order.

    Only (sort key, file, offset) triples are held in memory; lines are copied by seeking. The file is
    replaced atomically, so a reader never sees a half-written merge. A session written more than once
    (two processes on one directory, before the directory lock) appears once: its last line wins.
    """
    latest: dict[tuple[str, str], tuple[int, int, Path, int]] = {}
    for li, lang in enumerate(LANG_ORDER):
        path = part_path(out, split, lang)
        for offset, obj in iter_complete_lines(path):
            meta = obj.get("meta") or {}
            rid = meta.get("id")
            key = (str(rid), str(meta.get("lang", lang))) if rid is not None else (f"{path}:{offset}", "")
            rank = order.get((str(meta.get("id")), lang), 1 << 60)
            latest[key] = (li, rank, path, offset)
    refs = list(latest.values())
    refs.sort(key=lambda r: (r[0], r[1], r[3]))
    target = out / f"{split}.jsonl"
    handles: dict[Path, Any] = {}
    try:
        with atomic_open(target) as dst:
            for _, _, path, offset in refs:
                fh = handles.get(path) or handles.setdefault(path, path.open("rb"))
                fh.seek(offset)
                dst.write(fh.readline())
    finally:
        for fh in handles.values():
            fh.close()
    return target, len(refs)


def order_of(entries: list[Entry]) -> dict[tuple[str, str], int]:
    """(id, lang) → position in the knowledge base, for a deterministic merged order."""
    return {(e.id, e.lang): e.line for e in entries}
