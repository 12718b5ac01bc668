"""A scripted supervisor for offline tests and benchmarks (no model involved).

:func:`scripted_reply` answers a chat-completions request body the way a well-behaved supervisor would,
reading the role names out of our own prompt templates: JSON question lists for query prompts (the first of
several samples deliberately malformed, to exercise the well-formed-sample pick), in-character answers for
response prompts, and bullet lists for evidence prompts. Plug it into any OpenAI-compatible fake server as its
responder. Deterministic: the same request always gets the same reply.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

_NAME_A = re.compile(r"^\[(?:Character A|角色A)\]\n(?:Name: |名字：)(.+)$", re.MULTILINE)
_NAME_B = re.compile(r"^\[(?:Character B|角色B)\]\n(?:Name: |名字：)(.+)$", re.MULTILINE)
_YOU = re.compile(r"^(?:Your name: |你的名字：)(.+)$", re.MULTILINE)
_QUESTION = re.compile(r"^(?:Question: |问题：)(.+)$", re.MULTILINE)
_COUNT = re.compile(r"(?:write|写出) (\d+)")


def prompt_kind(text: str) -> str:
    """``query``, ``evidence`` or ``response``, from the markers our templates contain."""
    if _NAME_A.search(text) and _NAME_B.search(text):
        return "query"
    if text.startswith("[Evidence task]") or text.startswith("[依据任务]"):
        return "evidence"
    return "response"


def _last_user(body: dict[str, Any]) -> str:
    for msg in reversed(body.get("messages") or []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return str(msg.get("content", ""))
    return ""


def _tag(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:6]


def query_reply(text: str) -> list[str]:
    """Three samples for a query prompt: a malformed one, then two well-formed JSON lists."""
    a = _NAME_A.search(text)
    b = _NAME_B.search(text)
    name_a, name_b = (a.group(1) if a else "A"), (b.group(1) if b else "B")
    m = _COUNT.search(text)
    n = int(m.group(1)) if m else 3
    zh = "[角色A]" in text
    if zh:
        qs = [f"{name_a}，请讲讲你人生中的第{i + 1}件大事（{name_b}不会知道）。" for i in range(n)]
    else:
        qs = [
            f"{name_a}, tell me about turning point number {i + 1} in your life (unknown to {name_b})."
            for i in range(n)
        ]
    good = json.dumps([{"question": q} for q in qs], ensure_ascii=False)
    fenced = "Here you go:\n```json\n" + good + "\n```"
    return ["Sure! I would be glad to write some questions.", good, fenced]


def response_reply(text: str) -> str:
    """An in-character answer naming the role and echoing the question's start."""
    you = _YOU.search(text)
    q = _QUESTION.search(text)
    name = you.group(1) if you else "someone"
    question = q.group(1)[:60] if q else ""
    if "你的名字：" in text:
        return f"（{name}微笑）关于“{question}”，我可以这样回答你。[{_tag(text)}]"
    return f'({name} smiles) As for "{question}", here is my answer. [{_tag(text)}]'


def evidence_reply(text: str) -> str:
    """Two bullets naming the role."""
    m = re.search(r"^(?:Name: |名字：)(.+)$", text, re.MULTILINE)
    name = m.group(1) if m else "the character"
    return f"- {name} is the person asked.\n- The answer draws on {name}'s own life."


def scripted_reply(body: dict[str, Any]) -> str | list[str]:
    """Responder for a fake OpenAI-compatible server: one reply per requested sample."""
    text = _last_user(body)
    kind = prompt_kind(text)
    if kind == "query":
        samples = query_reply(text)
        n = int(body.get("n") or 1)
        # n=1 (split samples): a stateless responder cannot rotate the samples, so send a good one.
        return samples if n > 1 else samples[1]
    if kind == "evidence":
        return evidence_reply(text)
    return response_reply(text)
