"""Time to the first useful error: a rejected judge key found by the preflight vs after the rollout.

A `run` against a loopback server whose judge answers 401 and whose target answers after `--latency`
seconds (a stand-in for a slow model). With the preflight the command stops before the rollout; with
`--no_preflight` (the old behaviour) it rolls out every turn and then tries every judge call. Prints wall
seconds and requests made for both, and their ratio, measured in the same run.

    python benchmarks/failfast.py [--sessions 8] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.cli import main  # noqa: E402
from tests.support.fake_openai import FakeOpenAI, Fault  # noqa: E402

MINI = ROOT / "tests" / "fixtures" / "wikiroleeval_mini.jsonl"


def _once(server: FakeOpenAI, out: Path, sessions: int, *extra: str) -> tuple[float, int, int]:
    server.reset()
    server.set_responder(lambda body: "In character.")
    server.add_fault(Fault("status", status=401, match=lambda b: b.get("model") == "judge-x", times=10**6))
    argv = [
        "run", "--model", "local-chat-completions",
        "--model_args", f"model=roleplayer,base_url={server.chat_url}",
        "--tasks", "wikiroleeval", "--data_path", str(MINI), "--limit", str(sessions),
        "--output_path", str(out),
        "--judge_base_url", server.base_url, "--judge_model", "judge-x", "--judge_max_retries", "0",
        "--no_cache", "--bootstrap_resamples", "20", *extra,
    ]
    t0 = time.perf_counter()
    rc = main(argv)
    return time.perf_counter() - t0, server.count(), rc


def main_cli() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per request (target and judge)")
    args = ap.parse_args()
    os.environ.pop("DITTO_BENCH_NO_PREFLIGHT", None)
    os.environ.setdefault("DITTO_BENCH_CACHE_DIR", tempfile.mkdtemp(prefix="ff-cache-"))
    with FakeOpenAI(latency=args.latency) as server, tempfile.TemporaryDirectory() as tmp:
        _once(server, Path(tmp) / "warm", args.sessions, "--dry_run")  # imports out of the timing
        pre_s, pre_n, pre_rc = _once(server, Path(tmp) / "pre", args.sessions)
        old_s, old_n, old_rc = _once(server, Path(tmp) / "old", args.sessions, "--no_preflight")
    print(f"preflight:    exit {pre_rc} after {pre_s:.2f} s, {pre_n} request(s)")
    print(f"no preflight: exit {old_rc} after {old_s:.2f} s, {old_n} requests")
    ratio_n = old_n / max(pre_n, 1)
    print(f"ratio (no preflight / preflight): {old_s / pre_s:.1f}x wall time, {ratio_n:.0f}x requests")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_cli())
