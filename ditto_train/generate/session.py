"""Simulating one role's session (Alg. 1 of the paper, with the reverse pairing for contrastive queries).

For role A (one language) and a partner B drawn with the role's own seeded generator:

1. T_Q(A, B) → questions A can answer and B cannot: A's **role-specific** queries. T_Q(B, A) → questions B can
   answer and A cannot: A's **contrastive** (out-of-boundary) queries. Each prompt is sampled
   ``n_query_samples`` times; one well-formed sample is picked at random.
2. Questions are filtered (empty / duplicate / over-long) and capped at ``queries_per_type`` per type, then
   put in a seeded random order.
3. Each question gets one response from T_R(A, q), independently of the other turns; responses that break
   character, are empty or over-long are dropped with their question.
4. Test split: each kept turn also gets its evidence bullets.

An API failure anywhere makes the whole session ``api_error``: it is not written, so the next run retries it
(every call that did succeed is in the cache). A session left with no usable turn is ``rejected`` and
recorded as such, so a resumed run does not redo it.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Literal

from ditto_train.generate.config import FILTER_KEYS, USAGE_KEYS, GenerateConfig
from ditto_train.generate.evidence import overlap_evidence
from ditto_train.generate.kb_index import Entry, KnowledgeIndex, role_rng
from ditto_train.generate.parsing import (
    QueryParse,
    check_response,
    parse_evidence,
    parse_queries,
    select_queries,
)
from ditto_train.generate.prompts import Prompts
from ditto_train.generate.supervisor import Supervisor
from ditto_train.knowledge.schema import RoleProfile
from harness.types import ChatMessage, Completion

QueryType = Literal["role_specific", "contrastive"]


@dataclass
class Turn:
    """One kept turn of a session."""

    query: str
    qtype: QueryType
    source: tuple[str, str]
    """The (A, B) of the T_Q prompt that produced the query: (self, partner) or (partner, self)."""
    response: str
    evidence: list[str] | None = None
    evidence_source: str | None = None


@dataclass
class Outcome:
    """The result of simulating one role in one language."""

    status: Literal["ok", "rejected", "api_error"]
    entry: Entry
    profile: RoleProfile | None = None
    partner: Entry | None = None
    turns: list[Turn] = field(default_factory=list)
    filtered: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILTER_KEYS, 0))
    usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(USAGE_KEYS, 0))
    reason: str | None = None
    error: str | None = None


class ApiFailure(Exception):
    """A supervisor call failed after its retries (ends the session as ``api_error``)."""


class Simulator:
    """Runs sessions against one supervisor."""

    def __init__(self, cfg: GenerateConfig, index: KnowledgeIndex, sup: Supervisor, prompts: Prompts) -> None:
        self.cfg = cfg
        self.index = index
        self.sup = sup
        self.prompts = prompts

    async def _call(self, out: Outcome, messages: list[ChatMessage], n: int) -> Completion:
        res = await self.sup.complete(messages, n)
        out.usage["calls"] += 1
        out.usage["cached_calls"] += int(res.cached)
        out.usage["prompt_tokens"] += res.usage.prompt_tokens
        out.usage["completion_tokens"] += res.usage.completion_tokens
        if res.status != "ok":
            raise ApiFailure(res.error or "supervisor call failed")
        return res

    def _pick(self, res: Completion, out: Outcome, rng: random.Random) -> tuple[str, ...] | None:
        parsed: list[QueryParse] = [parse_queries(t) for t in res.texts]
        good = [p for p in parsed if p.ok]
        out.filtered["malformed_query_samples"] += len(parsed) - len(good)
        if not good:
            out.filtered["query_sim_failed"] += 1
            return None
        return rng.choice(good).questions

    async def simulate(self, entry: Entry) -> Outcome:
        """Simulate the session of ``entry``; never raises for supervisor failures."""
        out = Outcome("ok", entry)
        try:
            return await self._simulate(entry, out)
        except ApiFailure as exc:
            out.status, out.error = "api_error", str(exc)
            return out

    async def _simulate(self, entry: Entry, out: Outcome) -> Outcome:
        cfg = self.cfg
        rng = role_rng(cfg.seed, cfg.split, entry.id, entry.lang)
        a = out.profile = self.index.load(entry)
        partners = self.index.draw_others(entry, rng, 1)
        if not partners:
            out.status, out.reason = "rejected", "no_partner"
            return out
        out.partner = partners[0]
        b = self.index.load(out.partner)
        k = cfg.queries_per_type
        own_res, con_res = await asyncio.gather(
            self._call(out, self.prompts.query(a, b, k), cfg.n_query_samples),
            self._call(out, self.prompts.query(b, a, k), cfg.n_query_samples),
        )
        own = self._pick(own_res, out, rng) or ()
        con = self._pick(con_res, out, rng) or ()
        seen: set[str] = set()
        items: list[tuple[str, QueryType, tuple[str, str]]] = []
        plan: list[tuple[tuple[str, ...], QueryType, tuple[str, str]]] = [
            (own, "role_specific", (a.id, b.id)),
            (con, "contrastive", (b.id, a.id)),
        ]
        for questions, qtype, src in plan:
            kept, dropped = select_queries(questions, k, cfg.max_query_chars, seen)
            for key, n in dropped.items():
                out.filtered[key] += n
            items.extend((q, qtype, src) for q in kept)
        if not items:
            out.status, out.reason = "rejected", "no_queries"
            return out
        rng.shuffle(items)
        replies = await asyncio.gather(
            *(self._call(out, self.prompts.response(a, q), 1) for q, _, _ in items)
        )
        for (q, qtype, src), res in zip(items, replies, strict=True):
            text, reason = check_response(res.texts[0], a.lang, cfg.max_reply_chars)
            if reason:
                out.filtered[reason] += 1
            else:
                out.turns.append(Turn(q, qtype, src, text))
        if not out.turns:
            out.status, out.reason = "rejected", "no_usable_turns"
            return out
        if cfg.split == "test":
            await self._evidence(a, out)
        return out

    async def _evidence(self, a: RoleProfile, out: Outcome) -> None:
        budget = self.cfg.profile_tokens
        if self.cfg.evidence == "supervisor":
            answers = await asyncio.gather(
                *(self._call(out, self.prompts.evidence(a, t.query, t.response), 1) for t in out.turns)
            )
            for turn, res in zip(out.turns, answers, strict=True):
                bullets = parse_evidence(res.texts[0])
                if bullets:
                    turn.evidence, turn.evidence_source = bullets, "supervisor"
                else:
                    out.filtered["evidence_fallback"] += 1
                    turn.evidence = overlap_evidence(a, turn.query, turn.response, budget)
                    turn.evidence_source = "overlap"
        else:
            for turn in out.turns:
                turn.evidence = overlap_evidence(a, turn.query, turn.response, budget)
                turn.evidence_source = "overlap"
