"""WikiRoleEval calibration: two judges on the same replies (two finished run directories).

Per turn both runs' recorded verdicts are compared: consistency (the role each judge voted for most often,
and the turn score), rejection (the 0/1 vote: raw agreement and Cohen's kappa) and knowledge (the turn
score: Spearman, Kendall, mean absolute difference). The move of each aggregate metric is the second run's
value minus the reference's, with a session-bootstrap CI of the mean paired per-turn difference (over the
turns both judges scored). Runs that did not judge the same replies are refused.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.jsonl import read_jsonl
from harness.stats import paired_bootstrap_ci
from judges.calibrate import agreement as ag

METRICS = ("consistency", "knowledge", "rejection")
SPLITS = ("all", "en", "zh")


def _load(run_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any], dict[str, Any]]:
    for name in ("run.json", "samples.jsonl", "results.json"):
        if not (run_dir / name).is_file():
            raise ConfigError(f"{run_dir}: not a finished run directory ({name} is missing)")
    recs = {
        r["session_id"]: r for r in read_jsonl(run_dir / "samples.jsonl") if r.get("task") == "wikiroleeval"
    }
    if not recs:
        raise ConfigError(f"{run_dir}: no wikiroleeval session in samples.jsonl")
    turns = [t for r in recs.values() for t in r.get("turns") or []]
    statuses = {j.get("status") for t in turns for j in (t.get("judgments") or {}).values()}
    if statuses <= {"pending"}:
        # A --predict_only run has replies and no verdicts: comparing it would print a table of dashes.
        raise ConfigError(f"{run_dir}: no judged turn (judge it first: ditto-bench judge {run_dir})")
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))["tasks"]["wikiroleeval"]
    return recs, run, results


def _judge_of(run: Mapping[str, Any]) -> str:
    return str(
        ((run.get("spec") or {}).get("tasks", {}).get("wikiroleeval", {}).get("judge") or {}).get("model")
    )


def check_same_replies(ref: Mapping[str, Any], new: Mapping[str, Any], ref_dir: Path, new_dir: Path) -> None:
    if set(ref) != set(new):
        only = sorted(set(ref) ^ set(new))
        raise ConfigError(
            f"{new_dir} and {ref_dir} did not judge the same replies: session {only[0]} is in one run only"
        )
    for sid in sorted(ref):
        if ref[sid]["messages"] != new[sid]["messages"]:
            raise ConfigError(
                f"{new_dir} and {ref_dir} did not judge the same replies: session {sid} differs"
            )


def _modal_vote(j: Mapping[str, Any]) -> str | None:
    votes = [p["value"] for p in j.get("parsed") or [] if p.get("status") == "ok"]
    if not votes:
        return None
    counts = Counter(votes)
    best = max(counts.values())
    return next(str(v) for v in votes if counts[v] == best)  # tie: first seen


def _turn_values(rec: Mapping[str, Any], metric: str) -> list[tuple[int, Any, Any]]:
    """(turn, score, vote) per judged turn; vote: modal role (consistency) or 0/1 (rejection)."""
    out = []
    for t in rec["turns"]:
        j = t["judgments"].get(metric)
        if j is None:
            continue
        vote = _modal_vote(j) if metric == "consistency" else (j.get("verdict") or {}).get("value")
        out.append((int(t["turn"]), j.get("score"), vote))
    return out


def compare_runs(ref_dir: Path, new_dir: Path, *, seed: int, n_boot: int) -> dict[str, Any]:
    ref, ref_run, ref_res = _load(ref_dir)
    new, new_run, new_res = _load(new_dir)
    check_same_replies(ref, new, ref_dir, new_dir)
    out: dict[str, Any] = {
        "set": "wikiroleeval",
        "reference": {"run": str(ref_dir), "judge": _judge_of(ref_run)},
        "run": {"run": str(new_dir), "judge": _judge_of(new_run)},
        "n_sessions": len(ref),
        "metrics": {},
    }
    for metric in METRICS:
        vote_groups: list[list[tuple[Any, Any]]] = []
        score_groups: list[list[ag.Pair]] = []
        diffs: dict[str, tuple[list[float], list[float]]] = {s: ([], []) for s in SPLITS}
        for sid in sorted(ref):
            lang = ref[sid]["lang"]
            a = {t: (s, v) for t, s, v in _turn_values(ref[sid], metric)}
            b = {t: (s, v) for t, s, v in _turn_values(new[sid], metric)}
            votes = [
                (a[t][1], b[t][1])
                for t in sorted(a)
                if t in b and a[t][1] is not None and b[t][1] is not None
            ]
            scores = [
                (float(a[t][0]), float(b[t][0]))
                for t in sorted(a)
                if t in b and a[t][0] is not None and b[t][0] is not None
            ]
            vote_groups.append(votes)
            score_groups.append(scores)
            for split in ("all", lang):
                diffs[split][0].append(sum(y - x for x, y in scores))
                diffs[split][1].append(float(len(scores)))
        va = [p[0] for g in vote_groups for p in g]
        vb = [p[1] for g in vote_groups for p in g]
        sa = [p[0] for g in score_groups for p in g]
        sb = [p[1] for g in score_groups for p in g]
        m: dict[str, Any] = {"n_turns_voted_by_both": len(va), "n_turns_scored_by_both": len(sa)}
        m["vote_agreement"] = ag.exact_agreement(va, vb)
        m["ci95"] = {
            "vote_agreement": ag.bootstrap_ci(vote_groups, ag.exact_agreement, seed=seed, n_resamples=n_boot)
        }
        if metric == "rejection":
            m["cohen_kappa"] = ag.cohen_kappa(va, vb)
            m["ci95"]["cohen_kappa"] = ag.bootstrap_ci(
                vote_groups, ag.cohen_kappa, seed=seed, n_resamples=n_boot
            )
        for name, fn in (
            ("spearman", ag.spearman),
            ("kendall", ag.kendall),
            ("mean_abs_diff", ag.mean_abs_diff),
        ):
            m[name] = fn(sa, sb)
            m["ci95"][name] = ag.bootstrap_ci(score_groups, fn, seed=seed, n_resamples=n_boot)
        moves: dict[str, Any] = {}
        for split in SPLITS:
            before = (ref_res["metrics"].get(split) or {}).get(metric)
            after = (new_res["metrics"].get(split) or {}).get(metric)
            sums, counts = diffs[split]
            moves[split] = {
                "reference": before,
                "run": after,
                "delta": None if before is None or after is None else after - before,
                "paired_mean_diff": sum(sums) / sum(counts) if sum(counts) else None,
                "paired_mean_diff_ci95": paired_bootstrap_ci(sums, counts, seed=seed, n_resamples=n_boot),
            }
        m["aggregate_move"] = moves
        out["metrics"][metric] = m
    return out


def summary_lines(result: Mapping[str, Any]) -> Sequence[str]:
    lines = [
        f"wikiroleeval: {result['run']['judge']} vs reference {result['reference']['judge']}, "
        f"{result['n_sessions']} sessions"
    ]
    for metric, m in result["metrics"].items():
        move = m["aggregate_move"]["all"]
        extra = f", kappa {_f(m.get('cohen_kappa'))}" if metric == "rejection" else ""
        lines.append(
            f"  {metric}: vote agreement {_f(m['vote_agreement'])}{extra}, spearman {_f(m['spearman'])}, "
            f"aggregate {_f(move['reference'])} -> {_f(move['run'])} (delta {_f(move['delta'])})"
        )
    return lines


def _f(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}"
