"""``ditto-bench sweep --dry_run``: the plan, resources, judge calls and tokens, and what is already done.

Every evaluation stage (supervise, baseline, eval) judges the same test sessions, so the judge plan of one
evaluation (computed exactly as ``ditto-bench run --dry_run`` computes it) is multiplied by the number of
evaluation stages still to run. Nothing is called and nothing is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.errors import DittoError
from harness.progress import out_console

if TYPE_CHECKING:
    from ditto_train.sweep.driver import Sweep

EVAL_KINDS = ("supervise", "baseline", "eval")


def judge_plan(args: tuple[str, ...], out: str) -> dict[str, Any]:
    """``run --dry_run``'s per-task plan for one evaluation command."""
    from harness.cli import _config, build_parser
    from harness.engine import dry_run, load_tasks, resolve_judge

    argv = [a.replace("{out}", out) for a in args if "{trained:" not in a]
    if "--model_args" in argv and argv.index("--model_args") == len(argv) - 1:
        argv.pop()
    ns = build_parser().parse_args(argv)
    cfg = _config(ns, "run")
    tasks, datas = load_tasks(cfg)  # type: ignore[arg-type]
    judges = {name: resolve_judge(t, cfg) for name, t in tasks.items()}  # type: ignore[arg-type]
    return dry_run(cfg, tasks, datas, judges)  # type: ignore[arg-type]


def print_dry_run(sweep: Sweep) -> None:
    from rich.table import Table

    table = Table(title=f"sweep plan: {len(sweep.plan)} stages (dry run: nothing launched or written)")
    for col in ("stage", "needs", "gpus", "cpus", "status", "fingerprint"):
        table.add_column(col, overflow="fold")
    todo_evals = 0
    sample = None
    for name, st in sweep.plan.items():
        state = sweep.status[name]
        table.add_row(
            name,
            ", ".join(st.deps) or "-",
            str(st.gpus),
            str(st.cpus),
            "done" if state == "done" else ("to run" if state == "pending" else state),
            st.fingerprint[:12],
        )
        if st.kind in EVAL_KINDS:
            sample = sample or st
            if state == "pending":
                todo_evals += 1
    out_console.print(table)
    if sample is None:
        return
    baseline = next((st for st in sweep.plan.values() if st.kind == "baseline"), sample)
    try:
        plan = judge_plan(baseline.args, str(sweep.out))
    except DittoError as exc:
        out_console.print(f"judge plan unavailable: {exc}", highlight=False)
        return
    jt = Table(title=f"judge calls: {todo_evals} evaluation stages to run × one evaluation")
    for col in (
        "task",
        "sessions",
        "turns",
        "judge",
        "requests / eval",
        "requests",
        "est. prompt tokens",
        "est. completion tokens",
    ):
        jt.add_column(col)
    for task, p in plan.items():
        jt.add_row(
            task,
            str(p["sessions"]),
            str(p["turns"]),
            str(p["judge_model"]),
            str(p["judge_requests"]),
            str(p["judge_requests"] * todo_evals),
            str(p["est_prompt_tokens"] * todo_evals),
            str(p["est_completion_tokens"] * todo_evals),
        )
    out_console.print(jt)
