"""End to end under failure: injected judge/model faults never change the numbers, and failures are values.

Every fault here is aimed at one (metric, query) prompt with a `match` predicate, so each judge call meets at
most one fault and the request count is exact: 21 judgments plus one retry per fault.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tests.support.fake_openai import FakeOpenAI, Fault
from tests.test_e2e_wikiroleeval import EXPECTED, _check_golden, _judge_args, _two_sessions, _verdicts
from tests.wre_support import metric_of, replay_then_judge, scripted_judge


def _on(metric: str, query: str, model: str = "judge-x") -> Callable[[dict[str, Any]], bool]:
    """Match the judge request of one (metric, query) prompt."""

    def pred(body: dict[str, Any]) -> bool:
        if body.get("model") != model:
            return False
        prompt = body["messages"][-1]["content"]
        return metric_of(prompt) == metric and query in prompt

    return pred


def _samples(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


def _judge_cmd(path: Path, server: FakeOpenAI, out: Path, *extra: str) -> list[str]:
    return ["judge", "--tasks", "wikiroleeval", "--responses", str(path), *_judge_args(server, out, *extra)]


def test_transient_faults_leave_golden_numbers(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    path, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(scripted_judge(_verdicts(a, b)))
    pa, pb = a["prompts"], b["prompts"]
    faults = {
        ("consistency", pa[0]): Fault("status", status=429, retry_after=0.05),
        ("rejection", pa[1]): Fault("status", status=500),  # no Retry-After: the client's own backoff
        ("knowledge", pa[2]): Fault("status", status=503, retry_after=0.05),
        ("consistency", pb[0]): Fault("garbage"),
        ("rejection", pb[1]): Fault("disconnect"),
        ("knowledge", pb[2]): Fault("timeout", delay=2.0),  # longer than --judge_timeout 0.5
        ("consistency", pa[3]): Fault("empty_choices"),
    }
    for (metric, query), fault in faults.items():
        fault.match = _on(metric, query)
        judge_server.add_fault(fault)
    out = tmp_path / "run"
    rc = main(_judge_cmd(path, judge_server, out, "--judge_max_retries", "3", "--judge_timeout", "0.5"))
    assert rc == 0
    assert judge_server.pending_faults == 0  # every fault was met
    assert judge_server.count() == 21 + len(faults)  # exactly one retry per fault
    _check_golden(out)
    # the faulted judgments record their second attempt; the others their first
    attempts = {
        (j["prompt"][0]["content"], m): j["attempts"]
        for rec in _samples(out) for t in rec["turns"] for m, j in t["judgments"].items()
    }
    for (prompt, metric), n in attempts.items():
        hit = any(metric == m and q in prompt for (m, q) in faults)
        assert n == (2 if hit else 1), (metric, prompt[:80])
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


# Session A turn 0 is scored 1 (consistency), 9 (knowledge) and 1 (rejection: predicts 0, label 0). When its
# call fails for good the turn is excluded from that metric's mean, not scored 0:
#   consistency (0.5 + 0 + 2/3 | 1 + 2/3 + 1/3) / 6
#   knowledge   (7 + 5.5 | 4 + 7 + 3) / 5
#   rejection   (0 + 1 | 1 + 0 + 0) / 5
WITHOUT_A0 = {
    "consistency": (6, (0.5 + 0 + 2 / 3 + 1 + 2 / 3 + 1 / 3) / 6),
    "knowledge": (5, (7 + 5.5 + 4 + 7 + 3) / 5),
    "rejection": (5, 2 / 5),
}


@pytest.mark.parametrize("metric", sorted(WITHOUT_A0))
def test_persistent_judge_failure_is_counted_then_retried(
    judge_server: FakeOpenAI, tmp_path: Path, metric: str
) -> None:
    path, (a, b) = _two_sessions(tmp_path)
    verdicts = _verdicts(a, b)
    target = (metric, a["prompts"][0])
    judge_server.set_responder(scripted_judge(verdicts))
    judge_server.add_fault(Fault("status", status=500, retry_after=0.05, match=_on(*target), times=100))
    out = tmp_path / "run"
    cmd = _judge_cmd(path, judge_server, out, "--judge_max_retries", "1")
    assert main(cmd) == 1
    assert judge_server.count(lambda r: _on(*target)(r["body"])) == 2  # first try + 1 retry
    assert judge_server.count() == 22

    res = json.loads((out / "results.json").read_text())
    task = res["tasks"]["wikiroleeval"]
    f = task["failures"][metric]
    assert f["api_error"] == 3 and f["turns_api_error"] == 1  # the 3 samples of the one failed call
    assert all(task["failures"][m]["api_error"] == 0 for m in WITHOUT_A0 if m != metric)
    n_scored, mean = WITHOUT_A0[metric]
    assert task["n_scored_turns"]["all"][metric] == n_scored
    assert task["metrics"]["all"][metric] == pytest.approx(mean, abs=1e-12)
    for other in WITHOUT_A0:
        if other != metric:
            assert task["metrics"]["all"][other] == pytest.approx(EXPECTED["all"][other], abs=1e-12)
    assert res["complete"] is False and res["judging"]["calls_api_error"] == 1
    assert json.loads((out / "run.json").read_text())["status"] == "incomplete"
    j = _samples(out)[0]["turns"][0]["judgments"][metric]
    assert j["status"] == "api_error" and "500" in j["error"] and j["score"] is None

    judge_server.reset()
    judge_server.set_responder(scripted_judge(verdicts))
    assert main(cmd) == 0
    assert judge_server.count() == 1  # only the failed call is sent again
    assert judge_server.count(lambda r: _on(*target)(r["body"])) == 1
    _check_golden(out)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_model_failure_is_an_error_state_then_resumes(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    path, (a, b) = _two_sessions(tmp_path)
    respond = replay_then_judge([a, b], scripted_judge(_verdicts(a, b)))

    def model_turn1_of_a(body: dict[str, Any]) -> bool:
        return body.get("model") == "roleplayer" and body["messages"][-1]["content"] == a["prompts"][1]

    judge_server.set_responder(respond)
    judge_server.add_fault(Fault("status", status=500, match=model_turn1_of_a, times=100))
    out = tmp_path / "run"
    cmd = [
        "run", "--model", "local-chat-completions",
        "--model_args", f"model=roleplayer,base_url={judge_server.chat_url},num_concurrent=2,max_retries=1",
        "--tasks", "wikiroleeval", "--data_path", str(path), "--gen_kwargs", "max_gen_toks=64",
        *_judge_args(judge_server, out),
    ]
    assert main(cmd) == 1
    recs = _samples(out)
    assert [r["session_id"] for r in recs] == ["wre-0001", "wre-0002"]  # nothing dropped
    gens_a = [t["generation"] for t in recs[0]["turns"]]
    assert [g["status"] for g in gens_a] == ["ok", "error", "pending", "pending"]
    assert "500" in gens_a[1]["error"]
    assert [bool(t["judgments"]) for t in recs[0]["turns"]] == [True, False, False, False]
    assert [t["generation"]["status"] for t in recs[1]["turns"]] == ["ok", "ok", "ok"]
    res = json.loads((out / "results.json").read_text())
    assert res["rollout"]["turns_error"] == 1 and res["rollout"]["turns_pending"] == 2
    assert res["tasks"]["wikiroleeval"]["n_turns"] == 7
    assert judge_server.count(lambda r: r["body"]["model"] == "judge-x") == 4 * 3  # A turn 0 + B's 3 turns
    assert json.loads((out / "run.json").read_text())["status"] == "incomplete"

    judge_server.reset()
    judge_server.set_responder(respond)
    assert main(cmd) == 0
    model_calls = [r["body"] for r in judge_server.requests if r["body"]["model"] == "roleplayer"]
    assert [c["messages"][-1]["content"] for c in model_calls] == a["prompts"][1:]  # only A's turns 1-3
    assert model_calls[-1]["messages"] == a["messages"][:-1]  # full history, including the resumed turn 0
    assert judge_server.count(lambda r: r["body"]["model"] == "judge-x") == 3 * 3
    _check_golden(out)
    assert [t["generation"]["status"] for t in _samples(out)[0]["turns"]] == ["ok"] * 4
