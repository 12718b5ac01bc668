"""The completer contract and the one response-cache layer around any completer.

A :class:`Completer` turns a message list into ``n`` samples: the judge client, the API and local
supervisors, and later the Batch-API judge all have this shape, and the judge phase depends on nothing
else. :class:`CachedCompleter` wraps any completer with the response cache; :class:`TextCache` is the
single get/put of cached samples, also used by the callers whose shape differs (the lm-eval backend,
one sample per conversation in a batch; the Wikimedia client, one body per URL).

Cache semantics (one rule for all): every sample of a request has its own key
(:func:`harness.cache.request_keys`); a request is served from the cache only when every one of its
samples is there, otherwise it is sent whole; only a complete (``ok``) result is stored. A failed or
incomplete request is never cached, so a re-run asks for exactly the requests still missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harness.cache import ResponseCache, request_keys
from harness.types import ChatMessage, Completion


class Completer(Protocol):
    """Produces ``n`` samples for ``messages``; failures come back as ``status='api_error'``, never raised."""

    async def complete(self, messages: Sequence[ChatMessage], params: Any, n: int = 1) -> Completion:
        """Sample ``n`` replies to ``messages`` with sampling ``params``."""
        ...

    async def aclose(self) -> None:
        """Release connections / worker tasks bound to the current event loop."""
        ...


def param_fields(params: Any) -> dict[str, Any]:
    """The cache-key form of ``params``: ``SamplingParams.payload_fields()`` or a plain mapping."""
    fields = getattr(params, "payload_fields", None)
    if callable(fields):
        return dict(fields())
    if isinstance(params, Mapping):
        return dict(params)
    if params is None:
        return {}
    raise TypeError(f"cannot build a cache key from params of type {type(params).__name__}")


@dataclass(frozen=True)
class CacheScope:
    """What, besides messages and parameters, identifies a cached answer.

    ``kind`` separates uses (``chat`` for the judge and API supervisors, ``model`` for the model under
    test, ``supervisor-local``); ``endpoint`` and ``model`` name the server and model; ``identity`` is
    the model's content identity (:mod:`harness.identity`) where known, so re-served or retrained
    weights under the same name never hit the old answers. Without it the keys are those of earlier
    versions, so existing caches stay valid.
    """

    kind: str
    endpoint: str
    model: str
    identity: str | None = None

    def keys(self, messages: Sequence[ChatMessage], params: Mapping[str, Any], n: int) -> list[str]:
        """Cache keys of the ``n`` samples of one request."""
        model = self.model if self.identity is None else f"{self.model}@{self.identity}"
        return request_keys(
            kind=self.kind, endpoint=self.endpoint, model=model, messages=messages, params=params, n=n
        )


class TextCache:
    """The get/put of cached answers: values are ``{field: text}``, only real answers are stored."""

    def __init__(self, cache: ResponseCache, field: str = "text") -> None:
        self.cache = cache
        self.field = field

    def lookup(self, keys: Sequence[str]) -> list[str | None]:
        """The cached answer for each key, ``None`` where there is none."""
        out: list[str | None] = []
        for hit in self.cache.get_many(keys):
            value = hit.get(self.field) if isinstance(hit, dict) else None
            out.append(value if isinstance(value, str) else None)
        return out

    def store(self, keys: Sequence[str], texts: Sequence[str | None]) -> None:
        """Store every answer that is a string (a missing or null sample is never cached)."""
        self.cache.put_many(
            [(k, {self.field: t}) for k, t in zip(keys, texts, strict=True) if isinstance(t, str)]
        )


class CachedCompleter:
    """Any :class:`Completer` behind the response cache (the same rule for judge and supervisors)."""

    def __init__(self, inner: Any, cache: ResponseCache, key_scope: CacheScope) -> None:
        self.inner = inner
        self.store = TextCache(cache)
        self.scope = key_scope
        self.cached_calls = 0

    def __getattr__(self, name: str) -> Any:  # usage, retries, spec, ... of the wrapped completer
        return getattr(self.inner, name)

    async def complete(self, messages: Sequence[ChatMessage], params: Any, n: int = 1) -> Completion:
        keys = self.scope.keys(messages, param_fields(params), n)
        hits = self.store.lookup(keys)
        if all(t is not None for t in hits):
            self.cached_calls += 1
            return Completion(texts=hits, cached=True)
        result: Completion = await self.inner.complete(messages, params, n=n)
        if result.status == "ok" and len(result.texts) == n:
            self.store.store(keys, result.texts)
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()


def with_cache(inner: Any, cache: ResponseCache | None, key_scope: CacheScope) -> Any:
    """``inner`` behind the cache, or ``inner`` itself without one."""
    return inner if cache is None else CachedCompleter(inner, cache, key_scope)
