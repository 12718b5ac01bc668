"""The knowledge-base record: one character profile in one language.

The shape follows the ``meta`` object of Ditto's released files (``label``, ``description``, ``aliases``,
``wiki_title``, ``claims``, ``trans_claims``, ``category``, ``lang``, ``summary``,
``wiki{idx,title,content}``), plus the Wikidata id (``id``) and the entity's sitelink count (``sitelinks``). A
role with articles in English and Chinese has two records, one per language, sharing ``id``; this is how the
paper's pool has 3,902 English and 3,184 Chinese profiles.

Files written by someone else (e.g. Ditto's own ``role_meta_info_multilingual.jsonl``) may lack ``id`` and
``sitelinks``: ``id`` then falls back to ``wiki_title`` (else ``label``) and ``sitelinks`` to 0.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import DataError
from harness.jsonl import decode_line, parse_object

Lang = Literal["en", "zh"]
LANGS: tuple[Lang, ...] = ("en", "zh")


class WikiArticle(BaseModel):
    """The Wikipedia article used as the character's profile."""

    model_config = ConfigDict(extra="ignore")

    idx: int | str = 0
    """Page id on the language's Wikipedia (0 when unknown)."""
    title: str = ""
    content: str = ""
    """Plain text of the whole article; section headings kept as ``== Heading ==`` lines."""


class RoleProfile(BaseModel):
    """One character in one language (one line of the knowledge base)."""

    model_config = ConfigDict(extra="ignore")

    id: str = ""
    """Wikidata id (``Q937``); shared by the en and zh records of one role."""
    sitelinks: int = 0
    """Number of Wikimedia sitelinks of the entity: the popularity used for ranking."""
    label: str = Field(min_length=1)
    description: str = ""
    aliases: list[str] = Field(default_factory=list)
    wiki_title: str = ""
    claims: list[list[str]] = Field(default_factory=list)
    """``[property id, value]`` pairs; the value is an entity id, a date, a quantity or a text."""
    trans_claims: list[list[str]] = Field(default_factory=list)
    """The same claims with labels in ``lang``: ``[property label, value label]``."""
    category: str = ""
    """``real`` (instance of human, Q5) or ``virtual`` (fictional human, Q15632617)."""
    lang: Lang
    summary: str = ""
    """The article's lead section."""
    wiki: WikiArticle = Field(default_factory=WikiArticle)

    @model_validator(mode="after")
    def _fill_id(self) -> RoleProfile:
        if not self.id:
            self.id = self.wiki_title or self.label
        return self

    def to_json(self) -> str:
        """One JSONL line (no trailing newline)."""
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False)


def profile_from_json(text: str, where: str) -> RoleProfile:
    """Parse one KB line; ``where`` (``file:line``) prefixes the one-line error."""
    obj = parse_object(text, where)
    try:
        return RoleProfile.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "record"
        raise DataError(f"{where}: field '{field}': {err['msg']}") from None


def iter_kb(path: Path) -> Iterator[tuple[int, int, RoleProfile]]:
    """Yield ``(line number, byte offset, profile)`` for every record of a KB JSONL file.

    Reads in binary so offsets can be used with ``seek`` later. A last line without a newline (a torn
    write from a killed collector) is ignored rather than reported.
    """
    try:
        fh = Path(path).open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read knowledge base: {exc.strerror or exc}") from None
    with fh:
        offset = 0
        for line_no, raw in enumerate(fh, start=1):
            start, offset = offset, offset + len(raw)
            if not raw.endswith(b"\n"):
                break
            where = f"{path}:{line_no}"
            text = decode_line(raw, where).strip()
            if not text:
                continue
            yield line_no, start, profile_from_json(text, where)


def read_profile_at(fh: Any, offset: int, where: str) -> RoleProfile:
    """Read the record starting at byte ``offset`` of an open binary KB file."""
    fh.seek(offset)
    return profile_from_json(decode_line(fh.readline(), where), where)


def detect_kind(path: Path) -> Literal["kb", "dump"]:
    """Tell a knowledge-base JSONL from a Wikidata entity dump by its first record."""
    from ditto_train.knowledge.dump import open_text

    with open_text(path) as fh:
        for line in fh:
            text = line.strip().rstrip(",")
            if text in ("", "["):
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                raise DataError(
                    f"{path}:1: neither a knowledge-base JSONL nor a Wikidata JSON dump"
                ) from None
            if isinstance(obj, dict) and "claims" in obj and isinstance(obj.get("labels"), dict):
                return "dump"
            return "kb"
    raise DataError(f"{path}: empty file")
