"""The WikiRoleEval task: sessions from the test file, three judges per turn, official aggregation."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.jsonl import atomic_write_jsonl
from harness.task import JudgeCall, JudgeSettings, Session, TaskData
from harness.types import ChatMessage
from judges.render import render_judge_prompt, template_hashes
from tasks.wikiroleeval.data import (
    WikiItem,
    file_sha256,
    is_gold_candidate,
    load_wikiroleeval,
    resolve_data_path,
)
from tasks.wikiroleeval.scoring import aggregate, annotated, derive, scores

REVIEW_FILE = "ditto_review.jsonl"


class WikiRoleEval:
    """WikiRoleEval as run by the paper: gpt-4-1106-preview judge, temperature 0.2, 3 samples."""

    name = "wikiroleeval"
    version = 2  # 2: every judge-prompt variable defused, verdict phrases and look-alikes too (issue 9 §7)
    judge_defaults = JudgeSettings(model="gpt-4-1106-preview", temperature=0.2, samples=3, max_tokens=2048)
    metrics = ("consistency", "knowledge", "rejection")

    def __init__(
        self, *, shuffle_candidates: bool = False, seed: int = 1234, allow_duplicates: bool = False
    ) -> None:
        self.shuffle_candidates = shuffle_candidates
        self.seed = seed
        self.allow_duplicates = allow_duplicates

    def load(self, data_path: Path | None, *, limit: int | None, responses: Path | None) -> TaskData:
        if responses is not None:
            items = load_wikiroleeval(
                responses, require_messages=True, limit=limit, allow_duplicates=self.allow_duplicates
            )
            path = responses
        else:
            path = resolve_data_path(data_path, None)
            items = load_wikiroleeval(path, limit=limit, allow_duplicates=self.allow_duplicates)
        sessions = [self._session(i, item, given=responses is not None) for i, item in enumerate(items)]
        return TaskData(sessions=sessions, source=str(path), sha256=file_sha256(path))

    def _session(self, index: int, item: WikiItem, *, given: bool) -> Session:
        replies = None
        if given and item.messages is not None:
            replies = [m["content"] for m in item.messages if m["role"] == "assistant"]
        return Session(
            task=self.name, session_id=item.session_id, index=index, system=item.system,
            prompts=list(item.prompts), lang=item.lang, given_replies=replies, payload=item,
        )

    def candidates(self, session: Session) -> list[str]:
        """Candidate order shown to the judge: as in the data, or a seeded per-session shuffle."""
        item: WikiItem = session.payload
        cands = list(item.candidates)
        if self.shuffle_candidates:
            random.Random(f"{self.seed}:{session.session_id}").shuffle(cands)
        return cands

    def default_gen_kwargs(self) -> dict[str, Any]:
        # Greedy by default for reproducibility; the paper's decoding for Qwen models is
        # --gen_kwargs temperature=0.7,top_p=0.8,repetition_penalty=1.1 (App. C, see README).
        return {"max_gen_toks": 2048, "temperature": 0.0}

    def judge_calls(self, session: Session, messages: Sequence[ChatMessage], turn: int) -> list[JudgeCall]:
        item: WikiItem = session.payload
        offset = 1 if messages and messages[0]["role"] == "system" else 0
        query = messages[offset + 2 * turn]["content"]
        reply = messages[offset + 2 * turn + 1]["content"]
        lang = item.lang
        prompts = {
            "consistency": render_judge_prompt(
                "consistency", lang, query=query, reply=reply, candidates=self.candidates(session)
            ),
            "rejection": render_judge_prompt("rejection", lang, label=item.label, query=query, reply=reply),
            "knowledge": render_judge_prompt(
                "knowledge", lang, label=item.label, summary=item.summary, query=query, reply=reply,
                evidence=item.evidence[turn],
            ),
        }
        return [
            JudgeCall(metric=m, turn=turn, messages=[{"role": "user", "content": p}], template=f"{m}.{lang}")
            for m, p in prompts.items()
        ]

    def template_hashes(self) -> dict[str, str]:
        return template_hashes()

    def session_extra(self, session: Session) -> dict[str, Any]:
        item: WikiItem = session.payload
        cands = self.candidates(session)
        gold = next((i for i, c in enumerate(cands) if is_gold_candidate(c, item.label)), None)
        return {
            "label": item.label,
            "candidates": cands,
            "gold_position": gold,
            "rejection_labels": list(item.rejection_labels),
            "item": item.raw,
        }

    def aggregate(self, records: Sequence[dict[str, Any]], *, seed: int, n_boot: int) -> dict[str, Any]:
        return aggregate(records, seed=seed, n_boot=n_boot)

    def annotated(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return annotated(record)

    def scores(self, record: Mapping[str, Any]) -> dict[tuple[int, str], float | int | None]:
        return scores(record)

    def export(
        self,
        run_dir: Path,
        records: Sequence[dict[str, Any]],
        results: dict[str, Any],
        *,
        spec: Mapping[str, Any],
    ) -> list[str]:
        """Write our (robust) verdicts in the official review format.

        Per item: the test item plus ``messages``, ``consist_scores``, ``reject_scores`` (the 0/1 prediction)
        and ``knowledge_scores``, one entry per generated turn. A turn without a verdict is ``null``;
        ``scoring.py`` skips null consistency/knowledge but counts a null rejection as a disagreement, so the
        released ``scoring.py`` run on this file reproduces ``results.json``'s robust metrics exactly when
        every judged turn has a rejection verdict (``failures.rejection`` ``turns_no_verdict``,
        ``turns_api_error`` and ``turns_pending`` all 0); consistency and knowledge always agree. What the
        released pipeline itself would give is the ``official`` block of ``results.json``.
        """
        def rows() -> Iterator[dict[str, Any]]:  # streamed: records are read back one at a time
            for rec in records:
                item = dict(rec["item"])
                meta = dict(item.get("meta") or {})
                meta.setdefault("lang", rec["lang"])
                meta.setdefault("label", rec["label"])
                meta.setdefault("rejection_labels", rec["rejection_labels"])
                item["meta"] = meta
                item["messages"] = rec["messages"]
                derived = derive(rec)
                judged = [t["turn"] for t in rec["turns"] if t["judgments"]]
                item["consist_scores"] = [derived[(t, "consistency")].score for t in judged]
                item["reject_scores"] = [derived[(t, "rejection")].verdict.value for t in judged]
                item["knowledge_scores"] = [derived[(t, "knowledge")].score for t in judged]
                yield item

        atomic_write_jsonl(run_dir / REVIEW_FILE, rows())
        return [REVIEW_FILE]


def make_task(
    *, shuffle_candidates: bool = False, seed: int = 1234, allow_duplicates: bool = False
) -> WikiRoleEval:
    return WikiRoleEval(shuffle_candidates=shuffle_candidates, seed=seed, allow_duplicates=allow_duplicates)
