"""The SQLite response cache: buffered writes win over committed ones; request keys are stable, distinct."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.cache import ResponseCache, cache_key, request_keys

MSGS: list[dict[str, str]] = [{"role": "user", "content": "你好"}]


def test_a_buffered_write_is_read_back_before_and_after_the_commit(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put_many([("k", {"text": "old"})])
    assert len(cache) == 1  # commits the buffer
    cache.put_many([("k", {"text": "new"}), ("j", {"text": "j"})])  # buffered, not yet committed
    got = cache.get_many(["k", "j", "missing", "k"])
    assert got == [{"text": "new"}, {"text": "j"}, None, {"text": "new"}]
    cache.close()
    reopened = ResponseCache(tmp_path / "c.sqlite")  # close committed the buffer
    assert reopened.get("k") == {"text": "new"} and len(reopened) == 2
    reopened.close()


def test_request_keys_start_with_the_single_key_and_are_distinct_per_sample() -> None:
    fields: dict[str, Any] = {
        "kind": "chat", "endpoint": "http://127.0.0.1:1/v1/", "model": "m", "messages": MSGS
    }
    keys = request_keys(**fields, params={"temperature": 0.2}, n=3)
    assert keys[0] == cache_key(**fields, params={"temperature": 0.2}, sample_index=0)
    assert len(set(keys)) == 3
    no_slash = {**fields, "endpoint": "http://127.0.0.1:1/v1"}
    assert keys == request_keys(**no_slash, params={"temperature": 0.2}, n=3)
    assert request_keys(**fields, params={"temperature": 0.7}, n=3)[0] != keys[0]
