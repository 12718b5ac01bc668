"""Render WikiRoleEval judge prompts from the jinja2 templates in ``judges/templates``.

Each template renders to the single user message sent to the judge. Templates are package data,
loaded through :mod:`importlib.resources`, compiled once and cached: rendering sits on a hot path
(three prompts per judged turn).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from functools import cache, lru_cache
from importlib import resources

from jinja2 import StrictUndefined, Template, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Bump whenever the wording of any template changes: the version is recorded with every verdict so
# numbers produced by different prompts are never mixed.
TEMPLATE_VERSION: int = 2

METRICS: tuple[str, ...] = ("consistency", "rejection", "knowledge")
LANGS: tuple[str, ...] = ("en", "zh")

# Variables each template consumes. Extra names are refused so a typo ("replay=") fails loudly.
TEMPLATE_VARIABLES: Mapping[str, frozenset[str]] = {
    "consistency": frozenset({"query", "reply", "candidates"}),
    "rejection": frozenset({"label", "query", "reply"}),
    "knowledge": frozenset({"label", "summary", "query", "reply", "evidence"}),
}

# The text inside every block marker the templates use (both languages). A model reply that
# contains one of these could otherwise close its block early and pose as instructions or tips.
BLOCK_MARKERS: tuple[str, ...] = (
    "User Message Start", "User Message End",
    "Character Reply Start", "Character Reply End",
    "Candidates Start", "Candidates End",
    "Profile Start", "Profile End",
    "Tips Start", "Tips End",
    "用户消息开始", "用户消息结束",
    "角色回复开始", "角色回复结束",
    "候选角色开始", "候选角色结束",
    "角色简介开始", "角色简介结束",
    "参考提示开始", "参考提示结束",
)

# Verdict phrases the consistency parser binds to (judges.parsers), in the loose form a judge quoting a reply
# might reproduce: any spacing, 为/是/為, markdown or a colon before the bracket.
VERDICT_PHRASES: tuple[str, ...] = (
    "most suitable role is", "最符合的角色为", "最符合的角色是", "最符合的角色為",
)

# --- look-alike folding -------------------------------------------------------------------------------
# Detection runs on a folded copy of the text, so a marker or verdict written with look-alike characters is
# found too: NFKC per character (full-width forms, compatibility ideographs, mathematical letters), format
# characters (zero-width space/joiners, soft hyphen, bidi marks, BOM) and combining marks dropped,
# Cyrillic/Greek/Armenian letters that look Latin mapped to Latin, and bracket look-alikes mapped to [ ].
_HOMOGLYPHS: dict[str, str] = {
    **dict(zip("АВЕЅІЈКМНОРСТХУҮҺӀԀԚԜ", "ABESIJKMHOPCTXYYHLDQW", strict=True)),
    **dict(zip("авеѕіјкмнорстхуүһӏԁԛԝ", "abesijkmhopctxyyhldqw", strict=True)),
    **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧϹ", "ABEZHIKMNOPTYXC", strict=True)),
    **dict(zip("αβεικνορτυχϲϳ", "abeikvoptuxcj", strict=True)),
    **dict(zip("օսոհցıɩɡ", "ounhgiig", strict=True)),
}
_OPEN_BRACKETS = "[【〖〔〘⟦⟬⁅❲〚「『｢﹇"
_CLOSE_BRACKETS = "]】〗〕〙⟧⟭⁆❳〛」』｣﹈"
_FOLD: dict[str, str] = {
    **_HOMOGLYPHS, **dict.fromkeys(_OPEN_BRACKETS, "["), **dict.fromkeys(_CLOSE_BRACKETS, "]")
}


# Every character whose fold contains "[" (the scan over all code points is in
# tests/test_defuse_lookalikes.py). Both patterns need one, so a text without any is returned unchanged
# after a single C-level search.
_TRIGGERS = "[⁅❲⟦⟬「『【〔〖〘〚︗︹︻﹁﹃﹇﹝［｢🄪🉀🉁🉂🉃🉄🉅🉆🉇🉈"
_TRIGGER_RE = re.compile("[" + re.escape(_TRIGGERS) + "]")


def _dropped(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cf", "Mn", "Me")


def fold(text: str) -> tuple[str, Sequence[int]]:
    """The look-alike-folded copy of ``text`` and, per folded character, its index in ``text``."""
    if text.isascii():  # folding is the identity on ASCII: no copy, no per-character work
        return text, range(len(text))
    out: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        if _dropped(ch):
            continue
        for c in unicodedata.normalize("NFKC", ch):
            if not _dropped(c):
                out.append(_FOLD.get(c, c))
                origin.append(i)
    return "".join(out), origin


def _marker_pattern(markers: Sequence[str]) -> re.Pattern[str]:
    bodies = []
    for marker in markers:
        # Chinese markers have no spaces; English words may be separated by any run of whitespace (or none:
        # a zero-width character between them is folded away).
        words = marker.split() if " " in marker else [marker]
        bodies.append(r"\s*".join(re.escape(word) for word in words))
    # An opening bracket + marker text is enough to look like our marker; the closing bracket is
    # optional so "[User Message End" (unclosed) is neutralised as well.
    return re.compile(rf"(?P<open>\[)\s*(?:{'|'.join(bodies)})\s*(?P<close>\])?", re.IGNORECASE)


def _verdict_pattern(phrases: Sequence[str]) -> re.Pattern[str]:
    # Any spacing between the characters (a judge may re-space a quote; zero-width ones are folded away).
    bodies = [r"\s*".join(re.escape(ch) for ch in p if ch != " ") for p in phrases]
    return re.compile(
        rf"(?:{'|'.join(bodies)})[\s:*_`'\"“”‘’]*(?P<open>\[)[^\]\n]*(?P<close>\])?", re.IGNORECASE
    )


_MARKER_RE = _marker_pattern(BLOCK_MARKERS)
_VERDICT_RE = _verdict_pattern(VERDICT_PHRASES)


@lru_cache(maxsize=8192)
def _defuse(text: str) -> str:
    if _TRIGGER_RE.search(text) is None:
        return text
    folded, origin = fold(text)
    swap: dict[int, str] = {}
    for pattern in (_MARKER_RE, _VERDICT_RE):
        for m in pattern.finditer(folded):
            swap[origin[m.start("open")]] = "("
            if m.group("close") is not None:
                swap[origin[m.start("close")]] = ")"
    if not swap:
        return text
    chars = list(text)
    for i, repl in swap.items():
        chars[i] = repl
    return "".join(chars)


def defuse(text: str) -> str:
    """Neutralise our block markers and the verdict phrases inside a text put into a judge prompt.

    The bracket of a block marker (``"[Character Reply End]"`` -> ``"(Character Reply End)"``) and the
    brackets after a verdict phrase (``"The most suitable role is [X]"`` -> ``"The most suitable role is
    (X)"``) become parentheses: still readable by the judge, but no longer a delimiter, and no longer a
    verdict the parser would take if the judge quotes the text after its own verdict. Matching is done on a
    look-alike-folded copy (:func:`fold`): full-width forms, zero-width characters, Cyrillic/Greek
    homoglyphs and bracket look-alikes (``【】 〖〗 ［］ 「」`` ...) do not get through. Only the bracket
    characters change; everything else stays as written. Idempotent. Applied (as the jinja ``defuse``
    filter) to every variable the templates insert.
    """
    if isinstance(text, Undefined):
        str(text)  # StrictUndefined: raises UndefinedError naming the missing variable
    if not isinstance(text, str):
        raise TypeError(f"defuse expects str, got {type(text).__name__}")
    return _defuse(text)


def _check(metric: str, lang: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown judge metric {metric!r}; expected one of {', '.join(METRICS)}")
    if lang not in LANGS:
        raise ValueError(f"unknown judge language {lang!r}; expected one of {', '.join(LANGS)}")


@cache
def _template_bytes(metric: str, lang: str) -> bytes:
    return resources.files("judges").joinpath("templates", f"{metric}.{lang}.jinja").read_bytes()


@cache
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
        # Drop the newline after {% ... %} tags so the candidate loop yields exactly one line each.
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["defuse"] = defuse
    return env


@cache
def _template(metric: str, lang: str) -> Template:
    return _environment().from_string(_template_bytes(metric, lang).decode("utf-8"))


def _validate(metric: str, variables: Mapping[str, object]) -> None:
    unknown = sorted(set(variables) - TEMPLATE_VARIABLES[metric])
    if unknown:
        raise ValueError(f"unexpected variable(s) for the {metric} judge prompt: {', '.join(unknown)}")
    missing = sorted(TEMPLATE_VARIABLES[metric] - set(variables))
    if missing:
        raise ValueError(f"missing variable(s) for the {metric} judge prompt: {', '.join(missing)}")
    for name, value in variables.items():
        if name == "candidates":
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise TypeError(f"judge prompt variable 'candidates' must be a list of str, got "
                                f"{type(value).__name__}")
            if not all(isinstance(c, str) for c in value):
                raise TypeError("judge prompt variable 'candidates' must contain only str")
        elif not isinstance(value, str):
            raise TypeError(f"judge prompt variable {name!r} must be str, got {type(value).__name__}")


def render_judge_prompt(metric: str, lang: str, **variables: object) -> str:
    """Render the judge prompt for ``metric`` ("consistency" | "rejection" | "knowledge") in ``lang``.

    Variables: consistency ``query, reply, candidates``; rejection ``label, query, reply``;
    knowledge ``label, summary, query, reply, evidence``. Every variable is defused (see
    :func:`defuse`). Raises ValueError for an unknown
    metric or language and for a missing or unexpected variable, TypeError for a wrongly typed
    value. (The environment also uses StrictUndefined, so a template can never silently render
    a blank.)
    """
    _check(metric, lang)
    _validate(metric, variables)
    return _template(metric, lang).render(**variables)


def template_sha256(metric: str, lang: str) -> str:
    """Return the sha256 hex digest of the raw template file for ``metric`` in ``lang``."""
    _check(metric, lang)
    return hashlib.sha256(_template_bytes(metric, lang)).hexdigest()


def template_hashes() -> dict[str, str]:
    """Return ``{"<metric>.<lang>": sha256}`` for all six templates (for the run record)."""
    return {f"{m}.{lang}": template_sha256(m, lang) for m in METRICS for lang in LANGS}
