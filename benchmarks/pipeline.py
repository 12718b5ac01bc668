"""Pipelined run against the loopback server: ditto-bench beside a raw aiohttp client doing the same schedule.

One fake OpenAI-compatible server runs in its own process with a fixed latency and answers both the model
under test (``bench-model``: a 700-character reply) and the judge (judge-shaped completions, n=3). The
workload has uneven session lengths (every tenth session has 12 turns, the others 3), WikiRoleEval's three
judge prompts per turn. Printed, as median [min, max] over ``--repeat`` rounds:

* ``whole run / raw pipelined client``: the raw client's time over ``ditto-bench run``'s whole command
  (loading, journal, records and aggregation included). The raw client runs every session as its own task,
  longest remaining first, on one kept-open pool of ``--concurrency`` connections, and judges each turn on a
  second pool the moment its reply exists. Goal >= 0.9.
* ``rollout / raw per-session rollout``: the raw client's rollout alone over ditto-bench's rollout alone
  (``harness.rollout.rollout`` with the lm-eval backend; no judge). Goal >= 0.95.

Then peak RSS of ``ditto-bench run`` and ``ditto-bench judge`` (each in a fresh process, server latency 0)
at ``--rss_sessions`` (default 400 and 4,000): the goal is flat (within 20%).

    python benchmarks/pipeline.py [--sessions 400] [--latency 0.25] [--concurrency 64] [--repeat 3]
                                  [--rss_sessions 400 4000] [--skip_rss] [--skip_speed]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "bench-model"
JUDGE = "bench-judge"
REPLY = "As I recall it, the river ran quiet that spring and the town still slept. " * 9  # ~700 chars
MAX_TOKENS = 64


def respond(body: dict[str, Any]) -> Any:
    """Server responder (imported by the server process): a reply for the model, verdicts for the judge."""
    if body.get("model") == MODEL:
        return REPLY
    from tests.wre_support import realistic_verdicts

    return realistic_verdicts(body)


def turns_of(i: int) -> int:
    return 12 if i % 10 == 0 else 3


def write_data(path: Path, n_sessions: int, *, with_replies: bool) -> None:
    """WikiRoleEval items in the official schema; with ``with_replies`` also ``messages`` (for ``judge``)."""
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n_sessions):
            lang = "en" if i % 2 == 0 else "zh"
            label = f"Role {i}" if lang == "en" else f"角色{i}"
            turns = turns_of(i)
            prompts = [f"Question {t} for {label}: tell me about your life in detail." for t in range(turns)]
            item: dict[str, Any] = {
                "system": f"You are {label}.", "prompts": prompts,
                "meta": {
                    "label": label, "lang": lang, "summary": f"{label} is a synthetic character. " * 5,
                    "role_consist_cands": [label, "Other A", "Other B", "Other C"],
                    "evidence": [f"- fact {t} about {label}" for t in range(turns)],
                    "rejection_labels": [int(t % 4 == 3) for t in range(turns)],
                },
            }
            if with_replies:
                msgs: list[dict[str, str]] = [{"role": "system", "content": item["system"]}]
                for p in prompts:
                    msgs += [{"role": "user", "content": p}, {"role": "assistant", "content": REPLY}]
                item["messages"] = msgs
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------------- raw reference


def load_sessions(data: Path) -> tuple[Any, list[Any]]:
    from harness.task import get_task

    task = get_task("wikiroleeval")
    return task, task.load(data, limit=None, responses=None).sessions


async def raw_client(base_url: str, task: Any, sessions: list[Any], conc: int, *, judge: bool) -> float:
    """Per-session rollout, longest remaining first; with ``judge``, each turn judged as soon as replied."""
    import aiohttp

    from harness.rollout import conversation, conversation_with_replies

    t0 = time.perf_counter()
    chat = f"{base_url}/chat/completions"
    target = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc))
    judge_http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc))
    judge_sem = asyncio.Semaphore(conc)
    judge_tasks: list[asyncio.Task[None]] = []

    async def post(http: Any, body: dict[str, Any]) -> dict[str, Any]:
        async with http.post(chat, json=body) as resp:
            resp.raise_for_status()
            out: dict[str, Any] = await resp.json()
            return out

    async def judge_one(messages: list[dict[str, str]]) -> None:
        async with judge_sem:
            out = await post(judge_http, {"model": JUDGE, "messages": messages, "temperature": 0.2,
                                          "max_tokens": 2048, "n": 3})
        assert len(out["choices"]) == 3

    ready: list[tuple[int, int, Any, list[str]]] = [
        (-len(s.prompts), k, s, []) for k, s in enumerate(sessions)
    ]
    heapq.heapify(ready)

    async def worker() -> None:
        while ready:
            _, k, s, replies = heapq.heappop(ready)
            turn = len(replies)
            body = {"messages": conversation(s, replies, turn), "model": MODEL, "max_tokens": MAX_TOKENS,
                    "temperature": 0, "stop": [], "seed": 1234}
            out = await post(target, body)
            replies.append(out["choices"][0]["message"]["content"])
            if judge:
                msgs = conversation_with_replies(s, replies)
                for call in task.judge_calls(s, msgs, turn):
                    judge_tasks.append(asyncio.create_task(judge_one(call.messages)))
            if turn + 1 < len(s.prompts):
                heapq.heappush(ready, (-(len(s.prompts) - turn - 1), k, s, replies))

    try:
        # Workers that find the heap empty while others are still in flight end early; the ones left
        # carry the tail, as a session can only advance after its own reply anyway.
        await asyncio.gather(*(worker() for _ in range(conc)))
        await asyncio.gather(*judge_tasks)
    finally:
        await target.close()
        await judge_http.close()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- ditto-bench


def ours_whole(base_url: str, data: Path, out: Path, conc: int) -> float:
    from harness.cli import main

    t0 = time.perf_counter()
    rc = main(run_argv(base_url, data, out, conc))
    if rc != 0:
        raise SystemExit(f"ditto-bench run exited {rc}")
    return time.perf_counter() - t0


def run_argv(base_url: str, data: Path, out: Path, conc: int) -> list[str]:
    return [
        "run", "--model", "local-chat-completions",
        "--model_args",
        f"model={MODEL},base_url={base_url}/chat/completions,num_concurrent={conc},max_retries=3",
        "--tasks", "wikiroleeval", "--data_path", str(data), "--output_path", str(out),
        "--gen_kwargs", f"max_gen_toks={MAX_TOKENS}", "--judge_base_url", base_url, "--judge_model", JUDGE,
        "--judge_concurrency", str(conc), "--no_cache", "--bootstrap_resamples", "200",
    ]


def judge_argv(base_url: str, responses: Path, out: Path, conc: int) -> list[str]:
    return [
        "judge", "--tasks", "wikiroleeval", "--responses", str(responses), "--output_path", str(out),
        "--judge_base_url", base_url, "--judge_model", JUDGE, "--judge_concurrency", str(conc), "--no_cache",
        "--bootstrap_resamples", "200",
    ]


def ours_rollout(base_url: str, sessions: list[Any], journal_path: Path, conc: int) -> float:
    from harness.backends.lmeval import load_backend
    from harness.journal import Journal
    from harness.rollout import rollout

    backend = load_backend(
        "local-chat-completions",
        f"model={MODEL},base_url={base_url}/chat/completions,num_concurrent={conc},max_retries=3", seed=1234,
    )
    t0 = time.perf_counter()
    journal = Journal(journal_path)
    counts = rollout(sessions, journal, lambda: backend, lambda s: {"max_gen_toks": MAX_TOKENS}, seed=1234,
                     is_local=lambda b: False)
    journal.close()
    assert counts["failed"] == 0 and counts["pending"] == 0, counts
    return time.perf_counter() - t0


_RSS_CHILD = """
import resource, sys
sys.path.insert(0, {root!r})
from harness.cli import main
rc = main({argv!r})
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rc)
"""


def peak_rss_mb(argv: list[str]) -> float:
    """Peak RSS of one ditto-bench command run in a fresh interpreter."""
    code = _RSS_CHILD.format(root=str(ROOT), argv=argv)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = next((x for x in proc.stdout.splitlines() if x.startswith("MAXRSS_KB")), None)
    if line is None or not line.endswith(" 0"):
        raise SystemExit(f"child failed: {argv[0]}: {proc.stderr[-2000:]}")
    return int(line.split()[1]) / 1024


def main_bench() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=400)
    ap.add_argument("--latency", type=float, default=0.25)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rss_sessions", type=int, nargs="+", default=[400, 4000])
    ap.add_argument("--skip_rss", action="store_true")
    ap.add_argument("--skip_speed", action="store_true")
    args = ap.parse_args()
    from tests.support.fake_openai import run_fake_openai_process

    turns = sum(turns_of(i) for i in range(args.sessions))
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        if not args.skip_speed:
            data = tmpd / "data.jsonl"
            write_data(data, args.sessions, with_replies=False)
            task, sessions = load_sessions(data)
            whole, roll = [], []
            serve = run_fake_openai_process(latency=args.latency, responder="benchmarks.pipeline:respond")
            with serve as url:
                for rep in range(args.repeat):
                    raw_pipe = asyncio.run(raw_client(url, task, sessions, args.concurrency, judge=True))
                    ours = ours_whole(url, data, tmpd / f"run-{rep}", args.concurrency)
                    raw_roll = asyncio.run(raw_client(url, task, sessions, args.concurrency, judge=False))
                    our_roll = ours_rollout(url, sessions, tmpd / f"journal-{rep}.jsonl", args.concurrency)
                    whole.append((raw_pipe / ours, raw_pipe, ours))
                    roll.append((raw_roll / our_roll, raw_roll, our_roll))
            print(f"workload: {args.sessions} sessions, {turns} turns, {3 * turns} judge calls (n=3); "
                  f"latency {args.latency * 1000:.0f} ms; {args.concurrency} in flight per side; "
                  f"{args.repeat} rounds (median [min, max])")
            for name, rows in (("whole run / raw pipelined client", whole),
                               ("rollout / raw per-session rollout", roll)):
                ratios = [r[0] for r in rows]
                print(f"{name:36s} {median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}]   "
                      f"raw {median(r[1] for r in rows):.2f} s, "
                      f"ditto-bench {median(r[2] for r in rows):.2f} s")
        if not args.skip_rss:
            print("peak RSS (MB), fresh process per command, server latency 0:")
            with run_fake_openai_process(latency=0.0, responder="benchmarks.pipeline:respond") as url:
                for n in args.rss_sessions:
                    data, responses = tmpd / f"data-{n}.jsonl", tmpd / f"responses-{n}.jsonl"
                    write_data(data, n, with_replies=False)
                    write_data(responses, n, with_replies=True)
                    run_mb = peak_rss_mb(run_argv(url, data, tmpd / f"rss-run-{n}", args.concurrency))
                    judge_out = tmpd / f"rss-judge-{n}"
                    judge_mb = peak_rss_mb(judge_argv(url, responses, judge_out, args.concurrency))
                    n_turns = sum(turns_of(i) for i in range(n))
                    print(f"  {n:6d} sessions ({n_turns} turns): run {run_mb:7.1f}   judge {judge_mb:7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_bench())
