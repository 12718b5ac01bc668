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


class ResponseCache:
    """A small thread-safe key/value store on SQLite (JSON values).

    Writes are committed immediately; with WAL and ``synchronous=NORMAL`` a commit costs no fsync, and a
    killed process (``kill -9``) loses nothing that was committed.
    """

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

    def get(self, key: str) -> Any | None:
        """Return the stored value or ``None``."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def get_many(self, keys: Sequence[str]) -> list[Any | None]:
        """Return the values for ``keys`` (``None`` where missing), in order."""
        return [self.get(k) for k in keys]

    def put_many(self, items: Sequence[tuple[str, Any]]) -> None:
        """Store several values in one transaction."""
        if not items:
            return
        now = time.time()
        rows = [(k, json.dumps(v, ensure_ascii=False), now) for k, v in items]
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", rows)
            self._conn.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
