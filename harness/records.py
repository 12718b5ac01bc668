"""Per-session records (``samples.jsonl``), aggregation and the final run files."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.journal import Journal, messages_hash
from harness.jsonl import atomic_open, atomic_write_json
from harness.rollout import conversation_with_replies, sent_messages
from harness.schema import (
    DERIVED_JUDGMENT_FIELDS,
    RECORD_SCHEMA_VERSION,
    RESULTS_SCHEMA_VERSION,
    SessionRecord,
    load_records,
)
from harness.schema import session_record as typed_record
from harness.task import Session, Task, get_task


def _generation(
    journal: Journal, s: Session, turn: int, replies: Sequence[str], entry: dict[str, Any] | None = None
) -> dict[str, Any]:
    if s.given_replies is not None:
        return {"status": "given"}
    key = (s.task, s.session_id, turn)
    if entry is None and key not in journal.gens:
        return {"status": "pending"}
    g = entry if entry is not None else journal.gens[key]
    out: dict[str, Any] = {"status": g.get("status"), "error": g.get("error")}
    out["sent_messages"] = sent_messages(g, s, replies[:turn])
    for k in ("system_merged", "trimmed_turns", "truncated", "cached", "gen_kwargs"):
        out[k] = g.get(k)
    if "raw_text" in g:  # the backend's text before the task's post-processing (e.g. MT-Bench's strip)
        out["raw_text"] = g["raw_text"]
    if "max_gen_toks_clamped" in g:  # lowered to what the model's context left after the prompt
        out["max_gen_toks_clamped"] = g["max_gen_toks_clamped"]
    return out


def build_record(task: Task, s: Session, journal: Journal) -> dict[str, Any]:
    """One session's record from the journal (messages sent, raw judge completions, states)."""
    name = s.task
    gens: list[dict[str, Any] | None] = [None] * len(s.prompts)
    if s.given_replies is not None:
        replies = list(s.given_replies)
    else:
        replies = []
        for t in range(len(s.prompts)):
            key = (name, s.session_id, t)
            if key in journal.gens:
                gens[t] = journal.gens[key]  # each entry read back once
            if len(replies) == t and journal.gen_ok(key):
                replies.append(gens[t]["text"])  # type: ignore[index]
    msgs = conversation_with_replies(s, replies)
    turns: list[dict[str, Any]] = []
    for t in range(len(s.prompts)):
        judgments: dict[str, Any] = {}
        if t < len(replies):
            for call in task.judge_calls(s, msgs, t):
                # Only a verdict on exactly these messages counts (a stale one is "pending", re-judged).
                e = journal.judgment((name, s.session_id, t, call.metric), messages_hash(call.messages))
                judgments[call.metric] = {
                    "status": e["status"] if e else "pending",
                    "template": call.template,
                    "prompt": call.messages,
                    "completions": e["texts"] if e else [],
                    "error": e.get("error") if e else None,
                    "usage": e.get("usage") if e else None,
                    "cached": e.get("cached") if e else None,
                    "attempts": e.get("attempts") if e else None,
                }
        gen = _generation(journal, s, t, replies, gens[t])
        turns.append({"turn": t, "generation": gen, "judgments": judgments})
    return {
        "task": name,
        "session_id": s.session_id,
        "index": s.index,
        "lang": s.lang,
        "system": s.system,
        "prompts": s.prompts,
        **task.session_extra(s),
        "messages": msgs,
        "turns": turns,
    }


def iter_records(
    tasks: Mapping[str, Task], sessions: Mapping[str, Sequence[Session]], journal: Journal
) -> Iterator[dict[str, Any]]:
    """Every session's record, task by task, built one at a time."""
    for name, task in tasks.items():
        for s in sessions[name]:
            yield build_record(task, s, journal)


def build_records(
    tasks: Mapping[str, Task], sessions: Mapping[str, Sequence[Session]], journal: Journal
) -> dict[str, list[dict[str, Any]]]:
    """All records in memory, by task (small runs and tests; runs stream them with :func:`iter_records`)."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in tasks}
    for rec in iter_records(tasks, sessions, journal):
        out[rec["task"]].append(rec)
    return out


def _typed(rec: Mapping[str, Any] | SessionRecord) -> dict[str, Any]:
    """Validate one record against the schema (harness/schema.py); a plain dict in the current version."""
    typed = rec if isinstance(rec, SessionRecord) else typed_record(rec)
    raw = typed.raw()
    raw.pop("schema_version", None)
    return {"schema_version": RECORD_SCHEMA_VERSION, **raw}


def _line(task: Task, rec: Mapping[str, Any] | SessionRecord) -> bytes:
    """One ``samples.jsonl`` line: the validated record with its derived verdicts shown for readers."""
    return (json.dumps(task.annotated(_typed(rec)), ensure_ascii=False) + "\n").encode("utf-8")


class RecordWriter:
    """Writes each session's record as soon as the session is complete, then ``samples.jsonl`` in order.

    During the run, records go to ``.samples.partial.jsonl`` in the order sessions complete (validated, with
    their derived verdicts shown); only (offset, length) per session is kept. :meth:`finish` writes
    ``samples.jsonl`` atomically in task and data order, copying the lines written and building the rest
    (sessions stopped early, or all of them when nothing completed during the run), then removes the
    partial file.
    """

    PARTIAL = ".samples.partial.jsonl"

    def __init__(self, run_dir: Path, tasks: Mapping[str, Task], journal: Journal) -> None:
        self.run_dir, self.tasks, self.journal = run_dir, tasks, journal
        self.path = run_dir / self.PARTIAL
        self.path.unlink(missing_ok=True)  # our own leftover from a killed run: rebuilt from the journal
        self._fh: Any = None
        self._end = 0
        self._where: dict[tuple[str, str], tuple[int, int]] = {}

    def write(self, s: Session) -> None:
        task = self.tasks[s.task]
        line = _line(task, build_record(task, s, self.journal))
        if self._fh is None:
            self._fh = self.path.open("ab")
        self._fh.write(line)
        self._where[(s.task, s.session_id)] = (self._end, len(line))
        self._end += len(line)

    def finish(self, sessions: Mapping[str, Sequence[Session]]) -> Path:
        target = self.run_dir / "samples.jsonl"
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        reader = self.path.open("rb") if self._where else None
        try:
            with atomic_open(target) as out:
                for name in self.tasks:
                    for s in sessions[name]:
                        where = self._where.get((name, s.session_id))
                        if where is not None and reader is not None:
                            reader.seek(where[0])
                            out.write(reader.read(where[1]))
                        else:
                            task = self.tasks[name]
                            out.write(_line(task, build_record(task, s, self.journal)))
        finally:
            if reader is not None:
                reader.close()
            self.path.unlink(missing_ok=True)
        return target

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.path.unlink(missing_ok=True)


class RecordStream(Sequence[dict[str, Any]]):
    """The records of one task in ``samples.jsonl``, read back from the file on every pass.

    What aggregation and exports are given instead of a list: each iteration parses the file line by line,
    so no pass holds more than one record. The derived fields the file shows (``parsed``, ``verdict``,
    ``score``, ``rating_status``) are dropped, as :mod:`harness.schema` drops them on reading: the tasks
    derive them again from the completions. The lines are ours, validated when written.
    """

    def __init__(self, path: Path, task: str) -> None:
        self.path, self.task = path, task
        self._len: int | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        marker = json.dumps(self.task, ensure_ascii=False)
        with self.path.open("rb") as fh:
            for raw in fh:
                if marker.encode("utf-8") not in raw:  # cheap pre-filter; the parsed field decides
                    continue
                rec = json.loads(raw)
                if rec.get("task") == self.task:
                    for turn in rec["turns"]:
                        for name, j in turn["judgments"].items():
                            if DERIVED_JUDGMENT_FIELDS & j.keys():
                                turn["judgments"][name] = {
                                    k: v for k, v in j.items() if k not in DERIVED_JUDGMENT_FIELDS
                                }
                    yield rec

    def __len__(self) -> int:
        if self._len is None:
            self._len = sum(1 for _ in self)
        return self._len

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return list(self)[index]
        for i, rec in enumerate(self):
            if i == index:
                return rec
        raise IndexError(index)


Counts = dict[str, int]


def _counts(records: Iterable[Mapping[str, Any]]) -> tuple[Counts, tuple[Counts, Counts]]:
    """Judge usage, rollout progress and judging progress, in one pass over the records."""
    u = {"judge_calls": 0, "cached_calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
    roll = {"turns_total": 0, "turns_ok": 0, "turns_error": 0, "turns_pending": 0}
    jud = {"calls_total": 0, "calls_ok": 0, "calls_api_error": 0, "calls_pending": 0}
    gen_keys = {"ok": "turns_ok", "given": "turns_ok", "error": "turns_error"}
    judge_keys = {"ok": "calls_ok", "api_error": "calls_api_error"}
    for r in records:
        for t in r["turns"]:
            roll["turns_total"] += 1
            roll[gen_keys.get(t["generation"]["status"], "turns_pending")] += 1
            for j in t["judgments"].values():
                if j.get("cached"):
                    u["cached_calls"] += 1
                usage = j.get("usage") or {}
                u["judge_calls"] += int(usage.get("calls", 0))
                u["prompt_tokens"] += int(usage.get("prompt_tokens", 0))
                u["completion_tokens"] += int(usage.get("completion_tokens", 0))
                jud["calls_total"] += 1
                jud[judge_keys.get(j["status"], "calls_pending")] += 1
    roll["turns_missing"] = roll["turns_error"] + roll["turns_pending"]
    jud["calls_missing"] = jud["calls_api_error"] + jud["calls_pending"]
    return u, (roll, jud)


def _merge(a: dict[str, int], b: Mapping[str, int]) -> None:
    for k, v in b.items():
        a[k] = a.get(k, 0) + v


def write_samples(
    path: Path, tasks: Mapping[str, Task], records: Iterable[Mapping[str, Any] | SessionRecord]
) -> None:
    """Validate each record, show its derived verdicts and write it, one line at a time, atomically."""
    with atomic_open(path) as out:
        for rec in records:
            task_name = rec.task if isinstance(rec, SessionRecord) else rec["task"]
            out.write(_line(tasks[task_name], rec))


def finalize_run(
    run_dir: Path,
    tasks: Mapping[str, Task],
    records: Mapping[str, Iterable[Mapping[str, Any] | SessionRecord]]
    | Iterable[Mapping[str, Any] | SessionRecord]
    | None,
    run_json: dict[str, Any],
    *,
    seed: int,
    n_boot: int,
) -> dict[str, Any]:
    """Aggregate, then write samples.jsonl, results.json, task exports and the final run.json.

    ``records`` is a stream of records in task order (or a mapping task → records). They are annotated and
    written to ``samples.jsonl`` as they come; ``None`` means :class:`RecordWriter` already wrote it.
    Aggregation and exports then read that file back, one record at a time (:class:`RecordStream`), so
    memory does not grow with the number of sessions. Records are validated against
    :class:`harness.schema.SessionRecord` and never modified: verdicts and metrics are derived
    (``Task.aggregate``, ``Task.annotated``).
    """
    samples = run_dir / "samples.jsonl"
    if isinstance(records, Mapping):
        by_task = records
        write_samples(samples, tasks, (r for name in tasks for r in by_task.get(name, [])))
    elif records is not None:
        write_samples(samples, tasks, records)
    results: dict[str, Any] = {"schema_version": RESULTS_SCHEMA_VERSION, "tasks": {}}
    roll_all: dict[str, int] = {}
    jud_all: dict[str, int] = {}
    for name, task in tasks.items():
        recs = RecordStream(samples, name)
        res = task.aggregate(recs, seed=seed, n_boot=n_boot)
        res["usage"], (roll, jud) = _counts(recs)
        res["rollout"], res["judging"] = roll, jud
        res["version"] = task.version
        results["tasks"][name] = res
        _merge(roll_all, roll)
        _merge(jud_all, jud)
    results["rollout"], results["judging"] = roll_all, jud_all
    complete = roll_all["turns_missing"] == 0 and jud_all["calls_missing"] == 0
    results["complete"] = complete
    results["model"] = run_json["spec"].get("model")
    exports: list[str] = []
    for name, task in tasks.items():
        recs = RecordStream(samples, name)
        exports += task.export(run_dir, recs, results["tasks"][name], spec=run_json["spec"])
    results["files"] = ["run.json", "samples.jsonl", "results.json", *exports]
    atomic_write_json(run_dir / "results.json", results)
    run_json = dict(run_json)
    run_json["status"] = "complete" if complete and not run_json.get("stopped") else "incomplete"
    run_json["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    run_json["files"] = results["files"]
    atomic_write_json(run_dir / "run.json", run_json)
    return results


def rescore_records(run_dir: Path, *, n_boot: int | None = None) -> dict[str, Any]:
    """Re-parse and re-aggregate a run from its own files (no model or judge call)."""
    run_path, samples_path = run_dir / "run.json", run_dir / "samples.jsonl"
    for p in (run_path, samples_path):
        if not p.exists():
            raise ConfigError(f"{run_dir}: not a finished run directory ({p.name} is missing)")
    run_json = json.loads(run_path.read_text(encoding="utf-8"))
    cfg = run_json.get("config", {})
    tasks = {
        name: get_task(
            name, shuffle_candidates=bool(cfg.get("shuffle_candidates")), seed=int(cfg.get("seed", 1234))
        )
        for name in run_json["spec"]["tasks"]
    }
    records: dict[str, list[SessionRecord]] = {name: [] for name in tasks}
    for name, recs in load_records(samples_path).items():
        if name not in tasks:
            raise ConfigError(f"{samples_path}: records of task {name!r}, which {run_path} does not list")
        records[name] = recs
    return finalize_run(
        run_dir, tasks, records, run_json,
        seed=int(cfg.get("seed", 1234)), n_boot=int(n_boot or cfg.get("n_boot", 2000)),
    )
