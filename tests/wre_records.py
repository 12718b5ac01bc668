"""Hand-built WikiRoleEval session records (the samples.jsonl shape) for scoring tests."""

from __future__ import annotations

from typing import Any

METRIC_ORDER = ("consistency", "rejection", "knowledge")


def judgment(texts: list[str | None] | None, status: str = "ok") -> dict[str, Any]:
    return {
        "status": status,
        "template": "x.en",
        "prompt": [{"role": "user", "content": "p"}],
        "completions": list(texts or []),
        "error": None if status == "ok" else "HTTP 500",
    }


def record(
    sid: str,
    lang: str,
    label: str,
    labels: list[int],
    turns: list[dict[str, list[str | None] | dict[str, Any]]],
) -> dict[str, Any]:
    """One session; ``turns[t][metric]`` is a list of completions (status ok) or a ready judgment dict."""
    prompts = [f"{sid} question {t}" for t in range(len(labels))]
    out_turns = []
    for t, spec in enumerate(turns):
        js = {m: (v if isinstance(v, dict) else judgment(v)) for m, v in spec.items()}
        out_turns.append({"turn": t, "generation": {"status": "given"}, "judgments": js})
    for t in range(len(turns), len(labels)):
        out_turns.append({"turn": t, "generation": {"status": "pending"}, "judgments": {}})
    return {
        "task": "wikiroleeval",
        "session_id": sid,
        "index": 0,
        "lang": lang,
        "system": f"You are {label}",
        "prompts": prompts,
        "label": label,
        "candidates": [label, "Somebody Else"],
        "gold_position": 0,
        "rejection_labels": labels,
        "item": {"system": f"You are {label}", "prompts": prompts, "meta": {"label": label}},
        "messages": [],
        "turns": out_turns,
    }


def turn(cons: list[str | None], rej: list[str | None], know: list[str | None]) -> dict[str, Any]:
    return {"consistency": cons, "rejection": rej, "knowledge": know}
