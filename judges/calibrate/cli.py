"""``ditto-bench calibrate``: MT-Bench against the published GPT-4 ratings, or WikiRoleEval run vs run."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from harness.cli_common import RESPONSE_CACHE, command_parser, run_cli
from harness.errors import ConfigError, DataError
from harness.jsonl import atomic_write_json, atomic_write_jsonl
from harness.progress import console, out_console


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "calibrate",
        "How a replacement judge agrees with a reference judge, and what it does to the numbers "
        "(docs/judges.md).",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--set",
        choices=("mtbench",),
        help="re-judge FastChat's published MT-Bench answers and compare with the published GPT-4 ratings",
    )
    what.add_argument(
        "--tasks",
        choices=("wikiroleeval",),
        help="compare two finished runs that judged the same replies (--reference, --run)",
    )
    p.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="mtbench: published ratings (FastChat gpt-4_single.jsonl or a TSV model, question_id, "
        "turn, score; default: verified download); wikiroleeval: the reference run directory",
    )
    p.add_argument("--run", type=Path, default=None, help="wikiroleeval: the run judged by the new judge")
    p.add_argument(
        "--output_path",
        type=Path,
        default=None,
        help="a folder for calibration.json (and, for mtbench, the judge runs and calibration.png); "
        "the run directories compared are only read",
    )
    p.add_argument(
        "--data_path",
        type=Path,
        default=None,
        help="mtbench: MT-Bench data dir (question.jsonl, judge_prompts.jsonl, model_answer/)",
    )
    p.add_argument(
        "--answers_dir",
        type=Path,
        default=None,
        help="mtbench: FastChat answer files <model>.jsonl (default: DATA_PATH/model_answer)",
    )
    p.add_argument("--models", default=None, help="mtbench: comma-separated models (default: all rated ones)")
    p.add_argument("--judge_model", default=None, help="mtbench: the judge to calibrate")
    p.add_argument(
        "--judge_base_url",
        default="https://api.openai.com/v1",
        help="mtbench: its OpenAI-compatible endpoint (key from OPENAI_API_KEY)",
    )
    p.add_argument("--judge_concurrency", type=int, default=32)
    p.add_argument("--judge_batch", action="store_true", help="mtbench: judge through the Batch API")
    p.add_argument("--seed", type=int, default=1234, help="bootstrap seed")
    p.add_argument("--bootstrap_resamples", type=int, default=2000)
    RESPONSE_CACHE.add_to(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_cli(parser, argv, _run, resumable=True)


def _run(args: argparse.Namespace) -> int:
    from harness.validate import at_least, check_output_path

    at_least(args.bootstrap_resamples, 1, "--bootstrap_resamples")
    at_least(args.judge_concurrency, 1, "--judge_concurrency")  # 0 left the judge phase waiting forever
    if args.output_path is not None:
        check_output_path(args.output_path)
    if args.tasks == "wikiroleeval":
        return _wikiroleeval(args)
    return _mtbench(args)


def _wikiroleeval(args: argparse.Namespace) -> int:
    from judges.calibrate.wikiroleeval import compare_runs, summary_lines

    if args.reference is None or args.run is None or args.output_path is None:
        raise ConfigError(
            "--tasks wikiroleeval needs --reference RUN_DIR, --run RUN_DIR and --output_path DIR"
        )
    result = compare_runs(args.reference, args.run, seed=args.seed, n_boot=args.bootstrap_resamples)
    out: Path = args.output_path
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "calibration.json", result)
    for line in summary_lines(result):
        out_console.print(line, highlight=False)
    out_console.print(f"wrote {out / 'calibration.json'}", highlight=False)
    return 0


def _mtbench(args: argparse.Namespace) -> int:
    from harness.engine import RunConfig, execute
    from judges.calibrate import mtbench as mt
    from judges.calibrate.plot import plot_ratings
    from tasks.mtbench.data import QUESTIONS, check_data_dir, load_questions, locate

    if not args.judge_model:
        raise ConfigError("--set mtbench needs --judge_model (the judge to calibrate)")
    if args.output_path is None:
        raise ConfigError("--set mtbench needs --output_path DIR")
    if args.judge_model != "mock":
        from harness.endpoint import api_root

        args.judge_base_url = api_root(args.judge_base_url, "--judge_base_url")  # …/v1 or …/chat/completions
    answers_dir = args.answers_dir or (args.data_path / "model_answer" if args.data_path else None)
    if answers_dir is None or not answers_dir.is_dir():
        raise ConfigError(
            "--set mtbench needs FastChat's answer files: --data_path DIR (with model_answer/) "
            "or --answers_dir DIR"
        )
    reference = mt.load_reference(mt.reference_path(args.reference))
    models = [m.strip() for m in args.models.split(",")] if args.models else mt.models_in(reference)
    missing = [m for m in models if not (answers_dir / f"{m}.jsonl").is_file()]
    if args.models and missing:
        raise ConfigError(f"--models: no answer file {answers_dir / (missing[0] + '.jsonl')}")
    models = [m for m in models if m not in missing]
    if not models:
        raise DataError(f"{answers_dir}: no answer file for any model rated in {reference.source}")
    # Judge only the categories the reference rates (the shipped TSV covers roleplay only).
    questions = load_questions(locate(QUESTIONS, check_data_dir(args.data_path)))
    rated = {q for m in models for q in mt.question_ids(reference, m)}
    cats = {q.category for q in questions if q.question_id in rated}
    task = "mtbench_roleplay" if cats == {"roleplay"} else "mtbench"
    out: Path = args.output_path
    runs: dict[str, Path] = {}
    for model in models:
        console.print(f"[bold]calibrate[/]: judging {model}'s answers with {args.judge_model}")
        run_dir = out / "runs" / model
        cfg = RunConfig(
            tasks=[task],
            output_path=run_dir,
            mode="judge",
            responses=answers_dir / f"{model}.jsonl",
            data_paths={task: args.data_path} if args.data_path else {},
            judge_model=args.judge_model,
            judge_base_url=args.judge_base_url,
            judge_concurrency=args.judge_concurrency,
            cache_path=args.cache_path,
            no_cache=args.no_cache,
            seed=args.seed,
            n_boot=args.bootstrap_resamples,
            judge_batch=args.judge_batch,
        )
        execute(cfg)  # an incomplete run still counts: its unrated rows are reported as unpaired
        runs[model] = run_dir
    result, rows = mt.compare(reference, runs, seed=args.seed, n_boot=args.bootstrap_resamples)
    result["judge"] = {"model": args.judge_model, "base_url": args.judge_base_url.rstrip("/"), "task": task}
    atomic_write_jsonl(out / "calibration_rows.jsonl", mt.rows_json(rows))
    plot_ratings(
        out / "calibration.png",
        [r.published for r in rows],
        [r.new for r in rows],
        result["confusion"],
        title=f"{args.judge_model} vs published GPT-4 ratings (MT-Bench {task})",
    )
    result["files"] = ["calibration.json", "calibration_rows.jsonl", "calibration.png"]
    atomic_write_json(out / "calibration.json", result)
    o = result["overall"]
    ml = result["model_level"]
    out_console.print(
        f"mtbench calibration of {args.judge_model}: {result['n_paired']} paired ratings; spearman "
        f"{_f(o['spearman'])}, kendall {_f(o['kendall'])}, mean |diff| {_f(o['mean_abs_diff'])}, exact "
        f"{_f(o['exact_agreement'])}, within 1 {_f(o['within_1'])}; "
        f"model ranking spearman {_f(ml['spearman'])}",
        highlight=False,
    )
    out_console.print(f"wrote {out / 'calibration.json'} and {out / 'calibration.png'}", highlight=False)
    return 0


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"
