"""Load and check SFT data before any training starts: `{"messages": [{role, content}, ...]}` per JSONL line.

Every problem becomes one DataError line naming file:line (exit 2 from the CLI), so a bad file costs seconds,
not a GPU allocation. Token statistics (`token_stats`) need a tokenizer and are computed separately.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import DataError
from harness.jsonl import file_sha256
from harness.types import ChatMessage

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class DataSummary:
    """What was read: file checksum and counts (stored in the training record)."""

    path: str
    sha256: str
    rows: int
    messages: int
    assistant_turns: int


@dataclass(frozen=True)
class TokenStats:
    """Token counts under the chat template actually used for training."""

    tokens: int
    assistant_tokens: int
    longest: int
    rows_truncated: int
    rows_without_assistant_tokens: int

    def as_dict(self) -> dict[str, int]:
        """Plain dict for the record and the dry-run summary."""
        return asdict(self)


def _check_row(obj: Any) -> tuple[list[ChatMessage], int]:
    """Validate one decoded line; return its messages and assistant-turn count, else raise ValueError."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "messages" not in obj:
        keys = ", ".join(sorted(str(k) for k in obj)) or "none"
        raise ValueError(f"missing 'messages' (keys present: {keys})")
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    out: list[ChatMessage] = []
    assistant_turns = 0
    for i, msg in enumerate(messages, start=1):
        if not isinstance(msg, dict):
            raise ValueError(f"message {i} is not an object")
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            raise ValueError(f"message {i} has role {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise ValueError(f"message {i} ({role}) needs string 'content', got {type(content).__name__}")
        if role == "system" and i != 1:
            raise ValueError(f"message {i} is a system message; only the first message may be one")
        if role == "assistant":
            if not content.strip():
                raise ValueError(f"message {i} (assistant) has empty content")
            assistant_turns += 1
        out.append({"role": role, "content": content})
    if assistant_turns == 0:
        raise ValueError("conversation has no assistant turn, so there is nothing to train on")
    return out, assistant_turns


def load_conversations(path: str | Path) -> tuple[list[list[ChatMessage]], DataSummary]:
    """Read and validate a `{"messages": [...]}` JSONL file.

    Blank lines are skipped; other keys on a row (ids, metadata) are ignored. Raises DataError with one line:
    the first bad `file:line` and its reason, plus how many other lines are bad.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    conversations: list[list[ChatMessage]] = []
    first_error: str | None = None
    bad_lines = 0
    n_messages = n_assistant = 0
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    messages, turns = _check_row(json.loads(line))
                except json.JSONDecodeError as exc:
                    reason = f"invalid JSON ({exc.msg} at column {exc.colno})"
                except ValueError as exc:
                    reason = str(exc)
                else:
                    conversations.append(messages)
                    n_messages += len(messages)
                    n_assistant += turns
                    continue
                bad_lines += 1
                if first_error is None:
                    first_error = f"{path}:{lineno}: {reason}"
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if first_error is not None:
        more = f" (and {bad_lines - 1} more bad line(s))" if bad_lines > 1 else ""
        raise DataError(first_error + more)
    if not conversations:
        raise DataError(f"{path}: no conversations (the file is empty)")
    summary = DataSummary(
        path=str(path),
        sha256=file_sha256(path),
        rows=len(conversations),
        messages=n_messages,
        assistant_turns=n_assistant,
    )
    return conversations, summary


def token_stats(
    conversations: Sequence[list[ChatMessage]], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> TokenStats:
    """Tokenize every conversation with the tokenizer's (training) chat template and count tokens.

    `assistant_tokens` counts tokens inside the template's {% generation %} spans (the labelled ones) before
    truncation; a row whose labelled tokens all lie beyond `max_length` is counted in
    `rows_without_assistant_tokens` (TRL drops such rows).
    """
    total = assistant = longest = truncated = empty = 0
    for messages in conversations:
        enc: Any = tokenizer.apply_chat_template(
            [{"role": m["role"], "content": m["content"]} for m in messages],
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        ids: list[int] = list(enc["input_ids"])
        mask: list[int] = list(enc["assistant_masks"])
        total += len(ids)
        assistant += sum(mask)
        longest = max(longest, len(ids))
        if len(ids) > max_length:
            truncated += 1
        if not any(mask[:max_length]):
            empty += 1
    return TokenStats(
        tokens=total,
        assistant_tokens=assistant,
        longest=longest,
        rows_truncated=truncated,
        rows_without_assistant_tokens=empty,
    )
