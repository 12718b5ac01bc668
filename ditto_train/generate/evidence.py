"""Overlap evidence: the profile facts that share the most words with a turn's question and answer.

Used for ``--evidence overlap`` and as the fallback when the supervisor's evidence answer holds no bullet.
Facts are the article's sentences (within the prompt budget) and the claims as ``property: value``. Words are
lower-cased English words of 3+ letters outside a short stop list; Chinese text contributes character bigrams.
"""

from __future__ import annotations

import math
import re

from ditto_train.generate.prompts import truncate_to_tokens
from ditto_train.knowledge.schema import RoleProfile

_STOP = frozenset(
    "the and for are was were you your with that this from have has had not but what who how why when where "
    "which will would could should can did does about into than then them they their there these those his "
    "her him she our out all any been being more most some such very just also".split()
)
_WORD = re.compile(r"[a-z][a-z'-]{2,}")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")
_SENT = re.compile(r"(?<=[.!?。！？])\s*")


def _terms(text: str) -> set[str]:
    low = text.lower()
    terms = {w for w in _WORD.findall(low) if w not in _STOP}
    for run in _CJK_RUN.findall(text):
        terms.update(run[i : i + 2] for i in range(len(run) - 1))
    return terms


def profile_facts(p: RoleProfile, budget: int) -> list[str]:
    """Candidate facts of a profile: article sentences within ``budget`` tokens, then claims."""
    article = truncate_to_tokens(p.wiki.content or p.summary, budget)
    facts: list[str] = []
    for line in article.splitlines():
        if line.strip().startswith("=="):
            continue
        facts.extend(s.strip() for s in _SENT.split(line) if len(s.strip()) > 8)
    sep = "：" if p.lang == "zh" else ": "
    facts.extend(f"{c[0]}{sep}{c[1]}" for c in p.trans_claims if len(c) >= 2)
    return facts


def overlap_evidence(p: RoleProfile, query: str, response: str, budget: int, k: int = 3) -> list[str]:
    """Up to ``k`` markdown bullets; the description when nothing overlaps (typical of refused questions)."""
    want = _terms(query + "\n" + response)
    scored: list[tuple[float, int, str]] = []
    for i, fact in enumerate(profile_facts(p, budget)):
        terms = _terms(fact)
        hit = len(want & terms)
        if hit:
            scored.append((hit / math.sqrt(len(terms)), -i, fact))
    best = [f for _, _, f in sorted(scored, reverse=True)[:k]]
    if not best:
        best = [f"{p.label}{'：' if p.lang == 'zh' else ': '}{p.description or p.summary[:200]}"]
    return [f"- {f}" for f in best]
