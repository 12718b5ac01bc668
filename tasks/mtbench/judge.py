"""MT-Bench single-answer grading as FastChat does it: prompt choice, prompt filling, rating parsing.

Prompt choice (``gen_judgment.py``): turn 1 ``single-v1``, turn 2 ``single-v1-multi-turn``; for the categories
that need a reference (math, reasoning, coding) ``single-math-v1`` / ``single-math-v1-multi-turn`` with the
GPT-4 reference answers. The template is filled with ``str.format`` and sent as exactly two messages,
``[system: system_prompt, user: filled template]`` (FastChat's "chatgpt" conversation with the prompt's system
message; an empty system message would be left out by ``to_openai_api_messages``).

Rating (``common.py``): ``re.search`` for ``[[x]]``, then for ``[x]``, converted with ``ast.literal_eval``
so an int stays an int and ``8.5`` stays a float; no range check, the first match wins. FastChat writes ``-1``
when nothing matches; here that is a ``parse_error`` result, never a number.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence

from harness.types import ChatMessage, ParseResult
from tasks.mtbench.data import NEED_REF_CATS, JudgePrompt

SINGLE = "single-v1"
SINGLE_MULTI = "single-v1-multi-turn"
MATH = "single-math-v1"
MATH_MULTI = "single-math-v1-multi-turn"

# The same patterns as FastChat (str patterns: \d also matches non-ASCII digits, as upstream).
ONE_SCORE_PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def needs_reference(category: str) -> bool:
    """Whether FastChat grades this category against reference answers."""
    return category in NEED_REF_CATS


def prompt_name(category: str, turn: int) -> str:
    """Judge prompt for a 0-based ``turn`` of a question in ``category``."""
    if turn not in (0, 1):
        raise ValueError(f"MT-Bench judges turns 0 and 1 only, got {turn}")
    if needs_reference(category):
        return MATH if turn == 0 else MATH_MULTI
    return SINGLE if turn == 0 else SINGLE_MULTI


def fill_prompt(
    prompt: JudgePrompt,
    *,
    questions: Sequence[str],
    answers: Sequence[str],
    turn: int,
    reference: Sequence[str] | None,
) -> list[ChatMessage]:
    """The judge request for ``turn`` (0-based): FastChat's ``run_judge_single`` arguments, verbatim text."""
    kwargs: dict[str, str] = {}
    if reference is not None:
        # FastChat always passes both reference turns; str.format ignores the ones a template does not use.
        kwargs["ref_answer_1"] = reference[0]
        kwargs["ref_answer_2"] = reference[1] if len(reference) > 1 else ""
    if turn == 0:
        user = prompt.prompt_template.format(question=questions[0], answer=answers[0], **kwargs)
    else:
        user = prompt.prompt_template.format(
            question_1=questions[0],
            question_2=questions[1],
            answer_1=answers[0],
            answer_2=answers[1],
            **kwargs,
        )
    messages: list[ChatMessage] = []
    if prompt.system_prompt != "":
        messages.append({"role": "system", "content": prompt.system_prompt})
    messages.append({"role": "user", "content": user})
    return messages


def parse_rating(text: str | None) -> ParseResult:
    """Parse one judgment: ``ok`` with an int or float, ``parse_error`` (no rating) or ``api_error`` (no
    text)."""
    if text is None:
        return ParseResult("api_error", reason="no_text")
    match = ONE_SCORE_PATTERN.search(text) or ONE_SCORE_PATTERN_BACKUP.search(text)
    if match is None:
        return ParseResult("parse_error", reason="no_rating")
    try:
        value = ast.literal_eval(match.group(1))
    except (ValueError, SyntaxError):
        # e.g. "[[08]]" or non-ASCII digits: FastChat would raise here; we record it instead.
        return ParseResult("parse_error", reason=f"bad_number:{match.group(1)}")
    return ParseResult("ok", value=value)


def user_prompt_of(messages: Sequence[Mapping[str, str]]) -> str:
    """The filled template (the user message) of a judge request, what FastChat stores as ``user_prompt``."""
    for m in messages:
        if m["role"] == "user":
            return m["content"]
    return ""
