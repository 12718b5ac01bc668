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
from harness.chat_client import SamplingParams
from harness.completer import Completer
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

    Work is queued as light references, ``(session, turns)``, and expanded into rendered judge prompts only
    when a worker gets to it, so memory does not grow with a backlog however far the rollout runs ahead.
    ``concurrency`` workers send the calls; each client still bounds its own requests in flight. The breaker
    stops the phase: calls not sent stay pending for the next run.
    """

    def __init__(
        self,
        tasks: Mapping[str, Task],
        clients: Mapping[str, Completer],
        settings: Mapping[str, JudgeSettings],
        journal: Journal,
        *,
        concurrency: int,
        breaker: CircuitBreaker | None = None,
        on_progress: Callable[[int], None] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.on_failure = on_failure
        self.tasks, self.clients, self.settings, self.journal = tasks, clients, settings, journal
        self.breaker = breaker or CircuitBreaker("judging")
        self.on_progress = on_progress
        self.counts = {"ok": 0, "api_error": 0}
        self.done_before = 0
        self._params = {
            t: SamplingParams(temperature=js.temperature, max_tokens=js.max_tokens)
            for t, js in settings.items()
        }
        # (session, first turn, end turn): judge turns [first, end) of the session, replies read back then.
        self._turns: deque[tuple[Session, int, int]] = deque()
        self._calls: deque[PlannedCall] = deque()
        self._n_workers = max(1, concurrency)
        self._wake = asyncio.Event()
        self._closed = False
        self._workers: list[asyncio.Task[None]] = []
        # Per session (by id): queued turn items plus calls not yet finished; and sessions whose rollout is
        # over. A session with both done is handed to ``on_session_complete`` (its record can be written).
        self.on_session_complete: Callable[[Session], None] | None = None
        self._outstanding: dict[int, int] = {}
        self._rolled: set[int] = set()

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._worker()) for _ in range(self._n_workers)]

    def _push(self, p: PlannedCall) -> None:
        if self.journal.judged_ok(key_of(p), p.h):
            self.done_before += 1
            if self.on_progress is not None:
                self.on_progress(1)
            return
        self._calls.append(p)
        self._wake.set()

    def submit_turn(self, session: Session, replies: Sequence[str], turn: int) -> None:
        """Queue the judge calls of a turn whose reply was just journalled (called from the loop)."""
        if not self.breaker.open:
            self._turns.append((session, turn, turn + 1))
            self._outstanding[id(session)] = self._outstanding.get(id(session), 0) + 1
            self._wake.set()

    def feed_backlog(self, sessions: Iterable[tuple[Session, int]]) -> None:
        """Queue the first ``n`` turns of each ``(session, n)``: the turns replied before this invocation."""
        for s, n in sessions:
            self._turns.append((s, 0, n))
            self._outstanding[id(s)] = self._outstanding.get(id(s), 0) + 1
        self._wake.set()

    def rollout_done(self, session: Session) -> None:
        """No more turns of ``session`` will be generated in this invocation."""
        self._rolled.add(id(session))
        self._settle(session, 0)

    def _settle(self, session: Session, delta: int) -> None:
        key = id(session)
        left = self._outstanding.get(key, 0) + delta
        if left > 0:
            self._outstanding[key] = left
            return
        self._outstanding.pop(key, None)
        if key in self._rolled and self.on_session_complete is not None:
            self._rolled.discard(key)
            self.on_session_complete(session)

    def _expand(self) -> None:
        """Render the judge calls of the next queued turns (replies read back from the journal)."""
        s, first, end = self._turns.popleft()
        replies = replies_so_far(self.journal, s)[:end]
        if len(replies) < end:  # cannot happen for journalled replies; never judge a reply not recorded
            end = len(replies)
        task = self.tasks[s.task]
        before = len(self._calls)
        for turn in range(first, end):
            for p in turn_calls(task, s, replies, turn):
                self._push(p)
        self._settle(s, len(self._calls) - before - 1)  # the calls queued now, less the item

    async def _worker(self) -> None:
        while True:
            while not self._calls:
                if self.breaker.open:
                    return
                if self._turns:
                    self._expand()
                    continue
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
            if self.breaker.open:
                return
            p = self._calls.popleft()
            n = self.settings[p.task].samples
            result = await self.clients[p.task].complete(p.call.messages, self._params[p.task], n=n)
            entry = judge_entry(p, result)
            self.journal.append(entry)
            self.counts[entry["status"]] += 1
            if entry["status"] == "ok":
                self.breaker.success()
            else:
                if self.on_failure is not None:
                    self.on_failure()
                if entry.get("reason") != "oversized":
                    self.breaker.failure(entry["error"])
            if self.on_progress is not None:
                self.on_progress(1)
            self._settle(p.session, -1)

    async def finish(self) -> None:
        """Wait until every queued call is done (or the breaker stopped the phase), then close clients."""
        self._closed = True
        self._wake.set()
        try:
            await asyncio.gather(*self._workers)
        finally:
            await self._close_clients()

    async def abort(self) -> None:
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await self._close_clients()

    async def _close_clients(self) -> None:
        for client in {id(c): c for c in self.clients.values()}.values():
            await client.aclose()

def judge(
    calls: Sequence[PlannedCall],
    clients: Mapping[str, Completer],
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
    clients: Mapping[str, Completer],
    settings: Mapping[str, JudgeSettings],
    journal: Journal,
    done: int,
    counts: dict[str, int],
) -> None:
    concurrency = max(int(getattr(c, "concurrency", 32)) for c in clients.values())
    with make_progress() as progress:
        bar = progress.add_task("judging (calls)", total=len(calls) + done, completed=done)
        judger = Judger({}, clients, settings, journal, concurrency=concurrency,
                        on_progress=lambda k: progress.advance(bar, k),
                        on_failure=lambda: progress.note_failure(bar))
        judger.start()
        for p in calls:
            judger._push(p)
        await judger.finish()
    counts.update(judger.counts)
