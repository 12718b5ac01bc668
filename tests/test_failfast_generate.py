"""Issue 10 for `generate`: the API supervisor is preflighted, and a run that writes no session exits 1 with
the top rejection reasons. Issue 15: the supervisor's base_url follows the one endpoint rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from ditto_train.generate.cli import main
from ditto_train.generate.scripted import prompt_kind, scripted_reply
from tests.fixtures.knowledge.e2e import build_fixture_kb
from tests.support.fake_openai import FakeOpenAI, Fault


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_kb(tmp_path_factory.mktemp("kb"))


def _args(base_url: str, kb: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--supervisor",
        "local-chat-completions",
        "--supervisor_args",
        f"model=scripted-sup,base_url={base_url}",
        "--knowledge",
        str(kb),
        "--out",
        str(out),
        "--holdout_rate",
        "0",
        "--concurrency",
        "4",
        "--langs",
        "en",
        "--limit",
        "2",
        *extra,
    ]


def test_supervisor_preflight_stops_at_once(
    fake_openai: FakeOpenAI,
    kb: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DITTO_BENCH_NO_PREFLIGHT", raising=False)
    fake_openai.set_responder(scripted_reply)
    fake_openai.add_fault(Fault("status", status=401))
    out = tmp_path / "gen"
    assert main(_args(fake_openai.base_url, kb, out)) == 2
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "preflight: supervisor" in err[0] and "rejected API key (HTTP 401" in err[0], err
    assert not out.exists() and fake_openai.count() == 1
    # an endpoint that ignores `n` cannot give the 3 query samples
    fake_openai.ignore_n = True
    assert main(_args(fake_openai.base_url, kb, out)) == 2
    assert "ignores `n` (asked for 3 samples, got 1)" in capfd.readouterr().err
    fake_openai.ignore_n = False
    # healthy: preflight, then the run; the full endpoint form of base_url is accepted too
    assert main(_args(fake_openai.chat_url, kb, out)) == 0
    assert fake_openai.requests[-1]["path"] == "/v1/chat/completions"


def test_zero_sessions_written_exits_1_with_reasons(
    fake_openai: FakeOpenAI, kb: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    def responder(body: dict) -> str | list[str]:  # type: ignore[type-arg]
        if prompt_kind(str(body["messages"][-1]["content"])) == "response":
            return "As an AI language model, I cannot pretend to be anyone."
        return scripted_reply(body)

    fake_openai.set_responder(responder)
    out = tmp_path / "gen"
    assert main(_args(fake_openai.base_url, kb, out)) == 1
    err = capfd.readouterr().err
    line = next(ln for ln in err.splitlines() if "0 sessions written" in ln)
    assert "top rejection reasons: no_usable_turns (2)" in line, line


def test_generate_gen_kwargs_types_are_checked_first(
    fake_openai: FakeOpenAI, kb: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gen"
    assert main(_args(fake_openai.base_url, kb, out, "--gen_kwargs", "temperature=hot")) == 2
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "--gen_kwargs: temperature='hot': expected a number" in err[0], err
    assert not out.exists() and fake_openai.count() == 0
