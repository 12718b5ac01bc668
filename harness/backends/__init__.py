"""Model-under-test backends, taken from lm-eval's model registry by lm-eval's names, plus ``mock``.

``load_backend("hf", "pretrained=DIR,device=cpu")`` returns a :class:`ChatBackend` that turns chat
histories into replies. The harness owns the conversation (history, system prompt, trimming, seeding);
lm-eval owns the model call. ``--model mock`` is the scripted offline backend (:mod:`harness.backends.mock`).
"""

from __future__ import annotations

from typing import Any

from harness.backends.base import ChatBackend, GenerationResult, parse_kv_args, redact_args
from harness.backends.mock import MockBackend, is_mock
from harness.cache import ResponseCache
from harness.errors import ConfigError

__all__ = [
    "ChatBackend", "GenerationResult", "api_target", "load_backend", "parse_kv_args", "redact_args",
    "validate_backend",
]


def validate_backend(name: str, model_args: str | None) -> None:
    """Cheap checks of ``--model``/``--model_args`` before anything is written (no model is loaded)."""
    if is_mock(name):
        if parse_kv_args(model_args, "--model_args"):
            raise ConfigError("--model mock takes no --model_args")
        return
    from harness.backends.lmeval import validate_backend as validate_lmeval

    validate_lmeval(name, model_args)


def load_backend(
    name: str,
    model_args: str | None,
    *,
    seed: int,
    cache: ResponseCache | None = None,
    identity: str | None = None,
) -> Any:
    """The backend ``name`` (lm-eval's registry, or ``mock``) with ``--model_args`` syntax; ``identity`` is
    :func:`harness.identity.model_identity`'s ``id`` (response-cache keys)."""
    if is_mock(name):
        return MockBackend()
    from harness.backends.lmeval import load_backend as load_lmeval

    return load_lmeval(name, model_args, seed=seed, cache=cache, identity=identity)


def api_target(name: str, model_args: str | None) -> Any:
    """The preflight :class:`harness.preflight.Endpoint` of an API target; ``None`` for local models."""
    from harness.backends.lmeval import API_BACKENDS
    from harness.chat_client import OPENAI_BASE_URL
    from harness.preflight import Endpoint

    if name not in API_BACKENDS:
        return None
    args = parse_kv_args(model_args, "--model_args")
    base = args.get("base_url") or (OPENAI_BASE_URL if name == "openai-chat-completions" else None)
    model = args.get("model")
    if not base or not model:
        return None
    from harness.backends.lmeval import target_api_key

    args["base_url"] = str(base)
    key = target_api_key(name, args)  # the target's own key, as the backend itself sends it
    timeout = float(args["timeout"]) if isinstance(args.get("timeout"), int | float) else 30.0
    return Endpoint("target", str(base), str(model), key, n=1, timeout=min(timeout, 30.0))

