"""Leaderboard definitions (which metric of which task goes in which column) and reported-number sets.

Both are JSON files shipped in this package: ``ditto_table2.json`` is the paper's Table 2 shape;
``reported_*.json`` hold published numbers, as printed, with the judge their authors used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_DEFINITION = PACKAGE_DIR / "ditto_table2.json"

Path_ = tuple[str, ...]


SEMANTICS = ("robust", "official")


@dataclass(frozen=True)
class OfficialPaths:
    """Where a column's value (and n, failure counts) sit under ``--semantics official``."""

    value: Path_
    n: Path_ | None
    failures: tuple[Path_, ...]


@dataclass(frozen=True)
class Column:
    """One table column: a value path (and CI, n, failure paths) inside ``results.json``'s task entry.

    ``official``: the paths of the same number as the released code computes it (``--semantics official``);
    ``None`` when the task's robust number already is the released code's (MT-Bench: FastChat's
    ``show_result.py`` semantics).
    """

    id: str
    label: str
    group: str
    task: str
    value: Path_
    ci: Path_ | None
    n: Path_ | None
    failures: tuple[Path_, ...]
    official: OfficialPaths | None = None


@dataclass(frozen=True)
class ReportedRow:
    """A published row: model name as printed, names it may have in run records, values as printed."""

    model: str
    params: str | None
    aliases: tuple[str, ...]
    values: dict[str, str | None]


@dataclass(frozen=True)
class ReportedSet:
    """Published numbers from one source."""

    name: str
    source: str
    judges: dict[str, str]
    notes: tuple[str, ...]
    rows: tuple[ReportedRow, ...]


@dataclass(frozen=True)
class Definition:
    """A leaderboard: title, columns, and the reported sets it knows."""

    name: str
    title: str
    description: str
    columns: tuple[Column, ...]
    reported: dict[str, str]
    default_reported: str | None
    path: Path

    @property
    def tasks(self) -> list[str]:
        """Tasks in column order, each once."""
        return list(dict.fromkeys(c.task for c in self.columns))


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable {what}: {exc}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: {what} must be a JSON object")
    return obj


def _path(value: Any, where: str) -> Path_:
    if not isinstance(value, list) or not value or not all(isinstance(p, str) for p in value):
        raise ConfigError(f"{where}: expected a non-empty list of keys")
    return tuple(value)


def _official(obj: Any, where: str) -> OfficialPaths | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected an object with 'value' (and optional 'n', 'failures')")
    return OfficialPaths(
        value=_path(obj.get("value"), f"{where}.value"),
        n=_path(obj["n"], f"{where}.n") if obj.get("n") else None,
        failures=tuple(_path(f, f"{where}.failures") for f in obj.get("failures") or []),
    )


def load_definition(path: Path | None = None) -> Definition:
    """Read a leaderboard definition (default: the packaged Table 2 definition)."""
    path = Path(path) if path is not None else DEFAULT_DEFINITION
    obj = _read_json(path, "leaderboard definition")
    columns: list[Column] = []
    for i, c in enumerate(obj.get("columns") or []):
        where = f"{path}: columns[{i}]"
        try:
            columns.append(
                Column(
                    id=str(c["id"]),
                    label=str(c["label"]),
                    group=str(c.get("group", "")),
                    task=str(c["task"]),
                    value=_path(c["value"], f"{where}.value"),
                    ci=_path(c["ci"], f"{where}.ci") if c.get("ci") else None,
                    n=_path(c["n"], f"{where}.n") if c.get("n") else None,
                    failures=tuple(_path(f, f"{where}.failures") for f in c.get("failures") or []),
                    official=_official(c.get("official"), f"{where}.official"),
                )
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{where}: missing or bad field {exc}") from None
    if not columns:
        raise ConfigError(f"{path}: a leaderboard definition needs at least one column")
    ids = [c.id for c in columns]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{path}: column ids must be unique")
    return Definition(
        name=str(obj.get("name", path.stem)),
        title=str(obj.get("title", "")),
        description=str(obj.get("description", "")),
        columns=tuple(columns),
        reported={str(k): str(v) for k, v in (obj.get("reported") or {}).items()},
        default_reported=obj.get("default_reported"),
        path=path,
    )


def load_reported(definition: Definition, name: str) -> ReportedSet:
    """Read one reported set named in ``definition`` (file names are relative to the definition)."""
    if name not in definition.reported:
        known = ", ".join(sorted(definition.reported)) or "none"
        raise ConfigError(f"--reported_set: {definition.name} has no reported set {name!r} (known: {known})")
    path = definition.path.parent / definition.reported[name]
    obj = _read_json(path, "reported set")
    col_ids = {c.id for c in definition.columns}
    rows: list[ReportedRow] = []
    for i, r in enumerate(obj.get("rows") or []):
        values = r.get("values") or {}
        unknown = sorted(set(values) - col_ids)
        if unknown:
            raise ConfigError(f"{path}: rows[{i}]: unknown column(s) {unknown}")
        for col, v in values.items():
            if v is not None:
                try:
                    float(v)
                except (TypeError, ValueError):
                    raise ConfigError(f"{path}: rows[{i}].values.{col}: not a number: {v!r}") from None
        rows.append(
            ReportedRow(
                model=str(r["model"]),
                params=r.get("params"),
                aliases=tuple(r.get("aliases") or ()),
                values={k: (None if v is None else str(v)) for k, v in values.items()},
            )
        )
    return ReportedSet(
        name=str(obj.get("name", name)),
        source=str(obj.get("source", "")),
        judges={str(k): str(v) for k, v in (obj.get("judges") or {}).items()},
        notes=tuple(str(n) for n in obj.get("notes") or ()),
        rows=tuple(rows),
    )
