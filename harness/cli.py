"""``ditto-bench`` command line: run | judge | score | ls, plus the Ditto and leaderboard commands.

``main(argv) -> int`` never calls ``sys.exit`` itself so it can be tested in-process. Heavy imports
(torch, transformers, lm-eval models) happen only inside the commands that need them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from harness import __version__
from harness.cli_common import RESPONSE_CACHE, run_cli
from harness.errors import ConfigError
from harness.redact import install_redaction, register_kv_secrets
from harness.unscored import DEFAULT_MAX_UNSCORED, MAX_UNSCORED_ENV, default_max_unscored

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
                        "MT-Bench gpt-4); `mock` is a scripted offline judge for smoke runs")
    g.add_argument("--judge_base_url", default="https://api.openai.com/v1",
                   help="any OpenAI-compatible endpoint, URL/v1 or URL/v1/chat/completions "
                        "(key from OPENAI_API_KEY)")
    g.add_argument("--judge_concurrency", type=int, default=32, help="judge requests in flight (default 32)")
    g.add_argument("--judge_samples", type=int, default=None,
                   help="samples per judgment, >= 1 (default: per task; WikiRoleEval 3, MT-Bench 1)")
    g.add_argument("--judge_temperature", type=float, default=None,
                   help="judge temperature (default: per task; WikiRoleEval 0.2, MT-Bench 0)")
    g.add_argument("--judge_max_tokens", type=int, default=None, help="judge max_tokens (default 2048)")
    g.add_argument("--judge_max_retries", type=int, default=6,
                   help="retries on 429/5xx/timeouts/dropped connections, honouring Retry-After (default 6)")
    g.add_argument("--judge_timeout", type=float, default=120.0,
                   help="seconds per judge request, > 0 (default 120)")
    g.add_argument("--judge_split_samples", action="store_true",
                   help="send N requests with n=1 instead of one request with n=N (endpoints without `n`)")
    g.add_argument("--no_preflight", action="store_true",
                   help="skip the one minimal request made to the judge (and an API target) before any work; "
                        "by default a rejected key, unknown model, unreachable host or an endpoint that "
                        "ignores `n` stops the command at once (exit 2)")
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


def parse_limit(text: str) -> int | float:
    """``--limit``: an integer N >= 1, or a share 0 < X < 1 of each task's sessions."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or a fraction, got {text!r}") from None
    if value.is_integer() and "." not in text and "e" not in text.lower():
        if value < 1:
            raise argparse.ArgumentTypeError(f"an integer limit must be >= 1, got {text}")
        return int(value)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a fractional limit must be between 0 and 1, got {text}")
    return value


def _include_flag(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--include_path", type=Path, action="append", default=[], metavar="DIR", help=help_text)


def _common_flags(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--tasks", required=required,
                   help="comma-separated: wikiroleeval, mtbench_roleplay, mtbench (see `ditto-bench ls`)")
    p.add_argument("--output_path", required=required, type=Path,
                   help="the run directory; re-running the same command on it resumes")
    p.add_argument("--data_path", default=None,
                   help="data file/dir (always wins over the download); TASK=PATH,... when several tasks; "
                        "`sample` for the small sample data shipped in the package")
    p.add_argument("--limit", type=parse_limit, default=None,
                   help="only the first N sessions/questions of each task; a fraction 0<X<1 keeps the first "
                        "ceil(X*n) of each task (deterministic, as lm-eval)")
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
                   help="bootstrap resamples for the 95%% CIs, >= 1")
    p.add_argument("--max_unscored", type=float, default=default_max_unscored(),
                   help="exit 1 when any metric leaves more than this share of its turns unscored "
                        f"(default {DEFAULT_MAX_UNSCORED}, or ${MAX_UNSCORED_ENV}); results.json is still "
                        "written and marked")
    _include_flag(p, "folder of user task modules (each defines DITTO_TASKS = {name: factory}); repeatable")
    p.add_argument("--wandb_args", default=None,
                   help="k=v,... for wandb.init (project=P,name=N,mode=offline,...): logs the results, the "
                        "results table and the run config to Weights & Biases (needs `pip install wandb`)")
    p.add_argument("--max_consecutive_failures", type=int, default=20,
                   help="stop a phase (rollout or judging) after this many failed calls in a row; the first "
                        "400/401/403/404 stops it at once; a re-run resumes (default 20)")
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
                     help="lm-eval backend name: hf, vllm, local-chat-completions, openai-chat-completions; "
                          "`mock` is a scripted offline model for smoke runs")
    run.add_argument("--model_args", default=None,
                     help="lm-eval style k=v,... e.g. pretrained=DIR,dtype=bfloat16 or "
                          "model=M,base_url=URL/v1 (or URL/v1/chat/completions)")
    run.add_argument("--gen_kwargs", default=None,
                     help="generation overrides k=v,... (max_gen_toks, temperature, top_p, do_sample, ...); "
                          "for hf/vllm max_gen_toks is clamped to what the context leaves after the prompt")
    run.add_argument("--batch_size", default=None,
                     help="lm-eval's batch size (N or auto), merged into --model_args "
                          "(batch_size= given there wins)")
    run.add_argument("--device", default=None,
                     help="lm-eval's device (cpu, cuda, cuda:0, ...), merged into --model_args "
                          "(device= given there wins)")
    run.add_argument("--model_name", default=None,
                     help="the name leaderboards show for this run (default: from --model_args; a LoRA "
                          "adapter peft=DIR is named <base>+<DIR's name>)")
    run.add_argument("--predict_only", action="store_true",
                     help="roll out and record only; judge later with `ditto-bench judge DIR`")
    run.add_argument("--log_samples", action="store_true",
                     help="accepted for lm-eval compatibility: samples.jsonl is always written")
    run.add_argument("--apply_chat_template", nargs="?", const=True, default=None, metavar="TEMPLATE",
                     help="accepted for lm-eval compatibility: the model's chat template is always applied")
    run.add_argument("--inject_profile", type=Path, default=None, metavar="KB",
                     help="put each character's profile from this knowledge base into the system message, "
                          "as response simulation does (supervision performance; Table 3 w/ Knowledge)")
    _common_flags(run)

    jd = sub.add_parser("judge", help="judge an existing responses file, or a run made with --predict_only")
    jd.add_argument("run_dir", nargs="?", type=Path, default=None,
                    help="a run directory made by `run --predict_only` (judged in place; judge flags may "
                         "be given)")
    src = jd.add_mutually_exclusive_group()
    src.add_argument("--responses", type=Path,
                     help="WikiRoleEval: test items each with a `messages` list; "
                          "MT-Bench: a FastChat answer file")
    src.add_argument("--answers", dest="responses", type=Path,
                     help="alias of --responses (FastChat's model_answer/<model>.jsonl)")
    _common_flags(jd, required=False)

    sc = sub.add_parser("score", help="re-aggregate a run from its records (no model or judge call)")
    sc.add_argument("run_dir", type=Path)
    sc.add_argument("--bootstrap_resamples", type=int, default=None)
    sc.add_argument("--max_unscored", type=float, default=default_max_unscored(),
                    help=f"exit 1 above this unscored share of any metric (default {DEFAULT_MAX_UNSCORED})")
    _include_flag(sc, "folder of user task modules the run used")

    ls = sub.add_parser("ls", help="list tasks: version, metrics, data source, judge defaults")
    _include_flag(ls, "folder of user task modules to list as well")
    for name in DELEGATED:
        sub.add_parser(name, help=f"see `ditto-bench {name} --help`", add_help=False)
    return parser


def _data_paths(raw: str | None, tasks: list[str]) -> dict[str, Path]:
    """``--data_path``: one path for every task, ``TASK=PATH,...``, or ``sample`` (the package's sample)."""
    from harness.sample import SAMPLE, sample_path

    if not raw:
        return {}
    if "=" in raw:
        out: dict[str, Path] = {}
        for part in raw.split(","):
            name, _, path = part.partition("=")
            if name not in tasks:
                raise ConfigError(f"--data_path: {name!r} is not one of --tasks ({', '.join(tasks)})")
            out[name] = sample_path(name) if path == SAMPLE else Path(path)
        return out
    if raw == SAMPLE:
        return {t: sample_path(t) for t in tasks}
    return {t: Path(raw) for t in tasks}


def _merge_model_args(text: str | None, extra: dict[str, str | None]) -> str | None:
    """``--model_args`` with ``--batch_size``/``--device`` appended where the args do not set them."""
    from harness.backends.base import parse_kv_args

    given = parse_kv_args(text, "--model_args")
    parts = [text] if text else []
    parts += [f"{k}={v}" for k, v in extra.items() if v is not None and k not in given]
    return ",".join(parts) or None


def _checked(args: argparse.Namespace) -> None:
    """Every URL well-formed and the output path usable, before anything is loaded or created.

    The numeric ranges are checked by ``harness.engine.check_ranges`` (for every caller of ``execute``).
    """
    from harness.endpoint import check_url
    from harness.validate import check_output_path

    if args.judge_model != "mock":
        check_url(args.judge_base_url, "--judge_base_url")
    check_output_path(args.output_path)


def _config(args: argparse.Namespace, mode: str) -> object:
    from harness.backends.base import parse_kv_args
    from harness.endpoint import api_root
    from harness.engine import RunConfig
    from harness.progress import console
    from harness.validate import check_gen_kwargs

    if args.tasks is None or args.output_path is None:
        raise ConfigError("--tasks and --output_path are required (or give a run directory: judge DIR)")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise ConfigError("--tasks: give at least one task")
    _checked(args)
    if args.judge_batch and args.judge_model == "mock":
        raise ConfigError("--judge_batch needs an OpenAI-compatible judge, not --judge_model mock")
    if args.max_consecutive_failures < 1:
        raise ConfigError("--max_consecutive_failures must be >= 1")
    gen_kwargs = parse_kv_args(getattr(args, "gen_kwargs", None), "--gen_kwargs")
    check_gen_kwargs(gen_kwargs, lambda m: console.print(f"[yellow]warning[/]: {m}", highlight=False))
    model_args = getattr(args, "model_args", None)
    if mode == "run" and args.model != "mock":  # the scripted mock has no batch or device
        model_args = _merge_model_args(model_args, {"batch_size": args.batch_size, "device": args.device})
    return RunConfig(
        tasks=tasks,
        output_path=args.output_path,
        mode=mode,
        model=getattr(args, "model", None),
        model_args=model_args,
        responses=getattr(args, "responses", None),
        data_paths=_data_paths(args.data_path, tasks),
        limit=args.limit,
        gen_kwargs=gen_kwargs,
        judge_model=args.judge_model,
        judge_base_url=args.judge_base_url if args.judge_model == "mock" else api_root(args.judge_base_url),
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
        max_consecutive_failures=args.max_consecutive_failures,
        preflight=not args.no_preflight,  # $DITTO_BENCH_NO_PREFLIGHT is checked where it runs
        max_unscored=args.max_unscored,
        predict_only=bool(getattr(args, "predict_only", False)),
        model_name=getattr(args, "model_name", None),
        include_paths=[str(p) for p in args.include_path],
        wandb_args=args.wandb_args,
        judge_batch=args.judge_batch,
        judge_batch_fallback=args.judge_batch_fallback,
        judge_batch_cancel=args.judge_batch_cancel,
        judge_batch_poll=args.judge_batch_poll,
        inject_profile=getattr(args, "inject_profile", None),
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ditto-bench`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not sys.stderr.isatty():
        # Without a terminal, tqdm bars (lm-eval's "Requesting API", the Trainer's) are carriage-return noise
        # in a log file; our status lines (harness.progress) report progress instead. tqdm reads this once,
        # at import, which in a command happens after this line.
        os.environ.setdefault("TQDM_DISABLE", "1")
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
    from harness.include import include_tasks

    if args.command is None:
        parser.print_help()
        return 2
    include_tasks(getattr(args, "include_path", None) or [])
    if args.command == "ls":
        from harness.tasklist import print_tasks

        print_tasks()
        return 0
    if args.command == "score":
        from harness.engine import rescore

        return rescore(args.run_dir, n_boot=args.bootstrap_resamples, max_unscored=args.max_unscored)
    if args.wandb_args is not None:
        from harness.wandb_log import check_wandb

        check_wandb(args.wandb_args)
    if args.command == "judge" and args.run_dir is not None:
        from harness.predict import judge_run_dir

        return judge_run_dir(args.run_dir, args, _config)
    if args.command == "judge" and args.responses is None:
        raise ConfigError("judge: give --responses FILE (or --answers FILE), or a run directory: judge DIR")
    from harness.engine import execute

    return execute(_config(args, "run" if args.command == "run" else "judge"))  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
