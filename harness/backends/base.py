"""The backend contract and small helpers shared by backends."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.errors import ConfigError
from harness.types import ChatMessage

_SECRET = re.compile(r"(key|token|secret|password|auth)", re.IGNORECASE)


@dataclass
class GenerationResult:
    """One generated reply, or the error that prevented it.

    ``sent_messages`` is exactly what the model saw after the harness's own handling (system prompt
    merged into the first user turn for templates without a system role, oldest turns trimmed to fit
    the context window, ``max_gen_toks`` lowered to what the context leaves); the fields record them.
    """

    text: str | None
    error: str | None = None
    sent_messages: list[ChatMessage] = field(default_factory=list)
    system_merged: bool = False
    trimmed_turns: int = 0
    truncated: bool = False
    cached: bool = False
    # Local models: the requested max_gen_toks did not fit the context with the prompt, so it was lowered to
    # what the context leaves after the prompt (the record keeps both).
    max_gen_toks_clamped: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class ChatBackend(Protocol):
    """Generates one reply per conversation."""

    name: str
    spec: dict[str, Any]

    def generate(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        gen_kwargs: Sequence[Mapping[str, Any]],
        *,
        seed: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[GenerationResult]:
        """Return one result per conversation, in order; never raises for a single failed request."""
        ...


def parse_kv_args(text: str | None, flag: str) -> dict[str, Any]:
    """Parse lm-eval style ``k=v,k2=v2`` into a dict with lm-eval's value casting."""
    from lm_eval.utils import simple_parse_args_string

    if not text:
        return {}
    for part in text.split(","):
        if part and "=" not in part:
            raise ConfigError(f"{flag}: expected key=value pairs separated by commas, got {part!r}")
    return dict(simple_parse_args_string(text))


def redact_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of ``args`` with values of secret-looking keys replaced, for run records and logs."""
    return {k: ("<redacted>" if _SECRET.search(k) else v) for k, v in args.items()}
