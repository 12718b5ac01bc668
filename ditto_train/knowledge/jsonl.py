"""Append-only JSONL outputs that survive ``kill -9`` and resume without duplicates.

Every record is one line written with a single ``write`` and flushed, so whatever the OS accepted is on disk
when the process dies. On open, a torn last line (no newline: the process died mid-write) is cut off so the
next record starts on a clean line; readers skip it too. The done-set of a resumed run is rebuilt from the
file itself, so the output is the only state there is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO


def iter_complete_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(byte offset, object)`` for each complete, parseable line of ``path`` (if it exists).

    A line that is not valid JSON can only come from an outside edit; it is skipped here, and the writer
    truncates only a torn *tail*, so such a line is never silently rewritten.
    """
    if not path.exists():
        return
    with path.open("rb") as fh:
        offset = 0
        for raw in fh:
            start, offset = offset, offset + len(raw)
            if not raw.endswith(b"\n"):
                return
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(obj, dict):
                yield start, obj


def scan_keys(path: Path, key: Callable[[dict[str, Any]], Any]) -> set[Any]:
    """The set of ``key(obj)`` over the complete lines of ``path``."""
    return {key(obj) for _, obj in iter_complete_lines(path)}


def cut_torn_tail(path: Path) -> int:
    """Truncate ``path`` after its last newline; return the number of bytes removed."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as fh:
        # Look back in blocks for the last newline instead of reading a large file whole.
        pos, block = size, 1 << 16
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                cut = start + nl + 1
                break
            pos = start
        else:
            cut = 0
        if cut != size:
            fh.truncate(cut)
        return size - cut


class JsonlAppender:
    """Appends one JSON object per line, flushed after every line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.torn_bytes = 0
        self._fh: TextIO | None = None

    def _handle(self) -> TextIO:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.torn_bytes = cut_torn_tail(self.path)
            self._fh = self.path.open("a", encoding="utf-8")
        return self._fh

    def write(self, obj: dict[str, Any]) -> None:
        """Write ``obj`` as one line and flush it to the OS."""
        fh = self._handle()
        fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
        fh.flush()

    def write_line(self, line: str) -> None:
        """Write an already serialised JSON line (without newline) and flush it."""
        fh = self._handle()
        fh.write(line + "\n")
        fh.flush()

    def close(self) -> None:
        """Flush, fsync and close (a clean end also survives a power cut)."""
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
