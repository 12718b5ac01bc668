"""``ditto-bench view RUN_DIR [RUN_DIR ...] [--out FILE.html]``: write the viewer page."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.cli_common import command_parser, run_cli
from harness.errors import ConfigError
from harness.jsonl import atomic_write_text
from leaderboards.labels import add_label_flag, parse_labels
from leaderboards.viewer import VIEW_FILE
from leaderboards.viewer.data import RunView, SweepView, is_sweep_dir, load_run_view, read_sweep
from leaderboards.viewer.page import render_page, written_by_viewer

DEFAULT_NAME = VIEW_FILE


def view_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ditto-bench view``."""
    p = command_parser(
        "view",
        "Write one self-contained HTML file (no server, no network) to read runs: results with CIs and "
        "failure counts, every conversation with its judge prompts, raw completions and parsed verdicts, "
        "filters and search; two or more runs get a side-by-side comparison; a sweep directory its grid.",
    )
    p.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="run directories (ditto-bench run/judge) or sweep directories (with sweep.json)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"the HTML file to write (default: RUN_DIR/{DEFAULT_NAME} for one run or sweep; "
        "required for several)",
    )
    add_label_flag(p)
    p.add_argument("--title", default=None, help="page title")
    p.add_argument("--no_plots", action="store_true", help="leave the plots out (faster for huge runs)")
    return p


def view_main(argv: Sequence[str]) -> int:
    """Entry point of ``ditto-bench view``; 2 on bad input."""
    return run_cli(view_parser(), argv, _view, error_code=2)


def _label_of(labels: dict[str, str], used: set[str], run_dir: Path | str) -> str | None:
    key = str(Path(run_dir).resolve())
    if key in labels:
        used.add(key)
    return labels.get(key)


def _out_path(args: argparse.Namespace) -> Path:
    if args.out is not None:
        out = Path(args.out)
    elif len(args.dirs) == 1:
        out = Path(args.dirs[0]) / DEFAULT_NAME
    else:
        raise ConfigError("--out: give the HTML file to write when viewing several directories")
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out: {out}: expected a .html file name")
    if out.exists() and not written_by_viewer(out):
        raise ConfigError(f"--out: {out} exists and was not written by `ditto-bench view`; not replacing it")
    if not out.parent.is_dir():
        raise ConfigError(f"--out: {out.parent} is not a directory")
    return out


def _view(args: argparse.Namespace) -> int:
    for d in args.dirs:
        if not Path(d).is_dir():
            raise ConfigError(f"{d}: not a directory")
    out = _out_path(args)
    labels = parse_labels(args.label, resolve=True)
    used: set[str] = set()
    runs: list[RunView] = []
    sweeps: list[SweepView] = []
    for d in args.dirs:
        if is_sweep_dir(d):
            sweep, run_dirs = read_sweep(d)
            offset = len(runs)
            for st in sweep.stages:
                if st.run is not None:
                    st.run += offset
            runs += [
                load_run_view(r, _label_of(labels, used, r) or f"{sweep.name}/{r.name}") for r in run_dirs
            ]
            sweeps.append(sweep)
        else:
            runs.append(load_run_view(d, _label_of(labels, used, d)))
    unused = [k for k in labels if k not in used]
    if unused:
        raise ConfigError(f"--label: {unused[0]} is not one of the run directories shown")
    if not runs and not sweeps:
        raise ConfigError("nothing to show")
    page = render_page(runs, sweeps, title=args.title, plots=not args.no_plots)
    atomic_write_text(out, page)
    n = sum(len(r.index) for r in runs)
    print(
        f"wrote {out} ({len(runs)} run(s), {n} session(s), {len(page.encode('utf-8')) / 1e6:.1f} MB)",
        file=sys.stderr,
    )
    return 0
