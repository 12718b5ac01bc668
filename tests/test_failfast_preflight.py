"""Issue 10, preflight: one minimal request to the judge and an API target before any work; a rejected key,
an unknown model, an unreachable host and an endpoint that ignores `n` stop the command at once (exit 2,
one line naming the cause, no run directory, no rollout). Through the real CLI and loopback HTTP."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tests.support.fake_openai import FakeOpenAI, Fault
from tests.wre_support import FIXTURES, realistic_verdicts

MINI = FIXTURES / "wikiroleeval_mini.jsonl"


@pytest.fixture(autouse=True)
def _preflight_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DITTO_BENCH_NO_PREFLIGHT", raising=False)


def _respond(body: dict[str, Any]) -> Any:
    return "In character." if body["model"] == "roleplayer" else realistic_verdicts(body)


def _cmd(out: Path, *, target: str, judge: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        "run",
        "--model",
        "local-chat-completions",
        "--model_args",
        f"model=roleplayer,base_url={target}",
        "--tasks",
        "wikiroleeval",
        "--data_path",
        str(MINI),
        "--output_path",
        str(out),
        "--limit",
        "1",
        "--judge_base_url",
        judge,
        "--judge_model",
        "judge-x",
        "--bootstrap_resamples",
        "20",
        "--judge_timeout",
        "2",
        *extra,
    ]


def _one_line(capfd: pytest.CaptureFixture[str]) -> str:
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _judge(body: dict[str, Any]) -> bool:
    return body.get("model") == "judge-x"


@pytest.mark.parametrize(
    ("status", "needle"),
    [
        (401, "rejected API key (HTTP 401"),
        (403, "rejected API key (HTTP 403"),
        (404, "unknown model or wrong URL (HTTP 404"),
        (400, "the endpoint refused the request (HTTP 400"),
    ],
)
def test_judge_rejection_stops_before_rollout(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str], status: int, needle: str
) -> None:
    judge_server.set_responder(_respond)
    judge_server.add_fault(Fault("status", status=status, match=_judge))
    out = tmp_path / "run"
    rc = main(_cmd(out, target=judge_server.chat_url, judge=judge_server.base_url))
    assert rc == 2
    line = _one_line(capfd)
    assert line.startswith("ditto-bench: error: preflight: judge ") and needle in line, line
    assert "judge-x" in line
    assert not out.exists()
    assert judge_server.count() == 1  # the preflight alone: no rollout, no judging
    body = judge_server.requests[0]["body"]
    assert body["max_tokens"] == 1 and body["n"] == 3


def test_target_rejection_names_the_target(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    judge_server.set_responder(_respond)
    judge_server.add_fault(Fault("status", status=404, match=lambda b: b.get("model") == "roleplayer"))
    out = tmp_path / "run"
    assert main(_cmd(out, target=judge_server.chat_url, judge=judge_server.base_url)) == 2
    line = _one_line(capfd)
    assert "preflight: target" in line and "'roleplayer'" in line and "HTTP 404" in line, line
    assert not out.exists()


def test_refused_port_is_not_called_a_timeout(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    judge_server.set_responder(_respond)
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    out = tmp_path / "run"
    assert main(_cmd(out, target=judge_server.chat_url, judge=dead)) == 2
    line = _one_line(capfd)
    assert "connection refused" in line and "timed out" not in line.lower(), line
    assert not out.exists() and judge_server.count() == 0


def test_timeout_is_told_apart(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    judge_server.set_responder(_respond)
    judge_server.add_fault(Fault("timeout", delay=3.0, match=_judge))
    out = tmp_path / "run"
    rc = main(
        _cmd(out, target=judge_server.chat_url, judge=judge_server.base_url, extra=("--judge_timeout", "0.5"))
    )
    assert rc == 2
    line = _one_line(capfd)
    assert "timed out after 0.5 s" in line and "refused" not in line, line
    assert not out.exists()


def test_judge_that_ignores_n(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    judge_server.set_responder(_respond)
    judge_server.ignore_n = True
    out = tmp_path / "run"
    assert main(_cmd(out, target=judge_server.chat_url, judge=judge_server.base_url)) == 2
    line = _one_line(capfd)
    assert "ignores `n` (asked for 3 samples, got 1)" in line and "--judge_split_samples" in line, line
    assert not out.exists()
    # the advice works: with one request per sample the run goes through
    rc = main(
        _cmd(out, target=judge_server.chat_url, judge=judge_server.base_url, extra=("--judge_split_samples",))
    )
    assert rc == 0


def test_no_preflight_skips_it_and_causes_reach_the_console(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    judge_server.set_responder(_respond)
    judge_server.add_fault(Fault("status", status=401, match=_judge, times=1000))
    out = tmp_path / "run"
    rc = main(_cmd(out, target=judge_server.chat_url, judge=judge_server.base_url, extra=("--no_preflight",)))
    assert rc == 1
    err = capfd.readouterr().err
    assert "preflight" not in err
    # the summary names the cause with its count, and says re-running alone will not help
    # The circuit breaker stops judging at the first 401: only the calls in flight then failed.
    assert "judging failures (" in err and "top causes:" in err
    assert "× HTTP 401" in err
    assert "fail the same way again" in err and "re-run the same command to retry" not in err
    assert "Traceback" not in err
    assert json.loads((out / "run.json").read_text())["status"] == "incomplete"


def test_preflight_is_not_counted_or_cached(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    judge_server.set_responder(_respond)
    out = tmp_path / "run"
    assert main(_cmd(out, target=judge_server.chat_url, judge=judge_server.base_url)) == 0
    turns = 4  # the first session of the mini fixture
    preflights = judge_server.count(lambda r: r["body"]["max_tokens"] == 1)
    assert preflights == 2  # judge and target
    assert judge_server.count() == preflights + turns + 3 * turns
    res = json.loads((out / "results.json").read_text())["tasks"]["wikiroleeval"]
    assert res["usage"]["judge_calls"] == 3 * turns
    journal = [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines()]
    assert sum(1 for e in journal if e["k"] == "judge") == 3 * turns
    # a second run of the same command preflights again (nothing of it was cached) and calls nothing else
    assert main(_cmd(out, target=judge_server.chat_url, judge=judge_server.base_url)) == 0
    assert judge_server.count() == 2 * preflights + turns + 3 * turns


def test_base_url_forms_are_one_rule(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Issue 15: …/v1 and …/v1/chat/completions (with or without a slash) work for target and judge alike."""
    judge_server.set_responder(_respond)
    forms = [
        judge_server.base_url,
        judge_server.chat_url,
        judge_server.base_url + "/",
        judge_server.chat_url + "/",
    ]
    for i, (target, judge) in enumerate(zip(forms, reversed(forms), strict=True)):
        out = tmp_path / f"run{i}"
        assert main(_cmd(out, target=target, judge=judge)) == 0, capfd.readouterr().err
    paths = {r["path"] for r in judge_server.requests}
    assert paths == {"/v1/chat/completions"}


def test_preflight_sends_each_key_only_to_its_endpoint(
    judge_server: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The judge key goes to the judge's preflight; a local target gets no key unless it has its own."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-judge-key-123456")
    judge_server.set_responder(_respond)
    out = tmp_path / "run"
    assert main(_cmd(out, target=judge_server.chat_url, judge=judge_server.base_url)) == 0
    pre = [r for r in judge_server.requests if r["body"]["max_tokens"] == 1]
    by_model = {r["body"]["model"]: r["has_auth"] for r in pre}
    assert by_model == {"judge-x": True, "roleplayer": False}
