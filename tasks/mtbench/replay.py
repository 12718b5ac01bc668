"""Replay of FastChat's published MT-Bench answers and GPT-4 ratings, for fidelity checks without any API.

:class:`FastChatReplay` is a chat-completions *responder* (request body -> reply text) for an
OpenAI-compatible test server. It answers

* a model request (no system message) with the recorded answer of the question, after checking that the
  conversation so far is the question's turns and the model's own recorded answers;
* a judge request (``[system, user]``) with ``"... Rating: [[x]]"``, ``x`` being the published rating
written as
  in the ratings file, after checking that the request is exactly the FastChat prompt for that question and
  turn.

A request that does not match gets a reply without a rating (``REPLAY MISMATCH ...``), so a wrong prompt
shows up as a ``parse_error`` and a wrong number, never as a silent pass.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import DataError
from tasks.mtbench.data import AnswerFile, JudgePrompt, Question
from tasks.mtbench.judge import fill_prompt, prompt_name

MISMATCH = "REPLAY MISMATCH"


def load_published_ratings(path: Path) -> dict[tuple[str, int, int], str]:
    """Read a ratings TSV (``model, question_id, turn, judge_prompt, score``) -> {(model, qid, turn): score
    text}."""
    out: dict[tuple[str, int, int], str] = {}
    with Path(path).open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        for line_no, row in enumerate(reader, start=2):
            try:
                key = (row["model"], int(row["question_id"]), int(row["turn"]))
                score = row["score"].strip()
                float(score)
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path}:{line_no}: bad ratings row: {exc}") from None
            out[key] = score
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # typed content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


class FastChatReplay:
    """Responder that plays one model's recorded answers and the published judge ratings."""

    def __init__(
        self,
        *,
        questions: list[Question],
        answers: AnswerFile,
        ratings: Mapping[tuple[str, int, int], str],
        prompts: Mapping[str, JudgePrompt],
        references: Mapping[int, tuple[str, ...]] | None = None,
        model: str | None = None,
    ) -> None:
        self.model = model or answers.model
        self.questions = {q.question_id: q for q in questions}
        self.by_first_turn = {q.turns[0]: q for q in questions}
        self.answers = answers
        self.ratings = ratings
        self.prompts = prompts
        self.references = references or {}
        self.mismatches: list[str] = []

    def __call__(self, body: dict[str, Any]) -> str:
        messages = [
            {"role": m.get("role"), "content": _text(m.get("content"))} for m in body.get("messages", [])
        ]
        if messages and messages[0]["role"] == "system":
            return self._judge(messages)
        return self._model(messages)

    def _fail(self, why: str) -> str:
        self.mismatches.append(why)
        return f"{MISMATCH}: {why}"

    def _model(self, messages: list[dict[str, str]]) -> str:
        users = [m["content"] for m in messages if m["role"] == "user"]
        q = self.by_first_turn.get(users[0]) if users else None
        if q is None:
            return self._fail("model request for an unknown question")
        recorded = self.answers.answers[q.question_id].turns
        turn = len(users) - 1
        expected: list[dict[str, str]] = []
        for t in range(turn):
            expected += [
                {"role": "user", "content": q.turns[t]},
                {"role": "assistant", "content": recorded[t]},
            ]
        expected.append({"role": "user", "content": q.turns[turn]})
        if messages != expected:
            return self._fail(
                f"model request for q{q.question_id} turn {turn + 1} is not the expected history"
            )
        return recorded[turn]

    def _judge(self, messages: list[dict[str, str]]) -> str:
        if len(messages) != 2 or messages[1]["role"] != "user":
            return self._fail("judge request is not [system, user]")
        user = messages[1]["content"]
        # The longest first turn contained in the prompt identifies the question.
        found = [q for first, q in self.by_first_turn.items() if first in user]
        if not found:
            return self._fail("judge request for an unknown question")
        q = max(found, key=lambda x: len(x.turns[0]))
        answers = self.answers.answers[q.question_id].turns
        for turn in range(len(q.turns)):
            name = prompt_name(q.category, turn)
            expected = fill_prompt(
                self.prompts[name],
                questions=q.turns,
                answers=answers,
                turn=turn,
                reference=self.references.get(q.question_id),
            )
            if messages == expected:
                score = self.ratings.get((self.model, q.question_id, turn + 1))
                if score is None:
                    return self._fail(
                        f"no published rating for {self.model} q{q.question_id} turn {turn + 1}"
                    )
                return f"The assistant's answer was judged as published.\n\nRating: [[{score}]]"
        return self._fail(f"judge request for q{q.question_id} matches no FastChat prompt")
