"""Append-only journal of finished work units, so a killed run resumes without loss or duplication.

Every generated turn and every judge call appends one JSON line and flushes it. Data the OS has
accepted survives ``kill -9``; a torn final line (the process died mid-write) is ignored on load and cut
off before the next append. On resume the latest entry per unit wins; entries in an error state are
retried. Reading and writing are :func:`harness.jsonl.iter_complete_lines` and
:class:`harness.jsonl.JsonlAppender`, the same as the generator's resumable outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.jsonl import JsonlAppender, iter_complete_lines

GenKey = tuple[str, str, int]  # task, session id, turn
JudgeKey = tuple[str, str, int, str]  # task, session id, turn, metric


class Journal:
    """Reader/writer of ``journal.jsonl`` in a run directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.gens: dict[GenKey, dict[str, Any]] = {}
        self.judges: dict[JudgeKey, dict[str, Any]] = {}
        self._out = JsonlAppender(path)
        for _, entry in iter_complete_lines(path):
            self._index(entry)

    def _index(self, entry: dict[str, Any]) -> None:
        if entry.get("k") == "gen":
            self.gens[(entry["task"], entry["sid"], entry["turn"])] = entry
        elif entry.get("k") == "judge":
            self.judges[(entry["task"], entry["sid"], entry["turn"], entry["metric"])] = entry

    def append(self, entry: dict[str, Any]) -> None:
        """Write one entry durably (against process death) and index it."""
        self._out.write(entry)
        self._index(entry)

    def close(self) -> None:
        """Flush, fsync and close the file; a later :meth:`append` reopens it."""
        self._out.close()
