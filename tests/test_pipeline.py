"""The run's middle through the real CLI and the loopback server: judging while rolling out, per-session
scheduling of API targets (lm-eval's payload, no hidden cap), judgments bound to the messages they judged,
a journal that grows linearly, the completion size cap, and the circuit breaker of both phases."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.journal import MAX_COMPLETION_BYTES, Journal, messages_hash
from harness.rollout import rollout
from harness.task import Session
from tests.support.fake_openai import FakeOpenAI, Fault
from tests.test_e2e_wikiroleeval import _check_golden, _judge_args, _two_sessions, _verdicts
from tests.wre_support import metric_of, replay_then_judge, scripted_judge


def _samples(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


def _run_cmd(path: Path, server: FakeOpenAI, out: Path, model_args: str = "", *extra: str) -> list[str]:
    return [
        "run", "--model", "local-chat-completions",
        "--model_args", f"model=roleplayer,base_url={server.chat_url},max_retries=1{model_args}",
        "--tasks", "wikiroleeval", "--data_path", str(path), "--gen_kwargs", "max_gen_toks=64",
        *_judge_args(server, out, *extra),
    ]


def _is_model(r: dict[str, Any]) -> bool:
    return r["body"]["model"] == "roleplayer"


# ---------------------------------------------------------------------------------- pipelining and scheduling


def test_judging_starts_while_the_rollout_goes_on(
    judge_server: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.records import RecordWriter

    written: list[str] = []
    original = RecordWriter.write

    def write(self: RecordWriter, s: Session) -> None:
        written.append(s.session_id)
        original(self, s)

    monkeypatch.setattr(RecordWriter, "write", write)
    path, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(replay_then_judge([a, b], scripted_judge(_verdicts(a, b))))
    judge_server.latency = 0.05
    out = tmp_path / "run"
    assert main(_run_cmd(path, judge_server, out, ",num_concurrent=1")) == 0
    log = judge_server.requests
    last_model = max(i for i, r in enumerate(log) if _is_model(r))
    first_judge = min(i for i, r in enumerate(log) if not _is_model(r))
    assert first_judge < last_model  # before this change every judge call came after the last reply
    # Each record was written during the run, as its session completed (a's last turn goes first here).
    assert written == ["wre-0001", "wre-0002"]
    assert [r["session_id"] for r in _samples(out)] == ["wre-0001", "wre-0002"]  # the file in data order
    assert not (out / RecordWriter.PARTIAL).exists()
    _check_golden(out)


def test_api_sessions_advance_longest_remaining_first(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    path, (a, b) = _two_sessions(tmp_path)  # a has 4 turns, b has 3
    judge_server.set_responder(replay_then_judge([a, b], scripted_judge(_verdicts(a, b))))
    out = tmp_path / "run"
    assert main(_run_cmd(path, judge_server, out, ",num_concurrent=1")) == 0
    order = [r["body"]["messages"][-1]["content"] for r in judge_server.requests if _is_model(r)]
    # One connection: the session with the most turns left goes next (a first; ties keep data order),
    # instead of every session's turn 0, then every turn 1 (the old turn barrier).
    pa, pb = a["prompts"], b["prompts"]
    assert order == [pa[0], pa[1], pb[0], pa[2], pb[1], pa[3], pb[2]]
    _check_golden(out)


def test_num_concurrent_above_64_is_not_capped(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    sessions = [
        Session(task="t", session_id=f"s{i}", index=i, system=f"You are R{i}.", prompts=[f"question {i}"])
        for i in range(80)
    ]
    judge_server.latency = 1.0
    from harness.backends.lmeval import load_backend

    backend = load_backend(
        "local-chat-completions", f"model=roleplayer,base_url={judge_server.chat_url},num_concurrent=100",
        seed=0,
    )
    counts = rollout(sessions, Journal(tmp_path / "j.jsonl"), lambda: backend, lambda s: {"max_gen_toks": 8},
                     seed=0, is_local=lambda b: False)
    assert counts == {"generated": 80, "failed": 0, "pending": 0}
    times = sorted(r["t"] for r in judge_server.requests)
    assert times[-1] - times[0] < 0.9  # all 80 were in flight at once, not 64 and then 16 a second later


def test_per_request_payload_equals_lm_evals_own(judge_server: FakeOpenAI) -> None:
    """The per-session path builds lm-eval's request body: the same JSON its generate_until sends."""
    import asyncio

    from lm_eval.api.instance import Instance

    from harness.backends.lmeval import load_backend

    conv = [
        {"role": "system", "content": "You are Ada. «ünïcödé»"},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "and now?"},
    ]
    gk = {"max_gen_toks": 17, "temperature": 0.7, "top_p": 0.9, "until": ["\n\nUser:"]}
    bodies = {}
    for conc in (1, 4):
        backend = load_backend(
            "local-chat-completions",
            f"model=roleplayer,base_url={judge_server.chat_url},num_concurrent={conc},seed=7", seed=0,
        )
        judge_server.reset()
        ctx = backend.lm.apply_chat_template(conv)
        req = Instance(request_type="generate_until", doc={}, arguments=(ctx, gk), idx=0)
        backend.lm.generate_until([req], disable_tqdm=True)
        bodies[f"generate_until/{conc}"] = judge_server.requests[0]["body"]
        judge_server.reset()

        async def one(b: Any = backend) -> Any:
            try:
                return await b.agenerate(conv, gk, seed=0)
            finally:
                await b.aclose()

        res = asyncio.run(one())
        assert res.ok
        bodies[f"agenerate/{conc}"] = judge_server.requests[0]["body"]
    first = bodies["generate_until/1"]
    assert all(body == first for body in bodies.values()), bodies


# ------------------------------------------------------------------------------------ journal: binding, size


def test_judgments_written_for_another_reply_are_judged_again(
    judge_server: FakeOpenAI, tmp_path: Path
) -> None:
    path, (a, b) = _two_sessions(tmp_path)
    verdicts = _verdicts(a, b)
    judge_server.set_responder(scripted_judge(verdicts))
    out = tmp_path / "run"
    cmd = ["judge", "--tasks", "wikiroleeval", "--responses", str(path), *_judge_args(judge_server, out),
           "--no_cache"]
    assert main(cmd) == 0
    # A second writer appends, for the same keys, verdicts it got for other replies (another hash), which
    # would say the opposite. Latest-entry-wins alone would pair them with these replies.
    journal = out / "journal.jsonl"
    entries = [json.loads(x) for x in journal.read_text(encoding="utf-8").splitlines()]
    judged = [e for e in entries if e["k"] == "judge"]
    other = messages_hash([{"role": "user", "content": "a different reply"}])
    with journal.open("a", encoding="utf-8") as fh:
        for e in judged[:5]:
            stale = {**e, "h": other, "texts": ["The most suitable role is [Nobody]"] * 3}
            fh.write(json.dumps(stale) + "\n")
    judge_server.reset()
    judge_server.set_responder(scripted_judge(verdicts))
    assert main(cmd) == 0
    assert judge_server.count() == 5  # exactly the five stale judgments were asked again
    _check_golden(out)


def test_journal_grows_linearly_with_the_conversation(tmp_path: Path) -> None:
    from tests.test_rollout_replies import ScriptedBackend

    def size(turns: int) -> int:
        s = Session(task="t", session_id="long", index=0, system="You are Ada.",
                    prompts=[f"question number {t} " * 5 for t in range(turns)])
        path = tmp_path / f"j{turns}.jsonl"
        backend = ScriptedBackend(is_api=True)
        counts = rollout([s], Journal(path), lambda: backend, lambda s: {}, seed=0, is_local=lambda b: False)
        assert counts["generated"] == turns
        # What was sent is still recoverable exactly: the record rebuilds it from the stored history.
        from harness.records import _generation
        from harness.rollout import replies_so_far

        j = Journal(path)
        replies = replies_so_far(j, s)
        assert _generation(j, s, turns - 1, replies)["sent_messages"] == backend.seen[-1]
        return path.stat().st_size

    small, big = size(100), size(400)
    assert big / small < 4.5  # quadratic storage (the whole history per turn) gave ~16 here


def test_an_oversized_judge_completion_is_an_api_error(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    path, (a, b) = _two_sessions(tmp_path)
    verdicts = _verdicts(a, b)
    huge = "x" * (MAX_COMPLETION_BYTES + 10)
    base = scripted_judge(verdicts)
    first = a["prompts"][0]

    def respond(body: dict[str, Any]) -> Any:
        prompt = body["messages"][-1]["content"]
        if first in prompt and metric_of(prompt) == "knowledge":
            return huge
        return base(body)

    judge_server.set_responder(respond)
    out = tmp_path / "run"
    cmd = ["judge", "--tasks", "wikiroleeval", "--responses", str(path), *_judge_args(judge_server, out),
           "--no_cache"]
    assert main(cmd) == 1
    assert (out / "journal.jsonl").stat().st_size < MAX_COMPLETION_BYTES
    bad = [e for e in map(json.loads, (out / "journal.jsonl").read_text().splitlines()) if e.get("reason")]
    assert len(bad) == 1 and bad[0]["status"] == "api_error" and bad[0]["reason"] == "oversized"
    rec = _samples(out)[0]["turns"][0]["judgments"]
    oversized = [j for j in rec.values() if j["status"] == "api_error"]
    assert len(oversized) == 1 and oversized[0]["error"].startswith("oversized")


# ---------------------------------------------------------------------------------------- circuit breaker


def test_a_rejected_judge_key_stops_judging_then_resumes(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    path, (a, b) = _two_sessions(tmp_path)
    verdicts = _verdicts(a, b)
    judge_server.set_responder(scripted_judge(verdicts))
    judge_server.add_fault(Fault("status", status=401, times=1000))
    out = tmp_path / "run"
    cmd = ["judge", "--tasks", "wikiroleeval", "--responses", str(path),
           *_judge_args(judge_server, out, "--judge_concurrency", "2")]
    assert main(cmd) == 1
    assert judge_server.count() <= 2  # the calls in flight at the first 401; not all 21
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "incomplete"
    (stop,) = run["stopped"]
    assert stop["phase"] == "judging" and stop["reason"] == "non_retryable" and "401" in stop["error"]

    judge_server.reset()
    judge_server.set_responder(scripted_judge(verdicts))
    assert main(cmd) == 0
    _check_golden(out)
    assert "stopped" not in json.loads((out / "run.json").read_text())


def test_a_rejected_target_key_stops_the_rollout(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    path, (a, b) = _two_sessions(tmp_path)
    respond = replay_then_judge([a, b], scripted_judge(_verdicts(a, b)))
    judge_server.set_responder(respond)
    judge_server.add_fault(Fault("status", status=401, match=lambda body: body["model"] == "roleplayer",
                                 times=1000))
    out = tmp_path / "run"
    cmd = _run_cmd(path, judge_server, out, ",num_concurrent=1")
    assert main(cmd) == 1
    assert judge_server.count(_is_model) == 1  # not one per session and retry
    run = json.loads((out / "run.json").read_text())
    assert run["stopped"][0]["phase"] == "rollout" and "401" in run["stopped"][0]["error"]

    judge_server.reset()
    judge_server.set_responder(respond)
    assert main(cmd) == 0
    _check_golden(out)


def test_a_dead_judge_port_stops_after_k_consecutive_failures(
    judge_server: FakeOpenAI, tmp_path: Path
) -> None:
    path, (a, b) = _two_sessions(tmp_path)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "run"
    cmd = ["judge", "--tasks", "wikiroleeval", "--responses", str(path), "--output_path", str(out),
           "--judge_base_url", f"http://127.0.0.1:{port}/v1", "--judge_model", "judge-x",
           "--judge_concurrency", "1", "--judge_max_retries", "0", "--max_consecutive_failures", "3",
           "--bootstrap_resamples", "200"]
    assert main(cmd) == 1
    entries = [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines()]
    assert len(entries) == 3 and all(e["status"] == "api_error" for e in entries)  # 3 of 21, then stop
    run = json.loads((out / "run.json").read_text())
    assert run["stopped"][0]["reason"] == "consecutive_failures"
    res = json.loads((out / "results.json").read_text())
    assert res["judging"]["calls_api_error"] == 3 and res["judging"]["calls_pending"] == 18

    with FakeOpenAI() as revived:  # the endpoint comes back on the same port: the re-run resumes
        revived.stop()
        revived.start(port=port)
        revived.set_responder(scripted_judge(_verdicts(a, b)))
        assert main(cmd) == 0
        assert revived.count() == 21 - 0  # the 3 failed calls and the 18 never sent
    _check_golden(out)


def test_hf_gets_a_batch_size_that_uses_the_machine_and_records_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.backends.lmeval as lmeval

    seen: dict[str, Any] = {}

    class FakeHF:
        tokenizer = None

        @classmethod
        def create_from_arg_obj(cls, args: dict[str, Any]) -> FakeHF:
            seen.update(args)
            return cls()

    monkeypatch.setattr(lmeval, "_resolve_class", lambda name: FakeHF)
    backend = lmeval.load_backend("hf", "pretrained=some/dir,device=cpu", seed=0)
    assert seen["batch_size"] == lmeval.HF_DEFAULT_BATCH["cpu"] > 1  # lm-eval's own default is 1
    assert backend.spec["model_args"]["batch_size"] == seen["batch_size"]  # what run.json records
    lmeval.load_backend("hf", "pretrained=some/dir,device=cpu,batch_size=3", seed=0)
    assert seen["batch_size"] == 3  # an explicit value is kept


def test_an_oversized_model_reply_is_an_error_not_stored(tmp_path: Path) -> None:
    from tests.test_rollout_replies import ScriptedBackend

    class Runaway(ScriptedBackend):
        def generate(self, conversations: Any, gen_kwargs: Any, *, seed: int, on_progress: Any = None) -> Any:
            out = super().generate(conversations, gen_kwargs, seed=seed, on_progress=on_progress)
            for res in out:
                res.text = "y" * (MAX_COMPLETION_BYTES + 1)
            return out

    s = Session(task="t", session_id="s", index=0, system=None, prompts=["q1", "q2"])
    path = tmp_path / "journal.jsonl"
    counts = rollout([s], Journal(path), lambda: Runaway(is_api=True), lambda s: {}, seed=0,
                     is_local=lambda b: False)
    assert counts == {"generated": 0, "failed": 1, "pending": 2}  # the session stops at its error state
    entry = Journal(path).gens[("t", "s", 0)]
    assert entry["status"] == "error" and entry["reason"] == "oversized" and entry["text"] is None
    assert path.stat().st_size < 10_000
