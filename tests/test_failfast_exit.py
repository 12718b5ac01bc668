"""Issue 10, honest exit codes and causes on the console, through the real CLI and a loopback judge."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tests.support.fake_openai import FakeOpenAI
from tests.wre_support import FIXTURES, realistic_verdicts

MINI = FIXTURES / "wikiroleeval_mini.jsonl"


@pytest.fixture(autouse=True)
def _real_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DITTO_BENCH_MAX_UNSCORED", raising=False)  # conftest relaxes it for other tests


def _cmd(server: FakeOpenAI, out: Path, *extra: str, target: str | None = None) -> list[str]:
    return [
        "run",
        "--model",
        "local-chat-completions",
        "--model_args",
        f"model=roleplayer,base_url={target or server.chat_url},max_retries=1",
        "--tasks",
        "wikiroleeval",
        "--data_path",
        str(MINI),
        "--output_path",
        str(out),
        "--limit",
        "2",
        "--judge_base_url",
        server.base_url,
        "--judge_model",
        "judge-x",
        "--bootstrap_resamples",
        "20",
        "--judge_max_retries",
        "0",
        *extra,
    ]


def test_judge_that_parses_nothing_exits_1(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    judge_server.set_responder(lambda b: "I am not sure." if b["model"] == "judge-x" else "In character.")
    out = tmp_path / "run"
    assert main(_cmd(judge_server, out)) == 1
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("unscored:")]
    assert len(lines) == 1, err
    assert "wikiroleeval/consistency has 100% of its turns unscored (limit --max_unscored 0.1)" in lines[0]
    res = json.loads((out / "results.json").read_text())
    assert res["unscored_exceeded"]["limit"] == 0.1
    assert res["unscored_exceeded"]["metrics"]["wikiroleeval/consistency"] == 1.0
    # the numbers are still written (consistency follows the official 0-when-unparsed rule)
    assert res["tasks"]["wikiroleeval"]["metrics"]["all"]["consistency"] == 0.0
    # `score` applies the same gate; a generous limit lets it pass
    assert main(["score", str(out)]) == 1
    assert main(["score", str(out), "--max_unscored", "1"]) == 0


def test_unscored_share_under_the_limit_exits_0(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    def respond(body: dict[str, Any]) -> Any:
        return "In character." if body["model"] == "roleplayer" else realistic_verdicts(body)

    judge_server.set_responder(respond)
    out = tmp_path / "run"
    assert main(_cmd(judge_server, out)) == 0
    assert "unscored_exceeded" not in json.loads((out / "results.json").read_text())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_target_is_reported_as_refused_and_tracebacks_go_to_the_log(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    dead = f"http://127.0.0.1:{_free_port()}/v1/chat/completions"
    assert main(_cmd(judge_server, out, "--no_preflight", target=dead)) == 1
    err = capfd.readouterr().err
    assert "rollout failures (2), top causes:" in err
    assert "Traceback" not in err and "Session is closed" not in err
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    errors = [
        t["generation"].get("error") for r in samples for t in r["turns"] if t["generation"].get("error")
    ]
    assert errors and all("timed out" not in e.lower() for e in errors), errors
    log = out / "ditto-bench.log"
    assert log.exists() and log.stat().st_size > 0


def test_bad_request_is_reported_as_deterministic(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from tests.support.fake_openai import Fault

    judge_server.set_responder(
        lambda b: "In character." if b["model"] == "roleplayer" else realistic_verdicts(b)
    )
    judge_server.add_fault(
        Fault("status", status=400, match=lambda b: b["model"] == "roleplayer", times=1000)
    )
    out = tmp_path / "run"
    assert main(_cmd(judge_server, out, "--no_preflight")) == 1
    err = capfd.readouterr().err
    # The circuit breaker stops the rollout at the first 400 (harness/breaker.py): 1 or 2 failures.
    assert "rollout failures (" in err and "top causes:" in err
    assert "fail the same way again" in err and "re-run the same command to retry" not in err


def test_refused_judge_is_not_labelled_timed_out(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    def respond(body: dict[str, Any]) -> Any:
        return "In character." if body["model"] == "roleplayer" else realistic_verdicts(body)

    judge_server.set_responder(respond)
    out = tmp_path / "run"
    argv = _cmd(judge_server, out, "--no_preflight")
    argv[argv.index("--judge_base_url") + 1] = f"http://127.0.0.1:{_free_port()}/v1"
    assert main(argv) == 1
    err = capfd.readouterr().err
    assert "× connection refused" in err and "Request timed out" not in err, err
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    errors = {  # calls the circuit breaker kept from being sent stay pending, without an error
        j["error"] for r in samples for t in r["turns"] for j in t["judgments"].values()
        if j["status"] != "pending"
    }
    assert errors and all(e.startswith("connection refused") for e in errors), errors


@pytest.mark.parametrize(
    ("error", "deterministic"),
    [
        ("HTTPError: 400 Client Error: Bad Request for url: http://h/v1/chat/completions", True),
        ("HTTP 401: invalid key", True),
        ("HTTP 404: model not found", True),
        ("BadRequestError: This model's maximum context length is 2048 tokens", True),
        ("HTTP 429: rate limited", False),
        ("connection refused ([Errno 111] Connect call failed)", False),
        ("APITimeoutError: Request timed out.", False),
    ],
)
def test_deterministic_causes(error: str, deterministic: bool) -> None:
    from harness.report import cause_of, is_deterministic

    assert is_deterministic(cause_of(error)) is deterministic


def test_golden_fixture_at_the_default_limit(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The golden responses leave 1 of 7 turns without a verdict per metric (14%): above the default 0.1,
    so exit 1 with the numbers unchanged; at --max_unscored 0.2 the same run exits 0."""
    from tests.test_e2e_wikiroleeval import _check_golden, _judge_args, _two_sessions, _verdicts
    from tests.wre_support import scripted_judge

    path, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(scripted_judge(_verdicts(a, b)))
    out = tmp_path / "run"
    cmd = ["judge", "--tasks", "wikiroleeval", "--responses", str(path), *_judge_args(judge_server, out)]
    assert main(cmd) == 1
    assert "has 14% of its turns unscored (limit --max_unscored 0.1)" in capfd.readouterr().err
    _check_golden(out)
    assert main(["score", str(out), "--max_unscored", "0.2"]) == 0


def test_the_log_file_is_a_recorded_output(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Third-party log lines land in DIR/ditto-bench.log, which the stage record lists as an output."""
    from harness.stage import read_stage

    out = tmp_path / "run"
    dead = f"http://127.0.0.1:{_free_port()}/v1/chat/completions"
    assert main(_cmd(judge_server, out, "--no_preflight", target=dead)) == 1
    rec = read_stage(out)
    assert rec is not None and "ditto-bench.log" in rec.outputs
    text = (out / "ditto-bench.log").read_text(encoding="utf-8")
    assert "lm_eval" in text or "lm-eval" in text


def test_calls_a_stopped_judge_never_sent_are_not_counted_as_failed(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The breaker stops judging at the first 401: the calls still in flight fail, the rest are never sent,
    and the summary says which is which (it once counted every unjudged call as failed)."""
    from tests.support.fake_openai import Fault

    judge_server.set_responder(lambda b: "In character." if b["model"] == "roleplayer" else "0")
    judge_server.add_fault(Fault("status", status=401, match=lambda b: b["model"] == "judge-x", times=1000))
    out = tmp_path / "run"
    assert main(_cmd(judge_server, out, "--no_preflight", "--judge_concurrency", "2")) == 1
    err = " ".join(capfd.readouterr().err.split())
    sent = judge_server.count(lambda r: r["body"]["model"] == "judge-x")
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))["judging"]
    assert results["calls_api_error"] == sent < results["calls_missing"]
    unsent = results["calls_missing"] - sent
    assert f"judge calls without a result ({sent} failed, {unsent} not attempted)" in err
