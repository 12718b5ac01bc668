"""One stage contract for every command that writes a directory (knowledge, generate, train, run, judge,
sweep).

Each stage directory holds ``stage.json`` (:class:`StageRecord`): the ``kind``, the ``spec`` (everything
that changes the result), the ``inputs`` with their identities (:mod:`harness.identity`), a ``fingerprint``
of spec + input identities, the ``outputs`` ditto-bench wrote there (each with its sha256 once finished),
the ``environment``, the ``status`` and the times. The same rule holds for every kind (:meth:`Stage.open`):

* same fingerprint, complete → ``"done"``: the command exits 0 and does no work;
* same fingerprint, not complete (running-and-killed, failed, interrupted, incomplete) → ``"resume"``;
* another fingerprint → refused (exit 2, naming what differs) unless ``--overwrite``, which removes exactly
  the files the earlier stage recorded as its outputs and lists them; every other file stays. A directory
  whose earlier start failed before producing anything (only its records are there) is reused without
  ``--overwrite``.

Opening a stage takes the directory's :class:`~harness.dirlock.DirLock` first and sweeps the temp files an
atomic write killed mid-way left behind (only temp files of names this stage writes). A command whose output
is one file (``knowledge --out kb.jsonl``) keeps its record beside it as ``kb.jsonl.stage.json``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.dirlock import LOCK_NAME, DirLock
from harness.errors import ConfigError
from harness.jsonl import atomic_write_json, file_sha256
from harness.redact import redact

STAGE_FILE = "stage.json"
SCHEMA_VERSION = 1
KINDS = ("knowledge", "generate", "train", "run", "judge", "sweep")
STATUSES = ("running", "complete", "incomplete", "failed", "interrupted")
_TEMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}$")  # tempfile.mkstemp(prefix=".NAME.") in atomic_open


def now() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def stage_fingerprint(kind: str, spec: Mapping[str, Any], inputs: Mapping[str, Mapping[str, Any]]) -> str:
    """sha256 of the kind, the spec and each input's identity ``id`` (not its path: a moved file is the
    same input)."""
    doc = {"kind": kind, "spec": spec, "inputs": {k: v.get("id") for k, v in sorted(inputs.items())}}
    blob = json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class StageRecord:
    """The content of ``stage.json`` (schema: docs/records.md, "Stage record")."""

    kind: str
    spec: dict[str, Any]
    fingerprint: str
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, str | None] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    started: str | None = None
    finished: str | None = None
    schema_version: int = SCHEMA_VERSION
    lineage: dict[str, Any] = field(default_factory=dict)
    foreign: list[str] = field(default_factory=list)
    invocations: int = 1
    error: str | None = None
    pid: int | None = None
    scope: dict[str, Any] = field(default_factory=dict)

    def is_complete(self, fingerprint: str, scope: Mapping[str, Any] | None = None) -> bool:
        """True when this record is a finished stage with exactly ``fingerprint`` (and, when given, the
        same ``scope``: the selection of work, e.g. generate's ``--langs``/``--limit``, outside the
        fingerprint)."""
        if scope is not None and _canon(self.scope) != _canon(scope):
            return False
        return self.status == "complete" and self.fingerprint == fingerprint

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = STAGE_FILE) -> StageRecord:
        missing = [k for k in ("kind", "spec", "fingerprint") if k not in data]
        if missing:
            raise ConfigError(f"{where}: not a stage record (missing {', '.join(missing)})")
        if int(data.get("schema_version", 0)) > SCHEMA_VERSION:
            raise ConfigError(
                f"{where}: schema_version {data.get('schema_version')} is newer than this ditto-bench "
                f"reads ({SCHEMA_VERSION}); upgrade ditto-bench"
            )
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)


def record_path(target: Path) -> Path:
    """Where the stage record of ``target`` lives: ``DIR/stage.json``, or ``FILE.stage.json`` for a file."""
    target = Path(target)
    if target.is_file() or (not target.exists() and target.suffix in (".jsonl", ".json", ".gz")):
        return target.parent / f"{target.name}.{STAGE_FILE}"
    return target / STAGE_FILE


def read_stage(target: Path) -> StageRecord | None:
    """The stage record of a directory (or single-file output), or ``None`` when there is none.

    Raises:
        ConfigError: the record exists but is not readable JSON or not a stage record.
    """
    return read_stage_file(record_path(Path(target)))


def hash_output(path: Path, *, memoise: bool = False) -> str | None:
    """sha256 of a file; ``None`` for a directory. With ``memoise`` the hash goes through the identity memo
    (harness.identity), worth it for model weights that will be identified again by the next command."""
    if not path.is_file():
        return None
    if not memoise:
        return file_sha256(path)
    from harness.identity import default_memo

    memo = default_memo()
    digest = memo.sha256(path)
    memo.save()
    return digest


class Stage:
    """The lifecycle of one stage directory: lock, decide (fresh/resume/done), record outputs, finish.

    ``root`` is the directory (or, with ``single_file``, the one output file). ``owned`` tells which names in
    the directory this kind of stage writes (beyond the outputs it recorded); ``record_names`` are the names
    that are only records (their presence alone is no work worth keeping). ``flag`` names the directory in
    messages (``--output_path``, ``--out``, ``output_dir``).
    """

    def __init__(
        self,
        root: Path,
        kind: str,
        spec: Mapping[str, Any],
        inputs: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        flag: str,
        owned: Callable[[str], bool] | None = None,
        record_names: Iterable[str] = (),
        single_file: bool = False,
        lineage: Mapping[str, Any] | None = None,
        memoise_outputs: bool = False,
        scope: Mapping[str, Any] | None = None,
        overwrite_flag: str = "--overwrite",
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown stage kind {kind!r}")
        self.root = Path(root)
        self.kind = kind
        self.spec = json.loads(json.dumps(dict(spec), default=str))
        self.inputs = {k: dict(v) for k, v in (inputs or {}).items()}
        self.fingerprint = stage_fingerprint(kind, self.spec, self.inputs)
        self.flag = flag
        self.single_file = single_file
        self.dir = self.root.parent if single_file else self.root
        self.path = self.dir / f"{self.root.name}.{STAGE_FILE}" if single_file else self.root / STAGE_FILE
        self._owned = owned or (lambda name: False)
        self.record_names = {STAGE_FILE, *record_names}
        self.lineage = dict(lineage or {})
        self.memoise_outputs = memoise_outputs
        self.overwrite_flag = overwrite_flag
        self.scope = json.loads(json.dumps(dict(scope or {}), default=str))
        self.lock = (
            DirLock.for_file(self.root, kind) if single_file else DirLock(self.root, kind)
        )
        self.record: StageRecord | None = None
        self.previous: StageRecord | None = None
        self.removed: list[str] = []
        self.swept: list[str] = []

    # ------------------------------------------------------------------------------------------ names
    def owns(self, name: str) -> bool:
        """True for a name in the directory that this stage (or its predecessor) wrote."""
        if self.single_file:
            return name in (self.root.name, self.path.name) or self._owned(name)
        if name == STAGE_FILE or name in self.record_names:
            return True
        prev = self.previous
        if prev is not None and name in prev.outputs:
            return True
        return self._owned(name)

    def _entries(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        skip = {LOCK_NAME, self.lock.lock_path.name}
        return sorted(n for n in (p.name for p in self.dir.iterdir()) if n not in skip)

    def _sweep_temps(self) -> None:
        """Remove the temp files of atomic writes a killed process left behind (ours only)."""
        for name in self._entries():
            if self._our_temp(name) and (self.dir / name).is_file():
                (self.dir / name).unlink(missing_ok=True)
                self.swept.append(name)

    # ------------------------------------------------------------------------------------------ opening
    def open(self, *, overwrite: bool) -> str:
        """Lock, compare with the record there, write ``status: running``; returns fresh | resume | done."""
        self.lock.acquire()
        try:
            return self._open(overwrite)
        except BaseException:
            self.lock.release()
            raise

    def peek(self, *, overwrite: bool) -> str:
        """What :meth:`open` would decide (fresh | resume | done, or the ConfigError it would raise), without
        locking, sweeping, removing or writing anything: for checks before expensive preparation."""
        self.lock.check_free()
        self.previous = read_stage_file(self.path)
        return self._decide(overwrite)[0]

    def _decide(self, overwrite: bool) -> tuple[str, list[str], list[str]]:
        """(decision, names to remove first, the user's names) from the record in ``self.previous``."""
        prev = self.previous
        if prev is None and self.single_file and self.root.exists():
            return "resume", [], []  # an output file from before stage records: its content says what is done
        if prev is None:
            present = self._present_content()
            ours = [n for n in present if self.owns(n)]
            if ours and not overwrite:
                raise ConfigError(
                    f"{self.flag} {self.root} already holds output of an earlier ditto-bench {self.kind} "
                    f"without a stage record ({', '.join(ours[:5])}); use another directory or pass "
                    f"{self.overwrite_flag}"
                )
            if present and not ours and not overwrite and not self.single_file:
                raise ConfigError(
                    f"{self.flag} {self.root} exists, is not empty and holds no ditto-bench record; "
                    f"pass {self.overwrite_flag} (nothing of yours is deleted)"
                )
            return "fresh", ours, [n for n in present if not self.owns(n)]
        if prev.fingerprint == self.fingerprint:
            done = prev.is_complete(self.fingerprint, self.scope) and self._outputs_intact(prev)
            return ("done" if done else "resume"), [], list(prev.foreign)
        if self._has_work(prev) and not overwrite:
            changed = changed_keys(
                {"spec": prev.spec, "inputs": {k: v.get("id") for k, v in prev.inputs.items()}},
                {"spec": self.spec, "inputs": {k: v.get("id") for k, v in self.inputs.items()}},
            )
            raise ConfigError(
                f"{self.flag} {self.root} holds a {prev.kind} with a different configuration{changed}; "
                f"use another directory or pass {self.overwrite_flag}"
            )
        return "fresh", self._previous_outputs(prev), list(prev.foreign)

    def _open(self, overwrite: bool) -> str:
        self.previous = read_stage_file(self.path)
        self._sweep_temps()
        prev = self.previous
        decision, remove, foreign = self._decide(overwrite)
        self._remove(remove)
        if decision == "done":
            self.record = prev
            return decision
        started = now()
        self.record = StageRecord(
            kind=self.kind,
            spec=self.spec,
            fingerprint=self.fingerprint,
            inputs=self.inputs,
            outputs=dict(prev.outputs) if (prev is not None and decision == "resume") else {},
            environment=_environment(),
            status="running",
            started=started,
            lineage=self.lineage,
            foreign=foreign,
            invocations=(prev.invocations + 1) if (prev is not None and decision == "resume") else 1,
            pid=_pid(),
            scope=self.scope,
        )
        self._write()
        return decision

    def _outputs_intact(self, prev: StageRecord) -> bool:
        """Every output of a complete record is still there with the content it was finished with."""
        for name, digest in prev.outputs.items():
            p = self.dir / name
            if not p.exists():
                return False
            if digest is not None and hash_output(p, memoise=self.memoise_outputs) != digest:
                return False
        return True

    def _present_content(self) -> list[str]:
        if self.single_file:
            return [self.root.name] if self.root.exists() else []
        return [n for n in self._entries() if n != STAGE_FILE and not self._our_temp(n)]

    def _our_temp(self, name: str) -> bool:
        m = _TEMP.match(name)
        return bool(m and self.owns(m.group("name")))

    def _has_work(self, prev: StageRecord) -> bool:
        """Whether the earlier stage produced anything beyond its own records (worth an --overwrite)."""
        for name in self._previous_outputs(prev):
            if name in self.record_names:
                continue
            p = self.dir / name
            if p.is_dir() or (p.is_file() and p.stat().st_size > 0):
                return True
        return False

    def _previous_outputs(self, prev: StageRecord) -> list[str]:
        names = set(prev.outputs)
        if self.single_file:
            names.add(self.root.name)
        else:
            names |= {n for n in self._entries() if n not in prev.foreign and self._owned(n)}
        names.discard(STAGE_FILE)
        return sorted(n for n in names if (self.dir / n).exists())

    def _remove(self, names: list[str]) -> None:
        if not names:
            return
        for name in names:
            p = self.dir / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
            self.removed.append(name)
        shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
        print(f"ditto-bench {self.kind}: removed from {self.dir}: {shown}", file=sys.stderr)

    # ------------------------------------------------------------------------------------------ running
    def add_outputs(self, *names: str) -> None:
        """Declare files this stage writes (before writing them, so a kill still leaves them recorded)."""
        rec = self._require()
        new = [n for n in names if n not in rec.outputs]
        if new:
            for n in new:
                rec.outputs[n] = None
            self._write()

    def finish(self, status: str, *, error: str | None = None) -> StageRecord:
        """Hash every recorded output that exists, set the status and finish time, write the record."""
        if status not in STATUSES:
            raise ValueError(f"unknown stage status {status!r}")
        rec = self._require()
        rec.outputs = {
            n: hash_output(self.dir / n, memoise=self.memoise_outputs)
            for n in sorted(rec.outputs)
            if (self.dir / n).exists()
        }
        rec.status = status
        rec.finished = now()
        rec.error = redact(error)[:500] if error else None  # every recorded error string is redacted
        self._write()
        return rec

    def close(self) -> None:
        """Release the directory lock."""
        self.lock.release()

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require(self) -> StageRecord:
        if self.record is None:
            raise RuntimeError("Stage.open() first")
        return self.record

    def _write(self) -> None:
        atomic_write_json(self.path, self._require().to_dict())


def read_stage_file(path: Path) -> StageRecord | None:
    """The record at ``path`` exactly (``None`` if missing); ConfigError when it is not a stage record."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path}: unreadable stage record ({exc}); remove it or use another directory"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a stage record")
    return StageRecord.from_dict(data, str(path))


def _environment() -> dict[str, Any]:
    from harness.runrecord import environment

    return environment()


def _pid() -> int:
    import os

    return os.getpid()


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any] | None) -> str:
    """`` (differs in: a.b, c)`` for two JSON-like values, or ``""`` when no path differs."""
    if new is None:
        return ""
    keys = _diff_paths(old, new, "")
    keys = [k.removeprefix("spec.") for k in keys]
    return f" (differs in: {', '.join(keys)})" if keys else ""


def _diff_paths(old: Any, new: Any, prefix: str) -> list[str]:
    """Dotted paths where two JSON-like values differ (e.g. ``tasks.wikiroleeval.judge.model``)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += _diff_paths(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    same = json.dumps(old, sort_keys=True, default=str) == json.dumps(new, sort_keys=True, default=str)
    return [] if same else [prefix or "<root>"]
