"""``ditto-bench generate``: simulate Ditto role-play dialogues from a knowledge base.

Examples::

    # self-alignment with a local vLLM server as supervisor, both languages
    ditto-bench generate --supervisor local-chat-completions \\
        --supervisor_args model=Qwen/Qwen2-7B-Instruct,base_url=http://127.0.0.1:8000/v1 \\
        --knowledge kb.jsonl --out runs/sim-7b --concurrency 64
    # a WikiRoleEval-style test file for the held-out roles
    ditto-bench generate --split test ... --out runs/test-7b

Re-running the same command resumes; finished sessions are never redone or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ditto_train.cli_common import RESPONSE_CACHE, parse_langs
from harness import __version__
from harness.cli_common import command_parser, run_cli
from harness.errors import ConfigError

if TYPE_CHECKING:
    from ditto_train.generate.config import GenerateConfig
    from ditto_train.generate.kb_index import Entry, KnowledgeIndex
    from ditto_train.generate.prompts import Prompts, TemplateSet
    from ditto_train.generate.supervisor import Supervisor
    from harness.cache import ResponseCache
    from harness.stage import Stage


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ditto-bench generate``."""
    p = command_parser("generate", __doc__.split("\n\n")[0])
    p.add_argument(
        "--supervisor",
        required=True,
        help="hf, vllm, local-chat-completions or openai-chat-completions (lm-eval names)",
    )
    p.add_argument(
        "--supervisor_args",
        default=None,
        help="k=v,...: pretrained=DIR,device=cpu,batch_size=N (hf/vllm) or model=M,base_url=URL/v1 (API)",
    )
    p.add_argument(
        "--knowledge", required=True, type=Path, help="knowledge-base JSONL (ditto-bench knowledge)"
    )
    p.add_argument(
        "--out", required=True, type=Path, help="output directory (one per split); re-run to resume"
    )
    p.add_argument("--split", choices=["train", "test"], default="train")
    p.add_argument("--langs", default="en,zh", help="languages to generate (default en,zh)")
    p.add_argument("--limit", type=int, default=None, help="first N roles per language of the split")
    p.add_argument(
        "--seed", type=int, default=1234, help="partners, query choice/order, distractors (default 1234)"
    )
    p.add_argument("--concurrency", type=int, default=32, help="supervisor requests in flight (default 32)")
    p.add_argument(
        "--gen_kwargs",
        default=None,
        help="decoding, lm-eval names; default do_sample=True,temperature=1.0,top_p=0.8,"
        "repetition_penalty=1.1,max_gen_toks=2048 (paper App. C)",
    )
    RESPONSE_CACHE.add_to(p)
    p.add_argument("--n_query_samples", type=int, default=3, help="samples per query prompt (App. C: 3)")
    p.add_argument(
        "--queries_per_type",
        type=int,
        default=3,
        help="role-specific and contrastive questions kept per session, each (default 3)",
    )
    p.add_argument("--max_query_chars", type=int, default=400, help="longer questions are dropped")
    p.add_argument("--max_reply_chars", type=int, default=4000, help="longer responses are dropped")
    p.add_argument(
        "--profile_tokens", type=int, default=3000, help="article budget per prompt (approx. tokens)"
    )
    p.add_argument("--max_claims", type=int, default=40, help="Wikidata claims shown per profile")
    p.add_argument(
        "--holdout_rate",
        type=float,
        default=0.025,
        help="share of roles held out for --split test (hash of the id; default 0.025)",
    )
    p.add_argument(
        "--holdout_ids",
        type=Path,
        default=None,
        help="file with one role id per line: exactly these roles are the test split",
    )
    p.add_argument("--n_distractors", type=int, default=3, help="test split: wrong consistency candidates")
    p.add_argument(
        "--evidence",
        choices=["supervisor", "overlap"],
        default="supervisor",
        help="test split: evidence bullets asked from the supervisor, or picked by word overlap",
    )
    p.add_argument("--templates", type=Path, default=None, help="folder with replacement prompt templates")
    p.add_argument(
        "--seed_model",
        default=None,
        help="the model to be fine-tuned on this data (recorded: self-alignment vs cross-supervision)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace a run with another configuration in --out"
    )
    p.add_argument(
        "--no_preflight",
        action="store_true",
        help="skip the one minimal request to an API supervisor before any work (by default a rejected "
        "key, unknown model, unreachable host or an endpoint ignoring `n` stops the command, exit 2)",
    )
    return p


def _check_gen(gen: dict[str, Any]) -> None:
    """Value types and ranges of the decoding keys (harness.validate), before anything is created."""
    from harness.progress import console
    from harness.validate import check_gen_kwargs

    check_gen_kwargs(gen, lambda m: console.print(f"[yellow]warning[/]: {m}", highlight=False))


def _preflight(sup: Any, args: argparse.Namespace, n_samples: int) -> None:
    """One minimal request to an API supervisor (harness.preflight); local supervisors have no endpoint."""
    from ditto_train.generate.supervisor import ApiSupervisor
    from harness.preflight import Endpoint, check_endpoint, preflight_disabled
    from harness.progress import console

    if args.no_preflight or preflight_disabled():
        return
    if not isinstance(sup, ApiSupervisor):
        return
    client = sup.client
    key = getattr(client, "_api_key", None)
    n = 1 if client.split_samples else n_samples
    endpoint = Endpoint(
        "supervisor", client.base_url, client.model, None if key in (None, "EMPTY") else key, n=n,
        timeout=min(float(getattr(client, "_timeout", 30.0)), 30.0),
    )
    check_endpoint(endpoint, lambda m: console.print(f"[yellow]warning[/]: {m}", highlight=False))


def _config(args: argparse.Namespace) -> Any:
    from ditto_train.generate.config import GenerateConfig

    langs = parse_langs(args.langs, "--langs")
    checks = [
        ("--concurrency", args.concurrency, 1),
        ("--n_query_samples", args.n_query_samples, 1),
        ("--queries_per_type", args.queries_per_type, 1),
        ("--max_reply_chars", args.max_reply_chars, 1),
        ("--max_query_chars", args.max_query_chars, 1),
        ("--profile_tokens", args.profile_tokens, 0),
        ("--max_claims", args.max_claims, 0),
        ("--n_distractors", args.n_distractors, 0),
    ]
    if args.limit is not None:
        checks.append(("--limit", args.limit, 1))
    for flag, value, low in checks:
        if value < low:
            raise ConfigError(f"{flag} must be >= {low}, got {value}")
    if not 0.0 <= args.holdout_rate <= 1.0:
        raise ConfigError(f"--holdout_rate must be within [0, 1], got {args.holdout_rate}")
    ids = None
    if args.holdout_ids is not None:
        try:
            lines = args.holdout_ids.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"--holdout_ids {args.holdout_ids}: {exc.strerror or exc}") from None
        ids = frozenset(x.strip() for x in lines if x.strip() and not x.startswith("#"))
    if args.split == "test" and ids is None and args.holdout_rate == 0:
        raise ConfigError("--split test needs held-out roles: --holdout_rate > 0 or --holdout_ids FILE")
    return GenerateConfig(
        knowledge=args.knowledge,
        out=args.out,
        split=args.split,
        langs=langs,
        limit=args.limit,
        seed=args.seed,
        concurrency=args.concurrency,
        n_query_samples=args.n_query_samples,
        queries_per_type=args.queries_per_type,
        max_query_chars=args.max_query_chars,
        max_reply_chars=args.max_reply_chars,
        profile_tokens=args.profile_tokens,
        max_claims=args.max_claims,
        holdout_rate=args.holdout_rate,
        holdout_ids=ids,
        n_distractors=args.n_distractors,
        evidence=args.evidence,
        seed_model=args.seed_model,
    )


def _alignment(seed_model: str | None, supervisor_model: str) -> str:
    if not seed_model:
        return "unknown"
    same = seed_model.rstrip("/").split("/")[-1] == str(supervisor_model).rstrip("/").split("/")[-1]
    return "self" if same else "cross"


class _Progress:
    """rich progress bar with ETA on a terminal; a status line every 30 s otherwise (batch logs)."""

    def __init__(self, label: str) -> None:
        from harness.progress import make_progress

        self.bar = make_progress()
        self.label = label
        self.task: Any = None
        self.total = 0
        self.done = 0
        self.t0 = self.last = time.monotonic()

    def start(self, total: int) -> None:
        self.total = total
        self.task = self.bar.add_task(self.label, total=total)

    def advance(self, _: object) -> None:
        self.done += 1
        self.bar.advance(self.task, 1)
        now = time.monotonic()
        if self.bar.disable and (now - self.last >= 30 or self.done == self.total):
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(
                f"{self.label}: {self.done}/{self.total} sessions, {rate:.2f}/s, ETA {eta:.0f} s",
                file=sys.stderr,
                flush=True,
            )


def run(args: argparse.Namespace) -> int:
    """Execute a parsed ``generate`` command."""
    from ditto_train.generate.kb_index import KnowledgeIndex
    from ditto_train.generate.prompts import Prompts, load_templates
    from ditto_train.generate.runner import select_entries
    from ditto_train.generate.supervisor import (
        API_SUPERVISORS,
        LOCAL_SUPERVISORS,
        make_supervisor,
        parse_gen_kwargs,
    )
    from harness.stage import Stage

    known = API_SUPERVISORS + LOCAL_SUPERVISORS
    if args.supervisor not in known:
        raise ConfigError(f"--supervisor {args.supervisor!r}: expected one of {', '.join(known)}")

    cfg = _config(args)
    gen = parse_gen_kwargs(args.gen_kwargs)
    _check_gen(gen)
    templates = load_templates(args.templates)
    index = KnowledgeIndex(cfg.knowledge)
    entries = select_entries(cfg, index)
    need = 2 if cfg.split == "train" else cfg.n_distractors + 1
    for lang in {e.lang for e in entries}:
        if len(index.pools[lang]) < need:
            raise ConfigError(
                f"{cfg.knowledge}: only {len(index.pools[lang])} {lang} roles; {cfg.split} needs >= {need}"
            )
    prompts = Prompts(templates, profile_tokens=cfg.profile_tokens, max_claims=cfg.max_claims)
    api = args.supervisor in API_SUPERVISORS
    cache = RESPONSE_CACHE.open(args)
    sup: Supervisor | None = None
    try:
        # An API supervisor is cheap to build (no connection yet); a local one loads its weights, which
        # happens only once the directory is ours (below), so a second process on a locked --out fails
        # at once instead of after minutes of loading.
        if api:
            sup = make_supervisor(
                args.supervisor, args.supervisor_args, gen, concurrency=cfg.concurrency, seed=cfg.seed,
                cache=cache,
            )
        if sup is None:  # cheap checks of a local supervisor (paths, offline hub ids) before anything is made
            from harness.backends.base import parse_kv_args
            from harness.validate import check_local_model

            check_local_model(parse_kv_args(args.supervisor_args, "--supervisor_args"), "--supervisor_args")
        sup_spec = sup.spec if sup is not None else planned_local_spec(args.supervisor, args.supervisor_args)
        identity = {k: sup_spec.get(k) for k in ("backend", "model")} | {"gen_kwargs": dict(gen)}
        spec = {
            "kind": "ditto-generate",
            "config": cfg.spec(),
            "supervisor": identity,
            "prompt_hashes": templates.hashes,
        }
        inputs = generate_inputs(cfg, sup_spec)
        lineage = {
            "supervisor": {**identity, "identity": inputs["supervisor"]["id"]},
            "knowledge": inputs["knowledge"],
            "split": cfg.split,
            "seed": cfg.seed,
        }
        stage = Stage(
            cfg.out, "generate", spec, inputs, flag="--out", owned=generate_owned(cfg.split),
            record_names=("run.json", "report.json"), lineage=lineage,
            scope={"langs": list(cfg.langs), "limit": cfg.limit},
        )
        planned = stage.peek(overwrite=args.overwrite)  # a locked or changed --out: refused, nothing made
        if sup is not None and planned != "done":  # a finished --out needs no endpoint
            _preflight(sup, args, cfg.n_query_samples)
        decision = stage.open(overwrite=args.overwrite)
    except BaseException:
        index.close()
        if cache is not None:
            cache.close()
        raise
    if sup is None and decision != "done":
        try:
            sup = make_supervisor(
                args.supervisor, args.supervisor_args, gen, concurrency=cfg.concurrency, seed=cfg.seed,
                cache=cache, identity=str(inputs["supervisor"]["id"]),
            )
        except BaseException as exc:
            stage.finish("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                         error=f"{type(exc).__name__}: {exc}")
            stage.close()
            index.close()
            if cache is not None:
                cache.close()
            raise
    with stage:
        if decision == "done":
            index.close()
            if cache is not None:
                cache.close()
            print(f"ditto-bench generate: {cfg.out} is already complete (same fingerprint); nothing to do",
                  file=sys.stderr)
            return 0
        try:
            assert sup is not None
            return _generate(cfg, index, entries, sup, prompts, templates, cache, spec, stage,
                             resuming=decision == "resume")
        except BaseException as exc:
            stage.finish("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                         error=f"{type(exc).__name__}: {exc}")
            raise


def planned_local_spec(name: str, args_text: str | None) -> dict[str, Any]:
    """The fields of a local supervisor's spec that enter the stage (backend, model, the args its identity
    reads), known without loading it (:class:`LocalSupervisor` reports the same once loaded)."""
    from harness.backends.base import parse_kv_args, redact_args

    parsed = parse_kv_args(args_text, "--supervisor_args")
    return {"backend": name, "model": parsed.get("pretrained", name), "args": redact_args(parsed)}


def generate_inputs(cfg: GenerateConfig, sup_spec: dict[str, Any]) -> dict[str, Any]:
    """generate's inputs with identities: the knowledge base (sha256) and the supervisor (by content)."""
    from harness.identity import file_identity, model_identity
    from harness.lineage import with_upstream

    backend = str(sup_spec.get("backend"))
    args = dict(sup_spec.get("args") or {})
    if backend not in ("hf", "vllm", "hf-auto", "huggingface"):
        args.setdefault("base_url", sup_spec.get("base_url"))
    inputs: dict[str, Any] = {
        "knowledge": with_upstream(file_identity(cfg.knowledge)),
        "supervisor": with_upstream(model_identity(backend, args)),
    }
    if cfg.holdout_ids is not None:
        inputs["holdout_ids"] = {"kind": "ids", "id": f"n={len(cfg.holdout_ids)}"}
    return inputs


def generate_owned(split: str) -> Any:
    """Names ``generate --split SPLIT`` writes in its directory."""
    names = {"run.json", "report.json", f"{split}.jsonl"}
    names |= {f"{split}.{lang}{suffix}.jsonl" for lang in ("en", "zh") for suffix in ("", ".rejected")}
    return names.__contains__


def _generate(
    cfg: GenerateConfig, index: KnowledgeIndex, entries: list[Entry], sup: Supervisor, prompts: Prompts,
    templates: TemplateSet, cache: ResponseCache | None, spec: dict[str, Any], stage: Stage, *,
    resuming: bool,
) -> int:
    """The generation itself, inside the open stage: run.json, the sessions, the report, the final status."""
    from ditto_train.generate.output import merge_parts, order_of, part_path
    from ditto_train.generate.report import build_report, print_report
    from ditto_train.generate.runner import Runner
    from harness.jsonl import atomic_write_json

    assert stage.record is not None

    stage.add_outputs(
        "run.json", "report.json", f"{cfg.split}.jsonl",
        *(part_path(cfg.out, cfg.split, lang, rej).name for lang in cfg.langs for rej in (False, True)),
    )
    atomic_write_json(
        cfg.out / "run.json",
        {
            "ditto_bench_generate": 1,
            "fingerprint": stage.fingerprint,
            "spec": spec,
            "supervisor": sup.spec,
            "supervisor_identity": stage.inputs["supervisor"],
            "environment": stage.record.environment,
            "knowledge": str(cfg.knowledge),
            "knowledge_identity": stage.inputs["knowledge"],
            "status": "running",
        },
    )
    run_meta = {
        "split": cfg.split,
        "supervisor": sup.spec,
        "prompt_hashes": templates.hashes,
        "seed": cfg.seed,
        "alignment": _alignment(cfg.seed_model, str(sup.spec.get("model"))),
        "generator": f"ditto-bench {__version__}",
    }
    runner = Runner(cfg, index, sup, prompts, run_meta)
    progress = _Progress(f"generate {cfg.split}")
    if resuming:
        print(f"ditto-bench generate: resuming {cfg.out}", file=sys.stderr)

    async def main_async() -> Any:
        try:
            return await runner.run(entries, on_start=progress.start, on_done=progress.advance)
        finally:
            await sup.aclose()

    try:
        with progress.bar:
            stats = asyncio.run(main_async())
    finally:
        index.close()
        if cache is not None:
            cache.close()
    merged = merge_parts(cfg.out, cfg.split, order_of(entries))
    report = build_report(cfg.out, cfg.split, cfg.langs, stats, {**spec, "supervisor": sup.spec}, merged)
    complete = not stats.api_errors and report["this_run"]["pending_after_run"] == 0
    report["status"] = "complete" if complete else "incomplete"
    atomic_write_json(cfg.out / "report.json", report)
    run_json = json.loads((cfg.out / "run.json").read_text(encoding="utf-8"))
    run_json["status"] = report["status"]
    atomic_write_json(cfg.out / "run.json", run_json)
    stage.finish(report["status"])
    print_report(report)
    print(merged[0])
    if merged[1] == 0:  # an empty output is a failed command, whatever the reason
        reasons = Counter(stats.reasons)
        if stats.api_errors:
            reasons["supervisor errors"] += stats.api_errors
        top = ", ".join(f"{reason} ({count})" for reason, count in reasons.most_common(3))
        print(
            f"ditto-bench generate: 0 sessions written to {merged[0]}; "
            + (f"top rejection reasons: {top}" if top else f"no eligible role in the {cfg.split} split"),
            file=sys.stderr,
        )
        return 1
    if stats.api_errors:
        print(
            f"ditto-bench generate: {stats.api_errors} sessions failed with supervisor errors; "
            "re-run the same command to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``ditto-bench generate ARGS``; returns the exit code."""
    return run_cli(build_parser(), argv, run, resumable=True)
