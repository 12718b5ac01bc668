"""End to end with a local model: `run --model hf` on the tiny random model (CPU), loopback judge.

Checks the system-prompt handling the harness owns for local models: the system message is kept, merged
into the first user turn for a template without a system role, and kept when old turns are trimmed to fit
``max_length``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tests.support.fake_openai import FakeOpenAI
from tests.wre_support import FIXTURES, load_items, metric_of, write_items

pytestmark = pytest.mark.slow

MINI = FIXTURES / "wikiroleeval_mini.jsonl"
MAX_GEN = 8


def _fixed_judge(body: dict[str, Any]) -> str:
    """The same verdicts for every turn: names Sherlock Holmes, never refuses, knowledge 7."""
    metric = metric_of(body["messages"][-1]["content"])
    if metric == "consistency":
        return "Reasoning.\nThe most suitable role is [Sherlock Holmes]"
    return "Reasoning.\n0" if metric == "rejection" else "Reasoning.\n7"


def _cmd(
    server: FakeOpenAI, model_dir: Path, data: Path, out: Path, *extra: str, model_args: str = ""
) -> list[str]:
    return [
        "run", "--model", "hf", "--model_args", f"pretrained={model_dir},batch_size=4{model_args}",
        "--gen_kwargs", f"max_gen_toks={MAX_GEN}", "--tasks", "wikiroleeval", "--data_path", str(data),
        "--output_path", str(out), "--judge_base_url", server.base_url, "--judge_model", "judge-x",
        "--bootstrap_resamples", "50", *extra,
    ]


def _samples(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


def test_hf_run_keeps_system_and_resumes_without_work(
    judge_server: FakeOpenAI, tiny_model_dir: Path, tmp_path: Path
) -> None:
    judge_server.set_responder(_fixed_judge)
    out = tmp_path / "run"
    cmd = _cmd(judge_server, tiny_model_dir, MINI, out, "--limit", "2")
    assert main(cmd) == 0
    # Sherlock Holmes (4 turns, rejection labels 0,0,1,0) and Marie Curie (5 turns, 0,0,0,1,1)
    items = load_items(MINI)[:2]
    recs = _samples(out)
    assert [r["label"] for r in recs] == ["Sherlock Holmes", "Marie Curie"]
    for rec, item in zip(recs, items, strict=True):
        assert len(rec["turns"]) == len(item["prompts"])
        for t, turn in enumerate(rec["turns"]):
            gen = turn["generation"]
            assert gen["status"] == "ok" and gen["system_merged"] is False and gen["trimmed_turns"] == 0
            assert gen["sent_messages"][0] == {"role": "system", "content": item["system"]}
            assert gen["sent_messages"][-1] == {"role": "user", "content": item["prompts"][t]}
            assert len(gen["sent_messages"]) == 2 + 2 * t  # the full history
            assert gen["gen_kwargs"]["max_gen_toks"] == MAX_GEN and gen["gen_kwargs"]["do_sample"] is False
        assert isinstance(rec["messages"][-1]["content"], str) and rec["messages"][-1]["role"] == "assistant"
    assert judge_server.count() == 3 * 9
    res = json.loads((out / "results.json").read_text())
    m = res["tasks"]["wikiroleeval"]["metrics"]["all"]
    assert m["consistency"] == pytest.approx(4 / 9)  # only Sherlock's 4 turns name the gold label
    assert m["knowledge"] == pytest.approx(7.0)
    assert m["rejection"] == pytest.approx(6 / 9)  # "never refuse" agrees with the 6 turns labelled 0
    assert res["complete"] is True and res["rollout"]["turns_ok"] == 9

    journal = (out / "journal.jsonl").read_bytes()
    assert main(cmd) == 0  # resume of a finished run: no generation, no judge call
    assert (out / "journal.jsonl").read_bytes() == journal
    assert judge_server.count() == 3 * 9


def test_hf_template_without_system_role_merges_it(
    judge_server: FakeOpenAI, tiny_model_nosys_dir: Path, tmp_path: Path
) -> None:
    judge_server.set_responder(_fixed_judge)
    out = tmp_path / "run"
    assert main(_cmd(judge_server, tiny_model_nosys_dir, MINI, out, "--limit", "1")) == 0
    item = load_items(MINI)[0]
    rec = _samples(out)[0]
    for t, turn in enumerate(rec["turns"]):
        gen = turn["generation"]
        assert gen["status"] == "ok" and gen["system_merged"] is True
        sent = gen["sent_messages"]
        assert all(msg["role"] != "system" for msg in sent)
        assert sent[0]["role"] == "user" and sent[0]["content"].startswith(item["system"])
        assert sent[0]["content"].endswith(item["prompts"][0])
        assert sent[-1]["content"].endswith(item["prompts"][t])
    # the record keeps the original conversation
    assert rec["messages"][0] == {"role": "system", "content": item["system"]}


def _short_item() -> dict[str, Any]:
    """One session with short turns, so that a 64-token window fits one turn but not the whole history."""
    prompts = ["Hello, Li Bai!", "Who are you?", "What is 42?", "Tell me about Confucius.", "Bye, Li Bai!"]
    return {
        "system": "You are Li Bai.",
        "prompts": prompts,
        "meta": {
            "label": "Li Bai", "summary": "Li Bai was a Chinese poet.", "lang": "en",
            "role_consist_cands": ["Du Fu", "Li Bai"], "evidence": ["- Li Bai was a poet."] * len(prompts),
            "rejection_labels": [0] * len(prompts),
        },
    }


def test_hf_max_length_trims_oldest_turns_and_keeps_system(
    judge_server: FakeOpenAI, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    judge_server.set_responder(_fixed_judge)
    data = write_items(tmp_path / "short.jsonl", [_short_item()])
    out = tmp_path / "run"
    assert main(_cmd(judge_server, tiny_model_dir, data, out, model_args=",max_length=64")) == 0
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)

    def n_tokens(msgs: list[dict[str, str]]) -> int:
        prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return len(tok(prompt, add_special_tokens=False)["input_ids"])

    rec = _samples(out)[0]
    budget = 64 - MAX_GEN
    trimmed = 0
    for t, turn in enumerate(rec["turns"]):
        gen = turn["generation"]
        k = gen["trimmed_turns"]
        full = rec["messages"][: 2 + 2 * t]  # system, the t earlier pairs, this turn's user message
        assert gen["status"] == "ok" and gen["truncated"] is False
        assert gen["sent_messages"][0] == {"role": "system", "content": "You are Li Bai."}
        assert gen["sent_messages"] == full[:1] + full[1 + 2 * k :]  # the oldest pairs went first
        assert n_tokens(gen["sent_messages"]) <= budget
        if k > 0:  # trimmed no more than needed
            assert n_tokens(full[:1] + full[1 + 2 * (k - 1) :]) > budget
            trimmed += 1
    assert rec["turns"][0]["generation"]["trimmed_turns"] == 0
    assert trimmed >= 1
