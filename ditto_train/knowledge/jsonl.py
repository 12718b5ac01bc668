"""Append-only JSONL outputs that survive ``kill -9`` and resume without duplicates.

Every record is one line written with a single ``write`` and flushed, so whatever the OS accepted is on disk
when the process dies. On open, a torn last line (no newline: the process died mid-write) is cut off so the
next record starts on a clean line; readers skip it too. The done-set of a resumed run is rebuilt from the
file itself, so the output is the only state there is.

The implementation is :mod:`harness.jsonl` (the evaluation journal uses the same writer); the names stay
importable from here for the knowledge and generate packages.
"""

from __future__ import annotations

from harness.jsonl import JsonlAppender, cut_torn_tail, iter_complete_lines, scan_keys

__all__ = ["JsonlAppender", "cut_torn_tail", "iter_complete_lines", "scan_keys"]
