"""What the rollout stores and sends back as history: FastChat's strip of local MT-Bench replies only."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import GenerationResult
from harness.journal import Journal
from harness.rollout import rollout
from harness.task import Session
from harness.types import ChatMessage


class ScriptedBackend:
    """Replies '  reply N \\n' (whitespace around it) and remembers every conversation it was given."""

    name = "scripted"
    spec: dict[str, Any] = {}

    def __init__(self, *, is_api: bool) -> None:
        self.is_api = is_api
        self.seen: list[list[ChatMessage]] = []

    def generate(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        gen_kwargs: Sequence[Mapping[str, Any]],
        *,
        seed: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[GenerationResult]:
        out = []
        for conv in conversations:
            self.seen.append(list(conv))
            turn = sum(1 for m in conv if m["role"] == "user")
            out.append(GenerationResult(text=f"  reply {turn} \n", sent_messages=list(conv)))
        return out


def _run(tmp_path: Path, *, strip: bool, is_api: bool) -> tuple[Journal, ScriptedBackend]:
    session = Session(
        task="t", session_id="s1", index=0, system=None, prompts=["q1", "q2"], strip_local_replies=strip
    )
    journal = Journal(tmp_path / "journal.jsonl")
    backend = ScriptedBackend(is_api=is_api)
    counts = rollout(
        [session], journal, lambda: backend, lambda s: {}, seed=0,
        is_local=lambda b: not getattr(b, "is_api", True),
    )
    assert counts == {"generated": 2, "failed": 0, "pending": 0}
    return journal, backend


def test_local_reply_is_stripped_when_the_task_asks_and_raw_text_is_kept(tmp_path: Path) -> None:
    journal, backend = _run(tmp_path, strip=True, is_api=False)
    first = journal.gens[("t", "s1", 0)]
    assert first["text"] == "reply 1" and first["raw_text"] == "  reply 1 \n"
    assert backend.seen[1][1] == {"role": "assistant", "content": "reply 1"}  # stripped history for turn 2
    reloaded = Journal(tmp_path / "journal.jsonl")  # resume sees the same stripped text
    assert reloaded.gens[("t", "s1", 1)]["text"] == "reply 2"


@pytest.mark.parametrize(("strip", "is_api"), [(True, True), (False, False)])
def test_api_replies_and_other_tasks_keep_the_text_as_returned(
    tmp_path: Path, strip: bool, is_api: bool
) -> None:
    journal, backend = _run(tmp_path, strip=strip, is_api=is_api)
    first = journal.gens[("t", "s1", 0)]
    assert first["text"] == "  reply 1 \n" and "raw_text" not in first
    assert backend.seen[1][1]["content"] == "  reply 1 \n"
