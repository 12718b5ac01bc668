"""Secrets: no key is printed, logged or written, and each endpoint gets only the key meant for it.

The CLI runs as a real subprocess (so every byte it prints is seen) against the loopback fake server,
which plays both the model under test (model ``roleplayer``) and the judge and records the
Authorization header of every request. Sentinel keys stand for the real ones: the judge key in
``OPENAI_API_KEY``, the target's in ``api_key=`` of ``--model_args``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import redact as redact_mod
from harness.redact import MASK, install_redaction, redact, register_kv_secrets, register_secret
from tests.support.fake_openai import FakeOpenAI, Fault
from tests.test_e2e_wikiroleeval import _two_sessions, _verdicts
from tests.wre_support import replay_then_judge, scripted_judge

REPO_ROOT = Path(__file__).resolve().parents[1]
JUDGE_KEY = "sk-SENTINEL-judge-7f3a9c1d"
TARGET_KEY = "tk-SENTINEL-target-41b2e8"
SUPERVISOR_KEY = "sv-SENTINEL-super-93ac"
SENTINELS = (JUDGE_KEY, TARGET_KEY, SUPERVISOR_KEY)


def _bearer(key: str) -> str:
    """What the fake server logs for ``Authorization: Bearer <key>`` (a hash, never the key)."""
    return hashlib.sha256(f"Bearer {key}".encode()).hexdigest()


def _is_target(body: dict[str, Any]) -> bool:
    return body.get("model") == "roleplayer"


def _is_judge(body: dict[str, Any]) -> bool:
    return body.get("model") == "judge-x"


def _cli(args: list[str], tmp_path: Path, *, env: dict[str, str] | None = None,
         script: str | None = None) -> subprocess.CompletedProcess[bytes]:
    keep = ("DITTO_BENCH_NO_PREFLIGHT", "DITTO_BENCH_MAX_UNSCORED")  # the session's test settings (conftest)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DITTO_BENCH_") or k in keep}
    full_env.update(OPENAI_API_KEY=JUDGE_KEY, DITTO_BENCH_CACHE_DIR=str(tmp_path / "cache"),
                    PYTHONPATH=str(REPO_ROOT), **(env or {}))
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "harness.cli", *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=full_env, capture_output=True, timeout=240)


def _assert_no_secret(proc: subprocess.CompletedProcess[bytes], *dirs: Path) -> None:
    printed = proc.stdout + proc.stderr
    for key in SENTINELS:
        assert key.encode() not in printed, f"{key} printed:\n{printed.decode(errors='replace')[-3000:]}"
    files = [f for d in dirs if d.exists() for f in d.rglob("*") if f.is_file()]
    assert files, "nothing was written: the scenario did not run"
    for f in files:
        data = f.read_bytes()
        for key in SENTINELS:
            assert key.encode() not in data, f"{key} written into {f}"


def _run_args(server: FakeOpenAI, data: Path, out: Path, cache: Path, model_args: str = "") -> list[str]:
    return [
        "run", "--model", "local-chat-completions",
        "--model_args",
        f"model=roleplayer,base_url={server.chat_url},num_concurrent=2,max_retries=1{model_args}",
        "--tasks", "wikiroleeval", "--data_path", str(data), "--gen_kwargs", "max_gen_toks=32",
        "--output_path", str(out), "--cache_path", str(cache), "--judge_base_url", server.base_url,
        "--judge_model", "judge-x", "--judge_max_retries", "0", "--bootstrap_resamples", "20",
    ]


@pytest.mark.parametrize("status", [500, 401])
def test_target_errors_print_and_write_no_key(judge_server: FakeOpenAI, tmp_path: Path, status: int) -> None:
    data, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(replay_then_judge([a, b], scripted_judge(_verdicts(a, b))))
    judge_server.add_fault(Fault("status", status=status, match=_is_target, times=10_000, echo_headers=True))
    out, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    proc = _cli(_run_args(judge_server, data, out, cache, f",api_key={TARGET_KEY}"), tmp_path)
    assert proc.returncode == 1, proc.stderr.decode(errors="replace")[-2000:]
    target_reqs = [r for r in judge_server.requests if _is_target(r["body"])]
    assert target_reqs
    # the target got its own key, never the judge's
    assert all(r["auth_sha256"] == _bearer(TARGET_KEY) for r in target_reqs)
    _assert_no_secret(proc, out, tmp_path / "cache")
    samples = (out / "samples.jsonl").read_text()
    assert f"HTTP {status}" in samples or str(status) in samples  # the failure itself is recorded


def test_target_gets_no_key_unless_given_one(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    data, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(replay_then_judge([a, b], scripted_judge(_verdicts(a, b))))
    out, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    proc = _cli(_run_args(judge_server, data, out, cache), tmp_path)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    target = [r for r in judge_server.requests if _is_target(r["body"])]
    judge = [r for r in judge_server.requests if _is_judge(r["body"])]
    assert len(target) == 7 and len(judge) == 21
    assert all(r["auth_sha256"] is None for r in target)  # lm-eval would have sent $OPENAI_API_KEY here
    assert all(r["auth_sha256"] == _bearer(JUDGE_KEY) for r in judge)  # the judge key reaches the judge
    # the target's own variable is used when set
    judge_server.reset()
    judge_server.set_responder(replay_then_judge([a, b], scripted_judge(_verdicts(a, b))))
    proc = _cli(_run_args(judge_server, data, tmp_path / "run2", tmp_path / "cache2.sqlite"), tmp_path,
                env={"DITTO_BENCH_TARGET_API_KEY": TARGET_KEY})
    assert proc.returncode == 0
    target = [r for r in judge_server.requests if _is_target(r["body"])]
    assert target and all(r["auth_sha256"] == _bearer(TARGET_KEY) for r in target)


def test_judge_error_echoing_the_header_is_not_recorded(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    data, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(scripted_judge(_verdicts(a, b)))
    judge_server.add_fault(Fault("status", status=400, match=_is_judge, times=10_000, echo_headers=True))
    out = tmp_path / "run"
    args = ["judge", "--tasks", "wikiroleeval", "--responses", str(data), "--output_path", str(out),
            "--judge_base_url", judge_server.base_url, "--judge_model", "judge-x", "--judge_max_retries", "0",
            "--bootstrap_resamples", "20"]
    proc = _cli(args, tmp_path)
    assert proc.returncode == 1
    assert all(r["auth_sha256"] == _bearer(JUDGE_KEY) for r in judge_server.requests)
    _assert_no_secret(proc, out, tmp_path / "cache")
    journal = (out / "journal.jsonl").read_text()
    assert "HTTP 400" in journal and MASK in journal  # the echoed header was there, and was masked


BACKEND_TRACEBACK = """
import sys
from harness.backends import lmeval
from harness.cli import main

def explode(self, *args, **kwargs):
    import os
    raise RuntimeError("backend exploded with headers {'Authorization': 'Bearer %s'} key=%s"
                       % (os.environ["OPENAI_API_KEY"], os.environ["OPENAI_API_KEY"]))

async def aexplode(self, *args, **kwargs):
    explode(self)

lmeval.LmEvalChatBackend.generate = explode
lmeval.LmEvalChatBackend.agenerate = aexplode  # the per-request path API targets take
raise SystemExit(main(sys.argv[1:]))
"""


def test_traceback_raised_in_a_backend_shows_no_key(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    data, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(replay_then_judge([a, b], scripted_judge(_verdicts(a, b))))
    out, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    proc = _cli(_run_args(judge_server, data, out, cache), tmp_path, script=BACKEND_TRACEBACK)
    assert proc.returncode != 0
    assert b"backend exploded" in proc.stderr  # the traceback was printed, with the key masked
    _assert_no_secret(proc, out, tmp_path / "cache")
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and "backend exploded" in run["error"]


SUPERVISOR_HEADERS = """
import sys
from ditto_train.generate.supervisor import make_supervisor, DEFAULT_GEN_KWARGS
import asyncio

async def go():
    sup = make_supervisor("local-chat-completions", sys.argv[1], DEFAULT_GEN_KWARGS, concurrency=1, seed=0,
                          cache=None)
    res = await sup.complete([{"role": "user", "content": "hi"}], 1)
    await sup.aclose()
    print(res.status)

asyncio.run(go())
"""


def test_supervisor_gets_only_its_own_key(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    args = f"model=sup,base_url={judge_server.base_url}"
    proc = _cli([args], tmp_path, script=SUPERVISOR_HEADERS)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    own = {"DITTO_BENCH_SUPERVISOR_API_KEY": SUPERVISOR_KEY}
    proc = _cli([args], tmp_path, script=SUPERVISOR_HEADERS, env=own)
    assert proc.returncode == 0
    proc = _cli([f"{args},api_key={TARGET_KEY}"], tmp_path, script=SUPERVISOR_HEADERS)
    assert proc.returncode == 0
    auths = [r["auth_sha256"] for r in judge_server.requests]
    # no key: the client's placeholder; never the judge key in $OPENAI_API_KEY
    assert auths == [_bearer("EMPTY"), _bearer(SUPERVISOR_KEY), _bearer(TARGET_KEY)]


# -- the redaction layer itself ----------------------------------------------------------------------


def test_redact_masks_registered_values_and_credential_shapes() -> None:
    register_secret("abcdef-registered-123")
    register_secret("x")  # too short to be a key: ignored, ordinary text stays readable
    text = ("token abcdef-registered-123 in 'Authorization': 'Bearer zzz-unknown-999' and "
            "api_key=qqq-unknown, \"api_key\": \"rrr-unknown\" x")
    out = redact(text)
    for raw in ("abcdef-registered-123", "zzz-unknown-999", "qqq-unknown", "rrr-unknown"):
        assert raw not in out
    assert out.endswith(" x") and out.count(MASK) == 4
    assert redact(out) == out  # idempotent


def test_kv_arguments_register_their_secret_values() -> None:
    register_kv_secrets(["--model_args", "model=m,api_key=kv-secret-0042,auth_token=kv-tok-0042,seed=1234"])
    assert redact("kv-secret-0042 kv-tok-0042 1234") == f"{MASK} {MASK} 1234"


def test_installed_redaction_covers_loggers_and_handlers_added_later(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DITTO_BENCH_TARGET_API_KEY", "env-target-key-555")
    monkeypatch.setattr(logging, "_logRecordFactory", logging.getLogRecordFactory())
    install_redaction()
    install_redaction()  # idempotent: one wrapper, one factory
    assert getattr(logging.getLogRecordFactory(), "_ditto_redacting", False)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # added after installation, as lm-eval/transformers do
    log = logging.getLogger("aiohttp.client")
    log.addHandler(handler)
    try:
        try:
            raise ValueError("headers={'Authorization': 'Bearer env-target-key-555'}")
        except ValueError:
            log.error("request failed %s", "env-target-key-555", exc_info=True)
    finally:
        log.removeHandler(handler)
    assert "env-target-key-555" not in stream.getvalue() and "request failed" in stream.getvalue()
    assert "ValueError" in stream.getvalue()
    sys.stderr.write("plain env-target-key-555 write\n")
    assert isinstance(sys.stderr, redact_mod._RedactingStream)


def test_ordinary_arguments_and_words_are_not_masked() -> None:
    register_kv_secrets(["tokenizer_backend=huggingface,max_tokens=2048,tokenizer=Qwen/Qwen2-7B"])
    plain = "huggingface Qwen/Qwen2-7B 2048 Bearer EMPTY"
    assert redact(plain) == plain


def test_rich_console_text_is_masked_before_it_is_folded() -> None:
    from rich.console import Console

    key = "sk-proj-" + "A1b2C3d4" * 20  # longer than the console is wide: rich would fold it
    register_secret(key)
    buf = io.StringIO()
    console = Console(file=buf, width=40, force_terminal=True)
    redact_mod.redact_console(console)
    redact_mod.redact_console(console)  # idempotent
    console.print(f"[red]failed[/]: HTTP 401 for key {key}")
    text = buf.getvalue()
    assert "REDACTED" in text and "A1b2C3d4" not in text
