"""What the run viewer shows, read from run directories (``run.json``, ``results.json``, ``samples.jsonl``)
and sweep directories (``sweep.json``).

Each session becomes two parts: a small *index* entry (ids, task, language, per-turn scores, verdict states,
failure count), which the page needs up front to filter, sort and compare, and a *detail* blob (the
conversation and every judge prompt, raw completion, parsed verdict and error), gzip-compressed and base64
encoded, which the page inflates only when the session is opened or searched. Nothing here rounds a number.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.schema import read_run_file, results_from
from leaderboards.runs import model_label

# Fields of a session record that the detail view does not need (``item`` repeats the whole test item).
_DROP = frozenset({"item", "answer_meta"})


@dataclass
class ResultRow:
    """One line of a run's results table."""

    task: str
    split: str
    metric: str
    value: float | None
    ci: list[float] | None
    n: int | None
    failures: dict[str, int]


@dataclass
class RunView:
    """One run directory as the viewer shows it."""

    path: Path
    label: str
    model: str
    mode: str
    complete: bool | None
    judge: dict[str, str]
    results: list[ResultRow]
    metrics: dict[str, list[str]]
    index: list[dict[str, Any]]
    blobs: list[str]
    notes: list[str] = field(default_factory=list)
    fingerprint: str | None = None


def judgment_state(j: Mapping[str, Any]) -> str:
    """The state of one turn's judgment: ``pending`` until judged, then the verdict's status
    (WikiRoleEval ``ok|no_verdict|api_error``; MT-Bench ``ok|parse_error|api_error``)."""
    if j.get("status") == "pending":
        return "pending"
    verdict = j.get("verdict")
    if isinstance(verdict, Mapping) and verdict.get("status"):
        return str(verdict["status"])
    if j.get("rating_status"):
        return str(j["rating_status"])
    return str(j.get("status") or "unknown")


def judgment_failed(j: Mapping[str, Any]) -> bool:
    """A judgment counts as a failure when its state is not ``ok`` or any sample failed to parse or call."""
    if judgment_state(j) != "ok" or j.get("error"):
        return True
    return any(isinstance(p, Mapping) and p.get("status") != "ok" for p in j.get("parsed") or [])


def _mean(xs: Iterable[float | None]) -> float | None:
    vals = [float(x) for x in xs if isinstance(x, int | float) and not isinstance(x, bool)]
    return sum(vals) / len(vals) if vals else None


def session_index(rec: Mapping[str, Any], metrics: list[str]) -> dict[str, Any]:
    """The index entry of one session record; ``ts[t][k]`` is turn t's score on ``metrics[k]``."""
    per_turn: list[list[float | None]] = []
    states: set[str] = set()
    n_fail = 0
    for t in rec.get("turns") or []:
        js = t.get("judgments") or {}
        row: list[float | None] = []
        for m in metrics:
            j = js.get(m)
            if j is None:
                row.append(None)
                continue
            states.add(judgment_state(j))
            if any(
                isinstance(p, Mapping) and p.get("status") == "parse_error" for p in j.get("parsed") or []
            ):
                states.add("parse_error")
            n_fail += judgment_failed(j)
            score = j.get("score")
            row.append(float(score) if isinstance(score, int | float) else None)
        gen = (t.get("generation") or {}).get("status")
        if gen not in (None, "ok", "given"):
            states.add(f"generation_{gen}")
            n_fail += 1
        per_turn.append(row)
    return {
        "id": str(rec.get("session_id")),
        "task": str(rec.get("task")),
        "lang": rec.get("lang"),
        "cat": rec.get("category"),
        "nt": len(per_turn),
        "sc": [_mean(r[k] for r in per_turn) for k in range(len(metrics))],
        "ts": per_turn,
        "st": sorted(states),
        "nf": n_fail,
    }


def encode_blob(obj: Any) -> str:
    """gzip (mtime 0, so the bytes are stable) + base64 of the compact JSON of ``obj``."""
    raw = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")


def decode_blob(blob: str) -> Any:
    """Inverse of :func:`encode_blob` (tests and tools)."""
    return json.loads(gzip.decompress(base64.b64decode(blob)).decode("utf-8"))


def _result_rows(task: str, res: Mapping[str, Any]) -> list[ResultRow]:
    """Rows from a task's ``results.json`` entry: WikiRoleEval's ``metrics[split][metric]`` or MT-Bench's
    ``metrics[split]`` (one metric, the rating), with CI, n and failure counts where recorded."""
    rows: list[ResultRow] = []
    metrics = res.get("metrics") or {}
    ci95 = res.get("ci95") or {}
    fails = res.get("failures") or {}
    for split, value in metrics.items():
        if isinstance(value, Mapping):
            for metric, v in value.items():
                f: Mapping[str, Any] = fails[metric] if isinstance(fails.get(metric), Mapping) else {}
                rows.append(
                    ResultRow(
                        task=task,
                        split=split,
                        metric=metric,
                        value=v if isinstance(v, int | float) else None,
                        ci=(ci95.get(split) or {}).get(metric),
                        n=((res.get("n_scored_turns") or {}).get(split) or {}).get(metric),
                        failures={
                            k: int(x) for k, x in f.items() if isinstance(x, int) and k != "turns_scored"
                        },
                    )
                )
        else:
            flat = {k: int(x) for k, x in fails.items() if isinstance(x, int)}
            n = (res.get("n_valid_by_turn") or {}).get(split, res.get("n_valid") if split == "all" else None)
            rows.append(
                ResultRow(
                    task=task,
                    split=split,
                    metric="rating",
                    value=value if isinstance(value, int | float) else None,
                    ci=ci95.get(split),
                    n=n,
                    failures=flat,
                )
            )
    for cat, vals in (res.get("by_category") or {}).items():
        if len(res.get("by_category") or {}) < 2:
            break
        for split, v in vals.items():
            rows.append(
                ResultRow(
                    task=task,
                    split=f"{cat} {split}",
                    metric="rating",
                    value=v if isinstance(v, int | float) else None,
                    ci=((res.get("ci95_by_category") or {}).get(cat) or {}).get(split),
                    n=None,
                    failures={},
                )
            )
    return rows


def _judge_labels(spec: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for task, t in (spec.get("tasks") or {}).items():
        j = t.get("judge") or {}
        out[task] = (
            f"{j.get('model')} (temperature {j.get('temperature')}, {j.get('samples')} sample(s), "
            f"max_tokens {j.get('max_tokens')})"
        )
    return out


def _metrics_of(rec: Mapping[str, Any], known: list[str]) -> None:
    for t in rec.get("turns") or []:
        for m in t.get("judgments") or {}:
            if m not in known:
                known.append(m)


def typed_records(samples: Path, run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``samples.jsonl`` read as typed records (:mod:`harness.schema`: version checked, a bad line is one
    error naming ``FILE:LINE``), with the verdicts derived again by the run's task (``Task.annotated``),
    never the ones written in the file: a hand-edited or stale verdict is not shown. A task this install
    cannot load (a user task whose folder is gone) is shown as recorded, without verdicts."""
    from harness.include import include_tasks
    from harness.schema import iter_records
    from harness.task import get_task

    cfg = run.get("config") if isinstance(run.get("config"), Mapping) else {}
    assert isinstance(cfg, Mapping)
    include_tasks([p for p in cfg.get("include_paths") or [] if Path(p).is_dir()])
    tasks: dict[str, Any] = {}
    out: list[dict[str, Any]] = []
    for rec in iter_records(samples):
        if rec.task not in tasks:
            try:
                tasks[rec.task] = get_task(
                    rec.task, shuffle_candidates=bool(cfg.get("shuffle_candidates")),
                    seed=int(cfg.get("seed", 1234)),
                )
            except ConfigError:
                tasks[rec.task] = None
        task = tasks[rec.task]
        out.append(task.annotated(rec.raw()) if task is not None else rec.raw())
    return out


def load_run_view(run_dir: Path, label: str | None = None) -> RunView:
    """Read one run directory. ``samples.jsonl`` and ``run.json`` are required; a run without
    ``results.json`` (not scored yet) is shown with its sessions and a note."""
    run_dir = Path(run_dir)
    run = read_run_file(run_dir / "run.json")
    spec: dict[str, Any] = run["spec"] if isinstance(run.get("spec"), dict) else {}
    samples = run_dir / "samples.jsonl"
    if not samples.exists():
        hint = (
            "the run has not finished: it writes its records at the end; re-run its command to resume"
            if (run_dir / "journal.jsonl").exists()
            else "not a run directory with records"
        )
        raise ConfigError(f"{run_dir}: samples.jsonl is missing ({hint})")
    notes: list[str] = []
    results_path = run_dir / "results.json"
    results = read_run_file(results_path) if results_path.exists() else None
    if results is None:
        notes.append("results.json is missing: the run has not been scored (run `ditto-bench score`)")
    else:  # typed (harness.schema): a newer or damaged file is one line naming it, never a traceback
        results = results_from(results, str(results_path)).model_dump(mode="json", exclude_unset=True)
    records = typed_records(samples, run)
    metrics: dict[str, list[str]] = {}
    for rec in records:
        _metrics_of(rec, metrics.setdefault(str(rec.get("task")), []))
    index: list[dict[str, Any]] = []
    blobs: list[str] = []
    for rec in records:
        index.append(session_index(rec, metrics[str(rec.get("task"))]))
        blobs.append(encode_blob({k: v for k, v in rec.items() if k not in _DROP}))
    rows: list[ResultRow] = []
    for task, res in ((results or {}).get("tasks") or {}).items():
        rows += _result_rows(task, res)
    model = model_label(spec) if spec else "unknown"
    return RunView(
        path=run_dir,
        label=label or model,
        model=model,
        mode=str(spec.get("mode", "run")),
        complete=None if results is None else bool(results.get("complete")),
        judge=_judge_labels(spec),
        results=rows,
        metrics=metrics,
        index=index,
        blobs=blobs,
        notes=notes,
        fingerprint=str(run["fingerprint"]) if run.get("fingerprint") else None,
    )


# ------------------------------------------------------------------------------------------------- sweeps


@dataclass
class SweepStage:
    """One stage of a sweep as the grid shows it; ``run`` is the index of its run in the page, if any."""

    name: str
    kind: str
    status: str
    directory: str
    params: dict[str, str]
    run: int | None = None


@dataclass
class SweepView:
    """A sweep directory: its name and stages."""

    path: Path
    name: str
    stages: list[SweepStage]


def is_sweep_dir(path: Path) -> bool:
    """A sweep directory holds ``sweep.json``."""
    return (Path(path) / "sweep.json").is_file()


def read_sweep(path: Path) -> tuple[SweepView, list[Path]]:
    """Read ``sweep.json`` (the shape is in docs/viewer.md): the grid, and the directories of its stages that
    are run directories (to be loaded as runs of the page).

    Accepted: ``{"name"?, "stages": [STAGE, ...] | {NAME: STAGE}}`` where a STAGE has ``dir`` (or
    ``directory`` / ``output_dir`` / ``output_path``; relative to the sweep directory), and optionally
    ``name`` (or ``id``), ``kind``, ``status`` and ``params`` (or ``axes`` / ``overrides``: a flat
    mapping)."""
    path = Path(path)
    doc = read_run_file(path / "sweep.json")
    raw = doc.get("stages")
    items: list[Mapping[str, Any]]
    if isinstance(raw, Mapping):
        items = [{"name": k, **v} for k, v in raw.items() if isinstance(v, Mapping)]
    elif isinstance(raw, list):
        items = [s for s in raw if isinstance(s, Mapping)]
    else:
        raise ConfigError(f"{path / 'sweep.json'}: 'stages' must be a list or an object of stages")
    stages: list[SweepStage] = []
    run_dirs: list[Path] = []
    for i, s in enumerate(items):
        d = next((s[k] for k in ("dir", "directory", "output_dir", "output_path") if s.get(k)), None)
        if not isinstance(d, str):
            raise ConfigError(f"{path / 'sweep.json'}: stages[{i}] has no 'dir'")
        params: Mapping[str, Any] = next(
            (s[k] for k in ("params", "axes", "overrides") if isinstance(s.get(k), Mapping)), {}
        )
        stage = SweepStage(
            name=str(s.get("name") or s.get("id") or f"stage {i}"),
            kind=str(s.get("kind") or ""),
            status=str(s.get("status") or ""),
            directory=d,
            params={str(k): json.dumps(v) if not isinstance(v, str) else v for k, v in params.items()},
        )
        full = Path(d) if Path(d).is_absolute() else path / d
        if (full / "samples.jsonl").is_file() and (full / "run.json").is_file():
            stage.run = len(run_dirs)
            run_dirs.append(full)
        stages.append(stage)
    return SweepView(path=path, name=str(doc.get("name") or path.name), stages=stages), run_dirs
