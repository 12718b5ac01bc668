"""Typed, schema-versioned run records: one line of ``samples.jsonl`` and ``results.json``.

A :class:`SessionRecord` holds what happened (the conversation, per turn the generation state and every
judge call with its raw completions), never what is derived from it: parsed samples, verdicts and scores
are recomputed by the task (``Task.scores`` / ``Task.annotated``) whenever they are needed. The
``samples.jsonl`` written by a run shows them too (``parsed``, ``verdict``, ``score``, ``rating_status``
inside each judgment) for people and scripts reading the file, but reading a record back drops them, so a
file edited by hand or written before a parser fix can never feed a stale verdict to ``compare`` or
``export``. Records written before this schema existed (no ``schema_version``: version 1) load unchanged.

Fields the models do not name (a task's own session fields, fields a later version adds) are kept
(``extra="allow"``) and written back as they were. See docs/records.md for the field list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import ConfigError
from harness.jsonl import iter_jsonl

RECORD_SCHEMA_VERSION = 2
"""Version of one ``samples.jsonl`` line. 1: the unversioned records of ditto-bench <= 0.x (same shape)."""

RESULTS_SCHEMA_VERSION = 2
"""Version of ``results.json``. 1: unversioned (no ``official`` block, WikiRoleEval ``semantics: official``
meaning today's robust numbers)."""

DERIVED_JUDGMENT_FIELDS = frozenset({"parsed", "verdict", "score", "rating_status"})
"""Keys a written judgment carries for readers but that are never read back (they are re-derived)."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=False)


class Judgment(_Record):
    """One judge call of one turn, as recorded: its prompt, state and raw completions."""

    status: str
    """``ok``, ``api_error`` or ``pending`` (never sent or not finished)."""
    template: str
    prompt: list[dict[str, Any]]
    completions: list[str | None] = Field(default_factory=list)
    """One entry per sample; ``None`` for a sample the response lacked."""
    error: str | None = None
    usage: dict[str, int] | None = None
    cached: bool | None = None
    attempts: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and DERIVED_JUDGMENT_FIELDS & set(data):
            return {k: v for k, v in data.items() if k not in DERIVED_JUDGMENT_FIELDS}
        return data


class Generation(_Record):
    """How the model's reply of one turn came about (``status``: ok, error, pending or given)."""

    status: str
    error: str | None = None
    sent_messages: list[dict[str, Any]] | None = None
    system_merged: bool | None = None
    trimmed_turns: int | None = None
    truncated: bool | None = None
    cached: bool | None = None
    gen_kwargs: dict[str, Any] | None = None
    raw_text: str | None = None


class Turn(_Record):
    turn: int
    generation: Generation
    judgments: dict[str, Judgment] = Field(default_factory=dict)
    """metric -> judgment; empty when the turn has no reply yet."""


class SessionRecord(_Record):
    """One line of ``samples.jsonl``. Task fields (WikiRoleEval ``label``, ``candidates``,
    ``rejection_labels``, ``gold_position``, ``item``; MT-Bench ``question_id``, ``category``, ...) are
    extra fields, kept verbatim."""

    schema_version: int = 1
    task: str
    session_id: str
    turns: list[Turn]
    index: int | None = None
    lang: str | None = None
    system: str | None = None
    prompts: list[str] = Field(default_factory=list)
    messages: list[dict[str, Any]] = Field(default_factory=list)

    def raw(self) -> dict[str, Any]:
        """The record as a plain dict (what the tasks' pure scoring functions take), in the file's key
        order: the session's fields and the task's, then ``messages`` and ``turns``."""
        d = self.model_dump(mode="json", exclude_unset=True)
        tail = ("messages", "turns")
        return {**{k: v for k, v in d.items() if k not in tail}, **{k: d[k] for k in tail if k in d}}


def session_record(data: Mapping[str, Any]) -> SessionRecord:
    """Validate a freshly built record (``harness.records.build_records``) into the current schema."""
    return SessionRecord.model_validate({**data, "schema_version": RECORD_SCHEMA_VERSION})


def _where_error(where: str, exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(record)"
    return ConfigError(f"{where}: field '{field}': {first['msg']}")


def iter_records(path: Path) -> Iterator[SessionRecord]:
    """Read ``samples.jsonl`` back as typed records; a bad line is one ConfigError naming ``path:line``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path.parent}: not a finished run directory ({path.name} is missing)")
    for line, obj in iter_jsonl(path):
        version = obj.get("schema_version", 1)
        if not isinstance(version, int) or version > RECORD_SCHEMA_VERSION:
            raise ConfigError(
                f"{path}:{line}: schema_version {version!r} is newer than this ditto-bench reads "
                f"({RECORD_SCHEMA_VERSION}); upgrade ditto-bench"
            )
        try:
            yield SessionRecord.model_validate(obj)
        except ValidationError as exc:
            raise _where_error(f"{path}:{line}", exc) from None


def load_records(path: Path) -> dict[str, list[SessionRecord]]:
    """All records of a ``samples.jsonl``, by task, in file order."""
    out: dict[str, list[SessionRecord]] = {}
    for rec in iter_records(path):
        out.setdefault(rec.task, []).append(rec)
    return out


class TaskResults(_Record):
    """One task's entry of ``results.json``. The metric layout is the task's (WikiRoleEval: split ->
    metric; MT-Bench: turn -> rating), so ``metrics`` and ``ci95`` are typed loosely."""

    version: int | None = None
    semantics: str | None = None
    metrics: dict[str, Any]
    ci95: dict[str, Any] = Field(default_factory=dict)
    failures: dict[str, Any] = Field(default_factory=dict)
    usage: dict[str, int] = Field(default_factory=dict)
    rollout: dict[str, int] = Field(default_factory=dict)
    judging: dict[str, int] = Field(default_factory=dict)
    official: dict[str, Any] | None = None
    """The released pipeline's own numbers on the same completions (WikiRoleEval; absent elsewhere and in
    results written before schema 2)."""


class RunResults(_Record):
    """``results.json``."""

    schema_version: int = 1
    tasks: dict[str, TaskResults]
    rollout: dict[str, int] = Field(default_factory=dict)
    judging: dict[str, int] = Field(default_factory=dict)
    complete: bool = False
    model: Any = None
    files: list[str] = Field(default_factory=list)


def read_run_file(path: Path) -> dict[str, Any]:
    """A JSON object file of a run directory (run.json, results.json); a one-line ConfigError otherwise."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path.parent}: not a finished run directory ({path.name} is missing)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable: {exc}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return obj


def load_results(path: Path) -> RunResults:
    """Read ``results.json`` (any schema version up to the current one); one ConfigError line otherwise."""
    path = Path(path)
    return results_from(read_run_file(path), str(path))


def results_from(obj: Any, where: str) -> RunResults:
    """Validate an already parsed ``results.json`` object."""
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object")
    version = obj.get("schema_version", 1)
    if not isinstance(version, int) or version > RESULTS_SCHEMA_VERSION:
        raise ConfigError(f"{where}: schema_version {version!r} is newer than this ditto-bench reads")
    try:
        return RunResults.model_validate(obj)
    except ValidationError as exc:
        raise _where_error(where, exc) from None


