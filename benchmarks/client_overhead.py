"""Client CPU per chat-completions request, by request path, and the loopback latency floor.

Against the fake OpenAI-compatible server in its own process (no latency), sends ``--calls`` requests
64 at a time through (1) the stock ``openai.AsyncOpenAI.post`` on its aiohttp transport, (2) the
memoised path of ``harness.lean_openai.LeanAsyncOpenAI`` and (3) a raw aiohttp session, and prints the
client's CPU milliseconds per call for each (the lower bound a 64-way judge can reach is set by this).
Then sends 200 sequential requests to a server that sleeps 100 ms and prints their latency percentiles:
timer jitter on the machine, which no client can remove.

    python benchmarks/client_overhead.py [--calls 3000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import httpx2  # noqa: E402
import openai  # noqa: E402

from harness.lean_openai import LeanAsyncOpenAI  # noqa: E402
from tests.support.fake_openai import run_fake_openai_process  # noqa: E402

CONCURRENCY = 64
PROMPT = "[Candidates Start]\n- Role 1\n- Other\n[Candidates End]\n" + "x" * 3000
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": PROMPT}], "n": 3}).encode()
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer not-a-secret"}


async def _openai_path(cls: type[openai.AsyncOpenAI], url: str, calls: int) -> float:
    client = cls(base_url=url, api_key="not-a-secret", max_retries=0,
                 http_client=openai.DefaultAioHttpClient(timeout=60))

    async def one() -> None:
        resp = await client.post("/chat/completions", content=BODY, cast_to=httpx2.Response)
        json.loads(resp.content)

    try:
        return await _measure(one, calls)
    finally:
        await client.close()


async def _raw_aiohttp(url: str, calls: int) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:

        async def one() -> None:
            async with session.post(f"{url}/chat/completions", data=BODY, headers=HEADERS) as resp:
                json.loads(await resp.read())

        return await _measure(one, calls)


async def _measure(one: Callable[[], Awaitable[None]], calls: int) -> float:
    """Client CPU ms per call over ``calls`` requests, 64 in flight (after a 200-call warm-up)."""
    sem = asyncio.Semaphore(CONCURRENCY)

    async def bounded() -> None:
        async with sem:
            await one()

    await asyncio.gather(*(bounded() for _ in range(200)))
    cpu = time.process_time()
    await asyncio.gather(*(bounded() for _ in range(calls)))
    return 1000 * (time.process_time() - cpu) / calls


async def _latencies(url: str, n: int) -> list[float]:
    out: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            t0 = time.perf_counter()
            async with session.post(f"{url}/chat/completions", data=BODY, headers=HEADERS) as resp:
                await resp.read()
            out.append(1000 * (time.perf_counter() - t0))
    return sorted(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=2, help="repeat the three paths (the machine is noisy)")
    args = ap.parse_args()
    paths: dict[str, Callable[[str, int], Coroutine[Any, Any, float]]] = {
        "openai stock post": lambda u, n: _openai_path(openai.AsyncOpenAI, u, n),
        "openai lean post": lambda u, n: _openai_path(LeanAsyncOpenAI, u, n),
        "raw aiohttp": _raw_aiohttp,
    }
    print(f"client CPU ms per call, {args.calls} calls, {CONCURRENCY} in flight, server latency 0")
    with run_fake_openai_process(latency=0.0) as url:
        for rnd in range(1, args.rounds + 1):
            row = [f"{name} {asyncio.run(fn(url, args.calls)):.3f}" for name, fn in paths.items()]
            print(f"round {rnd}: " + " | ".join(row))
    with run_fake_openai_process(latency=0.1) as url:
        lat = asyncio.run(_latencies(url, 200))
    print(f"sequential requests to a 100 ms server: p50 {lat[len(lat) // 2]:.1f} ms, "
          f"p90 {lat[int(len(lat) * 0.9)]:.1f} ms, max {lat[-1]:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
