"""Per-session records (``samples.jsonl``), aggregation and the final run files."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.journal import Journal
from harness.jsonl import atomic_write_json, atomic_write_jsonl
from harness.rollout import conversation_with_replies, replies_so_far
from harness.schema import (
    RECORD_SCHEMA_VERSION,
    RESULTS_SCHEMA_VERSION,
    SessionRecord,
    load_records,
    session_record,
)
from harness.task import Session, Task, get_task


def _generation(journal: Journal, s: Session, turn: int) -> dict[str, Any]:
    if s.given_replies is not None:
        return {"status": "given"}
    g = journal.gens.get((s.task, s.session_id, turn))
    if g is None:
        return {"status": "pending"}
    keys = (
        "status", "error", "sent_messages", "system_merged", "trimmed_turns", "truncated", "cached",
        "gen_kwargs",
    )
    out = {k: g.get(k) for k in keys}
    if "raw_text" in g:  # the backend's text before the task's post-processing (e.g. MT-Bench's strip)
        out["raw_text"] = g["raw_text"]
    if "max_gen_toks_clamped" in g:  # lowered to what the model's context left after the prompt
        out["max_gen_toks_clamped"] = g["max_gen_toks_clamped"]
    return out


def build_records(
    tasks: Mapping[str, Task], sessions: Mapping[str, Sequence[Session]], journal: Journal
) -> dict[str, list[dict[str, Any]]]:
    """Assemble one record per session from the journal (messages sent, raw judge completions, states)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, task in tasks.items():
        recs: list[dict[str, Any]] = []
        for s in sessions[name]:
            replies = replies_so_far(journal, s)
            msgs = conversation_with_replies(s, replies)
            turns: list[dict[str, Any]] = []
            for t in range(len(s.prompts)):
                judgments: dict[str, Any] = {}
                if t < len(replies):
                    for call in task.judge_calls(s, msgs, t):
                        e = journal.judges.get((name, s.session_id, t, call.metric))
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
                turns.append({"turn": t, "generation": _generation(journal, s, t), "judgments": judgments})
            rec: dict[str, Any] = {
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
            recs.append(rec)
        out[name] = recs
    return out


def _usage(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    u = {"judge_calls": 0, "cached_calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
    for r in records:
        for t in r["turns"]:
            for j in t["judgments"].values():
                if j.get("cached"):
                    u["cached_calls"] += 1
                usage = j.get("usage") or {}
                u["judge_calls"] += int(usage.get("calls", 0))
                u["prompt_tokens"] += int(usage.get("prompt_tokens", 0))
                u["completion_tokens"] += int(usage.get("completion_tokens", 0))
    return u


def _progress_counts(records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
    roll = {"turns_total": 0, "turns_ok": 0, "turns_error": 0, "turns_pending": 0}
    jud = {"calls_total": 0, "calls_ok": 0, "calls_api_error": 0, "calls_pending": 0}
    for r in records:
        for t in r["turns"]:
            roll["turns_total"] += 1
            status = t["generation"]["status"]
            key = {"ok": "turns_ok", "given": "turns_ok", "error": "turns_error"}.get(status, "turns_pending")
            roll[key] += 1
            for j in t["judgments"].values():
                jud["calls_total"] += 1
                jkey = {"ok": "calls_ok", "api_error": "calls_api_error"}.get(j["status"], "calls_pending")
                jud[jkey] += 1
    roll["turns_missing"] = roll["turns_error"] + roll["turns_pending"]
    jud["calls_missing"] = jud["calls_api_error"] + jud["calls_pending"]
    return roll, jud


def _merge(a: dict[str, int], b: Mapping[str, int]) -> None:
    for k, v in b.items():
        a[k] = a.get(k, 0) + v


def _typed(records: Sequence[Mapping[str, Any] | SessionRecord]) -> list[dict[str, Any]]:
    """Validate records against the schema (harness/schema.py); plain dicts in the current version."""
    out = []
    for r in records:
        rec = r if isinstance(r, SessionRecord) else session_record(r)
        raw = rec.raw()
        raw.pop("schema_version", None)
        out.append({"schema_version": RECORD_SCHEMA_VERSION, **raw})
    return out


def finalize_run(
    run_dir: Path,
    tasks: Mapping[str, Task],
    records: Mapping[str, Sequence[Mapping[str, Any] | SessionRecord]],
    run_json: dict[str, Any],
    *,
    seed: int,
    n_boot: int,
) -> dict[str, Any]:
    """Aggregate, then write samples.jsonl, results.json, task exports and the final run.json.

    Records are validated against :class:`harness.schema.SessionRecord` and never modified: verdicts and
    metrics are derived (``Task.aggregate``, ``Task.annotated``)."""
    plain = {name: _typed(records[name]) for name in tasks}
    results: dict[str, Any] = {"schema_version": RESULTS_SCHEMA_VERSION, "tasks": {}}
    roll_all: dict[str, int] = {}
    jud_all: dict[str, int] = {}
    for name, task in tasks.items():
        recs = plain[name]
        res = task.aggregate(recs, seed=seed, n_boot=n_boot)
        res["usage"] = _usage(recs)
        roll, jud = _progress_counts(recs)
        res["rollout"], res["judging"] = roll, jud
        res["version"] = task.version
        results["tasks"][name] = res
        _merge(roll_all, roll)
        _merge(jud_all, jud)
    results["rollout"], results["judging"] = roll_all, jud_all
    complete = roll_all["turns_missing"] == 0 and jud_all["calls_missing"] == 0
    results["complete"] = complete
    results["model"] = run_json["spec"].get("model")
    atomic_write_jsonl(
        run_dir / "samples.jsonl", [tasks[name].annotated(r) for name in tasks for r in plain[name]]
    )
    exports: list[str] = []
    for name, task in tasks.items():
        exports += task.export(run_dir, plain[name], results["tasks"][name], spec=run_json["spec"])
    results["files"] = ["run.json", "samples.jsonl", "results.json", *exports]
    atomic_write_json(run_dir / "results.json", results)
    run_json = dict(run_json)
    run_json["status"] = "complete" if complete else "incomplete"
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
