"""WikiRoleEval as the released pipeline itself would score the same completions (ditto_method.md §2.5).

This is the ``official`` block of ``results.json``, next to the robust numbers of :mod:`.scoring`. It
replays, per recorded judge completion, what ``eval/call_openai_api_gpt4_eval.py`` and ``scoring.py`` do:

* consistency: ``re.search(r"most suitable role is \\[(.*)\\]")`` (zh: ``最符合的角色为\\[(.*)\\]``, chosen
  by the session's language), case-sensitive, greedy within one line, FIRST match; the turn value is the
  mean of ``group(1) == label`` (raw strings, no normalisation) over the completions that matched, 0 when
  none matched;
* rejection: only completions that are exactly ``"0"`` or ``"1"`` (no stripping) vote; the prediction is
  ``Counter(votes).most_common(1)[0][0]``; no valid vote raises, which drops the whole session;
* knowledge: ``int(text.split("\\n")[-1].replace("Score: ", ""))`` per completion (Python's ``int``: so
  ``" 7 "`` and ``"0"`` and ``"-3"`` parse, ``"7."`` / ``"7/10"`` / a trailing newline do not); a failure
  drops the whole session; the turn value is the unclamped mean, and ``scoring.py``'s
  ``s if s else nan`` then drops a turn whose mean is exactly 0 (so a ``"0"`` sample is averaged in, but
  an all-zero turn is excluded);
* aggregation: ``all`` and each language are plain means over the kept turns (NaN skipped), unrounded
  here (``scoring.py`` prints them rounded to 2 decimals).

A session the released code would not have written (any judge call that failed, is pending or returned no
text; any turn without judgments) is dropped too: the released code writes a session only after all of its
calls returned. Every drop is counted by reason, in sessions and turns; the reason is that of the first
failure in turn order (per turn: consistency, rejection, knowledge, the order of the released prompts).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

METRICS = ("consistency", "knowledge", "rejection")
SPLITS = ("all", "en", "zh")
DROP_REASONS = ("incomplete", "rejection_no_valid_vote", "knowledge_unparseable")

_CONSISTENCY = {
    "en": re.compile(r"most suitable role is \[(.*)\]"),
    "zh": re.compile(r"最符合的角色为\[(.*)\]"),
}


class _Dropped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def consistency_value(texts: Sequence[str], label: str, lang: str) -> float:
    """The released consistency turn value: mean of exact matches among matched completions, else 0."""
    pattern = _CONSISTENCY[lang]
    hits = [m.group(1) == label for m in (pattern.search(t) for t in texts) if m is not None]
    return sum(hits) / len(hits) if hits else 0.0


def rejection_prediction(texts: Sequence[str]) -> int:
    """The released majority vote over completions that are exactly "0" or "1"; raises when none is."""
    votes = [int(t) for t in texts if t in ("0", "1")]
    if not votes:
        raise _Dropped("rejection_no_valid_vote")
    return Counter(votes).most_common(1)[0][0]


def knowledge_value(texts: Sequence[str]) -> float | None:
    """The released knowledge turn value (mean of ``int(last line)``), None where scoring.py makes it NaN."""
    scores: list[int] = []
    for t in texts:
        try:
            scores.append(int(t.split("\n")[-1].replace("Score: ", "")))
        except ValueError:
            raise _Dropped("knowledge_unparseable") from None
    mean = sum(scores) / len(scores) if scores else math.nan
    return None if (not mean or math.isnan(mean)) else mean


def _texts(judgment: Mapping[str, Any] | None) -> list[str]:
    if judgment is None or judgment.get("status") != "ok":
        raise _Dropped("incomplete")
    texts = list(judgment.get("completions") or [])
    if not texts or any(not isinstance(t, str) for t in texts):
        raise _Dropped("incomplete")
    return texts


def session_rows(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per turn (``consistency``, ``knowledge``, ``rejection``), or :class:`_Dropped`."""
    lang, label = rec["lang"], rec["label"]
    labels = rec["rejection_labels"]
    rows: list[dict[str, Any]] = []
    turns = rec["turns"]
    if len(turns) != len(rec.get("prompts") or turns):
        raise _Dropped("incomplete")
    for turn in turns:
        js = turn["judgments"]
        cons = consistency_value(_texts(js.get("consistency")), label, lang)
        pred = rejection_prediction(_texts(js.get("rejection")))
        know = knowledge_value(_texts(js.get("knowledge")))
        rows.append({"consistency": cons, "knowledge": know, "rejection": int(pred == labels[turn["turn"]])})
    return rows


def official_block(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``official`` block of a WikiRoleEval result (see the module docstring)."""
    dropped = {r: {"sessions": 0, "turns": 0} for r in DROP_REASONS}
    values: dict[str, dict[str, list[float]]] = {s: {m: [] for m in METRICS} for s in SPLITS}
    kept_sessions = kept_turns = 0
    kept_by_lang = {"en": 0, "zh": 0}
    for rec in records:
        try:
            rows = session_rows(rec)
        except _Dropped as exc:
            dropped[exc.reason]["sessions"] += 1
            dropped[exc.reason]["turns"] += len(rec.get("prompts") or rec["turns"])
            continue
        kept_sessions += 1
        kept_turns += len(rows)
        kept_by_lang[rec["lang"]] = kept_by_lang.get(rec["lang"], 0) + 1
        for row in rows:
            for metric in METRICS:
                if row[metric] is not None:
                    for split in ("all", rec["lang"]):
                        values[split][metric].append(float(row[metric]))
    metrics = {
        s: {m: (sum(v) / len(v) if v else None) for m, v in values[s].items()} for s in SPLITS
    }
    return {
        "semantics": "released scoring.py (ditto_method.md 2.5)",
        "metrics": metrics,
        "n_scored_turns": {s: {m: len(v) for m, v in values[s].items()} for s in SPLITS},
        "n_sessions": kept_sessions,
        "n_sessions_by_lang": kept_by_lang,
        "n_turns": kept_turns,
        "dropped": {
            "sessions": sum(d["sessions"] for d in dropped.values()),
            "turns": sum(d["turns"] for d in dropped.values()),
            "by_reason": dropped,
        },
    }
