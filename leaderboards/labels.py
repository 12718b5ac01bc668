"""``--label RUN_DIR=NAME``: the display-name override shared by ``leaderboard`` and ``view``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from harness.errors import ConfigError


def add_label_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="RUN_DIR=NAME",
        help="show this run under NAME instead of the model name in its record",
    )


def parse_labels(pairs: Sequence[str], *, resolve: bool = False) -> dict[str, str]:
    """``RUN_DIR=NAME`` pairs as ``{RUN_DIR: NAME}`` (the path normalised, made absolute with ``resolve``);
    a ConfigError line for a pair without both halves."""
    out: dict[str, str] = {}
    for p in pairs:
        run, sep, name = p.rpartition("=")
        if not sep or not run or not name:
            raise ConfigError(f"--label: expected RUN_DIR=NAME, got {p!r}")
        out[str(Path(run).resolve() if resolve else Path(run))] = name
    return out
