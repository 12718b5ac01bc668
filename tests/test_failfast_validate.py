"""Issue 10, validation: every flag and k=v argument is checked before anything is created (exit 2, one
line naming the flag, no run directory, no request), through the real CLI."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from harness.cli import main
from tests.support.fake_openai import FakeOpenAI
from tests.wre_support import FIXTURES

MINI = FIXTURES / "wikiroleeval_mini.jsonl"


def _cmd(server: FakeOpenAI, out: Path, *extra: str, model_args: str | None = None) -> list[str]:
    args = model_args or f"model=roleplayer,base_url={server.chat_url}"
    return [
        "run",
        "--model",
        "local-chat-completions",
        "--model_args",
        args,
        "--tasks",
        "wikiroleeval",
        "--data_path",
        str(MINI),
        "--output_path",
        str(out),
        "--limit",
        "1",
        "--judge_base_url",
        server.base_url,
        "--judge_model",
        "judge-x",
        "--bootstrap_resamples",
        "20",
        "--max_unscored",
        "1",
        *extra,
    ]


def _one_line(capfd: pytest.CaptureFixture[str]) -> str:
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--gen_kwargs", "temperature=hot"], "--gen_kwargs: temperature='hot': expected a number"),
        (["--gen_kwargs", "max_gen_toks=0"], "max_gen_toks=0: must be >= 1"),
        (["--gen_kwargs", "do_sample=maybe"], "do_sample='maybe': expected true or false"),
        (["--gen_kwargs", "top_p=1.5"], "top_p=1.5: must be in (0, 1]"),
        (["--judge_samples", "0"], "--judge_samples must be >= 1"),
        (["--judge_timeout", "0"], "--judge_timeout must be > 0"),
        (["--judge_max_retries", "-1"], "--judge_max_retries must be >= 0"),
        (["--bootstrap_resamples", "0"], "--bootstrap_resamples must be >= 1"),
        (["--judge_max_tokens", "0"], "--judge_max_tokens must be >= 1"),
        (["--max_unscored", "1.5"], "--max_unscored must be a share between 0 and 1"),
        (
            ["--judge_base_url", "localhost:8000/v1"],
            "--judge_base_url: 'localhost:8000/v1' is not an http(s) URL",
        ),
        (["--judge_base_url", "http://127.0.0.1:abc/v1"], "--judge_base_url"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v),
)
def test_bad_flag_refused_before_anything(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    out = tmp_path / "run"
    assert main(_cmd(judge_server, out, *extra)) == 2
    line = _one_line(capfd)
    assert needle in line, line
    assert not out.exists() and judge_server.count() == 0


@pytest.mark.parametrize(
    ("model_args", "needle"),
    [
        ("model=roleplayer,base_url={url},num_concurrent=abc", "num_concurrent='abc': expected an integer"),
        ("model=roleplayer,base_url={url},max_retries=-2", "max_retries=-2: must be >= 0"),
        ("model=roleplayer,base_url={url},timeout=0", "timeout=0: expected a number > 0"),
        ("model=roleplayer,base_url=ftp://127.0.0.1/v1", "is not an http(s) URL"),
    ],
)
def test_bad_model_args_refused_and_corrected_command_reuses_dir(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str], model_args: str, needle: str
) -> None:
    out = tmp_path / "run"
    bad = _cmd(judge_server, out, model_args=model_args.format(url=judge_server.chat_url))
    assert main(bad) == 2
    assert needle in _one_line(capfd)
    assert not out.exists() and judge_server.count() == 0
    # the corrected command runs in that directory without --overwrite
    assert main(_cmd(judge_server, out)) == 0
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_unknown_model_arg_warns_with_close_match(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = f"model=roleplayer,base_url={judge_server.chat_url},num_concurent=2"
    assert main(_cmd(judge_server, out, model_args=args)) == 0
    err = capfd.readouterr().err
    assert "'num_concurent' is not an argument --model local-chat-completions names" in err
    assert "did you mean num_concurrent" in err


def test_unknown_gen_kwarg_warns(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(_cmd(judge_server, out, "--gen_kwargs", "temprature=0.5,max_gen_toks=8", "--dry_run")) == 0
    err = capfd.readouterr().err
    assert "'temprature' is not a generation key" in err and "did you mean temperature" in err


def test_output_path_is_a_file(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.write_text("mine", encoding="utf-8")
    assert main(_cmd(judge_server, out)) == 2
    assert "--output_path" in (line := _one_line(capfd)) and "is a file" in line
    assert out.read_text(encoding="utf-8") == "mine" and judge_server.count() == 0


def test_output_path_below_a_file(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "f"
    blocker.write_text("x", encoding="utf-8")
    assert main(_cmd(judge_server, blocker / "run")) == 2
    assert "is a file, so the directory cannot be created" in _one_line(capfd)


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="root may write anywhere")
def test_output_path_not_writable(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(_cmd(judge_server, ro / "run")) == 2
        assert "not writable" in _one_line(capfd)
    finally:
        ro.chmod(0o700)


def test_missing_local_model_dir_fails_at_once(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    t0 = time.monotonic()
    rc = main(
        [
            "run",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={tmp_path}/no/such/model",
            "--tasks",
            "wikiroleeval",
            "--data_path",
            str(MINI),
            "--output_path",
            str(out),
            "--judge_model",
            "mock",
        ]
    )
    assert rc == 2
    line = _one_line(capfd)
    assert "pretrained=" in line and "no such directory" in line, line
    assert not out.exists() and time.monotonic() - t0 < 20


def test_offline_hub_id_not_cached_fails_without_retries(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    out = tmp_path / "run"

    def no_network(*a: object, **k: object) -> None:
        raise AssertionError("no connection may be opened offline")

    monkeypatch.setattr(socket, "create_connection", no_network)
    t0 = time.monotonic()
    rc = main(
        [
            "run",
            "--model",
            "hf",
            "--model_args",
            "pretrained=some-org/not-cached-model",
            "--tasks",
            "wikiroleeval",
            "--data_path",
            str(MINI),
            "--output_path",
            str(out),
            "--judge_model",
            "mock",
        ]
    )
    assert rc == 2
    line = _one_line(capfd)
    assert "not in the Hugging Face cache" in line and "HF_HUB_OFFLINE=1" in line
    assert not out.exists() and time.monotonic() - t0 < 20


def test_limit_must_be_positive_or_a_share(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "1.5", "-0.5", "abc"):
        with pytest.raises(SystemExit) as exc:
            main(
                [
                    "run",
                    "--model",
                    "mock",
                    "--tasks",
                    "wikiroleeval",
                    "--output_path",
                    str(tmp_path / "r"),
                    "--limit",
                    bad,
                ]
            )
        assert exc.value.code == 2
        assert "--limit" in capfd.readouterr().err
    assert not (tmp_path / "r").exists()
