"""``ditto-bench sweep SWEEP.yaml``: the cross-supervision grid (docs/sweeps.md).

    ditto-bench sweep examples/sweeps/tiny_cpu.yaml --out runs/xsup-tiny
    ditto-bench sweep paper_4x4.yaml --executor ray --profile ray_cluster.yaml
    ditto-bench sweep paper_4x4.yaml --dry_run

Re-running the same command resumes: finished stages are never redone, failed and blocked ones are retried.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli_common import command_parser, run_cli
from harness.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "sweep",
        "Run the cross-supervision grid: generate, supervise, baseline, train and eval stages "
        "(docs/sweeps.md). Re-running resumes; finished stages are never redone.",
    )
    p.add_argument("sweep_file", type=Path, metavar="SWEEP.yaml", help="the sweep file (intent only)")
    p.add_argument("--out", type=Path, default=None, help="output directory (wins over the file's `out`)")
    p.add_argument(
        "--executor",
        choices=["local", "ray", "slurm"],
        default=None,
        help="where stages run (default: the profile's `executor`, else local)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="PROFILE.yaml",
        help="cluster facts: GPUs, Ray address, Slurm partition/account/time (docs/sweeps.md)",
    )
    p.add_argument(
        "--dry_run",
        action="store_true",
        help="print the stages, resources, judge calls and tokens, and what is done; run nothing",
    )
    p.add_argument(
        "--only",
        default=None,
        metavar="PATTERN",
        help="run only stages whose name or kind matches (globs, comma-separated: 'supervise', "
        "'eval/qwen-7b+*')",
    )
    p.add_argument(
        "--max_parallel",
        type=int,
        default=None,
        metavar="N",
        help="stages in flight at most (default: by free GPUs; one at a time without GPUs)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from ditto_train.sweep.driver import SweepOptions, run_sweep
    from ditto_train.sweep.spec import load_profile, load_sweep

    if args.max_parallel is not None and args.max_parallel < 1:
        raise ConfigError("--max_parallel must be >= 1")
    spec = load_sweep(args.sweep_file)
    profile = load_profile(args.profile)
    out = args.out or spec.out
    if out is None:
        raise ConfigError(f"{args.sweep_file.name}: out: not set; give it in the file or as --out DIR")
    executor = args.executor or profile.executor or "local"
    opts = SweepOptions(
        out=out, executor=executor, dry_run=args.dry_run, only=args.only, max_parallel=args.max_parallel
    )
    return run_sweep(spec, profile, opts)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``ditto-bench sweep ARGS``; returns the exit code."""
    return run_cli(build_parser(), argv, run, resumable=True)
