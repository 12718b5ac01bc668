"""SQLite response cache for judge calls and API-model calls.

Keys are the sha256 of a canonical JSON document holding the endpoint, the model, the messages, the
sampling parameters that change the output, and the sample index (so the 3 judge samples of one judgment
stay distinct). Transport settings (timeouts, retries, concurrency) and API keys are never part of a key or
a value. Only successful responses are stored: errors are never cached, so a re-run retries them.
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


def sample_key(base: str, sample_index: int) -> str:
    """Key of sample ``sample_index`` of the request whose sample-0 key is ``base``.

    Cheap: derived from ``base``, so the messages are hashed once per request, not once per sample.
    """
    return hashlib.sha256(f"{base}:{sample_index}".encode()).hexdigest()


class ResponseCache:
    """A small thread-safe key/value store on SQLite (JSON values).

    Writes are buffered and committed in batches (a commit per judge call cost more client CPU than the
    call itself at 64-way concurrency); with WAL and ``synchronous=NORMAL`` a commit costs no fsync.
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
        found: dict[str, Any] = {}
        with self._lock:
            found.update((k, self._pending[k][0]) for k in keys if k in self._pending)
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
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
        """Store several values; written in batches of ``FLUSH_EVERY`` (see :meth:`flush`)."""
        if not items:
            return
        now = time.time()
        with self._lock:
            for k, v in items:
                self._pending[k] = (json.dumps(v, ensure_ascii=False), now)
            if len(self._pending) >= self.FLUSH_EVERY:
                self._flush_locked()

    def flush(self) -> None:
        """Commit buffered writes.

        A killed process loses at most the buffer; the run journal, not the cache, keeps the results.
        """
        with self._lock:
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
