"""The supervisor: the model that simulates queries and responses.

Any backend the harness supports can supervise, by lm-eval's names:

* ``local-chat-completions`` / ``openai-chat-completions`` (an OpenAI-compatible server such as ``vllm
  serve``, or OpenAI itself) go through :class:`harness.chat_client.ChatClient`: async, retried, ``n``
  samples in one request, many requests in flight. Its key is ``api_key=`` in ``--supervisor_args``, else
  ``$DITTO_BENCH_SUPERVISOR_API_KEY``, else ``$OPENAI_API_KEY`` only when the endpoint is the OpenAI API.
  ``revision=`` (ours, never sent) tells two models served under one name apart: it enters the supervisor's
  identity and so every cache key.
* ``hf`` / ``vllm`` (a local model) go through :func:`harness.backends.load_backend`. Requests from all
  in-flight roles are collected into batches and generated in a worker thread, so the event loop keeps
  preparing the next batch.

Both go through :class:`harness.completer.CachedCompleter`, the response cache shared with the judge.

Self-alignment (the paper's setting) is supervisor = the seed model later fine-tuned; cross-supervision uses a
different supervisor (paper §6). Decoding defaults follow App. C: top-p 0.8, repetition penalty 1.1, at most
2,048 new tokens; App. C gives no temperature, and 1.0 with sampling is what Qwen-Chat's own generation
config used [inferred].
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from harness.backends.base import GenerationResult, parse_kv_args, redact_args
from harness.cache import ResponseCache
from harness.chat_client import OPENAI_BASE_URL, ChatClient, SamplingParams, needs_api_key
from harness.completer import CacheScope, with_cache
from harness.endpoint import api_root
from harness.errors import ConfigError
from harness.redact import redact, register_secret
from harness.types import ChatMessage, Completion, Usage

SUPERVISOR_KEY_VARIABLE = "DITTO_BENCH_SUPERVISOR_API_KEY"

API_SUPERVISORS = ("local-chat-completions", "openai-chat-completions")
LOCAL_SUPERVISORS = ("hf", "hf-auto", "huggingface", "vllm")
DEFAULT_GEN_KWARGS: dict[str, Any] = {
    "do_sample": True,
    "temperature": 1.0,
    "top_p": 0.8,
    "repetition_penalty": 1.1,
    "max_gen_toks": 2048,
}
_GEN_ALIASES = {
    "max_new_tokens": "max_gen_toks",
    "max_tokens": "max_gen_toks",
    "max_completion_tokens": "max_gen_toks",
}
_API_ARG_KEYS = {
    "api_key",
    "model",
    "base_url",
    "num_concurrent",
    "max_retries",
    "timeout",
    "split_samples",
    "tokenizer_backend",
    "tokenized_requests",
    "revision",
}
LOCAL_BATCH = 32


class Supervisor(Protocol):
    """Produces ``n`` samples for one prompt; failures come back as ``status='api_error'``."""

    spec: dict[str, Any]

    async def complete(self, messages: Sequence[ChatMessage], n: int) -> Completion:
        """Sample ``n`` replies to ``messages``."""
        ...

    async def aclose(self) -> None:
        """Release connections / worker tasks of the current event loop."""
        ...


def parse_gen_kwargs(text: str | None) -> dict[str, Any]:
    """``--gen_kwargs`` (lm-eval names) merged over the App. C defaults."""
    gen = dict(DEFAULT_GEN_KWARGS)
    for key, value in parse_kv_args(text, "--gen_kwargs").items():
        gen[_GEN_ALIASES.get(key, key)] = value
    if not isinstance(gen["max_gen_toks"], int) or gen["max_gen_toks"] < 1:
        raise ConfigError(
            f"--gen_kwargs max_gen_toks must be a positive integer, got {gen['max_gen_toks']!r}"
        )
    if gen.get("until"):
        raise ConfigError("--gen_kwargs until: stop strings would cut multi-line replies; leave it unset")
    return gen


def sampling_params(name: str, gen: Mapping[str, Any]) -> SamplingParams:
    """The chat-completions request fields for lm-eval style ``gen``."""
    greedy = gen.get("do_sample") is False
    extra: dict[str, Any] = {}
    if name == "local-chat-completions":
        # vLLM / SGLang servers accept these sampling fields; OpenAI's API rejects unknown ones.
        for key in ("repetition_penalty", "top_k", "min_p"):
            if key in gen and gen[key] is not None:
                extra[key] = gen[key]
    return SamplingParams(
        temperature=0.0 if greedy else float(gen.get("temperature", 1.0)),
        max_tokens=int(gen["max_gen_toks"]),
        top_p=None if greedy or gen.get("top_p") is None else float(gen["top_p"]),
        extra=extra,
    )


class ApiSupervisor:
    """An OpenAI-compatible supervisor on :class:`ChatClient`."""

    def __init__(
        self,
        name: str,
        args: Mapping[str, Any],
        gen: Mapping[str, Any],
        *,
        concurrency: int,
        cache: ResponseCache | None,
        identity: str | None = None,
    ) -> None:
        unknown = sorted(set(args) - _API_ARG_KEYS)
        if unknown:
            raise ConfigError(
                f"--supervisor_args: unknown key(s) {', '.join(unknown)} for {name} "
                f"(known: {', '.join(sorted(_API_ARG_KEYS))})"
            )
        if "model" not in args:
            raise ConfigError(f"--supervisor_args: {name} needs model=NAME")
        base = str(args.get("base_url") or (OPENAI_BASE_URL if name == "openai-chat-completions" else ""))
        if not base:
            raise ConfigError("--supervisor_args: local-chat-completions needs base_url=http://HOST:PORT/v1")
        base = api_root(base, "--supervisor_args base_url")  # …/v1 or …/v1/chat/completions, one rule
        key = supervisor_api_key(args, base)
        if needs_api_key(base) and not key:
            raise ConfigError(
                f"{base} needs an API key: api_key= in --supervisor_args, {SUPERVISOR_KEY_VARIABLE} "
                "or OPENAI_API_KEY"
            )
        revision = args.get("revision")
        revision = None if revision in (None, "") else str(revision)
        if identity is None and revision is not None:
            # endpoint + model are in the scope already; the identity adds the revision (harness.identity).
            # Without one the keys stay those of earlier versions, so existing caches stay valid.
            from harness.identity import model_identity

            identity = str(model_identity(name, {**args, "base_url": base})["id"])
        self.params = sampling_params(name, gen)
        self.client = ChatClient(
            base_url=base,
            model=str(args["model"]),
            api_key=key,
            concurrency=concurrency,
            max_retries=int(args.get("max_retries", 6)),
            timeout=float(args.get("timeout", 300.0)),
            split_samples=bool(args.get("split_samples", False)),
        )
        scope = dataclasses.replace(self.client.cache_scope, identity=identity)
        self.cache_scope = scope  # the key scheme, with or without a cache
        self.completer = with_cache(self.client, cache, scope)
        self.spec = {
            "backend": name,
            "model": str(args["model"]),
            "base_url": base,
            "args": redact_args(args),
            "gen_kwargs": dict(gen),
            "request": self.params.payload_fields(),
        }

    async def complete(self, messages: Sequence[ChatMessage], n: int) -> Completion:
        return await self.completer.complete(messages, self.params, n=n)

    async def aclose(self) -> None:
        await self.completer.aclose()


def supervisor_api_key(args: Mapping[str, Any], base_url: str) -> str | None:
    """``api_key=`` of ``--supervisor_args``, else ``$DITTO_BENCH_SUPERVISOR_API_KEY``, else
    ``$OPENAI_API_KEY`` for the OpenAI API only (a supervisor elsewhere never gets the judge key)."""
    key = str(args["api_key"]) if args.get("api_key") else os.environ.get(SUPERVISOR_KEY_VARIABLE)
    if not key and needs_api_key(base_url):
        key = os.environ.get("OPENAI_API_KEY")
    register_secret(key)
    return key or None


class LocalSupervisor:
    """An ``hf``/``vllm`` supervisor: requests from concurrent roles are batched into one backend call."""

    def __init__(
        self,
        name: str,
        model_args: str | None,
        gen: Mapping[str, Any],
        *,
        seed: int,
        cache: ResponseCache | None,
        batch_size: int = LOCAL_BATCH,
        identity: str | None = None,
    ) -> None:
        from harness.backends import load_backend

        self.backend = load_backend(name, model_args, seed=seed, cache=None, identity=identity)
        self.gen = {**gen, "until": []}
        if gen.get("do_sample") is False:  # greedy: sampling knobs would only trigger transformers warnings
            for key in ("temperature", "top_p", "top_k", "min_p"):
                self.gen.pop(key, None)
        self.batch_size = batch_size
        self.seed = seed
        self.spec = {
            "backend": name,
            "model": self.backend.spec.get("model_args", {}).get("pretrained", name),
            "args": self.backend.spec.get("model_args", {}),
            "gen_kwargs": dict(gen),
        }
        # The model by content (harness.identity): other weights retrained into one folder miss the cache.
        self.spec["identity"] = identity or getattr(self.backend, "identity", None)
        model_id = json.dumps(self.spec["args"], sort_keys=True, default=str)
        scope = CacheScope(
            kind="supervisor-local", endpoint=name, model=model_id, identity=self.spec["identity"]
        )
        self.cache_scope = scope  # the key scheme, with or without a cache
        self.completer = with_cache(_Batched(self), cache, scope)
        self._pending: list[tuple[list[ChatMessage], asyncio.Future[GenerationResult]]] = []
        self._worker: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._batches = 0
        self._tok = getattr(getattr(self.backend, "lm", None), "tokenizer", None)

    def _count(self, text: str) -> int:
        if self._tok is None:
            return 0
        return len(self._tok(text, add_special_tokens=False)["input_ids"])

    async def complete(self, messages: Sequence[ChatMessage], n: int) -> Completion:
        return await self.completer.complete(messages, self.gen, n=n)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self.completer.aclose()

    async def _sample(self, messages: Sequence[ChatMessage], n: int) -> Completion:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(n)]
        self._pending.extend((list(messages), f) for f in futures)
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = asyncio.create_task(self._run())
        assert self._wake is not None
        self._wake.set()
        results: list[GenerationResult] = await asyncio.gather(*futures)
        errors = [r.error or "no text" for r in results if not r.ok]
        texts = [r.text if r.ok else None for r in results]
        usage = Usage(
            calls=1,
            prompt_tokens=self._count("\n".join(m["content"] for m in messages)),
            completion_tokens=sum(self._count(t) for t in texts if t),
        )
        if errors:
            return Completion(texts=texts, status="api_error", error=redact(str(errors[0])), usage=usage)
        return Completion(texts=texts, usage=usage)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.005)  # let roles that are mid-preparation join this batch
            while self._pending:
                batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
                self._batches += 1
                convs = [m for m, _ in batch]
                try:
                    results = await asyncio.to_thread(
                        self.backend.generate, convs, [self.gen] * len(convs), seed=self.seed + self._batches
                    )
                except Exception as exc:  # a backend that raises despite its contract: every request fails
                    results = [
                        GenerationResult(text=None, error=f"{type(exc).__name__}: {exc}") for _ in batch
                    ]
                for (_, fut), res in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(res)

    async def _stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None


class _Batched:
    """The :class:`harness.completer.Completer` face of a local supervisor (what the cache wraps)."""

    def __init__(self, sup: LocalSupervisor) -> None:
        self.sup = sup

    async def complete(self, messages: Sequence[ChatMessage], params: Any, n: int = 1) -> Completion:
        return await self.sup._sample(messages, n)

    async def aclose(self) -> None:
        await self.sup._stop()


def _positive_int(value: Any, where: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(f"{where}: expected a positive integer, got {value!r}")
    return number


def make_supervisor(
    name: str,
    args_text: str | None,
    gen: Mapping[str, Any],
    *,
    concurrency: int,
    seed: int,
    cache: ResponseCache | None,
    identity: str | None = None,
) -> Supervisor:
    """Build the supervisor ``name`` from ``--supervisor_args``; ``identity`` scopes its cache keys."""
    if name in API_SUPERVISORS:
        args = parse_kv_args(args_text, "--supervisor_args")
        if "num_concurrent" in args:  # lm-eval's name for it; given explicitly, it wins over --concurrency
            concurrency = _positive_int(args["num_concurrent"], "--supervisor_args num_concurrent")
        return ApiSupervisor(name, args, gen, concurrency=concurrency, cache=cache, identity=identity)
    if name in LOCAL_SUPERVISORS:
        batch = parse_kv_args(args_text, "--supervisor_args").get("batch_size", LOCAL_BATCH)
        return LocalSupervisor(
            name,
            args_text,
            gen,
            seed=seed,
            cache=cache,
            batch_size=int(batch) if str(batch).isdigit() else LOCAL_BATCH,
            identity=identity,
        )
    raise ConfigError(
        f"--supervisor {name!r}: expected one of {', '.join(API_SUPERVISORS + LOCAL_SUPERVISORS)}"
    )
