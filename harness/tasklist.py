"""``ditto-bench ls``: each registered task with its version, metrics, data source and judge defaults."""

from __future__ import annotations

from rich.table import Table

from harness.progress import out_console
from harness.task import TASKS, get_task

_DATA = {
    "wikiroleeval": "OFA-Sys/Ditto test file (Git LFS, sha256-verified) or --data_path",
    "mtbench_roleplay": "FastChat mt_bench question.jsonl, roleplay category (pinned commit) or --data_path",
    "mtbench": "FastChat mt_bench question.jsonl, all categories (pinned commit) or --data_path",
}


def print_tasks() -> None:
    table = Table(title="tasks")
    for col in ("task", "version", "metrics", "data", "judge defaults"):
        table.add_column(col)
    for name in TASKS:
        try:
            task = get_task(name)
        except Exception as exc:  # a task that cannot load is listed with the reason, not hidden
            table.add_row(name, "—", "—", f"unavailable: {exc}", "—")
            continue
        j = task.judge_defaults
        data = _DATA.get(name) or getattr(task, "data_source", None) or f"user task {TASKS[name]}"
        table.add_row(
            name,
            str(task.version),
            ", ".join(task.metrics),
            str(data),
            f"{j.model}, temperature {j.temperature:g}, {j.samples} sample{'s' if j.samples != 1 else ''}, "
            f"max_tokens {j.max_tokens}",
        )
    out_console.print(table)
