"""A sweep directory as leaderboard rows: each baseline under its seed's name, each fine-tuned model as
``seed+ditto(supervisor)``. Only evaluations that finished are listed."""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import ConfigError


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / "sweep.json").is_file()


def sweep_runs(path: Path) -> list[tuple[Path, str]]:
    """``(run directory, row name)`` of the sweep's finished baseline and eval stages, in plan order."""
    try:
        doc = json.loads((Path(path) / "sweep.json").read_text(encoding="utf-8"))
        stages = doc["stages"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path / 'sweep.json'}: not a readable sweep record ({exc})") from None
    rows: list[tuple[Path, str]] = []
    for st in stages.values():
        if st.get("status") not in ("done", "complete"):
            continue
        if st.get("kind") == "baseline":
            rows.append((Path(path) / st["dir"], str(st["seed"])))
        elif st.get("kind") == "eval":
            rows.append((Path(path) / st["dir"], f"{st['seed']}+ditto({st['supervisor']})"))
    if not rows:
        raise ConfigError(f"{path}: the sweep has no finished baseline or eval stage yet")
    return rows
