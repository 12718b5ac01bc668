"""The one cached completer, the one retry policy, and which key each endpoint is given."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.backends.lmeval import require_target_key, target_api_key
from harness.cache import ResponseCache, request_keys
from harness.completer import CachedCompleter, CacheScope, TextCache
from harness.errors import ConfigError
from harness.retry import RETRYABLE_STATUS, RetryPolicy, parse_retry_after
from harness.types import ChatMessage, Completion

MSGS: list[ChatMessage] = [{"role": "user", "content": "q"}]


class Scripted:
    """A completer that answers from a list and counts its calls."""

    def __init__(self, results: list[Completion]) -> None:
        self.results = results
        self.calls: list[int] = []

    async def complete(self, messages: Sequence[ChatMessage], params: Any, n: int = 1) -> Completion:
        self.calls.append(n)
        return self.results.pop(0)

    async def aclose(self) -> None:
        pass


def test_scope_keys_are_the_legacy_keys_and_identity_changes_them() -> None:
    scope = CacheScope(kind="chat", endpoint="http://h/v1", model="m")
    legacy = request_keys(kind="chat", endpoint="http://h/v1", model="m", messages=MSGS,
                          params={"temperature": 0.2}, n=3)
    assert scope.keys(MSGS, {"temperature": 0.2}, 3) == legacy  # existing caches stay valid
    retrained = CacheScope(kind="chat", endpoint="http://h/v1", model="m", identity="sha256:abc")
    other = CacheScope(kind="chat", endpoint="http://h/v1", model="m", identity="sha256:def")
    assert retrained.keys(MSGS, {}, 1) != scope.keys(MSGS, {}, 1) != other.keys(MSGS, {}, 1)
    assert retrained.keys(MSGS, {}, 1) != other.keys(MSGS, {}, 1)


def test_cached_completer_serves_complete_hits_and_stores_only_ok_results(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    inner = Scripted([
        Completion(texts=["a", None, None], status="api_error", error="short"),
        Completion(texts=["a", "b", "c"]),
    ])
    cc = CachedCompleter(inner, cache, CacheScope(kind="chat", endpoint="e", model="m"))
    first = asyncio.run(cc.complete(MSGS, {"temperature": 0.2}, n=3))
    assert first.status == "api_error"  # passed through, and not stored
    second = asyncio.run(cc.complete(MSGS, {"temperature": 0.2}, n=3))
    assert second.texts == ["a", "b", "c"] and not second.cached
    third = asyncio.run(cc.complete(MSGS, {"temperature": 0.2}, n=3))
    assert third.cached and third.texts == ["a", "b", "c"] and cc.cached_calls == 1
    assert inner.calls == [3, 3]  # whole requests only
    cache.close()


def test_text_cache_never_stores_a_missing_sample_and_reads_a_foreign_value_as_a_miss(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    store = TextCache(cache)
    store.store(["k1", "k2"], ["t", None])
    cache.put_many([("k3", {"body": "not a text value"})])
    assert store.lookup(["k1", "k2", "k3"]) == ["t", None, None]
    assert TextCache(cache, field="body").lookup(["k3"]) == ["not a text value"]
    cache.close()


def test_retry_after_forms() -> None:
    def headers(**h: str) -> Any:
        low = {k.replace("_", "-").lower(): v for k, v in h.items()}
        return low.get

    assert parse_retry_after(headers(retry_after="3")) == 3.0
    assert parse_retry_after(headers(retry_after_ms="250", retry_after="9")) == 0.25
    assert parse_retry_after(headers(retry_after="-4")) == 0.0
    assert parse_retry_after(headers(retry_after="soon")) is None
    assert parse_retry_after(headers()) is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after(headers(retry_after=future)) or 0) <= 31


def test_retry_policy_bounds_and_jitter() -> None:
    policy = RetryPolicy(max_retries=2, backoff_base=1.0, backoff_max=3.0)
    assert list(policy.attempts()) == [1, 2, 3] and policy.exhausted(3) and not policy.exhausted(2)
    assert policy.delay(1, retry_after=100.0) == 3.0  # the server's wait, capped
    for attempt, full in ((1, 1.0), (2, 2.0), (5, 3.0)):
        for _ in range(20):
            assert full / 2 <= policy.delay(attempt) <= full
    assert {429, 500, 503, 529, 408} <= RETRYABLE_STATUS and not {400, 401, 404} & RETRYABLE_STATUS


def test_knowledge_and_judge_clients_share_the_policy() -> None:
    from ditto_train.knowledge.http import PoliteHttpClient
    from harness.chat_client import ChatClient

    judge = ChatClient(base_url="http://127.0.0.1:1/v1", model="m", api_key=None)
    wiki = PoliteHttpClient(user_agent="t")
    assert type(judge.policy) is type(wiki.policy) is RetryPolicy
    assert all(judge.policy.retryable(s) == wiki.policy.retryable(s) for s in range(400, 600))


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("OPENAI_API_KEY", "judge-key-xyz")
    monkeypatch.delenv("DITTO_BENCH_TARGET_API_KEY", raising=False)
    monkeypatch.delenv("DITTO_BENCH_SUPERVISOR_API_KEY", raising=False)
    return monkeypatch


def test_target_key_is_never_the_judge_key_off_openai(keys: pytest.MonkeyPatch) -> None:
    local = {"model": "m", "base_url": "http://127.0.0.1:8000/v1/chat/completions"}
    assert target_api_key("local-chat-completions", local) is None
    assert target_api_key("openai-chat-completions", local) is None  # OpenAI's client, another host
    assert target_api_key("openai-chat-completions", {"model": "gpt-4o"}) == "judge-key-xyz"
    assert target_api_key("local-chat-completions", {**local, "api_key": "own"}) == "own"
    keys.setenv("DITTO_BENCH_TARGET_API_KEY", "target-var")
    assert target_api_key("local-chat-completions", local) == "target-var"
    assert target_api_key("openai-chat-completions", {"model": "gpt-4o"}) == "target-var"


def test_openai_target_without_any_key_is_refused(keys: pytest.MonkeyPatch) -> None:
    keys.delenv("OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="DITTO_BENCH_TARGET_API_KEY"):
        require_target_key("openai-chat-completions", "model=gpt-4o")
    require_target_key("local-chat-completions", "model=m,base_url=http://127.0.0.1:1/v1/chat/completions")
    require_target_key("openai-chat-completions", "model=gpt-4o,api_key=given-key")


def test_supervisor_key_rules(keys: pytest.MonkeyPatch) -> None:
    from ditto_train.generate.supervisor import supervisor_api_key

    assert supervisor_api_key({}, "http://127.0.0.1:8000/v1") is None
    assert supervisor_api_key({}, "https://api.openai.com/v1") == "judge-key-xyz"
    assert supervisor_api_key({"api_key": "own"}, "http://127.0.0.1:8000/v1") == "own"
    keys.setenv("DITTO_BENCH_SUPERVISOR_API_KEY", "sup-var")
    assert supervisor_api_key({}, "https://api.openai.com/v1") == "sup-var"
