"""Append-only journal of finished work units, so a killed run resumes without loss or duplication.

Every generated turn and every judge call appends one JSON line and flushes it. Data the OS has
accepted survives ``kill -9``; a torn final line (the process died mid-write) is ignored on load. On
resume the latest entry per unit wins; entries in an error state are retried.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

GenKey = tuple[str, str, int]  # task, session id, turn
JudgeKey = tuple[str, str, int, str]  # task, session id, turn, metric


class Journal:
    """Reader/writer of ``journal.jsonl`` in a run directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.gens: dict[GenKey, dict[str, Any]] = {}
        self.judges: dict[JudgeKey, dict[str, Any]] = {}
        self._fh: TextIO | None = None
        if path.exists():
            self._load()

    def _load(self) -> None:
        with self.path.open("r", encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break  # torn tail from a killed writer
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self._index(entry)

    def _index(self, entry: dict[str, Any]) -> None:
        if entry.get("k") == "gen":
            self.gens[(entry["task"], entry["sid"], entry["turn"])] = entry
        elif entry.get("k") == "judge":
            self.judges[(entry["task"], entry["sid"], entry["turn"], entry["metric"])] = entry

    def _handle(self) -> TextIO:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Drop a torn tail so the next line starts cleanly.
            if self.path.exists() and self.path.stat().st_size:
                with self.path.open("rb+") as raw:
                    data = raw.read()
                    cut = data.rfind(b"\n") + 1
                    if cut != len(data):
                        raw.truncate(cut)
            self._fh = self.path.open("a", encoding="utf-8")
        return self._fh

    def append(self, entry: dict[str, Any]) -> None:
        """Write one entry durably (against process death) and index it."""
        fh = self._handle()
        fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        fh.flush()
        self._index(entry)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
