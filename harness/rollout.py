"""Multi-turn rollout of the model under test: per session for API targets, per turn index for local ones.

The harness owns the conversation: turns in the order of the session's prompts, the full history each
turn, the session's system text unchanged as the system message. A failed turn is journalled as an
error; its session stops there and a re-run retries it. Nothing is ever dropped.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.backends.base import ChatBackend, GenerationResult
from harness.breaker import CircuitBreaker
from harness.journal import MAX_COMPLETION_BYTES, Journal, oversized
from harness.progress import make_progress
from harness.task import Session
from harness.types import ChatMessage


def normalise_gen_kwargs(gk: Mapping[str, Any], *, local: bool) -> dict[str, Any]:
    """Make sampling explicit: lm-eval's HF path samples only when ``do_sample`` is set."""
    out = dict(gk)
    temperature = float(out.get("temperature", 0.0) or 0.0)
    if local and "do_sample" not in out:
        out["do_sample"] = temperature > 0.0
    if not local:
        out.pop("do_sample", None)  # not an API parameter; lm-eval drops it anyway
    return out


def conversation_with_replies(session: Session, replies: Sequence[str]) -> list[ChatMessage]:
    """System (if any), then a (user, assistant) pair per reply: what the judge sees, and turn history."""
    msgs: list[ChatMessage] = []
    if session.system is not None:
        msgs.append({"role": "system", "content": session.system})
    for t, reply in enumerate(replies):
        msgs.append({"role": "user", "content": session.prompts[t]})
        msgs.append({"role": "assistant", "content": reply})
    return msgs


def conversation(session: Session, replies: Sequence[str], turn: int) -> list[ChatMessage]:
    """What the model is sent for ``turn``: the history of the earlier turns, then the turn's user message."""
    return [
        *conversation_with_replies(session, replies[:turn]),
        {"role": "user", "content": session.prompts[turn]},
    ]


def replies_so_far(journal: Journal, session: Session) -> list[str]:
    """The contiguous prefix of successfully generated replies recorded for ``session``."""
    out: list[str] = []
    if session.given_replies is not None:
        return list(session.given_replies)
    for t in range(len(session.prompts)):
        key = (session.task, session.session_id, t)
        if not journal.gen_ok(key):
            break
        out.append(journal.gens[key]["text"])
    return out


def pending_count(journal: Journal, session: Session) -> int:
    """Turns of ``session`` still to generate (without reading any entry back)."""
    if session.given_replies is not None:
        return 0
    for t in range(len(session.prompts)):
        if not journal.gen_ok((session.task, session.session_id, t)):
            return len(session.prompts) - t
    return 0


def final_reply(session: Session, res: GenerationResult, *, local: bool) -> str | None:
    """The reply as stored and sent back as history (stripped where the task asks it for local models)."""
    if not res.ok or res.text is None:
        return None
    return res.text.strip() if local and session.strip_local_replies else res.text


def expected_sent(
    session: Session, history: Sequence[str], turn: int, *, merged: bool, drop_pairs: int
) -> list[ChatMessage]:
    """What a backend sends for ``turn`` after its own handling: oldest pairs dropped, system merged."""
    from harness.backends.lmeval import merge_system, trim_history

    msgs = trim_history(conversation(session, history, turn), drop_pairs)
    return merge_system(msgs) if merged else msgs


def gen_entry(
    session: Session,
    turn: int,
    res: GenerationResult,
    gen_kwargs: Mapping[str, Any],
    *,
    text: str | None,
    history: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Journal entry of one generated turn; ``raw_text`` keeps the backend's text when ``text`` differs.

    The messages sent are stored once: when they are the session's own history (``history``, the replies
    of the earlier turns, each stored in its own turn's entry), as handled by the backend, the entry keeps
    only ``sent`` (how many oldest pairs were dropped, whether the system text was merged), from which
    :func:`sent_messages` rebuilds them; the journal then grows linearly with the conversation. Anything
    else is stored verbatim in ``sent_messages``. A reply over ``MAX_COMPLETION_BYTES`` is an error
    (``oversized``), not stored.
    """
    status, error = ("ok", None) if res.ok else ("error", res.error or "no text")
    size = oversized(res.text) if res.ok else None
    if size is not None:
        status, text = "error", None
        error = f"oversized: a reply of {size} bytes (limit {MAX_COMPLETION_BYTES})"
    entry: dict[str, Any] = {
        "k": "gen",
        "task": session.task,
        "sid": session.session_id,
        "turn": turn,
        "status": status,
        "text": text,  # None unless the generation succeeded (final_reply)
        "error": error,
    }
    if size is not None:
        entry["reason"] = "oversized"
    sent = list(res.sent_messages)
    if history is not None and sent and sent == expected_sent(
        session, history, turn, merged=res.system_merged, drop_pairs=res.trimmed_turns
    ):
        entry["sent"] = {"history": True}
    else:
        entry["sent_messages"] = sent
    entry.update({
        "system_merged": res.system_merged,
        "trimmed_turns": res.trimmed_turns,
        "truncated": res.truncated,
        "cached": res.cached,
        "gen_kwargs": dict(gen_kwargs),
    })
    if status == "ok" and text != res.text:
        entry["raw_text"] = res.text
    if res.max_gen_toks_clamped is not None:  # the context could not hold the requested max_gen_toks
        entry["max_gen_toks_clamped"] = res.max_gen_toks_clamped
    return entry


def sent_messages(entry: Mapping[str, Any], session: Session, history: Sequence[str]) -> list[ChatMessage]:
    """The messages a journalled turn was sent (rebuilt from the history when stored by reference)."""
    if "sent_messages" in entry:
        return list(entry["sent_messages"])
    return expected_sent(
        session, history, int(entry["turn"]), merged=bool(entry.get("system_merged")),
        drop_pairs=int(entry.get("trimmed_turns") or 0),
    )


def pending_turns(sessions: Sequence[Session], journal: Journal) -> int:
    return sum(pending_count(journal, s) for s in sessions)


TurnDone = Callable[[Session, list[str], int], None]  # session, its replies so far, the turn just replied


class Rollout:
    """Generates every missing turn, calling ``on_turn`` (on the event loop) as each reply is journalled.

    API backends with a per-request path (``agenerate``) run each session as its own unit of work:
    ``concurrency`` workers on one connection pool, each taking the ready session with the most turns
    left, so a session advances the moment its reply arrives. Other backends (local models) are called
    once per turn index across all sessions, as before, so batching and seeds are unchanged; each such
    call runs in a worker thread while the judge goes on.
    """

    def __init__(
        self,
        sessions: Sequence[Session],
        journal: Journal,
        gen_kwargs_for: Callable[[Session], dict[str, Any]],
        *,
        seed: int,
        breaker: CircuitBreaker | None = None,
        on_turn: TurnDone | None = None,
        on_progress: Callable[[int], None] | None = None,
        on_session_done: Callable[[Session], None] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.on_session_done = on_session_done
        self.on_failure = on_failure
        self.todo = [s for s in sessions if s.given_replies is None and pending_count(journal, s) > 0]
        self.journal = journal
        self.gen_kwargs_for = gen_kwargs_for
        self.seed = seed
        self.breaker = breaker or CircuitBreaker("rollout")
        self.on_turn = on_turn
        self.on_progress = on_progress
        self.counts = {"generated": 0, "failed": 0, "pending": 0}

    def _record(self, s: Session, replies: list[str], turn: int, res: GenerationResult, gk: Mapping[str, Any],
                *, local: bool) -> bool:
        text = final_reply(s, res, local=local)
        entry = gen_entry(s, turn, res, gk, text=text, history=replies)
        self.journal.append(entry)
        if self.on_progress is not None:
            self.on_progress(1)
        ok = entry["status"] == "ok"
        if ok:
            replies.append(entry["text"])
            self.counts["generated"] += 1
            self.breaker.success()
            if self.on_turn is not None:
                self.on_turn(s, replies, turn)
        else:
            self.counts["failed"] += 1
            if self.on_failure is not None:
                self.on_failure()
            if entry.get("reason") != "oversized":  # one runaway reply says nothing about the endpoint
                self.breaker.failure(entry["error"])
        if (not ok or turn + 1 == len(s.prompts)) and self.on_session_done is not None:
            self.on_session_done(s)  # this session's rollout is over for this invocation
        return ok

    async def run(self, backend: ChatBackend, *, local: bool) -> dict[str, int]:
        if self.todo:
            if not local and getattr(backend, "per_request", False):
                await self._per_session(backend)
            else:
                await self._per_turn(backend, local=local)
        self.counts["pending"] = pending_turns(self.todo, self.journal)
        return self.counts

    async def _per_turn(self, backend: ChatBackend, *, local: bool) -> None:
        replies = {id(s): replies_so_far(self.journal, s) for s in self.todo}
        max_turns = max(len(s.prompts) for s in self.todo)
        for turn in range(max_turns):
            if self.breaker.open:
                return
            batch = [s for s in self.todo if len(s.prompts) > turn and len(replies[id(s)]) == turn]
            if not batch:
                continue
            convs = [conversation(s, replies[id(s)], turn) for s in batch]
            gks = [normalise_gen_kwargs(self.gen_kwargs_for(s), local=local) for s in batch]
            results = await asyncio.to_thread(backend.generate, convs, gks, seed=self.seed + turn)
            for s, res, gk in zip(batch, results, gks, strict=True):
                self._record(s, replies[id(s)], turn, res, gk, local=local)

    async def _per_session(self, backend: Any) -> None:
        ready: list[tuple[int, int, Session, list[str]]] = []
        for order, s in enumerate(self.todo):
            r = replies_so_far(self.journal, s)
            heapq.heappush(ready, (-(len(s.prompts) - len(r)), order, s, r))
        busy = 0
        wake = asyncio.Condition()

        async def worker() -> None:
            nonlocal busy
            while True:
                async with wake:
                    while not ready and busy and not self.breaker.open:
                        await wake.wait()
                    if self.breaker.open or not ready:
                        wake.notify_all()
                        return
                    _, order, s, replies = heapq.heappop(ready)
                    busy += 1
                try:
                    turn = len(replies)
                    gk = normalise_gen_kwargs(self.gen_kwargs_for(s), local=False)
                    res = await backend.agenerate(conversation(s, replies, turn), gk, seed=self.seed + turn)
                    if self._record(s, replies, turn, res, gk, local=False) and turn + 1 < len(s.prompts):
                        heapq.heappush(ready, (-(len(s.prompts) - turn - 1), order, s, replies))
                finally:
                    async with wake:
                        busy -= 1
                        wake.notify_all()

        n = max(1, int(getattr(backend, "concurrency", 1)))
        try:
            await asyncio.gather(*(worker() for _ in range(min(n, len(ready)))))
        finally:
            aclose = getattr(backend, "aclose", None)
            if callable(aclose):
                await aclose()


def rollout(
    sessions: Sequence[Session],
    journal: Journal,
    backend_factory: Callable[[], ChatBackend],
    gen_kwargs_for: Callable[[Session], dict[str, Any]],
    *,
    seed: int,
    is_local: Callable[[ChatBackend], bool],
) -> dict[str, int]:
    """Generate every missing turn (no judging); returns counts ``{"generated", "failed", "pending"}``."""
    roll = Rollout(sessions, journal, gen_kwargs_for, seed=seed)
    if not roll.todo:
        return roll.counts
    backend = backend_factory()
    with make_progress() as progress:
        total = sum(len(s.prompts) for s in roll.todo)
        done = total - pending_turns(roll.todo, journal)
        bar = progress.add_task("rollout (turns)", total=total, completed=done)
        roll.on_progress = lambda k: progress.advance(bar, k)
        roll.on_failure = lambda: progress.note_failure(bar)
        return asyncio.run(roll.run(backend, local=is_local(backend)))
