"""The MT-Bench tasks: ``mtbench_roleplay`` (questions 91-100) and ``mtbench`` (all 80 questions).

Generation follows FastChat's ``gen_model_answer.py``: temperature from the category (or the question's
``required_temperature``), at most 1024 new tokens, turn 2 sees the model's own turn-1 answer. No system
message is sent (``Session.system=None``): FastChat uses the default system message of the model's own
conversation template, which for a chat template in the tokenizer is what the template does when no system
message is given.

Judging follows ``gen_judgment.py --mode single``: judge ``gpt-4``, temperature 0, one sample, ``max_tokens``
2048, the prompts of ``judge_prompts.jsonl`` used verbatim (see :mod:`tasks.mtbench.judge`). In ``judge`` mode
the answers come from a FastChat answer file (``choices[0].turns``; the last record per question wins).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.progress import console
from harness.task import JudgeCall, JudgeSettings, Session, TaskData
from harness.types import ChatMessage
from tasks.duplicates import check_duplicates
from tasks.mtbench import fastchat_export
from tasks.mtbench.data import (
    JUDGE_PROMPTS,
    MAX_NEW_TOKENS,
    QUESTIONS,
    REFERENCES,
    UPSTREAM_DATA_URL,
    Answer,
    AnswerFile,
    BenchFile,
    JudgePrompt,
    Question,
    check_data_dir,
    check_single_prompt,
    file_sha256,
    load_answers,
    load_judge_prompts,
    load_questions,
    load_references,
    locate,
    temperature_for,
)
from tasks.mtbench.judge import fill_prompt, needs_reference, prompt_name
from tasks.mtbench.scoring import METRIC, aggregate, annotated, scores


@dataclass(frozen=True)
class _Item:
    """What a session carries for judging: the question, its reference answers, the given answer if any."""

    question: Question
    reference: tuple[str, ...] | None
    answer: Answer | None


class MTBench:
    """MT-Bench single-answer grading, restricted to some categories (or all)."""

    version = 1
    judge_defaults = JudgeSettings(model="gpt-4", temperature=0.0, samples=1, max_tokens=2048)
    metrics = (METRIC,)

    def __init__(
        self, name: str, categories: frozenset[str] | None, *, allow_duplicates: bool = False
    ) -> None:
        self.name = name
        self.categories = categories
        self.allow_duplicates = allow_duplicates
        self._prompts: dict[str, JudgePrompt] = {}
        self._used_prompts: list[str] = []
        self._prompts_sha256: str | None = None

    # -------------------------------------------------------------------------------------------- loading

    def load(self, data_path: Path | None, *, limit: int | None, responses: Path | None) -> TaskData:
        data_dir = check_data_dir(data_path)
        sha: dict[str, str] = {}
        q_path = self._locate(QUESTIONS, data_dir, sha)
        questions = [
            q for q in load_questions(q_path) if self.categories is None or q.category in self.categories
        ]
        if not questions:
            raise DataError(f"{q_path}: no question in categories {sorted(self.categories or [])}")
        check_duplicates(
            ((q.turns, q.line) for q in questions), q_path, allow=self.allow_duplicates, what="question"
        )
        if limit is not None:
            questions = questions[:limit]
        p_path = self._locate(JUDGE_PROMPTS, data_dir, sha)
        self._prompts = load_judge_prompts(p_path)
        self._prompts_sha256 = sha[JUDGE_PROMPTS.key]
        self._used_prompts = self._check_prompts(questions, p_path)
        refs: dict[int, tuple[str, ...]] = {}
        if any(needs_reference(q.category) for q in questions):
            r_path = self._locate(REFERENCES, data_dir, sha)
            refs = load_references(r_path)
            for q in questions:
                if needs_reference(q.category) and len(refs.get(q.question_id, ())) < len(q.turns):
                    raise DataError(
                        f"{r_path}: no reference answer with {len(q.turns)} turns for question "
                        f"{q.question_id} ({q.category})"
                    )
        answers: AnswerFile | None = None
        if responses is not None:
            answers = load_answers(responses)
            self._check_answers(questions, answers)
            sha["answers"] = file_sha256(answers.path)
        sessions = [self._session(i, q, refs.get(q.question_id), answers) for i, q in enumerate(questions)]
        source = str(data_dir) if data_dir is not None else f"{UPSTREAM_DATA_URL} (verified download)"
        if answers is not None:
            source += f"; answers {answers.path} (model {answers.model})"
        return TaskData(sessions=sessions, source=source, sha256=sha)

    @staticmethod
    def _locate(bench_file: BenchFile, data_dir: Path | None, sha: dict[str, str]) -> Path:
        path = locate(bench_file, data_dir)
        digest = file_sha256(path)
        sha[bench_file.key] = digest
        if digest != bench_file.remote.sha256 and not _is_sample(path):
            # Allowed (a corrected or translated MT-Bench), but the numbers are then not FastChat's.
            console.print(
                f"[yellow]note[/]: {path} differs from FastChat's {bench_file.key} "
                f"(sha256 {digest[:12]}…, official {bench_file.remote.sha256[:12]}…)",
                highlight=False,
            )
        return path

    def _check_prompts(self, questions: Sequence[Question], source: Path) -> list[str]:
        used: dict[str, bool] = {}
        for q in questions:
            for t in range(len(q.turns)):
                used[prompt_name(q.category, t)] = t == 1
        for name, multi in used.items():
            if name not in self._prompts:
                raise DataError(f"{source}: judge prompt {name!r} not found")
            check_single_prompt(self._prompts[name], multi_turn=multi, source=source)
        return sorted(used)

    @staticmethod
    def _check_answers(questions: Sequence[Question], answers: AnswerFile) -> None:
        missing = [q.question_id for q in questions if q.question_id not in answers.answers]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(f"{answers.path}: no answer for question_id {missing[0]}{more}")
        for q in questions:
            a = answers.answers[q.question_id]
            if len(a.turns) < len(q.turns):
                raise DataError(
                    f"{answers.path}:{a.line}: field 'choices[0].turns': {len(a.turns)} answer(s) for "
                    f"question {q.question_id}, which has {len(q.turns)} turns"
                )
        n_dup = sum(answers.duplicates.values())
        if n_dup:
            console.print(
                f"[yellow]note[/]: {answers.path}: {n_dup} duplicate answer record(s); the last one per "
                "question is used, as FastChat does",
                highlight=False,
            )

    def _session(
        self, index: int, q: Question, reference: tuple[str, ...] | None, answers: AnswerFile | None
    ) -> Session:
        answer = answers.answers[q.question_id] if answers is not None else None
        return Session(
            task=self.name,
            session_id=f"q{q.question_id}",
            index=index,
            system=None,
            prompts=list(q.turns),
            lang=None,
            gen_overrides={"temperature": temperature_for(q), "max_gen_toks": MAX_NEW_TOKENS},
            given_replies=list(answer.turns[: len(q.turns)]) if answer is not None else None,
            payload=(_Item(q, reference, answer), answers),
            strip_local_replies=True,  # FastChat strips a local model's output before storing it
        )

    # -------------------------------------------------------------------------------------------- judging

    def default_gen_kwargs(self) -> dict[str, Any]:
        return {"max_gen_toks": MAX_NEW_TOKENS}

    def judge_calls(self, session: Session, messages: Sequence[ChatMessage], turn: int) -> list[JudgeCall]:
        item: _Item = session.payload[0]
        offset = 1 if messages and messages[0]["role"] == "system" else 0
        answers = [messages[offset + 2 * t + 1]["content"] for t in range(turn + 1)]
        name = prompt_name(item.question.category, turn)
        request = fill_prompt(
            self._prompts[name],
            questions=session.prompts,
            answers=answers,
            turn=turn,
            reference=item.reference,
        )
        return [JudgeCall(metric=METRIC, turn=turn, messages=request, template=name)]

    def template_hashes(self) -> dict[str, str]:
        """sha256 of ``judge_prompts.jsonl`` and of each prompt record this task uses (after :meth:`load`)."""
        out = {name: self._prompts[name].sha256 for name in self._used_prompts}
        if self._prompts_sha256 is not None:
            out[JUDGE_PROMPTS.key] = self._prompts_sha256
        return out

    def session_extra(self, session: Session) -> dict[str, Any]:
        item: _Item = session.payload[0]
        answers: AnswerFile | None = session.payload[1]
        q = item.question
        extra: dict[str, Any] = {
            "question_id": q.question_id,
            "category": q.category,
            "judge_prompts": [prompt_name(q.category, t) for t in range(len(q.turns))],
        }
        if answers is not None and item.answer is not None:
            extra["answer_model"] = answers.model
            extra["answer_meta"] = {
                "answer_id": item.answer.answer_id,
                "model_id": item.answer.model_id,
                "line": item.answer.line,
            }
            extra["answer_duplicates"] = answers.duplicates.get(q.question_id, 0)
        return extra

    # ----------------------------------------------------------------------------------------- aggregation

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
        """FastChat ``model_judgment/<judge>_single.jsonl`` and ``model_answer/<model>.jsonl`` of this
        task (``spec``: the run's spec, for the judge and model names)."""
        judge = (spec.get("tasks", {}).get(self.name, {}).get("judge") or {}).get(
            "model", self.judge_defaults.model
        )
        model = fastchat_export.model_name(spec.get("model") or {}, records)
        return fastchat_export.export(run_dir, self.name, records, model=model, judge_model=str(judge))


def make_roleplay_task(*, allow_duplicates: bool = False, **_options: Any) -> MTBench:
    """MT-Bench's roleplay category (questions 91-100 in the official file), two turns each."""
    return MTBench("mtbench_roleplay", frozenset({"roleplay"}), allow_duplicates=allow_duplicates)


def make_full_task(*, allow_duplicates: bool = False, **_options: Any) -> MTBench:
    """All of MT-Bench (80 questions, 8 categories)."""
    return MTBench("mtbench", None, allow_duplicates=allow_duplicates)


def _is_sample(path: Path) -> bool:
    """Our own sample (``--data_path sample``) differs from FastChat's files by design: no note for it."""
    from harness.sample import SAMPLE_DIR

    return path.resolve().is_relative_to(SAMPLE_DIR)
