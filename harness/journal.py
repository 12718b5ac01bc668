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
from array import array
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


# The index: per (task, session), one flat array of 64-bit words, four per unit (about 32 bytes a unit,
# against ~190 for a dict of tuple keys and boxed values): word 0 the unit (turn << 18 | metric code << 2 |
# bit 1 has a hash | bit 0 ok), then the line's byte offset, its length and 64 bits of its messages hash.
# A session holds tens of units, so finding one is a short scan of its words.
_WORDS = 4
_TURN_SHIFT = 18
_MAX_CODES = 1 << 16
_UNIT_MASK = ~3  # word 0 without the flag bits


def _h64(h: str | None) -> int | None:
    if not h:
        return None
    try:
        return int(h[:16], 16)
    except ValueError:
        return None


class _Index(Generic[K]):
    """Journal index of one kind (generated turns or judge calls): unit → latest line, packed per session."""

    def __init__(self, with_metric: bool) -> None:
        self._with_metric = with_metric
        self._sessions: dict[tuple[str, str], array[int]] = {}
        self._codes: dict[str, int] = {}
        self._names: list[str] = []
        self._len = 0

    def _unit(self, key: Any, add: bool) -> tuple[tuple[str, str], int] | None:
        turn = key[2]
        if type(turn) is not int or turn < 0 or turn >= 1 << (64 - _TURN_SHIFT):
            raise TypeError("turn")
        code = 0
        if self._with_metric:
            metric = key[3]
            if not isinstance(metric, str):
                raise TypeError("metric")
            found = self._codes.get(metric)
            if found is None:
                if not add or len(self._names) >= _MAX_CODES:
                    return None
                found = self._codes[metric] = len(self._names)
                self._names.append(sys.intern(metric))
            code = found
        return (key[0], key[1]), (turn << _TURN_SHIFT) | (code << 2)

    def _find(self, key: Any) -> tuple[array[int], int] | None:
        try:
            found = self._unit(key, add=False)
        except (TypeError, IndexError):
            return None
        if found is None:
            return None
        words = self._sessions.get(found[0])
        if words is None:
            return None
        unit = found[1]
        for i in range(0, len(words), _WORDS):
            if words[i] & _UNIT_MASK == unit:
                return words, i
        return None

    def put(self, key: K, offset: int, length: int, ok: bool, h: str | None) -> None:
        found = self._unit(key, add=True)
        if found is None:
            raise RuntimeError(f"journal: more than {_MAX_CODES} distinct metrics")
        session, unit = found
        h64 = _h64(h)
        row = (unit | (2 if h64 is not None else 0) | int(ok), offset, length, h64 or 0)
        at = self._find(key)
        if at is not None:  # a later line of the same unit: the latest entry wins
            words, i = at
            words[i:i + _WORDS] = array("Q", row)
            return
        skey = (sys.intern(session[0]), sys.intern(session[1]))  # shared with the sessions' own strings
        self._sessions.setdefault(skey, array("Q")).extend(row)
        self._len += 1

    def get(self, key: object) -> tuple[int, int, bool, int | None] | None:
        """(offset, length, ok, 64-bit hash or None) of the latest line of ``key``."""
        at = self._find(key)
        if at is None:
            return None
        words, i = at
        flags = words[i]
        return words[i + 1], words[i + 2], bool(flags & 1), words[i + 3] if flags & 2 else None

    def keys(self) -> Iterator[K]:
        for (task, sid), words in self._sessions.items():
            for i in range(0, len(words), _WORDS):
                unit = words[i]
                turn = unit >> _TURN_SHIFT
                if self._with_metric:
                    yield (task, sid, turn, self._names[(unit >> 2) & (_MAX_CODES - 1)])  # type: ignore[misc]
                else:
                    yield (task, sid, turn)  # type: ignore[misc]

    def __len__(self) -> int:
        return self._len


def _check_key(key: tuple[Any, ...]) -> None:
    """A journal key is strings for task and session (and metric) and a turn index; anything else is not
    one of ours (an outside edit) and is never indexed."""
    if not (isinstance(key[0], str) and isinstance(key[1], str) and type(key[2]) is int and key[2] >= 0):
        raise TypeError("key")
    if len(key) > 3 and not isinstance(key[3], str):
        raise TypeError("key")


def _same_hash(stored: int | None, h: str) -> bool:
    h64 = _h64(h)
    return stored is not None and h64 is not None and stored == h64


class _Entries(Mapping[K, dict[str, Any]], Generic[K]):
    """Read-only mapping key → latest journal entry, read from the file on access."""

    def __init__(self, journal: Journal, index: _Index[K]) -> None:
        self._journal, self._index = journal, index

    def __getitem__(self, key: K) -> dict[str, Any]:
        ref = self._index.get(key)
        if ref is None:
            raise KeyError(key)
        return self._journal._read(ref[0], ref[1])

    def __contains__(self, key: object) -> bool:
        return self._index.get(key) is not None

    def __iter__(self) -> Iterator[K]:
        return self._index.keys()

    def __len__(self) -> int:
        return len(self._index)


class Journal:
    """Reader/writer of ``journal.jsonl`` in a run directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._gen_idx: _Index[GenKey] = _Index(with_metric=False)
        self._judge_idx: _Index[JudgeKey] = _Index(with_metric=True)
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
            if kind == "gen":
                key: Any = (entry["task"], entry["sid"], entry["turn"])
                _check_key(key)
                self._gen_idx.put(key, offset, length, entry.get("status") == "ok", None)
            elif kind == "judge":
                key = (entry["task"], entry["sid"], entry["turn"], entry["metric"])
                _check_key(key)
                self._judge_idx.put(key, offset, length, entry.get("status") == "ok", entry.get("h"))
        except (KeyError, TypeError):
            return  # not one of ours

    def _read(self, offset: int, length: int) -> dict[str, Any]:
        if self._reader is None:
            self._reader = self.path.open("rb")
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
        return ref is not None and ref[2]

    def judgment(self, key: JudgeKey, h: str) -> dict[str, Any] | None:
        """The latest entry of ``key`` if it judged exactly the messages hashed ``h``, else ``None``.

        An entry written for another reply (another run's, or a reply since regenerated) is treated as
        never written: the judgment is asked again and the stale verdict is never paired with this reply.
        """
        ref = self._judge_idx.get(key)
        if ref is None or not _same_hash(ref[3], h):
            return None
        return self._read(ref[0], ref[1])

    def judged_ok(self, key: JudgeKey, h: str) -> bool:
        ref = self._judge_idx.get(key)
        return ref is not None and ref[2] and _same_hash(ref[3], h)

    def close(self) -> None:
        """Flush, fsync and close the file; a later :meth:`append` reopens it."""
        self._out.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
