"""Judge phase: every judge prompt of every generated turn, concurrently, journalled as it finishes.

The judge runs beside the rollout: a turn's judge calls are queued the moment its reply is journalled
(:meth:`Judger.submit_turn`), and the turns replied before this invocation (a resume, or ``judge`` on
existing responses) are fed in lazily (:meth:`Judger.feed_backlog`), so the number of planned calls held
at once stays bounded. Every journal entry carries the hash of the messages it judged; a judgment counts
as done only when that hash matches the prompt built from the reply now in the record.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.breaker import CircuitBreaker
from harness.chat_client import ChatClient, SamplingParams
from harness.journal import MAX_COMPLETION_BYTES, Journal, messages_hash, oversized
from harness.progress import make_progress
from harness.rollout import conversation_with_replies, replies_so_far
from harness.task import JudgeCall, JudgeSettings, Session, Task


@dataclass(frozen=True)
class PlannedCall:
    task: str
    session: Session
    call: JudgeCall
    h: str = ""  # messages_hash(call.messages)


def judge_calls_for(task: Task, session: Session, replies: Sequence[str]) -> Iterator[JudgeCall]:
    """Every judge call of every replied turn of ``session``, in turn order (for the run and the plan)."""
    msgs = conversation_with_replies(session, replies)
    for turn in range(len(replies)):
        yield from task.judge_calls(session, msgs, turn)


def turn_calls(task: Task, session: Session, replies: Sequence[str], turn: int) -> list[PlannedCall]:
    """The judge calls of one replied turn (they depend on the replies up to ``turn`` only)."""
    msgs = conversation_with_replies(session, replies[: turn + 1])
    return [PlannedCall(session.task, session, c, messages_hash(c.messages))
            for c in task.judge_calls(session, msgs, turn)]


def plan_calls(
    tasks: Mapping[str, Task], sessions: Mapping[str, Sequence[Session]], journal: Journal
) -> tuple[list[PlannedCall], int]:
    """All judge calls of generated turns; returns (pending calls, number already done)."""
    pending: list[PlannedCall] = []
    done = 0
    for name, task in tasks.items():
        for s in sessions[name]:
            for p in session_calls(task, s, replies_so_far(journal, s)):
                if journal.judged_ok(key_of(p), p.h):
                    done += 1
                else:
                    pending.append(p)
    return pending, done


def session_calls(task: Task, session: Session, replies: Sequence[str]) -> Iterator[PlannedCall]:
    for call in judge_calls_for(task, session, replies):
        yield PlannedCall(session.task, session, call, messages_hash(call.messages))


def key_of(p: PlannedCall) -> tuple[str, str, int, str]:
    return (p.task, p.session.session_id, p.call.turn, p.call.metric)


def judge_entry(p: PlannedCall, result: Any) -> dict[str, Any]:
    status, error, texts = result.status, result.error, result.texts
    sizes = [s for s in (oversized(t) for t in texts) if s is not None]
    reason = None
    if sizes:
        status, reason = "api_error", "oversized"
        error = f"oversized: a judge completion of {max(sizes)} bytes (limit {MAX_COMPLETION_BYTES})"
        texts = [None] * len(texts)
    entry = {
        "k": "judge",
        "task": p.task,
        "sid": p.session.session_id,
        "turn": p.call.turn,
        "metric": p.call.metric,
        "template": p.call.template,
        "h": p.h or messages_hash(p.call.messages),
        "status": status,
        "texts": texts,
        "error": error,
        "usage": {
            "calls": result.usage.calls,
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
        },
        "attempts": result.attempts,
        "cached": result.cached,
    }
    if reason is not None:
        entry["reason"] = reason
    return entry


class Judger:
    """Concurrent judge calls fed while the rollout goes on; one journal writer (the event loop).

    ``concurrency`` workers take planned calls from a queue; each client still bounds its own requests in
    flight. The breaker stops the phase: calls not sent stay pending for the next run.
    """

    def __init__(
        self,
        tasks: Mapping[str, Task],
        clients: Mapping[str, ChatClient],
        settings: Mapping[str, JudgeSettings],
        journal: Journal,
        *,
        concurrency: int,
        breaker: CircuitBreaker | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.tasks, self.clients, self.settings, self.journal = tasks, clients, settings, journal
        self.breaker = breaker or CircuitBreaker("judging")
        self.on_progress = on_progress
        self.counts = {"ok": 0, "api_error": 0}
        self.done_before = 0
        self._params = {
            t: SamplingParams(temperature=js.temperature, max_tokens=js.max_tokens)
            for t, js in settings.items()
        }
        self._queue: deque[PlannedCall] = deque()
        self._n_workers = max(1, concurrency)
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._closed = False
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._worker()) for _ in range(self._n_workers)]

    def _push(self, p: PlannedCall) -> None:
        if self.journal.judged_ok(key_of(p), p.h):
            self.done_before += 1
            if self.on_progress is not None:
                self.on_progress(1)
            return
        self._queue.append(p)
        self._wake.set()

    def submit_turn(self, session: Session, replies: Sequence[str], turn: int) -> None:
        """Queue the judge calls of a turn whose reply was just journalled (called from the loop)."""
        if self.breaker.open:
            return
        for p in turn_calls(self.tasks[session.task], session, replies, turn):
            self._push(p)

    async def feed_backlog(self, sessions: Iterable[tuple[Session, int]]) -> None:
        """Queue the calls of the first ``n`` turns of each ``(session, n)`` (replied before this
        invocation), a few at a time so that the planned calls held stay bounded."""
        high = 4 * self._n_workers
        for s, n in sessions:
            replies = replies_so_far(self.journal, s)[:n]
            for p in session_calls(self.tasks[s.task], s, replies):
                if self.breaker.open:
                    return
                self._push(p)
            while len(self._queue) >= high and not self.breaker.open:
                self._room.clear()
                await self._room.wait()

    async def _worker(self) -> None:
        try:
            await self._work()
        finally:
            self._room.set()  # a feeder waiting for room must see the phase end

    async def _work(self) -> None:
        while True:
            while not self._queue:
                if self._closed or self.breaker.open:
                    return
                self._wake.clear()
                await self._wake.wait()
            if self.breaker.open:
                return
            p = self._queue.popleft()
            if len(self._queue) < 2 * self._n_workers:
                self._room.set()
            n = self.settings[p.task].samples
            result = await self.clients[p.task].complete(p.call.messages, self._params[p.task], n=n)
            entry = judge_entry(p, result)
            self.journal.append(entry)
            self.counts[entry["status"]] += 1
            if entry["status"] == "ok":
                self.breaker.success()
            elif entry.get("reason") != "oversized":
                self.breaker.failure(entry["error"])
            if self.on_progress is not None:
                self.on_progress(1)

    async def finish(self) -> None:
        """Wait until every queued call is done (or the breaker stopped the phase), then close clients."""
        self._closed = True
        self._wake.set()
        self._room.set()
        try:
            await asyncio.gather(*self._workers)
        finally:
            for client in {id(c): c for c in self.clients.values()}.values():
                await client.aclose()

    async def abort(self) -> None:
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for client in {id(c): c for c in self.clients.values()}.values():
            await client.aclose()


def judge(
    calls: Sequence[PlannedCall],
    clients: Mapping[str, ChatClient],
    settings: Mapping[str, JudgeSettings],
    journal: Journal,
    done: int,
) -> dict[str, int]:
    """Run planned judge calls on their own (no rollout); returns ``{"ok": n, "api_error": n}``."""
    counts = {"ok": 0, "api_error": 0}
    if calls:
        asyncio.run(_run(calls, clients, settings, journal, done, counts))
    return counts


async def _run(
    calls: Sequence[PlannedCall],
    clients: Mapping[str, ChatClient],
    settings: Mapping[str, JudgeSettings],
    journal: Journal,
    done: int,
    counts: dict[str, int],
) -> None:
    concurrency = max(c.concurrency for c in clients.values())
    with make_progress() as progress:
        bar = progress.add_task("judging (calls)", total=len(calls) + done, completed=done)
        judger = Judger({}, clients, settings, journal, concurrency=concurrency,
                        on_progress=lambda k: progress.advance(bar, k))
        judger.start()
        for p in calls:
            judger._push(p)
        await judger.finish()
    counts.update(judger.counts)
