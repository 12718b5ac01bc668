"""Rendering the simulation prompts (jinja2 templates in ``ditto_train/templates``) from profiles.

Templates, one per language: ``query_sim`` (T_Q in the paper: two profiles → questions A can answer and B
cannot), ``response_sim`` (T_R: A's profile + one question → an in-character answer), ``evidence`` (test
split: which profile facts the answer rests on), ``intro`` (the session's system message) and ``profile``
(macros shared by the others). Each template's sha256 goes into every output record, so a changed wording is
visible.

Articles are cut to a token budget (``profile_tokens``, split between A and B in the query prompt) at
paragraph boundaries; the estimate counts one token per CJK character and one per four other characters, which
is close enough for Qwen-style BPE vocabularies and needs no tokenizer.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from ditto_train.knowledge.schema import LANGS, RoleProfile
from harness.errors import ConfigError
from harness.types import ChatMessage

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "templates"
TEMPLATE_KINDS = ("query_sim", "response_sim", "evidence", "intro", "profile")
MAX_ALIASES = 8
VIEW_CACHE = 512  # profile views kept: a session renders its role's view 7-13 times
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


def approx_tokens(text: str) -> int:
    """Rough token count: CJK characters count one each, other characters a quarter each."""
    if text.isascii():  # fast path for English
        return (len(text) + 3) // 4
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 3) // 4


def truncate_to_tokens(text: str, budget: int) -> str:
    """``text`` cut at a paragraph (else sentence, else character) boundary to about ``budget`` tokens."""
    if budget <= 0:
        return ""
    if approx_tokens(text) <= budget:
        return text
    kept: list[str] = []
    used = 0
    for para in text.split("\n"):
        cost = approx_tokens(para) + 1
        if used + cost > budget:
            if not kept:  # a first paragraph longer than the budget: cut inside it
                kept.append(_cut_inside(para, budget))
            break
        kept.append(para)
        used += cost
    # A section heading left dangling at the end says nothing.
    while kept and (not kept[-1].strip() or kept[-1].strip().startswith("==")):
        kept.pop()
    return "\n".join(kept).strip()


def _cut_inside(para: str, budget: int) -> str:
    out = ""
    for sentence in re.split(r"(?<=[.!?。！？])\s*", para):
        if approx_tokens(out + sentence) > budget:
            break
        out += sentence if not out or _CJK.match(sentence[:1] or " ") else " " + sentence
    if out:
        return out.strip()
    chars: list[str] = []
    for ch in para:  # no sentence fits: cut by characters
        chars.append(ch)
        if approx_tokens("".join(chars)) >= budget:
            break
    return "".join(chars)


def profile_view(p: RoleProfile, article_budget: int, max_claims: int) -> dict[str, Any]:
    """What the templates see of a profile: label, description, aliases, claims and the cut article."""
    article = p.wiki.content or p.summary
    return {
        "label": p.label,
        "description": p.description.strip().rstrip("。.;；,，"),
        "aliases": p.aliases[:MAX_ALIASES],
        "claims": [tuple(c[:2]) for c in p.trans_claims[:max_claims] if len(c) >= 2],
        "article": truncate_to_tokens(article, article_budget),
        "lang": p.lang,
    }


@dataclass(frozen=True)
class TemplateSet:
    """The loaded templates and their hashes."""

    env: jinja2.Environment
    hashes: dict[str, str]


def load_templates(template_dir: Path | None = None) -> TemplateSet:
    """Load the ``{kind}.{lang}.jinja`` templates from ``template_dir`` (default: the packaged ones)."""
    folder = Path(template_dir) if template_dir else TEMPLATE_DIR
    hashes: dict[str, str] = {}
    for kind in TEMPLATE_KINDS:
        for lang in LANGS:
            path = folder / f"{kind}.{lang}.jinja"
            if not path.is_file():
                raise ConfigError(
                    f"--templates: {path} is missing "
                    f"(need {kind}.en/zh.jinja for {', '.join(TEMPLATE_KINDS)})"
                )
            hashes[f"{kind}.{lang}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )
    for name in hashes:  # compile now: a syntax error is bad input, not a failure of every session
        try:
            env.get_template(f"{name}.jinja")
        except jinja2.TemplateError as exc:
            raise ConfigError(f"--templates: {folder / (name + '.jinja')}: {exc}") from exc
    return TemplateSet(env, hashes)


class Prompts:
    """Renders the four prompt kinds for profiles in their own language."""

    def __init__(self, templates: TemplateSet, *, profile_tokens: int = 3000, max_claims: int = 40) -> None:
        self.t = templates
        self.profile_tokens = profile_tokens
        self.max_claims = max_claims
        self._views: OrderedDict[tuple[str, str, int], dict[str, Any]] = OrderedDict()

    def _view(self, p: RoleProfile, budget: int) -> dict[str, Any]:
        """``profile_view`` memoised per (role, language, budget), least recently used evicted."""
        key = (p.id, p.lang, budget)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = profile_view(p, budget, self.max_claims)
            if len(self._views) > VIEW_CACHE:
                self._views.popitem(last=False)
        else:
            self._views.move_to_end(key)
        return view

    def _render(self, kind: str, lang: str, **ctx: Any) -> str:
        try:
            text = self.t.env.get_template(f"{kind}.{lang}.jinja").render(**ctx)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"template {kind}.{lang}.jinja: {exc}") from exc
        return text.strip()

    def query(self, a: RoleProfile, b: RoleProfile, n: int) -> list[ChatMessage]:
        """T_Q(a, b): questions ``a`` can answer and ``b`` cannot (in ``a``'s language)."""
        half = self.profile_tokens // 2
        text = self._render(
            "query_sim",
            a.lang,
            a=self._view(a, half),
            b=self._view(b, half),
            n=n,
        )
        return [{"role": "user", "content": text}]

    def response(self, a: RoleProfile, query: str) -> list[ChatMessage]:
        """T_R(a, q): an in-character answer with ``a``'s whole (cut) profile in context."""
        text = self._render("response_sim", a.lang, c=self._view(a, self.profile_tokens), query=query)
        return [{"role": "user", "content": text}]

    def evidence(self, a: RoleProfile, query: str, response: str) -> list[ChatMessage]:
        """The evidence request of one test turn."""
        text = self._render(
            "evidence",
            a.lang,
            c=self._view(a, self.profile_tokens),
            query=query,
            response=response,
        )
        return [{"role": "user", "content": text}]

    def intro(self, a: RoleProfile) -> str:
        """The system message of a session: ``You are {label}, {description}.`` (zh: ``你是…，…。``)."""
        return self._render("intro", a.lang, c=profile_view(a, 0, 0))
