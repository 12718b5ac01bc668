"""Scripted judge for WikiRoleEval end-to-end tests: verdicts keyed by (metric, user query)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RESPONSES = FIXTURES / "wikiroleeval_responses.jsonl"


def metric_of(prompt: str) -> str:
    if "[Candidates Start]" in prompt or "[候选角色开始]" in prompt:
        return "consistency"
    if "[Tips Start]" in prompt or "[参考提示开始]" in prompt:
        return "knowledge"
    return "rejection"


def load_items(path: Path = RESPONSES) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_items(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    return path


def scripted_judge(
    verdicts: Mapping[tuple[str, str], list[str]], *, fallback: list[str] | None = None
) -> Callable[[dict[str, Any]], list[str]]:
    """Responder for FakeOpenAI: finds the query in the judge prompt and returns its scripted completions."""

    def respond(body: dict[str, Any]) -> list[str]:
        prompt = body["messages"][-1]["content"]
        metric = metric_of(prompt)
        for (m, query), texts in verdicts.items():
            if m == metric and query in prompt:
                return texts
        if fallback is not None:
            return fallback
        raise AssertionError(f"no scripted verdict for a {metric} prompt")

    return respond
