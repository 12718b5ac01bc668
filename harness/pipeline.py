"""The middle of a run: rollout and judging at once, on one event loop, with one journal writer.

A turn's judge calls are queued the moment its reply is journalled, so the judge works while the model
under test is still generating; turns replied before this invocation are judged from the start (while a
local model loads, too). Target and judge have their own concurrency (``num_concurrent`` in
``--model_args``; ``--judge_concurrency``) and their own circuit breaker (:mod:`harness.breaker`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.backends.base import ChatBackend
from harness.breaker import DEFAULT_MAX_CONSECUTIVE, CircuitBreaker, Trip
from harness.completer import Completer
from harness.journal import Journal
from harness.judging import Judger
from harness.progress import console, make_progress
from harness.rollout import Rollout, pending_count
from harness.task import JudgeSettings, Session, Task


@dataclass
class PhaseResult:
    rollout: dict[str, int]
    judge: dict[str, int]
    stopped: list[dict[str, Any]] = field(default_factory=list)
    backend_spec: dict[str, Any] | None = None


class _Backlog:
    """Sessions whose already-replied turns (before this invocation) still need their judge calls."""

    def __init__(self, sessions: Sequence[Session], journal: Journal) -> None:
        self.sessions = sessions
        self.journal = journal
        # Turns replied from here on are queued by the rollout itself; only these are the backlog's.
        self.replied = [len(s.prompts) - pending_count(journal, s) for s in sessions]

    def __iter__(self) -> Any:
        for s, n in zip(self.sessions, self.replied, strict=True):
            if n:
                yield s, n


def run_phases(
    *,
    tasks: Mapping[str, Task],
    sessions: Sequence[Session],
    journal: Journal,
    clients: Mapping[str, Completer],
    judges: Mapping[str, JudgeSettings],
    judge_concurrency: int,
    backend_factory: Callable[[], ChatBackend] | None = None,
    on_session_complete: Callable[[Session], None] | None = None,
    gen_kwargs_for: Callable[[Session], dict[str, Any]] | None = None,
    is_local: Callable[[ChatBackend], bool] | None = None,
    seed: int = 1234,
    max_consecutive: int = DEFAULT_MAX_CONSECUTIVE,
) -> PhaseResult:
    """Generate every missing turn (when a backend is given) and judge every replied turn."""
    return asyncio.run(_phases(
        tasks=tasks, sessions=sessions, journal=journal, clients=clients, judges=judges,
        judge_concurrency=judge_concurrency, backend_factory=backend_factory,
        on_session_complete=on_session_complete, gen_kwargs_for=gen_kwargs_for,
        is_local=is_local, seed=seed, max_consecutive=max_consecutive,
    ))


def _announce(trip: Trip) -> None:
    console.print(f"[red]stopped[/]: {trip.describe()}; re-run the same command to resume")


async def _phases(
    *,
    tasks: Mapping[str, Task],
    sessions: Sequence[Session],
    journal: Journal,
    clients: Mapping[str, Completer],
    judges: Mapping[str, JudgeSettings],
    judge_concurrency: int,
    backend_factory: Callable[[], ChatBackend] | None,
    on_session_complete: Callable[[Session], None] | None,
    gen_kwargs_for: Callable[[Session], dict[str, Any]] | None,
    is_local: Callable[[ChatBackend], bool] | None,
    seed: int,
    max_consecutive: int,
) -> PhaseResult:
    roll_breaker = CircuitBreaker("rollout", max_consecutive=max_consecutive, on_trip=_announce)
    judge_breaker = CircuitBreaker("judging", max_consecutive=max_consecutive, on_trip=_announce)
    backlog = _Backlog(sessions, journal)
    result = PhaseResult(rollout={"generated": 0, "failed": 0, "pending": 0}, judge={})
    with make_progress() as progress:
        judge_total = sum(len(s.prompts) * len(tasks[s.task].metrics) for s in sessions)
        jbar = progress.add_task("judging (calls)", total=judge_total)
        judger = Judger(
            tasks, clients, judges, journal, concurrency=judge_concurrency, breaker=judge_breaker,
            on_progress=lambda k: progress.advance(jbar, k), on_failure=lambda: progress.note_failure(jbar),
        )
        judger.on_session_complete = on_session_complete
        judger.start()
        judger.feed_backlog(backlog)
        try:
            roll: Rollout | None = None
            if backend_factory is not None:
                assert gen_kwargs_for is not None and is_local is not None
                roll = Rollout(
                    sessions, journal, gen_kwargs_for, seed=seed, breaker=roll_breaker,
                    on_turn=judger.submit_turn, on_session_done=judger.rollout_done,
                )
            rolling = {id(s) for s in roll.todo} if roll is not None else set()
            for s in sessions:
                if id(s) not in rolling:
                    judger.rollout_done(s)  # nothing to generate: complete once judged
            if roll is not None and backend_factory is not None and is_local is not None:
                if roll.todo:
                    total = sum(len(s.prompts) for s in roll.todo)
                    done = total - sum(pending_count(journal, s) for s in roll.todo)
                    rbar = progress.add_task("rollout (turns)", total=total, completed=done)
                    roll.on_progress = lambda k: progress.advance(rbar, k)
                    roll.on_failure = lambda: progress.note_failure(rbar)
                    backend = await asyncio.to_thread(backend_factory)  # the judge starts meanwhile
                    result.backend_spec = dict(getattr(backend, "spec", {}) or {})
                    result.rollout = await roll.run(backend, local=is_local(backend))
            await judger.finish()
        except BaseException:
            await judger.abort()
            raise
    result.judge = dict(judger.counts)
    result.stopped = [b.trip.as_dict() for b in (roll_breaker, judge_breaker) if b.trip is not None]
    return result
