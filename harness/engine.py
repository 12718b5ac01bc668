"""Orchestration of a run: load → validate → rollout → judge → aggregate → run record."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.backends import load_backend, validate_backend
from harness.backends.base import ChatBackend, parse_kv_args, redact_args
from harness.backends.lmeval import require_target_key
from harness.backends.mock import MockJudge, is_mock
from harness.breaker import DEFAULT_MAX_CONSECUTIVE
from harness.cache import ResponseCache
from harness.chat_client import OPENAI_BASE_URL, ChatClient, needs_api_key
from harness.cli_common import RESPONSE_CACHE
from harness.completer import Completer, with_cache
from harness.dirlock import DirLock
from harness.errors import ConfigError
from harness.identity import model_identity
from harness.journal import Journal
from harness.jsonl import atomic_write_json
from harness.judging import judge_calls_for, plan_calls
from harness.lineage import training_lineage, with_upstream
from harness.pipeline import run_phases
from harness.progress import console
from harness.records import RecordStream, RecordWriter, finalize_run
from harness.redact import redact
from harness.rollout import pending_turns, rollout
from harness.runlog import LOG_FILE, attach_run_log
from harness.runrecord import RUN_FILES, environment
from harness.stage import Stage
from harness.task import JudgeSettings, Session, Task, TaskData, get_task
from harness.unscored import DEFAULT_MAX_UNSCORED


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
    limit: int | float | None = None
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
    preflight: bool = True
    max_unscored: float = DEFAULT_MAX_UNSCORED
    predict_only: bool = False  # roll out and record; `ditto-bench judge DIR` judges later
    judge_existing: bool = False  # `judge DIR`: judge settings of a predict-only run may still change
    model_name: str | None = None  # the leaderboard name (run.json "model_name")
    include_paths: list[str] = field(default_factory=list)
    wandb_args: str | None = None
    max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE
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
    share = isinstance(cfg.limit, float)
    for name in cfg.tasks:
        task = get_task(
            name, shuffle_candidates=cfg.shuffle_candidates, seed=cfg.seed,
            allow_duplicates=cfg.allow_duplicates,
        )
        tasks[name] = task
        limit = None if share else cfg.limit
        data = task.load(cfg.data_paths.get(name), limit=limit, responses=cfg.responses)  # type: ignore[arg-type]
        if share:  # a share of the sessions, as lm-eval: the first ceil(share * n), deterministic
            assert isinstance(cfg.limit, float)
            data.sessions = data.sessions[: max(1, math.ceil(cfg.limit * len(data.sessions)))]
        datas[name] = data
    return tasks, datas


def check_keys(cfg: RunConfig) -> str | None:
    """Fail before any work when an endpoint needs a key that is not set. Returns the judge key."""
    key = os.environ.get("OPENAI_API_KEY")
    judge_needed = not is_mock(cfg.judge_model) and not cfg.predict_only
    if needs_api_key(cfg.judge_base_url) and not key and judge_needed:
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


def check_ranges(cfg: RunConfig) -> None:
    """Numeric settings a run cannot work with, refused before anything is loaded or created.

    ``judge_concurrency=0`` would leave the judge phase waiting forever for a free slot.
    """
    from harness.validate import at_least

    at_least(cfg.judge_concurrency, 1, "--judge_concurrency")
    at_least(cfg.judge_samples, 1, "--judge_samples")
    at_least(cfg.judge_max_tokens, 1, "--judge_max_tokens")
    at_least(cfg.judge_max_retries, 0, "--judge_max_retries")
    at_least(cfg.judge_temperature, 0, "--judge_temperature")
    at_least(cfg.judge_timeout, 0, "--judge_timeout", strict=True)
    at_least(cfg.judge_batch_poll, 0, "--judge_batch_poll", strict=True)
    at_least(cfg.n_boot, 1, "--bootstrap_resamples")
    if not 0 <= cfg.max_unscored <= 1:
        raise ConfigError(f"--max_unscored must be a share between 0 and 1, got {cfg.max_unscored:g}")


def with_api_root(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the judge URL as its API root: ``…/v1`` and ``…/v1/chat/completions`` are one rule for
    every caller (``calibrate`` passed the endpoint form through, and every judge call then got a 404)."""
    if _judge_is_mock(cfg):
        return cfg
    from harness.endpoint import api_root

    return replace(cfg, judge_base_url=api_root(cfg.judge_base_url, "--judge_base_url"))


def execute(cfg: RunConfig) -> int:
    """Run (or resume) ``cfg``; returns the process exit code."""
    check_ranges(cfg)  # every caller (run, judge, calibrate, scripts), not only the run CLI's flags
    cfg = with_api_root(cfg)
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
    # A directory another process holds is refused before the preflight requests and the hashing of the
    # model's weights (the lock itself is taken when the stage opens, below).
    DirLock(cfg.output_path, cfg.mode).check_free()
    api_key = check_keys(cfg)
    if cfg.preflight:
        run_preflight(cfg, judges, api_key)  # a no-op under $DITTO_BENCH_NO_PREFLIGHT
    spec = _spec(cfg, tasks, datas, judges, backend_spec)
    if injected is not None:  # only when given, so runs without it keep their fingerprints
        spec["inject_profile"] = injected
    inputs, lineage = run_inputs(cfg, datas)
    run_dir = cfg.output_path
    if cfg.judge_existing:
        from harness.predict import adopt_judge_settings

        adopt_judge_settings(run_dir, spec)
    stage = Stage(
        run_dir, cfg.mode, spec, inputs, flag="--output_path", owned=_run_owned,
        record_names=("run.json",), lineage=lineage,
        scope={"bootstrap_resamples": cfg.n_boot},  # another count re-aggregates, with no model or judge call
    )
    decision = stage.open(overwrite=cfg.overwrite)
    try:
        if decision == "done":
            return _already_done(run_dir, cfg.max_unscored)
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
    return name in RUN_FILES or name in ("results.json", "ditto_review.jsonl", "fastchat", LOG_FILE)


def _already_done(run_dir: Path, max_unscored: float = DEFAULT_MAX_UNSCORED) -> int:
    """Same configuration, already complete: report the stored results, do no work."""
    console.print(f"[bold]{run_dir}[/]: this run is already complete (same fingerprint); nothing to do")
    try:
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return report_exit(results, max_unscored=max_unscored)


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
        "model_name": cfg.model_name or None,
        "mock": mock_parts(cfg, judges),
        "predict_only": cfg.predict_only,
    }
    atomic_write_json(run_dir / "run.json", run_json)
    cache = _cache(cfg)
    journal = Journal(run_dir / "journal.jsonl")
    writer = RecordWriter(run_dir, tasks, journal)  # each session's record as soon as it is complete
    stage.add_outputs(LOG_FILE)
    run_log = attach_run_log(run_dir)
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

        clients: dict[str, Completer] = {}
        by_model: dict[str, Completer] = {}
        for name in tasks:
            model = judges[name].model
            if model not in by_model and is_mock(model):
                by_model[model] = MockJudge()  # scripted, never cached
            elif model not in by_model:
                client = ChatClient(
                    base_url=cfg.judge_base_url, model=model, api_key=api_key,
                    concurrency=cfg.judge_concurrency, max_retries=cfg.judge_max_retries,
                    timeout=cfg.judge_timeout, split_samples=cfg.judge_split_samples,
                )
                by_model[model] = with_cache(client, cache, client.cache_scope)
            clients[name] = by_model[model]
        is_local = lambda b: not getattr(b, "is_api", True)  # noqa: E731
        if cfg.predict_only or cfg.judge_batch or cfg.judge_batch_cancel:
            # Replies first: predict-only stops there; batch mode then sends the judge calls in batches.
            roll = rollout(all_sessions, journal, factory, gen_kwargs_for, seed=cfg.seed, is_local=is_local)
            judged: dict[str, int] = {"ok": 0, "api_error": 0}
            if not cfg.predict_only:
                from harness.batch_judge import BatchJudge, BatchOptions

                calls, done = plan_calls(tasks, sessions, journal)
                if calls:
                    console.print(f"[bold]judging[/]: {len(calls)} calls ({done} already done)")
                judged = BatchJudge(
                    clients=clients, settings=judges, journal=journal, run_dir=run_dir,
                    base_url=cfg.judge_base_url, api_key=api_key, options=BatchOptions(
                        poll_interval=cfg.judge_batch_poll, fallback=cfg.judge_batch_fallback,
                        cancel=cfg.judge_batch_cancel,
                    ),
                ).judge(calls)
        else:  # rollout and judging at once (harness/pipeline.py)
            phases = run_phases(
                tasks=tasks, sessions=all_sessions, journal=journal, clients=clients, judges=judges,
                judge_concurrency=cfg.judge_concurrency,
                backend_factory=factory if cfg.mode == "run" else None, gen_kwargs_for=gen_kwargs_for,
                is_local=is_local, seed=cfg.seed, max_consecutive=cfg.max_consecutive_failures,
                on_session_complete=writer.write,
            )
            roll, judged = phases.rollout, phases.judge
            if phases.backend_spec is not None:
                run_json["backend"] = phases.backend_spec  # as loaded: e.g. hf's batch_size default
            if phases.stopped:
                run_json["stopped"] = phases.stopped
    except BaseException as exc:
        # Leave an honest record: the journal keeps what finished; re-running the same command resumes.
        run_json["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        run_json["error"] = redact(f"{type(exc).__name__}: {exc}"[:500])
        atomic_write_json(run_dir / "run.json", run_json)
        writer.close()
        stage.finish(run_json["status"], error=run_json["error"])
        raise
    finally:
        journal.close()
        run_log.close()
        if cache is not None:
            cache.close()
    writer.finish(sessions)  # samples.jsonl, in data order; nothing holds all records
    journal.close()  # the reader writer.finish reopened
    summary = finalize_run(run_dir, tasks, None, run_json, seed=cfg.seed, n_boot=cfg.n_boot)
    stage.add_outputs(*summary["files"])
    stage.finish("complete" if summary["complete"] else "incomplete")
    summary["this_invocation"] = {"rollout": roll, "judge": judged}
    if run_json["mock"]:  # scripted replies or verdicts: said in results.json and in every table title
        summary["mock"] = run_json["mock"]
        mark_results(run_dir, {"mock": run_json["mock"]})
    if cfg.wandb_args is not None:
        from harness.wandb_log import log_to_wandb

        log_to_wandb(cfg.wandb_args, run_dir, summary, run_json)
    # Failure causes are read back from samples.jsonl, one record at a time (none when complete).
    samples = run_dir / "samples.jsonl"
    records = None if summary["complete"] else {name: RecordStream(samples, name) for name in tasks}
    return report_exit(
        summary, run_dir=run_dir, records=records, max_unscored=cfg.max_unscored,
        predict_only=cfg.predict_only,
    )


def _missing(total: int, failed: int | None, what: str) -> str:
    """``12 judge calls without a result (8 failed, 4 not attempted)``: a call a stopped phase never sent is
    not counted as one that failed."""
    if not total or failed is None or failed == total:
        return f"{total} {what}" + (" (all failed)" if total and failed == total else "")
    return f"{total} {what} ({failed} failed, {total - failed} not attempted)"


def report_exit(
    summary: Mapping[str, Any],
    *,
    run_dir: Path | None = None,
    records: Mapping[str, Any] | None = None,
    max_unscored: float = DEFAULT_MAX_UNSCORED,
    predict_only: bool = False,
) -> int:
    """Print the results and the causes of failures; the exit code (0 complete, 1 incomplete or too many
    unscored turns)."""
    from harness.report import failure_causes, is_deterministic, print_causes, print_results
    from harness.unscored import exceeded

    print_results(summary)
    causes = failure_causes(records) if records is not None else None
    if causes is not None:
        print_causes(causes)
    gen_missing = summary["rollout"]["turns_missing"]
    judge_missing = summary["judging"]["calls_missing"]
    if predict_only:
        if gen_missing:
            console.print(f"[red]incomplete[/]: {gen_missing} turns without a reply")
            return 1
        console.print(f"predictions recorded; judge them with: ditto-bench judge {run_dir}")
        return 0
    code = 0
    if gen_missing or judge_missing:
        failed = [c for counter in (causes or {}).values() for c in counter]
        all_deterministic = bool(failed) and all(is_deterministic(c) for c in failed)
        advice = (
            "the causes above fail the same way again: fix them first, then re-run the same command"
            if all_deterministic else "re-run the same command to retry them"
        )
        roll, jud = summary["rollout"], summary["judging"]
        console.print(
            f"[red]incomplete[/]: {_missing(gen_missing, roll.get('turns_error'), 'turns without a reply')} "
            f"and {_missing(judge_missing, jud.get('calls_api_error'), 'judge calls without a result')}; "
            f"{advice}"
        )
        code = 1
    over = exceeded(summary, max_unscored)
    if over:
        worst, share = next(iter(over.items()))
        console.print(
            f"[red]unscored[/]: {worst} has {share:.0%} of its turns unscored (limit --max_unscored "
            f"{max_unscored:g})" + (f"; also {', '.join(list(over)[1:])}" if len(over) > 1 else "")
        )
        if run_dir is not None:
            mark_results(run_dir, {"unscored_exceeded": {"limit": max_unscored, "metrics": over}})
        code = 1
    return code


def mark_results(run_dir: Path, fields: Mapping[str, Any]) -> None:
    """Add ``fields`` to ``results.json`` (rewritten atomically)."""
    path = run_dir / "results.json"
    results = json.loads(path.read_text(encoding="utf-8"))
    results.update(fields)
    atomic_write_json(path, results)


def _judge_is_mock(cfg: RunConfig) -> bool:
    return is_mock(cfg.judge_model)


def mock_parts(cfg: RunConfig, judges: Mapping[str, JudgeSettings]) -> list[str]:
    """Which side of the run is the scripted mock (``target``, ``judge``); empty for a real run."""
    out = []
    if cfg.mode == "run" and is_mock(cfg.model):
        out.append("target")
    if any(is_mock(j.model) for j in judges.values()) and not cfg.predict_only:
        out.append("judge")
    return out


def run_preflight(cfg: RunConfig, judges: Mapping[str, JudgeSettings], api_key: str | None) -> None:
    """One minimal request to every API endpoint of the run (judge models, an API target)."""
    from harness.preflight import Endpoint, check_endpoint, preflight_disabled

    if preflight_disabled():
        return

    def warn(msg: str) -> None:
        console.print(f"[yellow]warning[/]: {msg}", highlight=False)

    endpoints: list[Endpoint] = []
    if not cfg.predict_only:
        seen: set[tuple[str, int]] = set()
        for js in judges.values():
            n = 1 if cfg.judge_split_samples else js.samples
            if is_mock(js.model) or (js.model, n) in seen:
                continue
            seen.add((js.model, n))
            timeout = min(cfg.judge_timeout, 30.0)
            endpoints.append(Endpoint("judge", cfg.judge_base_url, js.model, api_key, n=n, timeout=timeout))
    if cfg.mode == "run" and cfg.model is not None:
        from harness.backends import api_target

        target = api_target(cfg.model, cfg.model_args)
        if target is not None:
            endpoints.append(target)
    for ep in endpoints:
        check_endpoint(ep, warn)


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


def rescore(run_dir: Path, *, n_boot: int | None = None, max_unscored: float = DEFAULT_MAX_UNSCORED) -> int:
    """``ditto-bench score DIR``: re-aggregate from ``samples.jsonl`` without any model or judge call.

    Takes the directory's lock, so a run or judge still writing there refuses it (exit 2); the stage
    record's output hashes and status follow the rewritten files.
    """
    from harness.include import include_tasks
    from harness.jsonl import read_jsonl
    from harness.records import rescore_records

    run_path = run_dir / "run.json"
    if run_path.exists():  # the run's user tasks (a missing or broken run.json is rescore_records' to report)
        try:
            recorded = json.loads(run_path.read_text(encoding="utf-8")).get("config", {}).get("include_paths")
        except (OSError, ValueError, AttributeError):
            recorded = None
        include_tasks([p for p in recorded or [] if Path(p).is_dir()])
    if run_dir.is_dir():
        DirLock(run_dir, "score").check_free()  # in use (also a run still starting): refused, naming it
    # Only a run directory is locked: score on any other folder fails below without leaving a lock file there.
    lock: AbstractContextManager[Any] = DirLock(run_dir, "score") if run_path.is_file() else _no_lock()
    with lock:
        summary = rescore_records(run_dir, n_boot=n_boot)
        _rescored_stage(run_dir, summary)
        mock = json.loads(run_path.read_text(encoding="utf-8")).get("mock")
        if mock:
            summary["mock"] = mock
            mark_results(run_dir, {"mock": mock})
    records: dict[str, list[dict[str, Any]]] = {}
    for rec in read_jsonl(run_dir / "samples.jsonl"):
        records.setdefault(rec["task"], []).append(rec)
    return report_exit(summary, run_dir=run_dir, records=records, max_unscored=max_unscored)


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
