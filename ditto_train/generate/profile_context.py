"""``ditto-bench run --inject_profile KB``: the character's profile in the model's system context.

This is how the paper measures *supervision performance* (§6, Table 3 "w/ Knowledge"): the model answers
the test dialogue with the character's profile in context, the way it does when it simulates responses for
the training data. The context is the response-simulation template (``response_sim.{lang}.jinja``, T_R)
rendered for the character with its question line left out, so the wording, the profile budget and the
rules are exactly those the supervisor saw while generating; the template hashes go into the run's spec.

Each WikiRoleEval session is matched to a knowledge-base record by the item's role id (``meta.id`` /
``id``, as the generated test files carry) in its language, else by its label in its language. A session
with no profile in the knowledge base is bad input (one line naming it), never silently left bare.
Sessions without a character (MT-Bench: no system message) are left unchanged and counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ditto_train.generate.kb_index import Entry, KnowledgeIndex
from ditto_train.generate.prompts import Prompts, load_templates
from harness.errors import ConfigError, DataError
from harness.jsonl import file_sha256
from harness.task import Session, TaskData

_QUERY_MARK = "\u0000ditto-bench-query\u0000"
FLAG = "--inject_profile"


def _role_id(raw: Mapping[str, Any]) -> str | None:
    meta = raw.get("meta")
    for source in (meta if isinstance(meta, Mapping) else {}, raw):
        value = source.get("id")
        if isinstance(value, str) and value:
            return value
    return None


class ProfileInjector:
    """Renders the profile context of knowledge-base characters (the T_R template without its question)."""

    def __init__(self, kb: Path, *, profile_tokens: int = 3000, max_claims: int = 40) -> None:
        self.kb = Path(kb)
        if not self.kb.is_file():
            raise ConfigError(f"{FLAG} {self.kb}: no such knowledge-base file")
        try:
            self.index = KnowledgeIndex(self.kb)
        except DataError as exc:
            raise ConfigError(f"{FLAG}: {exc}") from None
        self.templates = load_templates()
        self.prompts = Prompts(self.templates, profile_tokens=profile_tokens, max_claims=max_claims)
        self._by_id: dict[tuple[str, str], Entry] = {}
        self._by_label: dict[tuple[str, str], Entry] = {}
        for entry in self.index.entries(tuple(self.index.pools)):
            self._by_id.setdefault((entry.id, entry.lang), entry)
            self._by_label.setdefault((entry.label, entry.lang), entry)

    def context(self, entry: Entry) -> str:
        """The response-simulation prompt of ``entry`` without its question line."""
        text = self.prompts.response(self.index.load(entry), _QUERY_MARK)[0]["content"]
        lines = [line for line in text.split("\n") if _QUERY_MARK not in line]
        out: list[str] = []
        for line in lines:  # the removed line leaves two blank lines behind; keep one
            if not line.strip() and out and not out[-1].strip():
                continue
            out.append(line)
        return "\n".join(out).strip()

    def entry_for(self, label: str | None, lang: str, role_id: str | None = None) -> Entry | None:
        """The record of a role: by id in ``lang`` when given and known, else by label in ``lang``."""
        entry = self._by_id.get((role_id, lang)) if role_id else None
        if entry is None and isinstance(label, str):
            entry = self._by_label.get((label, lang))
        return entry

    def find(self, session: Session) -> Entry | None:
        item = session.payload
        raw = getattr(item, "raw", None)
        label = getattr(item, "label", None)
        if not isinstance(raw, Mapping) or session.lang is None:
            return None
        rid = _role_id(raw)
        entry = self.entry_for(label, session.lang, rid)
        if entry is None:
            raise ConfigError(
                f"{FLAG} {self.kb}: no profile for {label!r} ({session.lang}"
                f"{', id ' + rid if rid else ''}) of {session.task} session {session.session_id}"
            )
        return entry

    def apply(self, datas: Mapping[str, TaskData]) -> dict[str, Any]:
        """Put the profile context into every character session's system message; returns the spec part."""
        counts: dict[str, dict[str, int]] = {}
        used_langs: set[str] = set()
        try:
            for name, data in datas.items():
                injected = bare = 0
                for s in data.sessions:
                    if s.system is None or getattr(s.payload, "label", None) is None:
                        bare += 1
                        continue
                    entry = self.find(s)
                    assert entry is not None
                    s.system = f"{s.system.rstrip()}\n\n{self.context(entry)}"
                    used_langs.add(entry.lang)
                    injected += 1
                counts[name] = {"injected": injected, "without_character": bare}
        finally:
            self.index.close()
        if not any(c["injected"] for c in counts.values()):
            raise ConfigError(f"{FLAG}: none of the tasks has a character session to inject a profile into")
        kinds = ("response_sim", "profile")
        return {
            "knowledge_sha256": file_sha256(self.kb),
            "templates": {
                f"{k}.{lang}": self.templates.hashes[f"{k}.{lang}"]
                for k in kinds
                for lang in sorted(used_langs)
            },
            "profile_tokens": self.prompts.profile_tokens,
            "max_claims": self.prompts.max_claims,
            "sessions": counts,
        }


def inject_profiles(kb: Path, datas: Mapping[str, TaskData]) -> dict[str, Any]:
    """``run --inject_profile KB``: inject into ``datas`` in place and return the record for the run spec."""
    return ProfileInjector(kb).apply(datas)
