"""Duplicate sessions in a data file: the same conversation twice would be counted twice.

A session's identity for this check is its system text and its user prompts, compared exactly. Every
duplicate is warned about with the ``file:line`` of both copies; the load is then refused (one line, exit 2)
unless the user passes ``--allow_duplicates``, in which case both copies are kept and scored.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from pathlib import Path

from harness.errors import DataError
from harness.progress import console

ALLOW_FLAG = "--allow_duplicates"


def check_duplicates(
    entries: Iterable[tuple[Hashable, int]], path: Path, *, allow: bool, what: str = "session"
) -> list[tuple[int, int]]:
    """Find entries with equal keys; ``entries`` are ``(key, line)`` in file order.

    Returns ``(first_line, duplicate_line)`` pairs. Each pair is printed as a warning; unless ``allow``,
    a :class:`DataError` naming the first pair (and how many more there are) is raised after the warnings.
    """
    first: dict[Hashable, int] = {}
    pairs: list[tuple[int, int]] = []
    for key, line in entries:
        if key in first:
            pairs.append((first[key], line))
        else:
            first[key] = line
    for a, b in pairs:
        console.print(
            f"[yellow]warning[/]: {path}:{b}: duplicate {what}: same system text and prompts as {path}:{a}",
            highlight=False,
        )
    if pairs and not allow:
        a, b = pairs[0]
        more = f" (and {len(pairs) - 1} more)" if len(pairs) > 1 else ""
        raise DataError(
            f"{path}:{b}: duplicate {what}: same system text and prompts as {path}:{a}{more}; it would be "
            f"counted twice. Remove it, or pass {ALLOW_FLAG} to keep both"
        )
    return pairs
