"""Terminal output: the dry-run plan and the results tables (rich)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from harness.progress import out_console

_SHORT = {
    "parse_error": "parse_err", "api_error": "api_err", "turns_no_verdict": "no_verdict",
    "turns_api_error": "api_err_turns", "turns_pending": "pending", "turns_scored": "scored",
}


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) >= 1 or v == 0 else f"{v:.3f}"
    return str(v)


def print_plan(plan: Mapping[str, Mapping[str, Any]]) -> None:
    table = Table(title="dry run: judge calls and token estimate (no call made)")
    table.add_column("")
    for name in plan:
        table.add_column(name, justify="right")
    fields = ["sessions", "turns", "judge_model", "judgments", "samples_per_judgment", "judge_requests",
              "est_prompt_tokens", "est_completion_tokens"]
    for f in fields:
        table.add_row(f, *[_fmt(p[f]) for p in plan.values()])
    out_console.print(table)
    total = sum(p["judge_requests"] for p in plan.values())
    prompt_tokens = sum(p["est_prompt_tokens"] for p in plan.values())
    completion_tokens = sum(p["est_completion_tokens"] for p in plan.values())
    out_console.print(
        f"judge requests: {total}; token estimate ≈ {prompt_tokens} prompt + {completion_tokens} completion "
        "(≈4 ASCII chars or 1 CJK char per token; unknown replies assumed ~250 tokens, judgments ~150 tokens)"
    )


def print_results(results: Mapping[str, Any]) -> None:
    for name, res in results["tasks"].items():
        metrics = res.get("metrics", {})
        ci = res.get("ci95", {})
        mock = results.get("mock")
        label = f" [MOCK {' and '.join(mock)}: scripted, not a real model]" if mock else ""
        table = Table(title=f"{name} (v{res.get('version')}){label}")
        nested = {k: v for k, v in metrics.items() if isinstance(v, Mapping)}
        if nested:
            first = list(next(iter(nested.values())))
            cols = sorted(
                {c for v in nested.values() for c in v}, key=lambda c: first.index(c) if c in first else 99
            )
            table.add_column("split")
            for c in cols:
                table.add_column(c, justify="right")
            for split, vals in nested.items():
                cells = []
                for c in cols:
                    lohi = (ci.get(split) or {}).get(c)
                    cell = _fmt(vals.get(c))
                    if lohi:
                        cell += f" [{_fmt(lohi[0])}, {_fmt(lohi[1])}]"
                    cells.append(cell)
                table.add_row(split, *cells)
            official = _official(res)
            if official is not None:
                table.add_section()
                for split, vals in official["metrics"].items():
                    if isinstance(vals, Mapping):
                        table.add_row(f"{split}*", *[_fmt(vals.get(c)) for c in cols])
        else:
            table.add_column("metric")
            table.add_column("value", justify="right")
            table.add_column("95% CI", justify="right")
            for k, v in metrics.items():
                lohi = ci.get(k)
                table.add_row(k, _fmt(v), f"[{_fmt(lohi[0])}, {_fmt(lohi[1])}]" if lohi else "—")
        out_console.print(table)
        official = _official(res)
        if official is not None:
            out_console.print(official_line(official, res.get("n_sessions")), highlight=False)
        fails = res.get("failures")
        if isinstance(fails, Mapping) and fails and all(isinstance(v, Mapping) for v in fails.values()):
            cols = list(dict.fromkeys(k for v in fails.values() for k in v))
            ft = Table(title=f"{name}: failures (samples and turns)", title_justify="left")
            ft.add_column("metric")
            for c in cols:
                ft.add_column(_SHORT.get(c, c), justify="right")
            for metric, counts in fails.items():
                ft.add_row(metric, *[_fmt(counts.get(c)) for c in cols])
            out_console.print(ft)
        elif fails:
            out_console.print(f"  failures: {fails}")
        usage = res.get("usage") or {}
        out_console.print("  judge usage: " + ", ".join(f"{k}={v}" for k, v in usage.items()))


def _official(res: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``official`` block of a task result (WikiRoleEval), when it has one in the expected shape."""
    block = res.get("official")
    if isinstance(block, Mapping) and isinstance(block.get("metrics"), Mapping):
        return block
    return None


def official_line(official: Mapping[str, Any], n_sessions: Any = None) -> str:
    """One line under the table: what the ``*`` rows are, and what the released code dropped."""
    dropped = official.get("dropped") or {}
    kept = official.get("n_sessions")
    of = f" of {n_sessions}" if isinstance(n_sessions, int) else ""
    line = f"  * official: the released scoring.py on the same completions, {kept}{of} sessions kept"
    if not dropped.get("sessions"):
        return line + ", none dropped"
    reasons = ", ".join(
        f"{reason}: {d.get('sessions', 0)}/{d.get('turns', 0)}"
        for reason, d in (dropped.get("by_reason") or {}).items()
        if isinstance(d, Mapping) and d.get("sessions")
    )
    return line + f"; dropped {dropped['sessions']} sessions / {dropped.get('turns', 0)} turns ({reasons})"


# -- failure causes ----------------------------------------------------------------------------------------

_DETERMINISTIC = re.compile(
    r"maximum context length|context length|context window|too many tokens|prompt is too long|"
    r"exceeds the (?:model's )?(?:maximum|max)|max_length|HTTP 40[0134]\b|HTTP 422\b|\b40[0134] Client Error|"
    r"invalid_api_key|"
    r"model_not_found|does not exist",
    re.IGNORECASE,
)


def cause_of(error: str | None) -> str:
    """``error type: first line of the message`` (at most 160 characters), secrets redacted."""
    from harness.redact import redact

    text = redact(str(error or "no error message")).strip()
    first = text.splitlines()[0] if text else "no error message"
    return first[:160]


def is_deterministic(cause: str) -> bool:
    """A failure that re-running the same command reproduces (bad request, key, model, context length)."""
    return _DETERMINISTIC.search(cause) is not None


def failure_causes(records: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Counter[str]]:
    """Counts of each cause of a failed generation (``rollout``) and judge call (``judging``)."""
    roll: Counter[str] = Counter()
    jud: Counter[str] = Counter()
    for recs in records.values():
        for rec in recs:
            for turn in rec.get("turns", []):
                gen = turn.get("generation") or {}
                if gen.get("status") == "error":
                    roll[cause_of(gen.get("error"))] += 1
                for j in (turn.get("judgments") or {}).values():
                    if j.get("status") not in ("ok", "pending"):
                        jud[cause_of(j.get("error") or j.get("status"))] += 1
    return {"rollout": roll, "judging": jud}


def print_causes(causes: Mapping[str, Counter[str]], top: int = 5) -> None:
    """The most frequent causes of each phase, one line each, on stderr."""
    from harness.progress import console

    for phase, counter in causes.items():
        if not counter:
            continue
        console.print(f"[bold]{phase} failures[/] ({sum(counter.values())}), top causes:")
        for cause, count in counter.most_common(top):
            tag = " [dim](deterministic: re-running fails the same way)[/]" if is_deterministic(cause) else ""
            console.print(f"  {count:>6} × {escape(cause)}{tag}")
