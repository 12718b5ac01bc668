"""Orchestration of a run: load → validate → rollout → judge → aggregate → run record."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.backends import load_backend
from harness.backends.base import ChatBackend, parse_kv_args, redact_args
from harness.backends.lmeval import require_target_key, validate_backend
from harness.cache import ResponseCache
from harness.chat_client import OPENAI_BASE_URL, ChatClient, needs_api_key
from harness.cli_common import RESPONSE_CACHE
from harness.completer import Completer, with_cache
from harness.errors import ConfigError
from harness.identity import model_identity
from harness.journal import Journal
from harness.jsonl import atomic_write_json
from harness.judging import judge, judge_calls_for, plan_calls
from harness.lineage import training_lineage, with_upstream
from harness.progress import console
from harness.records import build_records, finalize_run
from harness.redact import redact
from harness.rollout import pending_turns, rollout
from harness.runrecord import RUN_FILES, environment
from harness.stage import Stage
from harness.task import JudgeSettings, Session, Task, TaskData, get_task


@dataclass
class RunConfig:
    """Everything a ``run`` or ``judge`` invocation needs (flags, resolved)."""

    tasks: list[str]
    output_path: Path
    mode: str = "run"  # "run" (rollout + judge) or "judge" (existing responses)
    model: str | None = None
    model_args: str | None = None
    responses: Path | None = None
    data_paths: dict[str, Path] = field(default_factory=dict)
    limit: int | None = None
    gen_kwargs: dict[str, Any] = field(default_factory=dict)
    judge_model: str | None = None
    judge_base_url: str = OPENAI_BASE_URL
    judge_concurrency: int = 32
    judge_samples: int | None = None
    judge_temperature: float | None = None
    judge_max_tokens: int | None = None
    judge_max_retries: int = 6
    judge_timeout: float = 120.0
    judge_split_samples: bool = False
    seed: int = 1234
    shuffle_candidates: bool = False
    allow_duplicates: bool = False
    cache_path: Path | None = None
    no_cache: bool = False
    overwrite: bool = False
    dry_run: bool = False
    n_boot: int = 2000
    judge_batch: bool = False
    judge_batch_fallback: str = "batch"
    judge_batch_cancel: bool = False
    judge_batch_poll: float = 60.0
    inject_profile: Path | None = None  # run only: a knowledge base whose profiles go into the system context


def resolve_judge(task: Task, cfg: RunConfig) -> JudgeSettings:
    d = task.judge_defaults
    return JudgeSettings(
        model=cfg.judge_model or d.model,
        temperature=d.temperature if cfg.judge_temperature is None else cfg.judge_temperature,
        samples=d.samples if cfg.judge_samples is None else cfg.judge_samples,
        max_tokens=d.max_tokens if cfg.judge_max_tokens is None else cfg.judge_max_tokens,
    )


def _spec(cfg: RunConfig, tasks: Mapping[str, Task], datas: Mapping[str, TaskData],
          judges: Mapping[str, JudgeSettings], backend_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the configuration that changes numbers (the resume fingerprint)."""
    return {
        "mode": cfg.mode,
        "model": dict(backend_spec),
        "tasks": {
            name: {
                "version": t.version,
                "data_sha256": datas[name].sha256,
                "n_sessions": len(datas[name].sessions),
                "judge": asdict(judges[name]),
                "templates": t.template_hashes(),
            }
            for name, t in tasks.items()
        },
        "limit": cfg.limit,
        "gen_kwargs": cfg.gen_kwargs,
        "judge_base_url": cfg.judge_base_url.rstrip("/"),
        "judge_split_samples": cfg.judge_split_samples,
        "seed": cfg.seed,
        "shuffle_candidates": cfg.shuffle_candidates,
    }


def _cache(cfg: RunConfig) -> ResponseCache | None:
    return RESPONSE_CACHE.open_at(cfg.cache_path, no_cache=cfg.no_cache)


def load_tasks(cfg: RunConfig) -> tuple[dict[str, Task], dict[str, TaskData]]:
    tasks: dict[str, Task] = {}
    datas: dict[str, TaskData] = {}
    for name in cfg.tasks:
        task = get_task(
            name, shuffle_candidates=cfg.shuffle_candidates, seed=cfg.seed,
            allow_duplicates=cfg.allow_duplicates,
        )
        tasks[name] = task
        datas[name] = task.load(cfg.data_paths.get(name), limit=cfg.limit, responses=cfg.responses)
    return tasks, datas


def check_keys(cfg: RunConfig) -> str | None:
    """Fail before any work when an endpoint needs a key that is not set. Returns the judge key."""
    key = os.environ.get("OPENAI_API_KEY")
    if needs_api_key(cfg.judge_base_url) and not key:
        raise ConfigError(
            f"--judge_base_url {cfg.judge_base_url} needs an API key: set OPENAI_API_KEY "
            "(or point --judge_base_url at an OpenAI-compatible server)"
        )
    if cfg.mode == "run" and cfg.model is not None:
        require_target_key(cfg.model, cfg.model_args)  # the target's own key, never the judge's
    return key


def estimate_tokens(text: str) -> int:
    """Rough token count: ~4 ASCII characters or ~1 CJK character per token (cl100k-like)."""
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return ascii_chars // 4 + (len(text) - ascii_chars) + 1


def dry_run(cfg: RunConfig, tasks: Mapping[str, Task], datas: Mapping[str, TaskData],
            judges: Mapping[str, JudgeSettings]) -> dict[str, Any]:
    """Count judge calls and estimate tokens without any model or judge call."""
    assumed_reply = "x" * 4 * 250  # ~250 tokens per reply when replies are not known yet
    plan: dict[str, Any] = {}
    for name, task in tasks.items():
        js = judges[name]
        calls = prompt_tokens = 0
        for s in datas[name].sessions:
            replies = s.given_replies or [assumed_reply] * len(s.prompts)
            for call in judge_calls_for(task, s, replies):
                calls += 1
                prompt_tokens += sum(estimate_tokens(m["content"]) for m in call.messages)
        requests = calls * (js.samples if cfg.judge_split_samples else 1)
        plan[name] = {
            "sessions": len(datas[name].sessions),
            "turns": sum(len(s.prompts) for s in datas[name].sessions),
            "judge_model": js.model,
            "judgments": calls,
            "judge_requests": requests,
            "samples_per_judgment": js.samples,
            "est_prompt_tokens": prompt_tokens * (js.samples if cfg.judge_split_samples else 1),
            "est_completion_tokens": calls * js.samples * 150,
        }
    return plan


def execute(cfg: RunConfig) -> int:
    """Run (or resume) ``cfg``; returns the process exit code."""
    tasks, datas = load_tasks(cfg)  # validates every input file before anything else
    injected = None
    if cfg.inject_profile is not None:
        from ditto_train.generate.profile_context import inject_profiles

        injected = inject_profiles(cfg.inject_profile, datas)
    judges = {name: resolve_judge(t, cfg) for name, t in tasks.items()}
    if cfg.mode == "run":
        assert cfg.model is not None
        validate_backend(cfg.model, cfg.model_args)  # a typo must not leave a half-made run directory
        backend_spec: dict[str, Any] = {"model": cfg.model, "model_args": _public_model_args(cfg)}
    else:
        assert cfg.responses is not None
        backend_spec = {"responses": str(cfg.responses), "responses_sha256": datas[cfg.tasks[0]].sha256}
    if cfg.dry_run:
        plan = dry_run(cfg, tasks, datas, judges)
        from harness.report import print_plan

        print_plan(plan)
        from harness.batch_judge import price_lines
        from harness.progress import out_console

        for line in price_lines(plan):
            out_console.print(line, highlight=False)
        return 0
    api_key = check_keys(cfg)
    spec = _spec(cfg, tasks, datas, judges, backend_spec)
    if injected is not None:  # only when given, so runs without it keep their fingerprints
        spec["inject_profile"] = injected
    inputs, lineage = run_inputs(cfg, datas)
    run_dir = cfg.output_path
    stage = Stage(
        run_dir, cfg.mode, spec, inputs, flag="--output_path", owned=_run_owned,
        record_names=("run.json",), lineage=lineage,
        scope={"bootstrap_resamples": cfg.n_boot},  # another count re-aggregates, with no model or judge call
    )
    decision = stage.open(overwrite=cfg.overwrite)
    try:
        if decision == "done":
            return _already_done(run_dir)
        return _execute(cfg, tasks, datas, judges, spec, stage, decision == "resume", api_key)
    finally:
        stage.close()


def run_inputs(cfg: RunConfig, datas: Mapping[str, TaskData]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's inputs with their identities (the model by content, data files by sha256) and lineage."""
    inputs: dict[str, Any] = {}
    lineage: dict[str, Any] = {}
    if cfg.mode == "run":
        assert cfg.model is not None
        ident = with_upstream(model_identity(cfg.model, parse_kv_args(cfg.model_args, "--model_args")))
        inputs["model"] = ident
        trained = training_lineage(ident)
        if trained is not None:
            lineage["trained"] = trained
    else:
        assert cfg.responses is not None
        inputs["responses"] = with_upstream(
            {"kind": "file", "path": str(cfg.responses.resolve()), "id": f"sha256:{_first_sha(datas)}"}
        )
    for name, d in datas.items():
        sha = d.sha256 if isinstance(d.sha256, str) else json.dumps(d.sha256, sort_keys=True)
        inputs[f"data.{name}"] = {"kind": "data", "source": d.source, "id": f"sha256:{sha}"}
    return inputs, lineage


def _first_sha(datas: Mapping[str, TaskData]) -> str:
    sha = next(iter(datas.values())).sha256
    return sha if isinstance(sha, str) else json.dumps(sha, sort_keys=True)


def _run_owned(name: str) -> bool:
    """Names a run writes in its directory (besides the exports it records as outputs)."""
    return name in RUN_FILES or name in ("results.json", "ditto_review.jsonl", "fastchat")


def _already_done(run_dir: Path) -> int:
    """Same configuration, already complete: report the stored results, do no work."""
    console.print(f"[bold]{run_dir}[/]: this run is already complete (same fingerprint); nothing to do")
    try:
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return report_exit(results)


def _execute(
    cfg: RunConfig, tasks: Mapping[str, Task], datas: Mapping[str, TaskData],
    judges: Mapping[str, JudgeSettings], spec: dict[str, Any], stage: Stage, resuming: bool,
    api_key: str | None,
) -> int:
    run_dir = cfg.output_path
    stage.add_outputs(*RUN_FILES)
    sessions = {name: d.sessions for name, d in datas.items()}
    all_sessions = [s for ss in sessions.values() for s in ss]
    run_json: dict[str, Any] = {
        "ditto_bench_run": 1,
        "fingerprint": stage.fingerprint,
        "spec": spec,
        "config": _public_config(cfg),
        "data_sources": {name: d.source for name, d in datas.items()},
        "model_identity": stage.inputs.get("model"),
        "lineage": stage.lineage,
        "environment": stage.record.environment if stage.record else environment(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumed": resuming,
        "status": "running",
    }
    atomic_write_json(run_dir / "run.json", run_json)
    cache = _cache(cfg)
    journal = Journal(run_dir / "journal.jsonl")
    try:

        def factory() -> ChatBackend:
            assert cfg.model is not None
            backend = load_backend(
                cfg.model, cfg.model_args, seed=cfg.seed, cache=cache,
                identity=str((stage.inputs.get("model") or {}).get("id", "")),
            )
            console.print(f"[bold]rollout[/]: {cfg.model} on {pending_turns(all_sessions, journal)} turns")
            return backend

        def gen_kwargs_for(s: Session) -> dict[str, Any]:
            return {**tasks[s.task].default_gen_kwargs(), **s.gen_overrides, **cfg.gen_kwargs}

        roll = rollout(
            all_sessions, journal, factory, gen_kwargs_for, seed=cfg.seed,
            is_local=lambda b: not getattr(b, "is_api", True),
        )
        calls, done = plan_calls(tasks, sessions, journal)
        clients: dict[str, Completer] = {}
        by_model: dict[str, Completer] = {}
        for name in tasks:
            model = judges[name].model
            if model not in by_model:
                client = ChatClient(
                    base_url=cfg.judge_base_url, model=model, api_key=api_key,
                    concurrency=cfg.judge_concurrency, max_retries=cfg.judge_max_retries,
                    timeout=cfg.judge_timeout, split_samples=cfg.judge_split_samples,
                )
                by_model[model] = with_cache(client, cache, client.cache_scope)
            clients[name] = by_model[model]
        if calls:
            console.print(f"[bold]judging[/]: {len(calls)} calls ({done} already done)")
        if cfg.judge_batch or cfg.judge_batch_cancel:  # batch mode: all replies first, then batches
            from harness.batch_judge import BatchOptions, judge_in_batches

            judged = judge_in_batches(
                calls, clients, judges, journal, run_dir=run_dir, base_url=cfg.judge_base_url,
                api_key=api_key, options=BatchOptions(
                    poll_interval=cfg.judge_batch_poll, fallback=cfg.judge_batch_fallback,
                    cancel=cfg.judge_batch_cancel,
                ),
            )
        else:
            judged = judge(calls, clients, judges, journal, done)
    except BaseException as exc:
        # Leave an honest record: the journal keeps what finished; re-running the same command resumes.
        run_json["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        run_json["error"] = redact(f"{type(exc).__name__}: {exc}"[:500])
        atomic_write_json(run_dir / "run.json", run_json)
        stage.finish(run_json["status"], error=run_json["error"])
        raise
    finally:
        journal.close()
        if cache is not None:
            cache.close()
    records = build_records(tasks, sessions, journal)
    summary = finalize_run(run_dir, tasks, records, run_json, seed=cfg.seed, n_boot=cfg.n_boot)
    stage.add_outputs(*summary["files"])
    stage.finish("complete" if summary["complete"] else "incomplete")
    summary["this_invocation"] = {"rollout": roll, "judge": judged}
    return report_exit(summary)


def report_exit(summary: Mapping[str, Any]) -> int:
    from harness.report import print_results

    print_results(summary)
    gen_missing = summary["rollout"]["turns_missing"]
    judge_missing = summary["judging"]["calls_missing"]
    if gen_missing or judge_missing:
        console.print(
            f"[red]incomplete[/]: {gen_missing} turns without a reply and {judge_missing} judge calls that "
            "failed; re-run the same command to retry them"
        )
        return 1
    return 0


def _public_config(cfg: RunConfig) -> dict[str, Any]:
    out = asdict(cfg)
    for k, v in list(out.items()):
        if isinstance(v, Path):
            out[k] = str(v)
        elif isinstance(v, dict):
            out[k] = {kk: (str(vv) if isinstance(vv, Path) else vv) for kk, vv in v.items()}
    if out.get("model_args"):
        out["model_args"] = _public_model_args(cfg)
    return json.loads(json.dumps(out, default=str))


def _public_model_args(cfg: RunConfig) -> dict[str, Any]:
    """``--model_args`` as a dict with secret-looking values redacted (safe for run records and logs)."""
    return redact_args(parse_kv_args(cfg.model_args, "--model_args"))


def rescore(run_dir: Path, *, n_boot: int | None = None) -> int:
    """``ditto-bench score DIR``: re-aggregate from ``samples.jsonl`` without any model or judge call.

    Takes the directory's lock, so a run or judge still writing there refuses it (exit 2); the stage
    record's output hashes and status follow the rewritten files.
    """
    from harness.dirlock import DirLock
    from harness.records import rescore_records

    lock: AbstractContextManager[Any] = DirLock(run_dir, "score") if run_dir.is_dir() else _no_lock()
    with lock:
        summary = rescore_records(run_dir, n_boot=n_boot)
        _rescored_stage(run_dir, summary)
    return report_exit(summary)


def _rescored_stage(run_dir: Path, summary: Mapping[str, Any]) -> None:
    from harness.jsonl import atomic_write_json as write
    from harness.stage import STAGE_FILE, hash_output, now, read_stage_file

    rec = read_stage_file(run_dir / STAGE_FILE)
    if rec is None:
        return
    for name in summary.get("files", []):
        rec.outputs.setdefault(name, None)
    rec.outputs = {n: hash_output(run_dir / n) for n in sorted(rec.outputs) if (run_dir / n).exists()}
    rec.status = "complete" if summary.get("complete") else "incomplete"
    rec.finished = now()
    write(run_dir / STAGE_FILE, rec.to_dict())


@contextmanager
def _no_lock() -> Iterator[None]:
    yield
