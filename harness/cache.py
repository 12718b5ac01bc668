"""SQLite response cache for judge calls and API-model calls.

Keys are the sha256 of a canonical JSON document holding the endpoint, the model, the messages and the
sampling parameters that change the output; the samples of one request (the 3 judge samples of one
judgment) get distinct keys derived from the first one (:func:`request_keys`). Transport settings
(timeouts, retries, concurrency) and API keys are never part of a key or a value. Only successful
responses are stored: errors are never cached, so a re-run retries them.

The cache never takes a command down: it runs in WAL mode with a busy timeout, and if the file cannot
be used (another process holds a write transaction for longer than the timeout, or the file is not a
SQLite database) the cache prints one warning line and turns itself off for the rest of the process:
every lookup misses and nothing is written. The file itself is left as it is.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.types import ChatMessage

SCHEMA_VERSION = 1


def cache_key(
    *,
    kind: str,
    endpoint: str,
    model: str,
    messages: Sequence[ChatMessage],
    params: Mapping[str, Any],
    sample_index: int,
) -> str:
    """Return the cache key (hex sha256) of one sample of one request."""
    doc = {
        "v": SCHEMA_VERSION,
        "kind": kind,
        "endpoint": endpoint.rstrip("/"),
        "model": model,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "params": {k: params[k] for k in sorted(params)},
        "sample": sample_index,
    }
    blob = json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def request_keys(
    *,
    kind: str,
    endpoint: str,
    model: str,
    messages: Sequence[ChatMessage],
    params: Mapping[str, Any],
    n: int,
) -> list[str]:
    """Cache keys of the ``n`` samples of one request.

    Sample 0 is :func:`cache_key`; the others are derived from it, so the messages are hashed once per
    request, not once per sample (the judge path computes these for every call).
    """
    base = cache_key(
        kind=kind, endpoint=endpoint, model=model, messages=messages, params=params, sample_index=0
    )
    return [base] + [hashlib.sha256(f"{base}:{i}".encode()).hexdigest() for i in range(1, n)]


class ResponseCache:
    """A small thread-safe key/value store on SQLite (JSON values).

    Writes are buffered and committed in batches (a commit per judge call cost more client CPU than the
    call itself at 64-way concurrency); with WAL and ``synchronous=NORMAL`` a commit costs no fsync. A
    killed process loses at most the last ``FLUSH_EVERY`` buffered entries: a cache miss on re-run, never
    a lost result (run journals and the generator's outputs are written separately).

    Any SQLite error (a lock held past ``BUSY_TIMEOUT`` seconds, a corrupt file) disables the cache with
    one warning line on stderr (see the module doc); ``disabled`` then says why.
    """

    FLUSH_EVERY = 256
    BUSY_TIMEOUT = 5.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.disabled: str | None = None
        self.hits = 0
        self.misses = 0
        self._pending: dict[str, tuple[str, float]] = {}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(path), check_same_thread=False, isolation_level=None, timeout=self.BUSY_TIMEOUT
            )
            self._conn.execute(f"PRAGMA busy_timeout={int(self.BUSY_TIMEOUT * 1000)}")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS responses "
                "(key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)"
            )
        except (sqlite3.Error, OSError) as exc:
            self._disable(exc)

    def _disable(self, exc: BaseException) -> None:
        """Turn the cache off for good with one warning line (caller may hold ``_lock``)."""
        if self.disabled is not None:
            return
        self.disabled = f"{type(exc).__name__}: {exc}"
        self._pending.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        print(
            f"ditto-bench: warning: response cache {self.path} is unusable ({self.disabled}); "
            "continuing without it (the run journal still makes the run resumable)",
            file=sys.stderr,
        )

    def get(self, key: str) -> Any | None:
        """Return the stored value or ``None``."""
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[str]) -> list[Any | None]:
        """Return the values for ``keys`` (``None`` where missing), in order, in one query per 500 keys."""
        with self._lock:
            # Buffered writes are newer than anything committed: they win, and need no query.
            found: dict[str, Any] = {k: self._pending[k][0] for k in keys if k in self._pending}
        rest = [k for k in dict.fromkeys(keys) if k not in found]
        for start in range(0, len(rest), 500):
            chunk = rest[start : start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                if self._conn is None:
                    break
                query = f"SELECT key, value FROM responses WHERE key IN ({marks})"
                try:
                    rows = self._conn.execute(query, chunk).fetchall()
                except sqlite3.Error as exc:
                    self._disable(exc)
                    break
            found.update((k, v) for k, v in rows)
        out: list[Any | None] = []
        for k in keys:
            raw = found.get(k)
            try:
                out.append(None if raw is None else json.loads(raw))
            except ValueError:  # a value this version cannot read is a miss, not a crash
                out.append(None)
        hits = sum(1 for v in out if v is not None)
        self.hits += hits
        self.misses += len(keys) - hits
        return out

    def put_many(self, items: Sequence[tuple[str, Any]]) -> None:
        """Store several values; committed in batches of ``FLUSH_EVERY`` and on :meth:`close`."""
        if not items or self._conn is None:
            return
        now = time.time()
        with self._lock:
            for k, v in items:
                self._pending[k] = (json.dumps(v, ensure_ascii=False), now)
            if len(self._pending) >= self.FLUSH_EVERY:
                self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._pending or self._conn is None:
            return
        rows = [(k, v, t) for k, (v, t) in self._pending.items()]
        try:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._disable(exc)
            return
        self._pending.clear()

    def __len__(self) -> int:
        with self._lock:
            self._flush_locked()
            if self._conn is None:
                return 0
            try:
                return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
            except sqlite3.Error as exc:
                self._disable(exc)
                return 0

    def close(self) -> None:
        with self._lock:
            self._flush_locked()
            if self._conn is not None:
                try:
                    self._conn.close()
                except sqlite3.Error:
                    pass
                self._conn = None
