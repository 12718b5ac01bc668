"""Append-only journal of finished work units, so a killed run resumes without loss or duplication.

Every generated turn and every judge call appends one JSON line and flushes it. Data the OS has
accepted survives ``kill -9``; a torn final line (the process died mid-write) is ignored on load and cut
off before the next append. On resume the latest entry per unit wins (one entry per key, however many
lines a unit has); entries in an error state are retried.

Memory stays flat in the size of the run: only a small index (key → byte offset and length of the latest
line, its status and its judged-messages hash) is held; an entry is read back from the file when asked
for. Each judge entry carries ``h``, the hash of the exact messages it judged (:func:`messages_hash`), so
a verdict is only ever paired with the reply it was given (:meth:`Journal.judgment`).

Reading and writing are :func:`harness.jsonl.cut_torn_tail` and :class:`harness.jsonl.JsonlAppender`, the
same as the generator's resumable outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from harness.jsonl import JsonlAppender
from harness.types import ChatMessage

GenKey = tuple[str, str, int]  # task, session id, turn
JudgeKey = tuple[str, str, int, str]  # task, session id, turn, metric
K = TypeVar("K")

# The largest completion (one reply of the model, one judge sample) the journal stores, in bytes of UTF-8.
# A larger one is recorded as an api_error with reason "oversized": a runaway endpoint must not turn the
# journal, the records and the cache into gigabytes.
MAX_COMPLETION_BYTES = 1_000_000


def messages_hash(messages: Sequence[ChatMessage]) -> str:
    """Short stable hash of a message list (role and content of each message, in order)."""
    digest = hashlib.sha256()
    for m in messages:
        digest.update(m["role"].encode("utf-8"))
        digest.update(b"\x00")
        digest.update(m["content"].encode("utf-8"))
        digest.update(b"\x01")
    return digest.hexdigest()[:32]


def oversized(text: str | None, limit: int = MAX_COMPLETION_BYTES) -> int | None:
    """The UTF-8 size of ``text`` when it is over ``limit`` bytes, else ``None``."""
    if text is None or len(text) * 4 <= limit:  # cheap bound first: a character is at most 4 bytes
        return None
    size = len(text.encode("utf-8"))
    return size if size > limit else None


# One index value per key, packed into a single int (about 48 bytes, against ~320 for an object with four
# fields and its own hash string): bit 0 ok, bit 1 has a hash, 48 bits offset, 40 bits length, 64 bits hash.
_OFF, _LEN, _H = 2, 50, 90
_M48, _M40 = (1 << 48) - 1, (1 << 40) - 1


def _h64(h: str | None) -> int | None:
    if not h:
        return None
    try:
        return int(h[:16], 16)
    except ValueError:
        return None


def _pack(offset: int, length: int, ok: bool, h: str | None) -> int:
    h64 = _h64(h)
    flags = int(ok) | (2 if h64 is not None else 0)
    return flags | (offset << _OFF) | (length << _LEN) | ((h64 or 0) << _H)


def _ok(ref: int) -> bool:
    return bool(ref & 1)


def _same_hash(ref: int, h: str) -> bool:
    h64 = _h64(h)
    return bool(ref & 2) and h64 is not None and (ref >> _H) == h64


def _span(ref: int) -> tuple[int, int]:
    return (ref >> _OFF) & _M48, (ref >> _LEN) & _M40


class _Entries(Mapping[K, dict[str, Any]], Generic[K]):
    """Read-only mapping key → latest journal entry, read from the file on access."""

    def __init__(self, journal: Journal, index: dict[K, int]) -> None:
        self._journal, self._index = journal, index

    def __getitem__(self, key: K) -> dict[str, Any]:
        return self._journal._read(self._index[key])

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[K]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


class Journal:
    """Reader/writer of ``journal.jsonl`` in a run directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._gen_idx: dict[GenKey, int] = {}
        self._judge_idx: dict[JudgeKey, int] = {}
        self._end = 0  # byte offset after the last complete line: where the next line goes
        self._reader: Any = None
        self._scan()
        self._out = JsonlAppender(path)
        self.gens: Mapping[GenKey, dict[str, Any]] = _Entries(self, self._gen_idx)
        self.judges: Mapping[JudgeKey, dict[str, Any]] = _Entries(self, self._judge_idx)

    def _scan(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            offset = 0
            for raw in fh:
                start, offset = offset, offset + len(raw)
                if not raw.endswith(b"\n"):
                    offset = start  # a torn tail: the appender cuts it before the next write
                    break
                try:
                    obj = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # an outside edit; never rewritten, never indexed
                if isinstance(obj, dict):
                    self._index(obj, start, len(raw) - 1)
        self._end = offset

    def _index(self, entry: Mapping[str, Any], offset: int, length: int) -> None:
        kind = entry.get("k")
        try:
            # Interned: the keys of one session share their strings instead of one copy per line.
            if kind == "gen":
                key: Any = (sys.intern(entry["task"]), sys.intern(entry["sid"]), entry["turn"])
                self._gen_idx[key] = _pack(offset, length, entry.get("status") == "ok", None)
            elif kind == "judge":
                key = (sys.intern(entry["task"]), sys.intern(entry["sid"]), entry["turn"],
                       sys.intern(entry["metric"]))
                self._judge_idx[key] = _pack(offset, length, entry.get("status") == "ok", entry.get("h"))
        except (KeyError, TypeError):
            return  # not one of ours

    def _read(self, ref: int) -> dict[str, Any]:
        if self._reader is None:
            self._reader = self.path.open("rb")
        offset, length = _span(ref)
        raw = os.pread(self._reader.fileno(), length, offset)
        entry: dict[str, Any] = json.loads(raw)
        return entry

    def append(self, entry: dict[str, Any]) -> None:
        """Write one entry durably (against process death) and index it."""
        line = json.dumps(entry, ensure_ascii=False)
        self._out.write_line(line)
        length = len(line.encode("utf-8"))
        self._index(entry, self._end, length)
        self._end += length + 1

    # -- replay -----------------------------------------------------------------------------------------
    def gen_ok(self, key: GenKey) -> bool:
        ref = self._gen_idx.get(key)
        return ref is not None and _ok(ref)

    def judgment(self, key: JudgeKey, h: str) -> dict[str, Any] | None:
        """The latest entry of ``key`` if it judged exactly the messages hashed ``h``, else ``None``.

        An entry written for another reply (another run's, or a reply since regenerated) is treated as
        never written: the judgment is asked again and the stale verdict is never paired with this reply.
        """
        ref = self._judge_idx.get(key)
        if ref is None or not _same_hash(ref, h):
            return None
        return self._read(ref)

    def judged_ok(self, key: JudgeKey, h: str) -> bool:
        ref = self._judge_idx.get(key)
        return ref is not None and _ok(ref) and _same_hash(ref, h)

    def close(self) -> None:
        """Flush, fsync and close the file; a later :meth:`append` reopens it."""
        self._out.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
