"""``--data_path sample``: the small data files of our own shipped in the package (harness/sample_data)."""

from __future__ import annotations

from pathlib import Path

from harness.errors import ConfigError

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"
SAMPLE = "sample"
_PATHS = {
    "wikiroleeval": "wikiroleeval_sample.jsonl",
    "mtbench_roleplay": "mtbench",
    "mtbench": "mtbench",
}


def sample_path(task: str) -> Path:
    """The sample data of ``task`` (a file or FastChat-layout folder); ConfigError for a task without one."""
    rel = _PATHS.get(task)
    if rel is None:
        known = ", ".join(_PATHS)
        raise ConfigError(f"--data_path sample: task {task!r} has no sample data (known: {known})")
    return SAMPLE_DIR / rel
