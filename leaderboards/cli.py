"""``ditto-bench leaderboard`` and ``ditto-bench compare``.

Both read run records only and return an exit code (2 for bad input, with one line on stderr).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from harness.cli_common import command_parser, run_cli, split_list
from harness.errors import DittoError
from harness.jsonl import atomic_write_text
from harness.progress import out_console
from leaderboards.board import build_board
from leaderboards.compare import PairedResult, as_json, compare_runs
from leaderboards.definition import SEMANTICS, load_definition, load_reported
from leaderboards.labels import add_label_flag, parse_labels
from leaderboards.render import FORMATS, Style, render
from leaderboards.runs import read_run


def leaderboard_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ditto-bench leaderboard``."""
    p = command_parser(
        "leaderboard",
        "One table (rows = models) from run records: WikiRoleEval consistency / knowledge / "
        "rejection for all, en, zh, then MT-Bench roleplay (the shape of the paper's Table 2).",
    )
    p.add_argument(
        "runs", nargs="*", type=Path, metavar="RUN_DIR",
        help="run directories (ditto-bench run/judge), or sweep directories (ditto-bench sweep)"
    )
    p.add_argument(
        "--reported",
        action="store_true",
        help="add the paper's published rows (Table 2 of Lu et al., 2024), marked as reported",
    )
    p.add_argument(
        "--reported_set",
        action="append",
        default=[],
        metavar="NAME",
        help="add another published set of the definition (e.g. fastchat: FastChat's MT-Bench roleplay)",
    )
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    p.add_argument("--out", type=Path, default=None, help="write to FILE instead of stdout")
    p.add_argument("--ci", action="store_true", help="show 95%% CIs in the cells (CSV always has them)")
    p.add_argument(
        "--failures",
        action="store_true",
        help="show the number of unscored turns in the cells (CSV always has them)",
    )
    p.add_argument("--digits", type=int, default=2, help="decimals in the rendered table (default 2)")
    p.add_argument(
        "--allow_mixed",
        action="store_true",
        help="put runs with different task versions / judges / judge templates in one column, each "
        "marked with a variant letter (default: refuse)",
    )
    p.add_argument(
        "--allow_mock",
        action="store_true",
        help="accept runs made with the scripted `mock` model or judge (default: refuse); they are noted",
    )
    p.add_argument(
        "--semantics",
        choices=SEMANTICS,
        default="robust",
        help="robust (default): our numbers (forgiving parsers, failures counted); official: what the "
        "released Ditto scoring.py gives on the same completions (results.json 'official' block; MT-Bench "
        "is FastChat's own semantics either way). A note under the table says which",
    )
    p.add_argument("--tasks", default=None, help="only the columns of these tasks (comma-separated)")
    p.add_argument(
        "--definition", type=Path, default=None, help="leaderboard definition JSON (default: Table 2)"
    )
    add_label_flag(p)
    p.add_argument("--title", default=None, help="table title (default: the definition's)")
    p.add_argument("--note", action="append", default=[], help="a note printed under the table (repeatable)")
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE",
        help="also draw the table (.png or .svg): per metric, bars with 95%% CI whiskers per model, "
        "the languages side by side",
    )
    return p


def leaderboard_main(argv: Sequence[str]) -> int:
    """Entry point of ``ditto-bench leaderboard``; 2 on bad input."""
    return run_cli(leaderboard_parser(), argv, _leaderboard, error_code=2)


def _leaderboard(args: argparse.Namespace) -> int:
    if args.digits < 0 or args.digits > 6:
        raise DittoError("--digits must be between 0 and 6")
    if args.plot is not None:
        from leaderboards.plots import check_plot_path

        check_plot_path(args.plot)
    definition = load_definition(args.definition)
    labels = parse_labels(args.label)
    runs = [read_run(r, labels.get(str(Path(r)), name)) for r, name in _expand_sweeps(args.runs)]
    mocked = [r for r in runs if r.mock]
    if mocked and not args.allow_mock:
        raise DittoError(
            f"{mocked[0].path}: made with the scripted mock {' and '.join(mocked[0].mock)}, not a real "
            "model; pass --allow_mock to show it"
        )
    mock_notes = [
        f"MOCK: {r.model} ({r.path.name}) used the scripted mock {' and '.join(r.mock)}; "
        "its numbers mean nothing"
        for r in mocked
    ]
    names = list(args.reported_set)
    if args.reported:
        if definition.default_reported is None:
            raise DittoError(f"--reported: {definition.name} has no default reported set")
        names.insert(0, definition.default_reported)
    reported = [load_reported(definition, n) for n in dict.fromkeys(names)]
    board = build_board(
        definition,
        runs,
        reported=reported,
        allow_mixed=args.allow_mixed,
        tasks=split_list(args.tasks) if args.tasks else None,
        title=args.title,
        notes=[*mock_notes, *args.note],
        semantics=args.semantics,
    )
    style = Style(
        digits=args.digits,
        ci=args.ci,
        failures=args.failures,
        link_base=None if args.out is None else Path(args.out).parent,
    )
    _emit(render(board, args.format, style), args.out)
    if args.plot is not None:
        from leaderboards.plots import leaderboard_figure, save_figure

        save_figure(leaderboard_figure(board)[0], args.plot)
    return 0


def _expand_sweeps(paths: Sequence[Path]) -> list[tuple[Path, str | None]]:
    """Run directories as given; a sweep directory (``sweep.json``) stands for its baselines and fine-tuned
    models, named ``seed`` and ``seed+ditto(supervisor)``."""
    from ditto_train.sweep.board import is_sweep_dir, sweep_runs

    out: list[tuple[Path, str | None]] = []
    for p in paths:
        out.extend(sweep_runs(p) if is_sweep_dir(p) else [(p, None)])
    return out


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(out, text)


# ---------------------------------------------------------------------------------------------------- compare


def compare_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ditto-bench compare``."""
    p = command_parser(
        "compare",
        "Paired comparison of two runs on the same items: per metric, B - A with a paired "
        "bootstrap 95% CI (resampling sessions) and a Wilcoxon signed-rank p-value.",
    )
    p.add_argument("run_a", type=Path, metavar="RUN_A")
    p.add_argument("run_b", type=Path, metavar="RUN_B")
    p.add_argument("--tasks", default=None, help="comma-separated (default: every task in both runs)")
    p.add_argument("--format", choices=("table", "md", "csv", "json"), default="table")
    p.add_argument("--out", type=Path, default=None, help="write to FILE instead of stdout")
    p.add_argument("--seed", type=int, default=1234, help="bootstrap seed (default 1234)")
    p.add_argument("--bootstrap_resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--digits", type=int, default=3, help="decimals shown (default 3; json is unrounded)")
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE",
        help="also draw the paired per-session differences B - A of split 'all' (.png or .svg)",
    )
    return p


_HEAD = (
    "task",
    "split",
    "metric",
    "sessions",
    "pairs",
    "A",
    "B",
    "B-A",
    "95% CI",
    "p (Wilcoxon)",
    "unpaired A/B",
)


def _cells(r: PairedResult, digits: int) -> list[str]:
    def f(x: float | None) -> str:
        return "—" if x is None else f"{x:.{digits}f}"

    ci = "—" if r.ci95 is None else f"[{f(r.ci95[0])}, {f(r.ci95[1])}]"
    p = "—" if r.p_wilcoxon is None else f"{r.p_wilcoxon:.3g}"
    return [
        r.task,
        r.split,
        r.metric,
        str(r.n_sessions),
        str(r.n_pairs),
        f(r.mean_a),
        f(r.mean_b),
        f(r.diff),
        ci,
        p,
        f"{r.unpaired_a}/{r.unpaired_b}",
    ]


def compare_main(argv: Sequence[str]) -> int:
    """Entry point of ``ditto-bench compare``; 2 on bad input."""
    return run_cli(compare_parser(), argv, _compare, error_code=2)


def _compare(args: argparse.Namespace) -> int:
    if args.bootstrap_resamples < 1:
        raise DittoError("--bootstrap_resamples must be >= 1")
    if args.plot is not None:
        from leaderboards.plots import check_plot_path

        check_plot_path(args.plot)
    tasks = split_list(args.tasks) if args.tasks else None
    results, notes = compare_runs(
        args.run_a, args.run_b, tasks=tasks, seed=args.seed, n_boot=args.bootstrap_resamples
    )
    if args.plot is not None:
        from leaderboards.plots import compare_figure, save_figure

        save_figure(compare_figure(results)[0], args.plot)
    rows = [_cells(r, args.digits) for r in results]
    fmt = "md" if args.format == "table" and args.out is not None else args.format  # a file gets Markdown
    if fmt == "json":
        _emit(as_json(results, notes, args.run_a, args.run_b), args.out)
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(_HEAD)
        w.writerows(rows)
        _emit(buf.getvalue(), args.out)
    elif fmt == "md":
        lines = [
            f"A = `{args.run_a}`, B = `{args.run_b}`",
            "",
            "| " + " | ".join(_HEAD) + " |",
            "|" + "---|" * len(_HEAD),
        ]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        lines += ["", *(f"- {n}" for n in notes)] if notes else []
        _emit("\n".join(lines) + "\n", args.out)
    else:
        table = Table(title=f"A = {args.run_a}   B = {args.run_b}   (B - A, paired)")
        for h in _HEAD:
            table.add_column(h, justify="left" if h in ("task", "split", "metric") else "right")
        for row in rows:
            table.add_row(*row)
        out_console.print(table)
        for n in notes:
            out_console.print(f"note: {n}", highlight=False, markup=False)
    return 0
