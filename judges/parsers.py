"""Parse WikiRoleEval judge completions into verdicts.

Pure functions, one per metric. They are a little more forgiving than the official scorer (which
kept only exact matches, see ditto_method.md §2.5) about formatting — markdown, a ``Score:``
prefix, ``7/10`` — but never invent a verdict: anything ambiguous is a ``parse_error`` with a
reason, which the reducers count and exclude.

Reasons used: ``empty``, ``no_verdict``, ``judge_refused``, ``placeholder``, ``out_of_range``.
"""

from __future__ import annotations

import re

from harness.types import ParseResult
from judges.names import normalize_name

# --- shared helpers -------------------------------------------------------------------------

# A judge that declines the task usually says so up front; only checked when no verdict was found,
# so it merely labels the parse error more precisely.
_REFUSAL_RE = re.compile(
    r"""^[\s*"'`>#_-]*(?:
        (?:I\s*(?:'|’)?\s*m|I\s+am)\s+(?:so\s+|very\s+|really\s+)?sorry
        | sorry\b
        | I\s+apologi[sz]e
        | I\s+(?:can\s*not|can(?:'|’)t|won(?:'|’)t|will\s+not|must\s+decline)
        | I\s+am\s+(?:not\s+able|unable)
        | I(?:'|’)m\s+(?:not\s+able|unable)
        | As\s+an\s+AI
        | (?:很|非常|十分)?抱歉 | 对不起 | 我(?:无法|不能|没法|不便)
    )""",
    re.IGNORECASE | re.VERBOSE,
)


def _looks_like_refusal(text: str) -> bool:
    return _REFUSAL_RE.match(text) is not None


def _last_nonempty_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line
    return ""


def _no_verdict(text: str) -> ParseResult:
    reason = "judge_refused" if _looks_like_refusal(text) else "no_verdict"
    return ParseResult(status="parse_error", reason=reason)


_EMPTY = ParseResult(status="parse_error", reason="empty")

# --- consistency ----------------------------------------------------------------------------

# Phrase, then optional spaces / colon / markdown on the same line, then a bracketed name. The
# name may not span lines and stops at the first closing bracket (non-greedy, unlike the official
# greedy ``(.*)``), so trailing bracketed remarks are not swallowed.
_CONSISTENCY_RE = re.compile(
    r"(?:most[ \t]+suitable[ \t]+role[ \t]+is|最符合的角色(?:为|是))"
    r"[ \t:：*_`]*"
    r"(?:\[(?P<ascii>[^\]\n]*)\]|【(?P<cjk>[^】\n]*)】|［(?P<wide>[^］\n]*)］)",
    re.IGNORECASE,
)

# What a judge writes when it parrots the instruction instead of answering (compared casefolded).
_PLACEHOLDERS = frozenset({
    "", "name", "character name", "character's name", "character’s name", "role name", "role",
    "character", "the character", "...", "…", "角色名", "角色名称", "角色的名字", "角色名字", "名字",
    "姓名", "角色",
})

_NAME_EDGE = " \t*_`"


def _clean_name(raw: str) -> str:
    name = raw
    while True:
        stripped = name.strip().strip(_NAME_EDGE)
        if stripped == name:
            return name
        name = stripped


def parse_consistency(text: str | None, lang: str) -> ParseResult:
    """Parse a consistency-judge completion; ``value`` is the chosen character name (stripped).

    The name is kept as written; it is compared with the label under :func:`judges.names.normalize_name`
    (the reducer does so), and the placeholder check uses the same rule.

    Binds to the LAST ``The most suitable role is [NAME]`` (case-insensitive) or
    ``最符合的角色为[NAME]`` (also with 【】) in the text, because a chain of thought may quote the
    instruction first. Both phrases are accepted whatever ``lang`` is (judges sometimes switch
    language); ``lang`` must still be "en" or "zh".
    """
    if lang not in ("en", "zh"):
        raise ValueError(f"unknown judge language {lang!r}; expected en or zh")
    if text is None or not text.strip():
        return _EMPTY
    matches = list(_CONSISTENCY_RE.finditer(text))
    if not matches:
        return _no_verdict(text)
    last = matches[-1]
    raw = next(g for g in (last.group("ascii"), last.group("cjk"), last.group("wide")) if g is not None)
    name = _clean_name(raw)
    if normalize_name(name).casefold() in _PLACEHOLDERS:
        return ParseResult(status="parse_error", reason="placeholder")
    return ParseResult(status="ok", value=name)


# --- rejection ------------------------------------------------------------------------------

_ANSWER_PREFIX_RE = re.compile(
    r"^(?:final\s+)?(?:answer|output|verdict|judgement|judgment|result|label|"
    r"最终答案|答案|输出|回答|判断|结果)\s*[:：]\s*",
    re.IGNORECASE,
)
_EDGE = " \t\"'`“”‘’「」"


def _reduce_digit_line(line: str) -> str:
    # Emphasis markers carry no meaning around a bare digit, so drop them wherever they are.
    line = line.replace("*", "").replace("`", "").strip(_EDGE)
    line = _ANSWER_PREFIX_RE.sub("", line).strip(_EDGE)
    if line.endswith((".", "。")):
        line = line[:-1].strip(_EDGE)
    return line


def parse_rejection(text: str | None) -> ParseResult:
    """Parse a rejection-judge completion; ``value`` is 1 (the character refused) or 0 (it did not).

    Accepts a bare ``0``/``1`` after stripping whitespace, quotes, backticks, bold and a trailing
    period, an ``Answer: 1`` / ``答案：1`` form, and a multi-line completion whose last non-empty
    line reduces to exactly 0 or 1. Anything else ("yes", "10", "0.5", "1 or 0") is a parse error.
    """
    if text is None or not text.strip():
        return _EMPTY
    token = _reduce_digit_line(_last_nonempty_line(text))
    if token in ("0", "1"):
        return ParseResult(status="ok", value=int(token))
    return _no_verdict(text)


# --- knowledge ------------------------------------------------------------------------------

_SCORE_RE = re.compile(
    r"^(?:(?:final[ \t]+)?(?:score|rating)|(?:最终)?(?:评分|分数|得分))?[ \t]*[:：]?[ \t]*"
    r"(?P<score>[0-9０-９]+)[ \t]*(?:分)?"
    r"(?:[ \t]*(?:/|／)[ \t]*10|[ \t]+out[ \t]+of[ \t]+10)?"
    r"[ \t]*[.。]?$",
    re.IGNORECASE,
)


def parse_knowledge(text: str | None) -> ParseResult:
    """Parse a knowledge-judge completion; ``value`` is the integer score 1..10.

    Reads only the LAST non-empty line (the official scorer did the same), after removing markdown
    (``**``, ``*``, backticks, leading ``#``). Accepts ``7``, ``Score: 7``, ``评分：7``, ``7/10``,
    ``7.``, ``**7**``. An integer outside 1..10 is ``out_of_range``; a non-integer or a line
    with extra prose ("7.5", "seven", "7 because ...") is ``no_verdict``.
    """
    if text is None or not text.strip():
        return _EMPTY
    line = _last_nonempty_line(text).replace("*", "").replace("`", "").strip().lstrip("#").strip()
    match = _SCORE_RE.match(line)
    if match is None:
        return _no_verdict(text)
    score = int(match.group("score"))
    if not 1 <= score <= 10:
        return ParseResult(status="parse_error", reason="out_of_range")
    return ParseResult(status="ok", value=score)
