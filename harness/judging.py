"""Judge phase: every judge prompt of every generated turn, concurrently, journalled as it finishes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.chat_client import SamplingParams
from harness.completer import Completer
from harness.journal import Journal
from harness.progress import make_progress
from harness.rollout import conversation_with_replies, replies_so_far
from harness.task import JudgeCall, JudgeSettings, Session, Task


@dataclass(frozen=True)
class PlannedCall:
    task: str
    session: Session
    call: JudgeCall


def judge_calls_for(task: Task, session: Session, replies: Sequence[str]) -> Iterator[JudgeCall]:
    """Every judge call of every replied turn of ``session``, in turn order (for the run and the plan)."""
    msgs = conversation_with_replies(session, replies)
    for turn in range(len(replies)):
        yield from task.judge_calls(session, msgs, turn)


def plan_calls(
    tasks: Mapping[str, Task], sessions: Mapping[str, Sequence[Session]], journal: Journal
) -> tuple[list[PlannedCall], int]:
    """All judge calls of generated turns; returns (pending calls, number already done)."""
    pending: list[PlannedCall] = []
    done = 0
    for name, task in tasks.items():
        for s in sessions[name]:
            for call in judge_calls_for(task, s, replies_so_far(journal, s)):
                entry = journal.judges.get((name, s.session_id, call.turn, call.metric))
                if entry is not None and entry.get("status") == "ok":
                    done += 1
                else:
                    pending.append(PlannedCall(name, s, call))
    return pending, done


def judge_entry(p: PlannedCall, result: Any) -> dict[str, Any]:
    return {
        "k": "judge",
        "task": p.task,
        "sid": p.session.session_id,
        "turn": p.call.turn,
        "metric": p.call.metric,
        "template": p.call.template,
        "status": result.status,
        "texts": result.texts,
        "error": result.error,
        "usage": {
            "calls": result.usage.calls,
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
        },
        "attempts": result.attempts,
        "cached": result.cached,
    }


def judge(
    calls: Sequence[PlannedCall],
    clients: Mapping[str, Completer],
    settings: Mapping[str, JudgeSettings],
    journal: Journal,
    done: int,
) -> dict[str, int]:
    """Run all pending judge calls; returns ``{"ok": n, "api_error": n}`` for this invocation."""
    counts = {"ok": 0, "api_error": 0}
    if calls:
        asyncio.run(_run(calls, clients, settings, journal, done, counts))
    return counts


async def _run(
    calls: Sequence[PlannedCall],
    clients: Mapping[str, Completer],
    settings: Mapping[str, JudgeSettings],
    journal: Journal,
    done: int,
    counts: dict[str, int],
) -> None:
    # Built once per task, not once per call: the judge path runs thousands of times.
    params = {
        t: SamplingParams(temperature=js.temperature, max_tokens=js.max_tokens) for t, js in settings.items()
    }
    with make_progress() as progress:
        bar = progress.add_task("judging (calls)", total=len(calls) + done, completed=done)

        async def one(p: PlannedCall) -> None:
            n = settings[p.task].samples
            result = await clients[p.task].complete(p.call.messages, params[p.task], n=n)
            journal.append(judge_entry(p, result))
            counts[result.status] += 1
            if result.status != "ok":
                progress.note_failure(bar)
            progress.advance(bar)

        try:
            await asyncio.gather(*(one(p) for p in calls))
        finally:
            for client in {id(c): c for c in clients.values()}.values():
                await client.aclose()
