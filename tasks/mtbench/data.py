"""MT-Bench data: questions, judge prompts, reference answers and FastChat answer files.

Layout. ``--data_path DIR`` follows FastChat's ``fastchat/llm_judge/data/mt_bench`` folder:
``DIR/question.jsonl`` and ``DIR/reference_answer/gpt-4.jsonl``. ``judge_prompts.jsonl`` sits one level up
upstream (``fastchat/llm_judge/data/judge_prompts.jsonl``); both ``DIR/judge_prompts.jsonl`` and
``DIR/../judge_prompts.jsonl`` are accepted, in that order.

Download. Without ``--data_path`` the three files are fetched from FastChat's repository at a pinned commit
into the ditto-bench cache and verified by sha256 (:mod:`harness.datafetch`). Mirrors can be put first with
the environment variable ``DITTO_BENCH_MTBENCH_MIRRORS`` (whitespace-separated base URLs laid out like
upstream's ``fastchat/llm_judge/data``: ``BASE/mt_bench/question.jsonl``, ``BASE/judge_prompts.jsonl``,
``BASE/mt_bench/reference_answer/gpt-4.jsonl``).

Validation happens before anything else runs; the first problem is one line ``{path}:{line}: ...``.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.datafetch import RemoteFile, Source, fetch, mirror_urls
from harness.errors import DataError
from harness.jsonl import file_sha256 as file_sha256  # part of this module's API
from harness.jsonl import iter_jsonl

FASTCHAT_COMMIT = "0e6d3e4beaab66f4d3f93db72541a4abab8af28d"
UPSTREAM_DATA_URL = (
    f"https://raw.githubusercontent.com/lm-sys/FastChat/{FASTCHAT_COMMIT}/fastchat/llm_judge/data"
)
MIRRORS_ENV = "DITTO_BENCH_MTBENCH_MIRRORS"

# FastChat common.py: categories whose judge prompt carries the GPT-4 reference answer.
NEED_REF_CATS = frozenset({"math", "reasoning", "coding"})
# FastChat common.py temperature_config; any other category gets 0.7 (gen_model_answer.py).
TEMPERATURE_BY_CATEGORY: dict[str, float] = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}
DEFAULT_TEMPERATURE = 0.7
MAX_NEW_TOKENS = 1024

# Placeholders each single-grading prompt may use (FastChat run_judge_single passes exactly these).
_SINGLE_FIELDS = frozenset({"question", "answer", "ref_answer_1", "ref_answer_2"})
_MULTI_FIELDS = frozenset(
    {"question_1", "question_2", "answer_1", "answer_2", "ref_answer_1", "ref_answer_2"}
)


@dataclass(frozen=True)
class BenchFile:
    """One benchmark file: where it lives in a local folder and upstream, and its official checksum."""

    key: str
    upstream_path: str
    local_paths: tuple[str, ...]
    remote: RemoteFile


def _bench_file(upstream_path: str, sha256: str, size: int, *also_at: str) -> BenchFile:
    """Describe an upstream file: its key is the path below ``mt_bench/`` and its cache name the whole
    upstream path with ``/`` turned into ``-``; ``also_at`` adds places to look in ``--data_path``."""
    key = upstream_path.removeprefix("mt_bench/")
    remote = RemoteFile(name=upstream_path.replace("/", "-"), sha256=sha256, size=size, sources=())
    return BenchFile(key=key, upstream_path=upstream_path, local_paths=(key, *also_at), remote=remote)


QUESTIONS = _bench_file(
    "mt_bench/question.jsonl", "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7", 48929
)
JUDGE_PROMPTS = _bench_file(
    "judge_prompts.jsonl",
    "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6",
    10449,
    "../judge_prompts.jsonl",  # upstream keeps it one level above mt_bench/
)
REFERENCES = _bench_file(
    "mt_bench/reference_answer/gpt-4.jsonl",
    "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f",
    51109,
)


@dataclass(frozen=True)
class Question:
    """One MT-Bench question (``question.jsonl`` line)."""

    question_id: int
    category: str
    turns: tuple[str, ...]
    required_temperature: float | None
    line: int


@dataclass(frozen=True)
class JudgePrompt:
    """One record of ``judge_prompts.jsonl``, used verbatim."""

    name: str
    type: str
    system_prompt: str
    prompt_template: str
    output_format: str
    record: dict[str, Any]

    @property
    def sha256(self) -> str:
        """Hash of the record as canonical JSON (sorted keys, no spaces); goes into the run fingerprint."""
        return canonical_sha256(self.record)


@dataclass(frozen=True)
class Answer:
    """One answer record of a FastChat ``model_answer/<model>.jsonl`` file (``choices[0]`` only is judged)."""

    question_id: int
    turns: tuple[str, ...]
    answer_id: str | None
    model_id: str | None
    line: int


@dataclass
class AnswerFile:
    """A FastChat answer file: the last record per question wins, as in FastChat's ``load_model_answers``."""

    path: Path
    model: str
    answers: dict[int, Answer]
    duplicates: dict[int, int] = field(default_factory=dict)
    """question id -> number of earlier records replaced by a later one."""


def canonical_sha256(obj: Any) -> str:
    """sha256 of ``obj`` as canonical JSON."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def fastchat_model_name(path: Path) -> str:
    """FastChat names a model after its answer file: ``os.path.basename(filename)[:-6]`` (drops
    ``.jsonl``)."""
    name = Path(path).name
    return name[: -len(".jsonl")] if name.endswith(".jsonl") else Path(path).stem


# ------------------------------------------------------------------------------------------- locating files


def sources_for(bench_file: BenchFile) -> tuple[Source, ...]:
    """Mirrors from ``DITTO_BENCH_MTBENCH_MIRRORS`` first, then FastChat's repository at the pinned commit."""
    bases = [*mirror_urls(MIRRORS_ENV), UPSTREAM_DATA_URL]
    return tuple(Source(f"{base.rstrip('/')}/{bench_file.upstream_path}") for base in bases)


def locate(bench_file: BenchFile, data_dir: Path | None) -> Path:
    """The local file for ``bench_file``: under ``data_dir`` when given, else the verified download."""
    if data_dir is not None:
        for rel in bench_file.local_paths:
            candidate = data_dir / rel
            if candidate.is_file():
                return candidate
        tried = " or ".join(str(data_dir / rel) for rel in bench_file.local_paths)
        raise DataError(f"--data_path {data_dir}: {bench_file.key} not found (looked for {tried})")
    return fetch(replace(bench_file.remote, sources=sources_for(bench_file)))


def check_data_dir(data_path: Path | None) -> Path | None:
    """``--data_path`` must be a folder in FastChat's layout."""
    if data_path is None:
        return None
    path = Path(data_path).expanduser()
    if not path.is_dir():
        raise DataError(
            f"--data_path {path}: expected a folder in FastChat's layout (question.jsonl, "
            "judge_prompts.jsonl, reference_answer/gpt-4.jsonl)"
        )
    return path


# ------------------------------------------------------------------------------------------------ parsing


def _int_id(obj: dict[str, Any], where: str) -> int:
    qid = obj.get("question_id")
    if isinstance(qid, bool) or not isinstance(qid, int):
        raise DataError(f"{where}: field 'question_id': expected an integer, got {qid!r}")
    return qid


def _str_list(value: Any, where: str, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise DataError(f"{where}: field '{name}': expected a non-empty list of strings")
    return tuple(value)


def load_questions(path: Path) -> list[Question]:
    """Load and validate ``question.jsonl`` (unique integer ids, a category, one or two string turns)."""
    out: list[Question] = []
    seen: dict[int, int] = {}
    for line_no, obj in iter_jsonl(path):
        where = f"{path}:{line_no}"
        qid = _int_id(obj, where)
        if qid in seen:
            raise DataError(f"{where}: field 'question_id': {qid} already used on line {seen[qid]}")
        seen[qid] = line_no
        category = obj.get("category")
        if not isinstance(category, str) or not category:
            raise DataError(f"{where}: field 'category': expected a non-empty string")
        turns = _str_list(obj.get("turns"), where, "turns")
        if len(turns) > 2:
            raise DataError(f"{where}: field 'turns': {len(turns)} turns; MT-Bench judge prompts cover two")
        req = obj.get("required_temperature")
        if req is not None and (isinstance(req, bool) or not isinstance(req, int | float)):
            raise DataError(f"{where}: field 'required_temperature': expected a number, got {req!r}")
        out.append(Question(qid, category, turns, None if req is None else float(req), line_no))
    if not out:
        raise DataError(f"{path}: empty file (no questions)")
    return out


def load_judge_prompts(path: Path) -> dict[str, JudgePrompt]:
    """Load ``judge_prompts.jsonl`` keyed by name (a later record with the same name wins, as in FastChat)."""
    out: dict[str, JudgePrompt] = {}
    for line_no, obj in iter_jsonl(path):
        where = f"{path}:{line_no}"
        values: dict[str, str] = {}
        for key in ("name", "type", "system_prompt", "prompt_template", "output_format"):
            value = obj.get(key)
            if not isinstance(value, str):
                raise DataError(f"{where}: field '{key}': expected a string, got {value!r}")
            values[key] = value
        out[values["name"]] = JudgePrompt(record=obj, **values)
    if not out:
        raise DataError(f"{path}: empty file (no judge prompts)")
    return out


def check_single_prompt(prompt: JudgePrompt, *, multi_turn: bool, source: Path) -> None:
    """A single-grading prompt must output ``[[rating]]`` and use only the fields FastChat fills in."""
    if prompt.type != "single" or prompt.output_format != "[[rating]]":
        raise DataError(
            f"{source}: judge prompt {prompt.name!r}: expected type 'single' with output_format "
            f"'[[rating]]', got {prompt.type!r} / {prompt.output_format!r}"
        )
    allowed = _MULTI_FIELDS if multi_turn else _SINGLE_FIELDS
    try:
        used = {
            name for _, name, _, _ in string.Formatter().parse(prompt.prompt_template) if name is not None
        }
    except ValueError as exc:
        raise DataError(f"{source}: judge prompt {prompt.name!r}: bad template: {exc}") from None
    unknown = sorted(used - allowed)
    if unknown:
        raise DataError(f"{source}: judge prompt {prompt.name!r}: unknown placeholder(s) {unknown}")


def load_references(path: Path) -> dict[int, tuple[str, ...]]:
    """Load reference answers (``choices[0].turns`` per question; the last record per id wins)."""
    out: dict[int, tuple[str, ...]] = {}
    for line_no, obj in iter_jsonl(path):
        where = f"{path}:{line_no}"
        out[_int_id(obj, where)] = _choice_turns(obj, where)
    return out


def _choice_turns(obj: dict[str, Any], where: str) -> tuple[str, ...]:
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise DataError(f"{where}: field 'choices': expected a non-empty list of objects")
    return _str_list(choices[0].get("turns"), where, "choices[0].turns")


def load_answers(path: Path) -> AnswerFile:
    """Load a FastChat answer file; the model is named after the file, duplicates keep the last record."""
    path = Path(path)
    answers: dict[int, Answer] = {}
    duplicates: dict[int, int] = {}
    for line_no, obj in iter_jsonl(path):
        where = f"{path}:{line_no}"
        qid = _int_id(obj, where)
        turns = _choice_turns(obj, where)
        if qid in answers:
            duplicates[qid] = duplicates.get(qid, 0) + 1
        answer_id, model_id = obj.get("answer_id"), obj.get("model_id")
        answers[qid] = Answer(
            question_id=qid,
            turns=turns,
            answer_id=answer_id if isinstance(answer_id, str) else None,
            model_id=model_id if isinstance(model_id, str) else None,
            line=line_no,
        )
    if not answers:
        raise DataError(f"{path}: empty file (no answers)")
    return AnswerFile(path=path, model=fastchat_model_name(path), answers=answers, duplicates=duplicates)


def temperature_for(question: Question) -> float:
    """FastChat's generation temperature: ``required_temperature`` if set, else by category (default 0.7)."""
    if question.required_temperature is not None:
        return question.required_temperature
    return TEMPERATURE_BY_CATEGORY.get(question.category, DEFAULT_TEMPERATURE)
