"""Scale benchmark of ``ditto-bench generate``: throughput against a 50 ms server, and memory vs. pool size.

What it does:

1. starts the fake OpenAI-compatible server (``tests.support.fake_openai``) in its own process, with a fixed
   latency per request and the scripted supervisor (``ditto_train.generate.scripted``) as responder;
2. for each pool size (default 400 and 4,000 roles, both languages), in a fresh subprocess: writes a synthetic
   knowledge base, runs ``ditto-bench generate`` on it with a fresh response cache, and reports the generation
   loop's wall time, the number of supervisor calls and the process's peak RSS;
3. prints achieved / bound throughput, where bound = calls × latency / concurrency (the time the run would
   take if the client added nothing and the supervisor's concurrency slots were always full).

Targets: throughput ratio ≥ 0.8, and peak RSS flat between 400 and 4,000 roles and under 500 MB.
Run: ``.venv/bin/python benchmarks/generate_scale.py [--roles 400,4000] [--concurrency 16] [--latency 0.05]``.
It is a benchmark, not a test: a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_WORDS = (
    "river mountain empire scholar battle garden music treaty voyage science harbour poem court "
    "village letter winter market theatre bridge painting reform dynasty festival library"
).split()
_ZH = "江山帝国学者战役花园音乐条约航行科学港口诗歌宫廷村庄书信冬天集市剧场桥梁绘画改革王朝节日图书馆"


def synthetic_profile(i: int, lang: str, rng: random.Random) -> dict[str, object]:
    """A KB record of realistic size (~2 KB of article in en, ~1 KB in zh)."""
    if lang == "en":
        label = f"Person {i:05d} {rng.choice(_WORDS).title()}"
        article = "\n\n".join(
            " ".join(rng.choice(_WORDS) for _ in range(60)).capitalize() + "." for _ in range(5)
        )
        claims = [[f"property {k}", f"value {rng.choice(_WORDS)}"] for k in range(12)]
        desc = f"synthetic {rng.choice(_WORDS)} figure number {i}"
    else:
        label = f"人物{i:05d}{rng.choice(_ZH)}"
        article = "\n\n".join("".join(rng.choice(_ZH) for _ in range(150)) + "。" for _ in range(5))
        claims = [[f"属性{k}", f"值{rng.choice(_ZH)}"] for k in range(12)]
        desc = f"第{i}号合成人物"
    return {
        "id": f"Q{1000000 + i}",
        "sitelinks": 5000 - i,
        "label": label,
        "description": desc,
        "aliases": [],
        "wiki_title": label,
        "claims": [[f"P{k}", f"Q{k}"] for k in range(12)],
        "trans_claims": claims,
        "category": "real",
        "lang": lang,
        "summary": article.split("\n\n")[0],
        "wiki": {"idx": i, "title": label, "content": article},
    }


def write_kb(path: Path, n_roles: int, langs: list[str]) -> None:
    """Write a synthetic knowledge base of ``n_roles`` roles (one record per language)."""
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n_roles):
            for lang in langs:
                fh.write(json.dumps(synthetic_profile(i, lang, rng), ensure_ascii=False) + "\n")


def serve(latency: float) -> int:
    """Server process: print the base URL, serve until stdin closes."""
    from ditto_train.generate.scripted import scripted_reply
    from tests.support.fake_openai import FakeOpenAI

    server = FakeOpenAI(latency=latency).start()
    server.set_responder(scripted_reply)
    print(server.base_url, flush=True)
    sys.stdin.read()  # the parent closes our stdin to stop us
    server.stop()
    return 0


def worker(n_roles: int, base_url: str, concurrency: int, langs: str) -> int:
    """Generation process: synthetic KB → generate → one JSON line with timings and peak RSS."""
    from ditto_train.generate.cli import main as generate_main

    with tempfile.TemporaryDirectory() as tmp:
        kb = Path(tmp) / "kb.jsonl"
        write_kb(kb, n_roles, langs.split(","))
        out = Path(tmp) / "out"
        t0 = time.monotonic()
        rc = generate_main(
            [
                "--supervisor",
                "local-chat-completions",
                "--supervisor_args",
                f"model=bench,base_url={base_url}",
                "--knowledge",
                str(kb),
                "--out",
                str(out),
                "--holdout_rate",
                "0",
                "--langs",
                langs,
                "--concurrency",
                str(concurrency),
                "--cache_path",
                str(Path(tmp) / "cache.sqlite"),
            ]
        )
        total = time.monotonic() - t0
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "rc": rc,
                "roles": n_roles,
                "sessions": report["totals"]["sessions"],
                "calls": report["this_run"]["calls"],
                "loop_s": report["this_run"]["wall_s"],
                "total_s": round(total, 2),
                "peak_rss_mb": round(peak_kb / 1024, 1),
            }
        )
    )
    return 0


def main() -> int:
    """Run the benchmark and print its table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--roles", default="400,4000", help="pool sizes, comma-separated")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--langs", default="en,zh")
    p.add_argument("--_serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--_base_url", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._serve:
        return serve(args.latency)
    if args._worker is not None:
        return worker(args._worker, args._base_url, args.concurrency, args.langs)

    env = {**os.environ, "PYTHONPATH": str(ROOT), "DITTO_BENCH_CACHE_DIR": tempfile.mkdtemp()}
    srv = subprocess.Popen(
        [sys.executable, __file__, "--_serve", "--latency", str(args.latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert srv.stdout is not None and srv.stdin is not None
    timer = threading.Timer(30, srv.kill)  # bounded wait for the first line
    timer.start()
    base_url = srv.stdout.readline().strip()
    timer.cancel()
    if not base_url.startswith("http"):
        print("fake server did not start", file=sys.stderr)
        return 1
    rows = []
    try:
        for n in [int(x) for x in args.roles.split(",")]:
            res = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--_worker",
                    str(n),
                    "--_base_url",
                    base_url,
                    "--concurrency",
                    str(args.concurrency),
                    "--langs",
                    args.langs,
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=1800,
            )
            if res.returncode != 0:
                print(res.stderr[-3000:], file=sys.stderr)
                return 1
            row = json.loads(res.stdout.strip().splitlines()[-1])
            row["bound_s"] = round(row["calls"] * args.latency / args.concurrency, 2)
            row["ratio"] = round(row["bound_s"] / row["loop_s"], 3) if row["loop_s"] else None
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        srv.stdin.close()
        srv.wait(timeout=30)
    print(f"\nlatency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}, langs {args.langs}")
    print(
        f"{'roles':>6} {'sessions':>8} {'calls':>7} {'loop s':>7} {'bound s':>8} {'ratio':>6} "
        f"{'peak RSS MB':>12}"
    )
    for r in rows:
        print(
            f"{r['roles']:>6} {r['sessions']:>8} {r['calls']:>7} {r['loop_s']:>7} {r['bound_s']:>8} "
            f"{r['ratio']:>6} {r['peak_rss_mb']:>12}"
        )
    ok = all((r["ratio"] or 0) >= 0.8 for r in rows) and all(r["peak_rss_mb"] < 500 for r in rows)
    if len(rows) >= 2:
        growth = rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
        print(f"peak RSS growth {rows[0]['roles']} → {rows[-1]['roles']} roles: {growth:+.1f} MB")
    print("targets met" if ok else "targets NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
