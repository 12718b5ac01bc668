"""Render WikiRoleEval judge prompts from the jinja2 templates in ``judges/templates``.

Each template renders to the single user message sent to the judge. Templates are package data,
loaded through :mod:`importlib.resources`, compiled once and cached: rendering sits on a hot path
(three prompts per judged turn).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources

from jinja2 import StrictUndefined, Template, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Bump whenever the wording of any template changes: the version is recorded with every verdict so
# numbers produced by different prompts are never mixed.
TEMPLATE_VERSION: int = 1

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

# Whitespace plus the zero-width characters someone could slip between words to dodge the match.
_GAP = r"[\s\u200b-\u200d\u2060\ufeff]"
_OPEN = r"[\[【［]"
_CLOSE = r"[\]】］]"


def _marker_pattern(markers: Sequence[str]) -> re.Pattern[str]:
    bodies = []
    for marker in markers:
        # Chinese markers have no spaces; English words may be separated by any run of whitespace.
        words = marker.split() if " " in marker else [marker]
        bodies.append(f"{_GAP}+".join(re.escape(word) for word in words))
    # An opening bracket + marker text is enough to look like our marker; the closing bracket is
    # optional so "[User Message End" (unclosed) is neutralised as well.
    return re.compile(
        f"{_OPEN}(?P<body>{_GAP}*(?:{'|'.join(bodies)}){_GAP}*)(?P<close>{_CLOSE})?",
        re.IGNORECASE,
    )


_MARKER_RE = _marker_pattern(BLOCK_MARKERS)


def defuse(text: str) -> str:
    """Neutralise our block markers inside untrusted text by turning their brackets into parentheses.

    ``"[Character Reply End]"`` becomes ``"(Character Reply End)"``: still readable by the judge, but
    no longer the delimiter. Idempotent. Applied (as the jinja ``defuse`` filter) to ``query`` and
    ``reply`` only; candidates, labels, summaries and evidence come from the dataset and stay verbatim.
    """
    if isinstance(text, Undefined):
        str(text)  # StrictUndefined: raises UndefinedError naming the missing variable
    if not isinstance(text, str):
        raise TypeError(f"defuse expects str, got {type(text).__name__}")
    return _MARKER_RE.sub(lambda m: "(" + m.group("body") + (")" if m.group("close") else ""), text)


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
    knowledge ``label, summary, query, reply, evidence``. ``query``/``reply`` are defused (see
    :func:`defuse`); everything else is inserted verbatim. Raises ValueError for an unknown
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
