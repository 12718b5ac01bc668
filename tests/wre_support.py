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


def realistic_verdicts(body: dict[str, Any]) -> list[str]:
    """Responder with judge-shaped completions for any WikiRoleEval judge prompt (benchmarks, smoke runs).

    Consistency names the first listed candidate after a short analysis; knowledge ends with a score line;
    rejection answers a bare digit. Three samples differ slightly so reducers see real tallies.
    """
    prompt = body["messages"][-1]["content"]
    metric = metric_of(prompt)
    if metric == "consistency":
        zh = "[候选角色开始]" in prompt
        block = prompt.split("[候选角色开始]" if zh else "[Candidates Start]", 1)[1]
        first = next(line[2:].strip() for line in block.splitlines() if line.startswith("- "))
        tail = f"最符合的角色为[{first}]" if zh else f"The most suitable role is [{first}]"
        return [f"The reply's era, tone and facts fit one candidate best.\n{tail}"] * 3
    if metric == "knowledge":
        analysis = "The reply uses the tips accurately and adds plausible detail."
        return [f"{analysis}\n{score}" for score in ("7", "8", "Score: 7")]
    return ["0", "0", "1"]


def replay_then_judge(
    items: list[dict[str, Any]], judge: Callable[[dict[str, Any]], list[str]], *, model: str = "roleplayer"
) -> Callable[[dict[str, Any]], Any]:
    """Responder playing both sides: requests for ``model`` get the recorded reply to their last user
    message (from the items' ``messages``); every other request goes to ``judge``."""
    replies: dict[str, str] = {}
    for item in items:
        msgs = item["messages"]
        for k in range(1, len(msgs), 2):
            replies[msgs[k]["content"]] = msgs[k + 1]["content"]

    def respond(body: dict[str, Any]) -> Any:
        if body["model"] == model:
            return replies[body["messages"][-1]["content"]]
        return judge(body)

    return respond
