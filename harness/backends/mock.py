"""``--model mock``, ``--judge_model mock``: a scripted target and judge needing no model, key or network.

For smoke runs and demos (as Inspect's ``mockllm``): replies and verdicts are deterministic functions of the
messages (a sha256 of them), every text starts with ``[mock]`` so no record can pass for a real model's, and
the run record, the results table and any leaderboard note say ``mock``. The verdicts are shaped to parse
for every WikiRoleEval metric (consistency names one of the listed candidates, knowledge ends with a 1-10
score, rejection is a bare 0/1) and for MT-Bench's ``[[rating]]``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.backends.base import GenerationResult
from harness.types import ChatMessage, Completion, Usage

MOCK = "mock"
_CANDIDATE_BLOCKS = (("[Candidates Start]", "[Candidates End]"), ("[候选角色开始]", "[候选角色结束]"))
_TIPS = ("[Tips Start]", "[参考提示开始]")


def _digest(*parts: Any) -> int:
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


def is_mock(name: str | None) -> bool:
    return name == MOCK


class MockBackend:
    """The model under test: one scripted reply per conversation, a function of its messages and seed."""

    name = MOCK
    is_api = True  # no tokenizer, no local post-processing

    def __init__(self) -> None:
        self.spec: dict[str, Any] = {"model": MOCK, "model_args": {}, "api": False, "mock": True}

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
            out.append(GenerationResult(text=mock_reply(conv, seed), sent_messages=list(conv)))
        if on_progress:
            on_progress(len(out))
        return out


def mock_reply(conv: Sequence[ChatMessage], seed: int) -> str:
    """``[mock] …`` quoting the start of the last user message; in Chinese when that message is."""
    last = next((m["content"] for m in reversed(conv) if m["role"] == "user"), "")
    k = _digest([dict(m) for m in conv], seed) % 3
    if re.search(r"[\u4e00-\u9fff]", last):
        lines = ("我记得很清楚。", "这个问题让我想起往事。", "我不知道你说的是什么。")
        return f"[mock] 关于“{last[:30]}”：{lines[k]}"
    lines = ("I remember it well.", "That takes me back.", "I do not know what you mean.")
    return f"[mock] On '{last[:60]}': {lines[k]}"


def mock_verdict(prompt: str, sample: int) -> str:
    """A judge completion that parses for the metric the prompt asks about."""
    k = _digest(prompt, sample)
    if "[[rating]]" in prompt:
        return f"[mock] Scripted judgment.\nRating: [[{1 + k % 10}]]"
    for start, end in _CANDIDATE_BLOCKS:
        if start in prompt:
            block = prompt.split(start, 1)[1].split(end, 1)[0]
            names = [ln.strip()[2:].strip() for ln in block.splitlines() if ln.strip().startswith("- ")]
            name = names[k % len(names)] if names else "nobody"
            if start.startswith("[候"):
                return f"[mock] 逐步分析。\n最符合的角色为[{name}]"
            return f"[mock] Step by step.\nThe most suitable role is [{name}]"
    if any(t in prompt for t in _TIPS):
        return f"[mock] Scripted analysis.\n{1 + k % 10}"
    return f"[mock] Scripted verdict.\n{k % 2}"


class MockJudge:
    """Drop-in for :class:`harness.chat_client.ChatClient` in the judge phase: scripted, never cached."""

    def __init__(self) -> None:
        self.model = MOCK
        self.base_url = MOCK
        self.usage = Usage()
        self.cached_calls = 0
        self.retries = 0
        self.cache = None

    async def complete(self, messages: Sequence[ChatMessage], params: Any, n: int = 1) -> Completion:
        prompt = "\n".join(m["content"] for m in messages)
        texts: list[str | None] = [mock_verdict(prompt, i) for i in range(n)]
        usage = Usage(calls=1, prompt_tokens=0, completion_tokens=0)
        self.usage.add(usage)
        return Completion(texts=texts, usage=usage, attempts=1)

    async def aclose(self) -> None:
        return None
