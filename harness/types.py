"""The small shared vocabulary of the harness."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

Role = Literal["system", "user", "assistant"]


class ChatMessage(TypedDict):
    """One chat message, in the OpenAI / ChatML shape."""

    role: str
    content: str


JudgeStatus = Literal["ok", "parse_error", "api_error"]


@dataclass(frozen=True)
class ParseResult:
    """Outcome of parsing one judge completion.

    ``value`` is the parsed verdict (a role name, 0/1, or a score) when ``status`` is ``ok``;
    otherwise ``None`` and ``reason`` says why (``empty``, ``no_verdict``, ``judge_refused``,
    ``out_of_range``, ...).
    """

    status: JudgeStatus
    value: Any = None
    reason: str | None = None


@dataclass
class Usage:
    """Token usage summed from API ``usage`` fields."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


@dataclass
class Completion:
    """Result of one chat-completion request with ``n`` samples.

    ``texts`` has one entry per requested sample (``None`` for a sample the call did not return).
    ``status`` is ``api_error`` when the request failed after its retries; ``error`` then holds the
    last error message. ``cached`` marks a result served from the response cache.
    """

    texts: list[str | None]
    status: Literal["ok", "api_error"] = "ok"
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    attempts: int = 0
    cached: bool = False
