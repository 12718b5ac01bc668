"""Multi-turn rollout of the model under test, batched turn by turn across all sessions.

The harness owns the conversation: turns in the order of the session's prompts, the full history each
turn, the session's system text unchanged as the system message. A failed turn is journalled as an
error; its session stops there and a re-run retries it. Nothing is ever dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.backends.base import ChatBackend, GenerationResult
from harness.journal import Journal
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
        entry = journal.gens.get((session.task, session.session_id, t))
        if entry is None or entry.get("status") != "ok":
            break
        out.append(entry["text"])
    return out


def final_reply(session: Session, res: GenerationResult, *, local: bool) -> str | None:
    """The reply as stored and sent back as history (stripped where the task asks it for local models)."""
    if not res.ok or res.text is None:
        return None
    return res.text.strip() if local and session.strip_local_replies else res.text


def gen_entry(
    session: Session, turn: int, res: GenerationResult, gen_kwargs: Mapping[str, Any], *, text: str | None
) -> dict[str, Any]:
    """Journal entry of one generated turn; ``raw_text`` keeps the backend's text when ``text`` differs."""
    entry: dict[str, Any] = {
        "k": "gen",
        "task": session.task,
        "sid": session.session_id,
        "turn": turn,
        "status": "ok" if res.ok else "error",
        "text": text,  # None unless the generation succeeded (final_reply)
        "error": None if res.ok else (res.error or "no text"),
        "sent_messages": res.sent_messages,
        "system_merged": res.system_merged,
        "trimmed_turns": res.trimmed_turns,
        "truncated": res.truncated,
        "cached": res.cached,
        "gen_kwargs": dict(gen_kwargs),
    }
    if res.ok and text != res.text:
        entry["raw_text"] = res.text
    if res.max_gen_toks_clamped is not None:  # the context could not hold the requested max_gen_toks
        entry["max_gen_toks_clamped"] = res.max_gen_toks_clamped
    return entry


def pending_turns(sessions: Sequence[Session], journal: Journal) -> int:
    return sum(len(s.prompts) - len(replies_so_far(journal, s)) for s in sessions if s.given_replies is None)


def rollout(
    sessions: Sequence[Session],
    journal: Journal,
    backend_factory: Callable[[], ChatBackend],
    gen_kwargs_for: Callable[[Session], dict[str, Any]],
    *,
    seed: int,
    is_local: Callable[[ChatBackend], bool],
) -> dict[str, int]:
    """Generate every missing turn; returns counts ``{"generated", "failed", "pending"}``."""
    todo = [s for s in sessions if s.given_replies is None]
    total = sum(len(s.prompts) for s in todo)
    missing = pending_turns(todo, journal)
    counts = {"generated": 0, "failed": 0, "pending": missing}
    if missing == 0:
        return counts
    backend = backend_factory()
    local = is_local(backend)
    replies = {id(s): replies_so_far(journal, s) for s in todo}  # sessions live for the whole rollout
    max_turns = max(len(s.prompts) for s in todo)
    with make_progress() as progress:
        bar = progress.add_task("rollout (turns)", total=total, completed=total - missing)
        for turn in range(max_turns):
            batch = [s for s in todo if len(s.prompts) > turn and len(replies[id(s)]) == turn]
            if not batch:
                continue
            convs = [conversation(s, replies[id(s)], turn) for s in batch]
            gks = [normalise_gen_kwargs(gen_kwargs_for(s), local=local) for s in batch]
            results = backend.generate(
                convs, gks, seed=seed + turn, on_progress=lambda k: progress.advance(bar, k)
            )
            for s, res, gk in zip(batch, results, gks, strict=True):
                text = final_reply(s, res, local=local)
                journal.append(gen_entry(s, turn, res, gk, text=text))
                if text is not None:
                    replies[id(s)].append(text)
                    counts["generated"] += 1
                else:
                    counts["failed"] += 1
                    progress.note_failure(bar)
    counts["pending"] = pending_turns(todo, journal)
    return counts
