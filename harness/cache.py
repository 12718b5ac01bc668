"""SQLite response cache for judge calls and API-model calls.

Keys are the sha256 of a canonical JSON document holding the endpoint, the model, the messages and the
sampling parameters that change the output; the samples of one request (the 3 judge samples of one
judgment) get distinct keys derived from the first one (:func:`request_keys`). Transport settings
(timeouts, retries, concurrency) and API keys are never part of a key or a value. Only successful
responses are stored: errors are never cached, so a re-run retries them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
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
    """

    FLUSH_EVERY = 256

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)"
        )
        self.hits = 0
        self.misses = 0
        self._pending: dict[str, tuple[str, float]] = {}

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
                query = f"SELECT key, value FROM responses WHERE key IN ({marks})"
                rows = self._conn.execute(query, chunk).fetchall()
            found.update((k, v) for k, v in rows)
        out = [json.loads(found[k]) if k in found else None for k in keys]
        hits = sum(1 for v in out if v is not None)
        self.hits += hits
        self.misses += len(keys) - hits
        return out

    def put_many(self, items: Sequence[tuple[str, Any]]) -> None:
        """Store several values; committed in batches of ``FLUSH_EVERY`` and on :meth:`close`."""
        if not items:
            return
        now = time.time()
        with self._lock:
            for k, v in items:
                self._pending[k] = (json.dumps(v, ensure_ascii=False), now)
            if len(self._pending) >= self.FLUSH_EVERY:
                self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._pending:
            return
        rows = [(k, v, t) for k, (v, t) in self._pending.items()]
        self._conn.execute("BEGIN")
        self._conn.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", rows)
        self._conn.execute("COMMIT")
        self._pending.clear()

    def __len__(self) -> int:
        with self._lock:
            self._flush_locked()
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._flush_locked()
            self._conn.close()
