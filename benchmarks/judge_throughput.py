"""Judge throughput: `ditto-bench judge` on a synthetic responses file against a fixed-latency local server.

Prints achieved / bound, where bound = calls × latency / concurrency is the shortest possible judge phase
for that concurrency (the server answers every request after `latency` seconds), as the median [min, max]
of `--repeat` fresh runs, plus the client's CPU milliseconds per call in the judge phase (steadier than wall
time on a shared machine). The server runs in its own process so that client and server do not share one
interpreter, and answers with judge-shaped completions. Targets (2-core machine): >= 0.85 at 64 x 250 ms
and >= 0.7 at 64 x 100 ms. Also prints the wall time of the immediate re-run of the finished run (journal
resume) and of a fresh run directory served from the response cache.

    python benchmarks/judge_throughput.py [--calls 2010] [--concurrency 64] [--latency 0.25 0.1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import harness.engine as engine  # noqa: E402
from harness.cli import main  # noqa: E402
from tests.support.fake_openai import run_fake_openai_process  # noqa: E402

TURNS = 5
# Judge-shaped completions (analysis + verdict line) so parsing and scoring do their real work.
RESPONDER = "tests.wre_support:realistic_verdicts"


def synthetic_responses(path: Path, n_sessions: int) -> None:
    """Sessions in the official schema (meta layout), alternating en/zh, 5 turns each."""
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n_sessions):
            lang = "en" if i % 2 == 0 else "zh"
            label = f"Role {i}" if lang == "en" else f"角色{i}"
            prompts = [f"Question {t} for {label}: tell me about your life in detail." for t in range(TURNS)]
            msgs: list[dict[str, str]] = [{"role": "system", "content": f"You are {label}."}]
            for p in prompts:
                msgs += [{"role": "user", "content": p},
                         {"role": "assistant", "content": f"As {label}, here is a long answer. " * 20}]
            item: dict[str, Any] = {
                "system": f"You are {label}.", "prompts": prompts, "messages": msgs,
                "meta": {
                    "label": label, "lang": lang, "summary": f"{label} is a synthetic character. " * 5,
                    "role_consist_cands": [label, "Other A", "Other B", "Other C"],
                    "evidence": [f"- fact {t} about {label}" for t in range(TURNS)],
                    "rejection_labels": [0, 0, 0, 1, 0],
                },
            }
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")


def timed_judge_phase() -> dict[str, float]:
    """Wrap the engine's rollout+judge phases (judge only here) to time them alone (loading and writing
    records excluded)."""
    box: dict[str, float] = {}
    original = engine.run_phases

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            box["judge_s"] = time.perf_counter() - t0
            box["judge_cpu_s"] = time.process_time() - c0

    engine.run_phases = wrapper  # type: ignore[assignment]
    return box


def run_once(base_url: str, responses: Path, out: Path, cache: Path, concurrency: int) -> float:
    t0 = time.perf_counter()
    rc = main([
        "judge", "--tasks", "wikiroleeval", "--responses", str(responses), "--output_path", str(out),
        "--judge_base_url", base_url, "--judge_model", "bench-judge", "--judge_concurrency", str(concurrency),
        "--cache_path", str(cache), "--bootstrap_resamples", "200",
    ])
    if rc != 0:
        raise SystemExit(f"ditto-bench judge exited {rc}")
    return time.perf_counter() - t0


def main_bench() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2010, help="judge calls (3 per turn, 5 turns per session)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, nargs="+", default=[0.25, 0.1])
    ap.add_argument("--repeat", type=int, default=3,
                    help="fresh runs per latency; the median is reported (shared machines are noisy)")
    args = ap.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "bench-not-a-secret")
    n_sessions = -(-args.calls // (3 * TURNS))
    calls = n_sessions * TURNS * 3
    box = timed_judge_phase()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        responses = tmpd / "responses.jsonl"
        synthetic_responses(responses, n_sessions)
        for latency in args.latency:
            bound = calls * latency / args.concurrency
            ratios, cpu_ms, totals, reruns, freshes = [], [], [], [], []
            with run_fake_openai_process(latency=latency, responder=RESPONDER) as base_url:
                for rep in range(args.repeat):
                    cache = tmpd / f"cache-{latency}-{rep}.sqlite"
                    out = tmpd / f"run-{latency}-{rep}"
                    totals.append(run_once(base_url, responses, out, cache, args.concurrency))
                    ratios.append(bound / box["judge_s"])
                    cpu_ms.append(1000 * box["judge_cpu_s"] / calls)
                    reruns.append(run_once(base_url, responses, out, cache, args.concurrency))
                    freshes.append(run_once(base_url, responses, tmpd / f"run-{latency}-{rep}-cached", cache,
                                            args.concurrency))
            rows.append((latency, bound, ratios, cpu_ms, totals, reruns, freshes))
    print(f"judge calls: {calls} ({n_sessions} sessions x {TURNS} turns x 3 metrics, n=3 samples per call), "
          f"concurrency {args.concurrency}, {args.repeat} runs per latency (median [min, max])")
    print("latency_ms  bound_s  achieved/bound          client_cpu_ms/call  whole_cmd_s  "
          "rerun_same_dir_s  fresh_dir_from_cache_s")
    for latency, bound, ratios, cpu_ms, totals, reruns, freshes in rows:
        spread = f"{median(ratios):5.3f} [{min(ratios):.3f}, {max(ratios):.3f}]"
        print(f"{latency * 1000:10.0f}  {bound:7.2f}  {spread}  {median(cpu_ms):18.2f}"
              f"  {median(totals):11.2f}  {median(reruns):16.2f}  {median(freshes):22.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_bench())
