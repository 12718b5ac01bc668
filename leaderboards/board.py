"""Building one leaderboard table from run records (and, optionally, published rows).

Rows are models. A model's cells may come from several runs (e.g. a WikiRoleEval run and an MT-Bench run),
but one (model, task) pair must come from one run. Runs that put a task into a column must agree on the task
version, the judge (model and settings), the judge-template hashes and the item set; otherwise the build is
refused, or, with ``allow_mixed``, every cell of that task carries a variant mark explained in the notes.
Values are kept at full precision here; rounding is the renderer's job.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.errors import ConfigError
from leaderboards.definition import SEMANTICS, Column, Definition, ReportedSet
from leaderboards.runs import RunInfo, TaskRun, dig


@dataclass
class Cell:
    """One table cell; ``printed`` keeps a published number exactly as printed."""

    value: float | None
    ci: tuple[float, float] | None = None
    n: int | None = None
    failures: int | None = None
    variant: str | None = None
    incomplete: bool = False
    printed: str | None = None


@dataclass
class Row:
    """One model: from runs (``source="run"``) or a reported set (``source="reported"``)."""

    model: str
    source: Literal["run", "reported"]
    origin: str
    cells: dict[str, Cell] = field(default_factory=dict)
    judges: dict[str, str] = field(default_factory=dict)
    params: str | None = None
    run_dirs: list[str] = field(default_factory=list)


@dataclass
class Board:
    """The table: title, columns, rows, and the notes a reader needs (judges, variants, sources)."""

    title: str
    description: str
    columns: list[Column]
    rows: list[Row]
    notes: list[str]
    semantics: str = "robust"
    """Whose numbers the run cells show: ``robust`` (ours) or ``official`` (the released code's)."""


def _signature_key(tr: TaskRun) -> str:
    return json.dumps(tr.signature(), sort_keys=True, default=str)


def _differences(sigs: Sequence[dict[str, Any]]) -> list[str]:
    """Names of the signature fields that differ (judge settings one level down)."""
    out: list[str] = []
    for key in sigs[0]:
        values = [s.get(key) for s in sigs]
        if all(v == values[0] for v in values):
            continue
        if isinstance(values[0], dict):
            sub = sorted({k for v in values for k in (v or {})})
            out += [f"{key}.{k}" for k in sub if len({json.dumps((v or {}).get(k)) for v in values}) > 1]
        else:
            out.append(key)
    return out


def _variants(task: str, runs: Sequence[RunInfo], allow_mixed: bool) -> dict[str, str]:
    """signature key -> variant letter ('' when all runs agree). Refuses mixed runs unless allowed."""
    keys: dict[str, list[RunInfo]] = {}
    for run in runs:
        if task in run.tasks:
            keys.setdefault(_signature_key(run.tasks[task]), []).append(run)
    if len(keys) <= 1:
        return dict.fromkeys(keys, "")
    sigs = [json.loads(k) for k in keys]
    diff = ", ".join(_differences(sigs))
    if not allow_mixed:
        groups = "; ".join(
            f"{chr(97 + i)}: {', '.join(str(r.path) for r in rs)}" for i, rs in enumerate(keys.values())
        )
        raise ConfigError(
            f"{task}: runs differ in {diff} and cannot share a column ({groups}); "
            "pass --allow_mixed to show them with variant marks"
            + ("; `ditto-bench calibrate` measures how far the judges differ" if "judge" in diff else "")
        )
    return {k: chr(97 + i) for i, k in enumerate(keys)}


def _cell(col: Column, tr: TaskRun, variant: str, complete: bool, semantics: str = "robust") -> Cell:
    res = tr.results
    if semantics == "official" and col.official is not None:
        # The released code's number: no CI (it has none); failures = turns of the sessions it drops.
        off = col.official
        value_path, ci_path, n_path, fail_paths = off.value, None, off.n, off.failures
    else:
        value_path, ci_path, n_path, fail_paths = col.value, col.ci, col.n, col.failures
    value = dig(res, value_path)
    ci = dig(res, ci_path) if ci_path else None
    n = dig(res, n_path) if n_path else None
    fails = [dig(res, p) for p in fail_paths]
    return Cell(
        value=float(value) if isinstance(value, int | float) else None,
        ci=(float(ci[0]), float(ci[1])) if isinstance(ci, list | tuple) and len(ci) == 2 else None,
        n=int(n) if isinstance(n, int) else None,
        failures=sum(int(f) for f in fails if isinstance(f, int)) if fail_paths else None,
        variant=variant or None,
        incomplete=not complete,
    )


def _semantics_notes(columns: Sequence[Column], runs: Sequence[RunInfo], semantics: str) -> list[str]:
    """Per task with an official variant: which numbers the columns show (and runs lacking the block)."""
    notes: list[str] = []
    for task in dict.fromkeys(c.task for c in columns if c.official is not None):
        with_task = [r for r in runs if task in r.tasks]
        if not with_task:
            continue
        if semantics == "official":
            notes.append(
                f"{task}: official semantics: the numbers the released pipeline (scoring.py) gives on these "
                "completions: strict parsing, no CIs; sessions it would crash on are dropped and their turns "
                "counted as failures."
            )
            missing = [str(r.path) for r in with_task if "official" not in r.tasks[task].results]
            if missing:
                notes.append(
                    f"{task}: no official block in {', '.join(missing)} (written by an older ditto-bench); "
                    "run `ditto-bench score RUN_DIR` to add it."
                )
        else:
            notes.append(
                f"{task}: robust semantics: the official reducers with forgiving parsers, every failure "
                "counted and excluded (--semantics official shows the released pipeline's own numbers)."
            )
    return notes


def _run_rows(
    columns: list[Column], runs: Sequence[RunInfo], allow_mixed: bool, semantics: str = "robust"
) -> tuple[list[Row], list[str]]:
    tasks = list(dict.fromkeys(c.task for c in columns))
    variants = {t: _variants(t, runs, allow_mixed) for t in tasks}
    rows: dict[str, Row] = {}
    owner: dict[tuple[str, str], RunInfo] = {}
    judge_notes: dict[str, dict[str, str]] = {t: {} for t in tasks}
    for run in runs:
        used = [t for t in tasks if t in run.tasks]
        if not used:
            continue
        row = rows.setdefault(run.model, Row(model=run.model, source="run", origin=""))
        row.origin = ", ".join(filter(None, [row.origin, str(run.path)]))
        row.run_dirs.append(str(run.path))
        for t in used:
            if (run.model, t) in owner:
                raise ConfigError(
                    f"{t} for model {run.model!r} comes from two runs ({owner[(run.model, t)].path} and "
                    f"{run.path}); give one of them another name with --label RUN_DIR=NAME"
                )
            owner[(run.model, t)] = run
            tr = run.tasks[t]
            letter = variants[t][_signature_key(tr)]
            row.judges[t] = tr.judge_label()
            judge_notes[t][letter] = (
                f"judge {tr.judge_label()}; task version {tr.version}; judge templates {tr.templates_id}; "
                f"{tr.n_sessions} sessions" + (f" (--limit {tr.limit})" if tr.limit else "")
            )
            for col in columns:
                if col.task == t:
                    row.cells[col.id] = _cell(col, tr, letter, run.complete, semantics)
    notes: list[str] = []
    for t in tasks:
        for letter, text in judge_notes[t].items():
            notes.append(f"{t}{f' ({letter})' if letter else ''}: {text}")
    if any(c.incomplete for r in rows.values() for c in r.cells.values()):
        notes.append(
            "* incomplete run: some turns were not generated or not judged (see the failure counts)."
        )
    return list(rows.values()), notes


def _reported_rows(columns: list[Column], rset: ReportedSet) -> list[Row]:
    col_ids = {c.id for c in columns}
    rows: list[Row] = []
    for r in rset.rows:
        cells = {
            cid: Cell(value=None if v is None else float(v), printed=v)
            for cid, v in r.values.items()
            if cid in col_ids
        }
        rows.append(
            Row(
                model=r.model,
                source="reported",
                origin=rset.name,
                cells=cells,
                judges=dict(rset.judges),
                params=r.params,
            )
        )
    return rows


def build_board(
    definition: Definition,
    runs: Sequence[RunInfo],
    *,
    reported: Sequence[ReportedSet] = (),
    allow_mixed: bool = False,
    tasks: Sequence[str] | None = None,
    title: str | None = None,
    notes: Sequence[str] = (),
    semantics: str = "robust",
) -> Board:
    """Assemble the table. Reported rows sit right under the run row of the same model (by alias).

    ``semantics``: ``robust`` (default) or ``official`` (columns with an official variant show the released
    code's numbers from the ``official`` block of results.json); a note says which."""
    if semantics not in SEMANTICS:
        raise ConfigError(f"--semantics: expected one of {', '.join(SEMANTICS)}, got {semantics!r}")
    columns = [c for c in definition.columns if tasks is None or c.task in tasks]
    if not columns:
        raise ConfigError(
            f"--tasks: none of {list(tasks or [])} is in {definition.name} ({definition.tasks})"
        )
    run_rows, run_notes = _run_rows(columns, runs, allow_mixed, semantics)
    run_notes += _semantics_notes(columns, runs, semantics)
    attached: dict[int, list[Row]] = {i: [] for i in range(len(run_rows))}
    unattached: list[Row] = []
    extra_notes: list[str] = []
    for rset in reported:
        for spec, rrow in zip(rset.rows, _reported_rows(columns, rset), strict=True):
            names = {spec.model, *spec.aliases}
            match = next((i for i, row in enumerate(run_rows) if row.model in names), None)
            (unattached if match is None else attached[match]).append(rrow)
        judges = "; ".join(f"{t}: {j}" for t, j in rset.judges.items())
        extra_notes.append(f"reported ({rset.name}): {rset.source}. Judges: {judges}.")
        extra_notes += [f"reported ({rset.name}): {n}" for n in rset.notes]
    ordered = [r for i, row in enumerate(run_rows) for r in (row, *attached[i])] + unattached
    if not ordered:
        raise ConfigError(
            "no row to show: no given run has a task of this leaderboard, and no --reported set"
        )
    return Board(
        title=title or definition.title,
        description=definition.description,
        columns=columns,
        rows=ordered,
        notes=[*run_notes, *extra_notes, *notes],
        semantics=semantics,
    )
