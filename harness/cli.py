"""``ditto-bench`` command line: run | judge | score | ls, plus the Ditto and leaderboard commands.

``main(argv) -> int`` never calls ``sys.exit`` itself so it can be tested in-process. Heavy imports
(torch, transformers, lm-eval models) happen only inside the commands that need them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from harness import __version__
from harness.cli_common import RESPONSE_CACHE, run_cli
from harness.errors import ConfigError
from harness.redact import install_redaction, register_kv_secrets

# subcommand -> "module:main" for commands that own their argument parsing
DELEGATED = {
    "train": "ditto_train.sft.cli:main",
    "knowledge": "ditto_train.knowledge.cli:main",
    "generate": "ditto_train.generate.cli:main",
    "leaderboard": "leaderboards.cli:leaderboard_main",
    "compare": "leaderboards.cli:compare_main",
    "calibrate": "judges.calibrate.cli:main",
    "view": "leaderboards.viewer.cli:view_main",
    "lineage": "harness.lineage:main",
    "sweep": "ditto_train.sweep.cli:main",
}


def _judge_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("judge")
    g.add_argument("--judge_model", default=None,
                   help="judge model name (default: per task; WikiRoleEval gpt-4-1106-preview, "
                        "MT-Bench gpt-4)")
    g.add_argument("--judge_base_url", default="https://api.openai.com/v1",
                   help="any OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
                        "(key from OPENAI_API_KEY)")
    g.add_argument("--judge_concurrency", type=int, default=32, help="judge requests in flight (default 32)")
    g.add_argument("--judge_samples", type=int, default=None,
                   help="samples per judgment (default: per task; WikiRoleEval 3, MT-Bench 1)")
    g.add_argument("--judge_temperature", type=float, default=None,
                   help="judge temperature (default: per task; WikiRoleEval 0.2, MT-Bench 0)")
    g.add_argument("--judge_max_tokens", type=int, default=None, help="judge max_tokens (default 2048)")
    g.add_argument("--judge_max_retries", type=int, default=6,
                   help="retries on 429/5xx/timeouts/dropped connections, honouring Retry-After (default 6)")
    g.add_argument("--judge_timeout", type=float, default=120.0,
                   help="seconds per judge request (default 120)")
    g.add_argument("--judge_split_samples", action="store_true",
                   help="send N requests with n=1 instead of one request with n=N (endpoints without `n`)")
    g.add_argument("--judge_batch", action="store_true",
                   help="judge through the OpenAI Batch API (half price, up to 24 h; resumable; "
                        "docs/judges.md)")
    g.add_argument("--judge_batch_fallback", choices=("batch", "sync"), default="batch",
                   help="rows a batch failed, expired or lost: resubmit in a new batch (default) or judge "
                        "them synchronously")
    g.add_argument("--judge_batch_poll", type=float, default=60.0,
                   help="seconds between batch status checks (default 60)")
    g.add_argument("--judge_batch_cancel", action="store_true",
                   help="cancel this run's running batches (their finished rows are kept on the next run)")


def _common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", required=True, help="comma-separated: wikiroleeval, mtbench_roleplay, mtbench")
    p.add_argument("--output_path", required=True, type=Path,
                   help="the run directory; re-running the same command on it resumes")
    p.add_argument("--data_path", default=None,
                   help="data file/dir (always wins over the download); TASK=PATH,... when several tasks")
    p.add_argument("--limit", type=int, default=None, help="only the first N sessions/questions of each task")
    p.add_argument("--seed", type=int, default=1234,
                   help="seed for generation, candidate shuffling and bootstrap")
    p.add_argument("--shuffle_candidates", action="store_true",
                   help="shuffle WikiRoleEval's consistency candidates per session (seeded) "
                        "to measure position bias")
    p.add_argument("--allow_duplicates", action="store_true",
                   help="keep sessions that repeat an earlier one's system text and prompts (each is "
                        "warned about with both file:line); by default such a data file is refused")
    RESPONSE_CACHE.add_to(p)
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run with a different configuration in --output_path")
    p.add_argument("--dry_run", action="store_true",
                   help="validate inputs, print the number of judge calls and a token estimate, call nothing")
    p.add_argument("--bootstrap_resamples", type=int, default=2000,
                   help="bootstrap resamples for the 95%% CIs")
    _judge_flags(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ditto-bench",
        description="Role-play evaluation harness: WikiRoleEval (Ditto) and MT-Bench, with an LLM judge.",
    )
    parser.add_argument("--version", action="version", version=f"ditto-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="roll out the model under test and judge every turn")
    run.add_argument("--model", required=True,
                     help="lm-eval backend name: hf, vllm, local-chat-completions, openai-chat-completions")
    run.add_argument("--model_args", default=None,
                     help="lm-eval style k=v,... e.g. pretrained=DIR,dtype=bfloat16 or "
                          "model=M,base_url=URL/v1/chat/completions")
    run.add_argument("--gen_kwargs", default=None,
                     help="generation overrides k=v,... (max_gen_toks, temperature, top_p, do_sample, ...)")
    run.add_argument("--inject_profile", type=Path, default=None, metavar="KB",
                     help="put each character's profile from this knowledge base into the system message, "
                          "as response simulation does (supervision performance; Table 3 w/ Knowledge)")
    _common_flags(run)

    jd = sub.add_parser("judge", help="judge an existing responses file (no generation)")
    src = jd.add_mutually_exclusive_group(required=True)
    src.add_argument("--responses", type=Path,
                     help="WikiRoleEval: test items each with a `messages` list; "
                          "MT-Bench: a FastChat answer file")
    src.add_argument("--answers", dest="responses", type=Path,
                     help="alias of --responses (FastChat's model_answer/<model>.jsonl)")
    _common_flags(jd)

    sc = sub.add_parser("score", help="re-aggregate a run from its records (no model or judge call)")
    sc.add_argument("run_dir", type=Path)
    sc.add_argument("--bootstrap_resamples", type=int, default=None)

    sub.add_parser("ls", help="list tasks")
    for name in DELEGATED:
        sub.add_parser(name, help=f"see `ditto-bench {name} --help`", add_help=False)
    return parser


def _data_paths(raw: str | None, tasks: list[str]) -> dict[str, Path]:
    if not raw:
        return {}
    if "=" in raw:
        out: dict[str, Path] = {}
        for part in raw.split(","):
            name, _, path = part.partition("=")
            if name not in tasks:
                raise ConfigError(f"--data_path: {name!r} is not one of --tasks ({', '.join(tasks)})")
            out[name] = Path(path)
        return out
    return {t: Path(raw) for t in tasks}


def _config(args: argparse.Namespace, mode: str) -> object:
    from harness.backends.base import parse_kv_args
    from harness.engine import RunConfig

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise ConfigError("--tasks: give at least one task")
    if args.judge_concurrency < 1:
        raise ConfigError("--judge_concurrency must be >= 1")
    if args.judge_batch_poll <= 0:
        raise ConfigError("--judge_batch_poll must be > 0")
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be >= 1")
    return RunConfig(
        tasks=tasks,
        output_path=args.output_path,
        mode=mode,
        model=getattr(args, "model", None),
        model_args=getattr(args, "model_args", None),
        responses=getattr(args, "responses", None),
        data_paths=_data_paths(args.data_path, tasks),
        limit=args.limit,
        gen_kwargs=parse_kv_args(getattr(args, "gen_kwargs", None), "--gen_kwargs"),
        judge_model=args.judge_model,
        judge_base_url=args.judge_base_url,
        judge_concurrency=args.judge_concurrency,
        judge_samples=args.judge_samples,
        judge_temperature=args.judge_temperature,
        judge_max_tokens=args.judge_max_tokens,
        judge_max_retries=args.judge_max_retries,
        judge_timeout=args.judge_timeout,
        judge_split_samples=args.judge_split_samples,
        seed=args.seed,
        shuffle_candidates=args.shuffle_candidates,
        allow_duplicates=args.allow_duplicates,
        cache_path=args.cache_path,
        no_cache=args.no_cache,
        overwrite=args.overwrite,
        dry_run=args.dry_run,
        n_boot=args.bootstrap_resamples,
        judge_batch=args.judge_batch,
        judge_batch_fallback=args.judge_batch_fallback,
        judge_batch_cancel=args.judge_batch_cancel,
        judge_batch_poll=args.judge_batch_poll,
        inject_profile=getattr(args, "inject_profile", None),
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ditto-bench`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Before any work: every key the process can read (environment, api_key= in *_args) is masked in
    # everything printed or logged from here on (harness/redact.py).
    install_redaction()
    register_kv_secrets(argv)
    if argv and argv[0] in DELEGATED:
        module, attr = DELEGATED[argv[0]].split(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            print(f"ditto-bench {argv[0]}: not available in this install ({exc})", file=sys.stderr)
            return 2
        return int(fn(argv[1:]))
    parser = build_parser()
    return run_cli(parser, argv, lambda args: _dispatch(parser, args), resumable=True)


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "ls":
        from harness.task import TASKS

        for name in TASKS:
            print(name)
        return 0
    if args.command == "score":
        from harness.engine import rescore

        return rescore(args.run_dir, n_boot=args.bootstrap_resamples)
    from harness.engine import execute

    return execute(_config(args, "run" if args.command == "run" else "judge"))  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
