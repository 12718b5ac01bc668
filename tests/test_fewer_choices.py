"""Fewer choices than asked is a failure, for the judge and for the supervisor's query samples.

An endpoint that ignores ``n`` (1 choice for ``n=3``) used to make a run read complete with a wrong
consistency score, and a re-run against a fixed judge kept it. Now the short response is retried, what is
still missing is an ``api_error`` (the run is incomplete, exit 1), nothing partial is cached, and a re-run
asks for exactly the judgments that are missing.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from harness.cache import ResponseCache
from harness.chat_client import ChatClient, SamplingParams
from harness.cli import main
from harness.completer import CachedCompleter
from tests.support.fake_openai import FakeOpenAI, Fault
from tests.test_e2e_wikiroleeval import _check_golden, _judge_args, _two_sessions, _verdicts
from tests.wre_support import scripted_judge

N_JUDGMENTS = 21  # 7 turns x 3 metrics, 3 samples each


def test_judge_dropping_n_is_incomplete_and_a_rerun_fixes_the_score(
    judge_server: FakeOpenAI, tmp_path: Path
) -> None:
    path, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(scripted_judge(_verdicts(a, b)))
    judge_server.add_fault(Fault("few_choices", choices=1, times=10_000))
    out = tmp_path / "run"
    args = ["judge", "--tasks", "wikiroleeval", "--responses", str(path),
            *_judge_args(judge_server, out, "--judge_max_retries", "1")]
    assert main(args) == 1
    # every judgment was asked twice (one retry), whole, with n=3
    bodies = [r["body"] for r in judge_server.requests]
    assert len(bodies) == 2 * N_JUDGMENTS and all(body["n"] == 3 for body in bodies)
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "incomplete"
    res = json.loads((out / "results.json").read_text())
    assert res["judging"]["calls_missing"] == N_JUDGMENTS
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    judged = [e for e in journal if e.get("k") == "judge"]
    assert judged and all(e["status"] == "api_error" for e in judged)
    assert all("1 of 3 requested choices" in e["error"] for e in judged)

    # the judge is fixed: the re-run asks for exactly the 21 missing judgments and gets the right numbers
    judge_server.reset()
    judge_server.set_responder(scripted_judge(_verdicts(a, b)))
    assert main(args) == 0
    assert len(judge_server.requests) == N_JUDGMENTS
    _check_golden(out)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_a_short_response_retried_to_completion_is_ok(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    judge_server.set_responder(lambda body: ["s0", "s1", "s2"])
    judge_server.add_fault(Fault("few_choices", choices=2, times=1))
    cache = ResponseCache(tmp_path / "c.sqlite")
    client = ChatClient(base_url=judge_server.base_url, model="j", api_key=None, backoff_base=0.01)
    cached = CachedCompleter(client, cache, client.cache_scope)
    msgs = [{"role": "user", "content": "q"}]

    async def go() -> Any:
        try:
            return await cached.complete(msgs, SamplingParams(), n=3)
        finally:
            await cached.aclose()

    res = asyncio.run(go())
    assert res.status == "ok" and res.texts == ["s0", "s1", "s2"] and res.attempts == 2
    assert client.retries == 1 and res.usage.calls == 2  # the short answer was paid for too
    again = asyncio.run(go())
    assert again.cached and again.texts == ["s0", "s1", "s2"]
    cache.close()


def test_incomplete_result_is_never_cached(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    judge_server.set_responder(lambda body: ["s0", "s1", "s2"])
    judge_server.add_fault(Fault("few_choices", choices=1, times=2))
    cache = ResponseCache(tmp_path / "c.sqlite")
    client = ChatClient(base_url=judge_server.base_url, model="j", api_key=None, max_retries=1,
                        backoff_base=0.01)
    cached = CachedCompleter(client, cache, client.cache_scope)
    msgs = [{"role": "user", "content": "q"}]

    async def go() -> Any:
        try:
            return await cached.complete(msgs, SamplingParams(), n=3)
        finally:
            await cached.aclose()

    res = asyncio.run(go())
    assert res.status == "api_error" and res.texts == ["s0", None, None]
    assert "1 of 3" in (res.error or "")
    assert not cached.store.lookup(cached.scope.keys(msgs, SamplingParams().payload_fields(), 3))[0]
    fixed = asyncio.run(go())
    assert fixed.status == "ok" and not fixed.cached and fixed.texts == ["s0", "s1", "s2"]
    cache.close()


def test_supervisor_query_samples_short_is_an_api_error_then_resumes(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    from ditto_train.generate.cli import main as generate_main
    from ditto_train.generate.scripted import prompt_kind, scripted_reply
    from tests.fixtures.knowledge.e2e import api_supervisor_args, build_fixture_kb

    kb = build_fixture_kb(tmp_path / "kb")
    fake_openai.set_responder(scripted_reply)
    # every query-simulation request (n=3) gets a single choice back
    fake_openai.add_fault(
        Fault("few_choices", choices=1, times=10_000,
              match=lambda body: prompt_kind(str(body["messages"][-1]["content"])) == "query")
    )
    out = tmp_path / "train"
    args = [*api_supervisor_args(fake_openai.base_url), "--knowledge", str(kb), "--out", str(out),
            "--holdout_rate", "0", "--langs", "zh", "--no_cache"]
    args[3] += ",max_retries=1"
    assert generate_main(args) == 1
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert report["this_run"]["api_error_sessions"] == 5
    assert "1 of 3 requested choices" in report["this_run"]["errors"][0]
    assert not (out / "train.jsonl").exists() or not (out / "train.jsonl").read_text().strip()
    fake_openai.reset()
    fake_openai.set_responder(scripted_reply)
    assert generate_main(args) == 0
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text("utf-8").splitlines()]
    assert len(rows) == 5
