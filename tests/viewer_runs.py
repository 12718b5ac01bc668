"""Real run directories for the viewer, plot and leaderboard tests, made through the CLI against the loopback
fake judge (so the viewer reads what `ditto-bench judge` writes).

- ``wre_a``: the 8 WikiRoleEval fixture sessions (5 en, 3 zh); consistency names the first listed candidate,
  knowledge 7, 8, 7 (7.333), rejection 0, 0, 1 — except knowledge of the zh sessions, which gets no score
  (``no_verdict``), so exactly the 3 zh sessions have failures.
- ``wre_b``: the same sessions; consistency names the last listed candidate, knowledge 5, 6, 7 (6.0),
  rejection 1, 1, 1.
- ``hostile``: two sessions whose replies, system prompt and judge completions are HTML/script payloads.
- ``mt_gpt4`` / ``mt_claude``: MT-Bench roleplay with FastChat's published answers and GPT-4 ratings
  replayed (needs ../shared).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tests.support.fake_openai import FakeOpenAI
from tests.wre_support import load_items, metric_of, realistic_verdicts, write_items

PAYLOADS = (
    "<script>alert(1)</script>",
    "<img src=x onerror=\"alert(2);document.body.setAttribute('data-pwned','img')\">",
    "</script><script>document.title='pwned'</script>",
)
HOSTILE_LABEL = "<script>alert(4)</script>"


def _candidates(prompt: str) -> list[str]:
    zh = "[候选角色开始]" in prompt
    block = prompt.split("[候选角色开始]" if zh else "[Candidates Start]", 1)[1]
    block = block.split("[候选角色结束]" if zh else "[Candidates End]", 1)[0]
    return [line[2:].strip() for line in block.splitlines() if line.startswith("- ")]


def verdicts_a(body: dict[str, Any]) -> list[str]:
    prompt = body["messages"][-1]["content"]
    if metric_of(prompt) == "knowledge" and "[参考提示开始]" in prompt:
        return ["分析。", "没有分数", ""]
    return realistic_verdicts(body)


def verdicts_b(body: dict[str, Any]) -> list[str]:
    prompt = body["messages"][-1]["content"]
    metric = metric_of(prompt)
    if metric == "consistency":
        zh = "[候选角色开始]" in prompt
        last = _candidates(prompt)[-1]
        return [f"最符合的角色为[{last}]" if zh else f"The most suitable role is [{last}]"] * 3
    if metric == "knowledge":
        return ["Fine.\n5", "Fine.\n6", "Fine.\n7"]
    return ["1", "1", "1"]


def hostile_verdicts(body: dict[str, Any]) -> list[str]:
    return [PAYLOADS[0], PAYLOADS[1], "</script><img src=x onerror=alert(3)>"]


def hostile_items() -> list[dict[str, Any]]:
    items = copy.deepcopy(load_items()[:2])
    for item in items:
        item["system"] = item["messages"][0]["content"] = "<b>system</b> " + item["messages"][0]["content"]
        k = 0
        for m in item["messages"]:
            if m["role"] == "assistant":
                m["content"] = PAYLOADS[k % len(PAYLOADS)] + " reply"
                k += 1
    return items


@contextmanager
def _clean_env(tmp: Path) -> Iterator[None]:
    """No real key or cache reaches these runs (module-scoped fixtures run before the per-test env)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("OPENAI_API_KEY", raising=False)
        mp.delenv("OPENAI_BASE_URL", raising=False)
        mp.setenv("DITTO_BENCH_CACHE_DIR", str(tmp / "cache"))
        yield


def judge_wre(
    server: FakeOpenAI,
    items: list[dict[str, Any]],
    out: Path,
    responder: Callable[[dict[str, Any]], list[str]],
) -> Path:
    server.reset()
    server.set_responder(responder)
    responses = write_items(out.parent / f"{out.name}.responses.jsonl", items)
    rc = main(
        [
            "judge",
            "--tasks",
            "wikiroleeval",
            "--responses",
            str(responses),
            "--output_path",
            str(out),
            "--judge_base_url",
            server.base_url,
            "--judge_model",
            "judge-x",
            "--bootstrap_resamples",
            "200",
            "--no_cache",
        ]
    )
    assert rc == 0
    return out


def judge_mt(server: FakeOpenAI, model: str, out: Path) -> Path:
    from tests.test_mtbench_fidelity import MT_DIR, judge_flags, make_replay

    server.reset()
    server.set_responder(make_replay(model))
    rc = main(
        [
            "judge",
            "--tasks",
            "mtbench_roleplay",
            "--responses",
            str(MT_DIR / "model_answer" / f"{model}.jsonl"),
            "--data_path",
            str(MT_DIR),
            "--output_path",
            str(out),
            *judge_flags(server),
            "--no_cache",
        ]
    )
    assert rc == 0
    return out


def build_runs(server: FakeOpenAI, root: Path, *, mtbench: bool) -> dict[str, Path]:
    """All runs of this module's docstring under ``root``."""
    with _clean_env(root):
        items = load_items()
        runs = {
            "wre_a": judge_wre(server, items, root / "wre_a", verdicts_a),
            "wre_b": judge_wre(server, items, root / "wre_b", verdicts_b),
            "hostile": judge_wre(server, hostile_items(), root / "hostile", hostile_verdicts),
        }
        if mtbench:
            runs["mt_gpt4"] = judge_mt(server, "gpt-4", root / "mt_gpt4")
            runs["mt_claude"] = judge_mt(server, "claude-v1", root / "mt_claude")
        server.reset()
    return runs


def records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


def write_sweep(root: Path, runs: dict[str, Path]) -> Path:
    """A sweep directory (the shape documented in docs/viewer.md) whose two eval stages are copies of
    ``wre_a`` and ``wre_b``, plus a train stage that is not a run."""
    import shutil

    sweep = root / "sweep"
    (sweep / "stages").mkdir(parents=True)
    shutil.copytree(runs["wre_a"], sweep / "stages" / "eval-lr1")
    shutil.copytree(runs["wre_b"], sweep / "stages" / "eval-lr2")
    (sweep / "stages" / "train-lr1").mkdir()
    doc = {
        "name": "lr-grid",
        "stages": [
            {
                "name": "train-lr1",
                "kind": "train",
                "status": "complete",
                "dir": "stages/train-lr1",
                "params": {"lr": 1e-5},
            },
            {
                "name": "eval-lr1",
                "kind": "run",
                "status": "complete",
                "dir": "stages/eval-lr1",
                "params": {"lr": 1e-5},
            },
            {
                "name": "eval-lr2",
                "kind": "run",
                "status": "complete",
                "dir": "stages/eval-lr2",
                "params": {"lr": 2e-5},
            },
        ],
    }
    (sweep / "sweep.json").write_text(json.dumps(doc), encoding="utf-8")
    return sweep
