"""Parsing and quality checks of supervisor outputs.

* Query simulation must return a JSON list of ``{"question": str}`` objects (App. B.1's format). Code fences
  and prose around the list are tolerated; anything else (a dict, bare strings, a missing ``question``) makes
  the sample *malformed* — App. C samples three times because small models often break the format.
* Questions are then filtered: empty, duplicate (after case/space/punctuation folding, also across the two
  query types of a session) and over-long ones are dropped and counted.
* Responses are dropped, and counted, when empty, over-long, or when they break character: mention being an
  AI/language model/assistant, or give away that the character was reading a profile.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_NOT_WORD = re.compile(r"[\W_]+")  # spaces, punctuation and symbols (Unicode-aware)

# Phrases by which a reply steps out of its role. English patterns are matched case-insensitively.
BREAK_PATTERNS_EN = [
    r"\bas an? (?:ai|a\.i\.|artificial intelligence|(?:large )?language model|llm|virtual assistant"
    r"|chatbot)\b",
    r"\bi(?:'m| am) (?:just |only |merely )?an? (?:ai|artificial intelligence|(?:large )?language model|"
    r"virtual assistant|ai assistant|chatbot)\b",
    r"\b(?:my|the) (?:training data|knowledge cutoff|knowledge cut-off)\b",
    r"\b(?:according to|based on) (?:the |my )?(?:provided |given )?"
    r"(?:profile|introduction|information provided)\b",
    r"\b(?:in|from) the (?:provided |given )?profile\b",
]
BREAK_PATTERNS_ZH = [
    r"作为(?:一[个名]|一款)?(?:AI|ai|人工智能|语言模型|大模型|智能助手|AI助手)",
    r"我(?:只)?是(?:一[个名]|一款)?(?:AI|ai|人工智能|语言模型|大语言模型|大模型|智能助手|AI助手|聊天机器人)",
    r"(?:训练数据|知识截止)",
    r"(?:根据|依据)(?:提供的|给出的|上面的|上述)(?:资料|简介|信息|人物资料)",
]
_BREAK_EN = [re.compile(p, re.IGNORECASE) for p in BREAK_PATTERNS_EN]
_BREAK_ZH = [re.compile(p) for p in BREAK_PATTERNS_ZH]


@dataclass(frozen=True)
class QueryParse:
    """One query-simulation sample: ``ok`` with its questions, or why it is malformed."""

    ok: bool
    questions: tuple[str, ...] = ()
    reason: str | None = None


def strip_reasoning(text: str) -> str:
    """Drop ``<think>…</think>`` blocks that reasoning models put before their answer."""
    return _THINK.sub("", text).strip()


def _json_candidates(text: str) -> list[str]:
    out = [m.group(1).strip() for m in _FENCE.finditer(text)]
    out.append(text.strip())
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        out.append(text[start : end + 1])
    return out


def parse_queries(text: str | None) -> QueryParse:
    """Parse one query-simulation sample."""
    if text is None or not text.strip():
        return QueryParse(False, reason="empty")
    text = strip_reasoning(text)
    data: object = None
    for cand in _json_candidates(text):
        try:
            data = json.loads(cand)
            break
        except json.JSONDecodeError:
            continue
    else:
        return QueryParse(False, reason="not_json")
    if not isinstance(data, list) or not data:
        return QueryParse(False, reason="not_a_list")
    questions: list[str] = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            return QueryParse(False, reason="item_without_question")
        questions.append(item["question"].strip())
    return QueryParse(True, tuple(questions))


def normalise_query(text: str) -> str:
    """Key for duplicate detection: NFKC, case-folded, without spaces, punctuation and symbols."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())


def select_queries(
    questions: tuple[str, ...], limit: int, max_chars: int, seen: set[str]
) -> tuple[list[str], Counter[str]]:
    """Keep up to ``limit`` usable questions and update ``seen`` (normalised keys); return (kept, drops)."""
    kept: list[str] = []
    dropped: Counter[str] = Counter()
    for q in questions:
        key = normalise_query(q)
        if not key:
            dropped["empty_query"] += 1
        elif key in seen:
            dropped["duplicate_query"] += 1
        elif len(q) > max_chars:
            dropped["overlong_query"] += 1
        elif len(kept) >= limit:
            dropped["surplus_query"] += 1
        else:
            seen.add(key)
            kept.append(q)
    return kept, dropped


def breaks_character(text: str, lang: str) -> bool:
    """True when the reply steps out of its role (see the module docstring)."""
    patterns = _BREAK_EN + (_BREAK_ZH if lang == "zh" else [])
    return any(p.search(text) for p in patterns)


def check_response(text: str | None, lang: str, max_chars: int) -> tuple[str, str | None]:
    """``(cleaned text, drop reason or None)`` for one simulated response."""
    cleaned = strip_reasoning(text or "")
    if not cleaned:
        return cleaned, "empty_response"
    if breaks_character(cleaned, lang):
        return cleaned, "breaks_character"
    if len(cleaned) > max_chars:
        return cleaned, "overlong_response"
    return cleaned, None


def parse_evidence(text: str | None) -> list[str]:
    """The bullet lines of an evidence answer, normalised to ``- `` (empty when there are none)."""
    bullets: list[str] = []
    for line in strip_reasoning(text or "").splitlines():
        m = re.match(r"^\s*(?:[-*•·]|\d+[.)、])\s*(.+?)\s*$", line)
        if m and m.group(1):
            bullets.append(f"- {m.group(1)}")
    return bullets
