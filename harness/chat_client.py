"""Async client for OpenAI-compatible chat endpoints (the judge, API supervisors).

Built on the ``openai`` package's ``AsyncOpenAI`` with its aiohttp transport and the low-level
``client.post(..., cast_to=httpx2.Response)`` path: on a 2-core machine the high-level
``chat.completions.create`` spends ~5 ms of client CPU per call on request transforms and pydantic
parsing, which caps a 64-way judge at ~25% of the server's capacity (see docs/performance.md).
Retries are ours (:mod:`harness.retry`: bounded, exponential backoff with jitter, ``Retry-After``
honoured on 429/5xx, timeouts and dropped connections) so every attempt is counted; a response with
fewer choices than the ``n`` asked for is retried like a failure and, if the choices never all come, is an
``api_error``. A semaphore bounds concurrency. The client is a :class:`harness.completer.Completer`;
caching is :class:`harness.completer.CachedCompleter`'s job, and every error string it returns has been
through :func:`harness.redact.redact`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai

from harness.completer import CacheScope
from harness.lean_openai import LeanAsyncOpenAI
from harness.neterror import network_cause
from harness.redact import redact, register_secret
from harness.retry import RetryPolicy, parse_retry_after
from harness.types import ChatMessage, Completion, Usage

OPENAI_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class SamplingParams:
    """Parameters that change a completion (they are part of the cache key)."""

    temperature: float = 0.2
    max_tokens: int = 2048
    top_p: float | None = None
    seed: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def payload_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.top_p is not None:
            out["top_p"] = self.top_p
        if self.seed is not None:
            out["seed"] = self.seed
        out.update(self.extra)
        return out


def needs_api_key(base_url: str) -> bool:
    """True for endpoints that require a key (OpenAI's); local servers usually do not."""
    return "api.openai.com" in base_url


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers if exc.response is not None else {}
    return parse_retry_after(headers.get)


class ChatClient:
    """Retrying, concurrency-limited chat-completions client (a :class:`harness.completer.Completer`)."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        concurrency: int = 32,
        max_retries: int = 6,
        timeout: float = 120.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        split_samples: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.policy = RetryPolicy(max_retries=max_retries, backoff_base=backoff_base, backoff_max=backoff_max)
        self.max_retries = max_retries
        self.split_samples = split_samples
        self.concurrency = concurrency
        self.usage = Usage()
        self.retries = 0
        self._timeout = timeout
        register_secret(api_key)
        self._api_key = api_key or "EMPTY"  # local servers ignore it; never stored anywhere
        self._client: LeanAsyncOpenAI | None = None
        self._sem: asyncio.Semaphore | None = None

    @property
    def cache_scope(self) -> CacheScope:
        """The cache scope of this endpoint and model (what :class:`CachedCompleter` keys on)."""
        return CacheScope(kind="chat", endpoint=self.base_url, model=self.model)

    def _ensure(self) -> tuple[LeanAsyncOpenAI, asyncio.Semaphore]:
        if self._client is None or self._sem is None:
            limits = httpx2.Limits(
                max_connections=self.concurrency, max_keepalive_connections=self.concurrency
            )
            try:
                http_client: Any = openai.DefaultAioHttpClient(timeout=self._timeout)
            except Exception:  # aiohttp missing: fall back to the default transport
                http_client = openai.DefaultAsyncHttpxClient(limits=limits, timeout=self._timeout)
            self._client = LeanAsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key,
                max_retries=0,
                timeout=self._timeout,
                http_client=http_client,
            )
            self._sem = asyncio.Semaphore(self.concurrency)
        return self._client, self._sem

    async def complete(
        self, messages: Sequence[ChatMessage], params: SamplingParams, n: int = 1
    ) -> Completion:
        """Return ``n`` samples for ``messages``; failures come back as ``status='api_error'``."""
        if not (self.split_samples and n > 1):
            return await self._request(messages, params, n)
        parts = await asyncio.gather(*(self._request(messages, params, 1) for _ in range(n)))
        texts = [p.texts[0] if p.texts else None for p in parts]
        usage = Usage()
        for p in parts:
            usage.add(p.usage)
        failed = [p for p in parts if p.status != "ok"]
        return Completion(
            texts=texts,
            status="api_error" if failed else "ok",
            error=failed[0].error if failed else None,
            usage=usage,
            attempts=sum(p.attempts for p in parts),
        )

    async def _request(self, messages: Sequence[ChatMessage], params: SamplingParams, n: int) -> Completion:
        client, sem = self._ensure()
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), **params.payload_fields()}
        if n != 1:
            body["n"] = n
        # Pre-encoded bytes: openai deep-copies a dict body on every attempt and httpx2 re-encodes it;
        # with long judge prompts that was the largest client-side cost per call.
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        usage = Usage()
        partial: list[str | None] = [None] * n
        last_error = ""
        attempt = 0
        for attempt in self.policy.attempts():
            delay: float | None = None
            try:
                async with sem:
                    # Content-Type: application/json comes from the client's default headers.
                    resp = await client.post("/chat/completions", content=content, cast_to=httpx2.Response)
                texts, present = self._parse(json.loads(resp.content), n, usage)
                if present == n:
                    return Completion(texts=texts, usage=usage, attempts=attempt)
                # Fewer choices than asked: the whole request again (a re-asked subset would not be the
                # samples a complete answer holds), and an api_error if they never all come.
                partial = texts
                last_error = f"response had {present} of {n} requested choices"
            except openai.APIStatusError as exc:
                last_error = f"HTTP {exc.status_code}: {str(exc)[:300]}"
                if not self.policy.retryable(exc.status_code):
                    break
                delay = _retry_after(exc)
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                last_error = network_cause(exc)  # a refused connection is not "Request timed out"
            except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not a chat completion
                last_error = f"malformed response: {type(exc).__name__}: {str(exc)[:200]}"
            if self.policy.exhausted(attempt):
                break
            self.retries += 1
            await asyncio.sleep(self.policy.delay(attempt, delay))
        return Completion(
            texts=partial, status="api_error", error=redact(last_error), usage=usage, attempts=attempt
        )

    def _parse(self, data: Any, n: int, usage: Usage) -> tuple[list[str | None], int]:
        """The text of each requested choice and how many choices were present.

        A present choice whose content is null keeps ``None`` as its text (parsed later as that sample's
        failure); an absent one makes the response incomplete.
        """
        choices = data["choices"]
        if not isinstance(choices, list) or not choices:
            raise ValueError("response has no choices")
        texts: list[str | None] = [None] * n
        seen: set[int] = set()
        for pos, choice in enumerate(choices):
            idx = choice.get("index", pos)
            if isinstance(idx, int) and 0 <= idx < n:
                content = choice["message"].get("content")
                texts[idx] = content if isinstance(content, str) else None
                seen.add(idx)
        raw_usage = data.get("usage") or {}
        call = Usage(
            calls=1,
            prompt_tokens=int(raw_usage.get("prompt_tokens") or 0),
            completion_tokens=int(raw_usage.get("completion_tokens") or 0),
        )
        usage.add(call)
        self.usage.add(call)
        return texts, len(seen)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
            self._sem = None
