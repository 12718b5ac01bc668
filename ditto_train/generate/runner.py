"""The streaming generation loop: a bounded queue of roles, N workers, outputs appended as sessions finish.

Memory stays flat as the pool grows: the knowledge base is only indexed (see ``kb_index``), at most ``workers
+ queue size`` profiles are loaded at any time, and finished sessions go straight to disk. The number of
workers is 1.5 × ``--concurrency``, so that while some roles wait for their query prompts, others already have
response prompts in flight and the supervisor's semaphore stays full.

Resumption: the done-set is rebuilt from the output files; roles in it are skipped before any call. A killed
run loses only the sessions that were in flight, and their finished calls come back from the response cache.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ditto_train.generate.config import GenerateConfig
from ditto_train.generate.kb_index import Entry, KnowledgeIndex, in_holdout, role_rng
from ditto_train.generate.output import candidate_text, done_keys, part_path, rejected_row, sft_row, test_item
from ditto_train.generate.prompts import Prompts
from ditto_train.generate.session import Outcome, Simulator
from ditto_train.generate.supervisor import Supervisor
from harness.errors import DittoError
from harness.jsonl import JsonlAppender


@dataclass
class RunStats:
    """What this invocation did (the totals over all invocations are in ``report.json``)."""

    eligible: int = 0
    already_done: int = 0
    written: int = 0
    rejected: int = 0
    api_errors: int = 0
    errors: list[str] = field(default_factory=list)
    calls: int = 0
    cached_calls: int = 0
    wall_s: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)


def select_entries(cfg: GenerateConfig, index: KnowledgeIndex) -> list[Entry]:
    """Roles of this split, per language in KB order, capped at ``--limit`` per language."""
    chosen: list[Entry] = []
    for lang in cfg.langs:
        n = 0
        for e in index.entries((lang,)):
            if cfg.limit is not None and n >= cfg.limit:
                break
            if in_holdout(e.id, cfg.holdout_rate, cfg.holdout_ids) == (cfg.split == "test"):
                chosen.append(e)
                n += 1
    return chosen


class Runner:
    """Drives :class:`Simulator` over the selected roles and writes the outputs."""

    def __init__(
        self,
        cfg: GenerateConfig,
        index: KnowledgeIndex,
        sup: Supervisor,
        prompts: Prompts,
        run_meta: Mapping[str, Any],
    ) -> None:
        self.cfg = cfg
        self.index = index
        self.prompts = prompts
        self.sim = Simulator(cfg, index, sup, prompts)
        self.run_meta = dict(run_meta)
        self.stats = RunStats()
        self._writers: dict[str, JsonlAppender] = {}

    def _writer(self, lang: str, rejected: bool) -> JsonlAppender:
        path = part_path(self.cfg.out, self.cfg.split, lang, rejected)
        key = str(path)
        if key not in self._writers:
            self._writers[key] = JsonlAppender(path)
        return self._writers[key]

    def _candidates(self, o: Outcome) -> list[str]:
        assert o.profile is not None
        # A generator of its own, so the distractor draw does not depend on how the session went.
        rng = role_rng(self.cfg.seed, "candidates", o.entry.id, o.entry.lang)
        others = [self.index.load(e) for e in self.index.draw_others(o.entry, rng, self.cfg.n_distractors)]
        cands = [candidate_text(o.profile), *(candidate_text(p) for p in others)]
        rng.shuffle(cands)
        return cands

    def _record(self, o: Outcome) -> None:
        st = self.stats
        st.calls += o.usage["calls"]
        st.cached_calls += o.usage["cached_calls"]
        if o.status == "api_error":
            st.api_errors += 1
            if len(st.errors) < 20:
                st.errors.append(f"{o.entry.id} ({o.entry.lang}): {o.error}")
            return
        if o.status == "rejected":
            st.rejected += 1
            st.reasons[o.reason or "?"] += 1
            self._writer(o.entry.lang, True).write(rejected_row(o, self.run_meta))
            return
        assert o.profile is not None
        intro = self.prompts.intro(o.profile)
        if self.cfg.split == "test":
            row = test_item(o, intro, self._candidates(o), self.run_meta)
        else:
            row = sft_row(o, intro, self.run_meta)
        self._writer(o.entry.lang, False).write(row)
        st.written += 1

    async def run(
        self,
        entries: list[Entry],
        on_start: Callable[[int], None] | None = None,
        on_done: Callable[[Outcome], None] | None = None,
    ) -> RunStats:
        """Simulate every entry not yet done; returns this invocation's stats."""
        t0 = time.monotonic()
        done = done_keys(self.cfg.out, self.cfg.split, self.cfg.langs)
        todo = [e for e in entries if (e.id, e.lang) not in done]
        self.stats.eligible = len(entries)
        self.stats.already_done = len(entries) - len(todo)
        if on_start:
            on_start(len(todo))
        workers = max(1, self.cfg.concurrency + self.cfg.concurrency // 2)
        queue: asyncio.Queue[Entry | None] = asyncio.Queue(maxsize=2 * workers)

        async def produce() -> None:
            for e in todo:
                await queue.put(e)
            for _ in range(workers):
                await queue.put(None)

        async def work() -> None:
            while (e := await queue.get()) is not None:
                try:
                    outcome = await self.sim.simulate(e)
                except DittoError:  # a broken template or config fails every record alike: stop
                    raise
                except Exception as exc:  # bad data in one record must not end the whole run
                    outcome = Outcome("api_error", e, error=f"{type(exc).__name__}: {exc}")
                self._record(outcome)
                if on_done:
                    on_done(outcome)

        try:
            await asyncio.gather(produce(), *(work() for _ in range(workers)))
        finally:
            for w in self._writers.values():
                w.close()
            self.stats.wall_s = time.monotonic() - t0
        return self.stats
