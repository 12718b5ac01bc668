"""``ditto-bench generate`` with a local ``hf`` supervisor (the tiny test model).

The model is fine-tuned in the test to follow tiny prompts.

A random tiny model cannot write JSON, so the test first teaches it (a few dozen CPU steps) to answer the
minimal templates in ``tests/fixtures/knowledge/tiny_templates``: a fixed JSON question list for query prompts
and a fixed sentence for response prompts. Generation then runs through lm-eval's HFLM with greedy decoding.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ditto_train.generate.cli import main
from ditto_train.knowledge.jsonl import iter_complete_lines
from ditto_train.knowledge.schema import iter_kb
from tests.fixtures.knowledge.e2e import TEMPLATES_TINY, build_fixture_kb

QUESTIONS = [{"question": "Who are you?"}, {"question": "Where were you born?"}]
REPLY = "I remember it well."


@pytest.mark.slow
def test_hf_supervisor_generates_sessions(tiny_model_dir: Path, tmp_path: Path) -> None:
    from tests.support.tiny_model import quick_sft

    kb = build_fixture_kb(tmp_path / "kb")
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"QUERY {p.label}"},
                {"role": "assistant", "content": json.dumps(QUESTIONS)},
            ]
        }
        for _, _, p in iter_kb(kb)
        if p.lang == "en"
    ]
    rows += [
        {
            "messages": [
                {"role": "user", "content": f"ANSWER {q['question']}"},
                {"role": "assistant", "content": REPLY},
            ]
        }
        for q in QUESTIONS
    ]
    model = quick_sft(tiny_model_dir, tmp_path / "sup", rows * 2, steps=40)
    out = tmp_path / "out"
    argv = [
        "--supervisor",
        "hf",
        "--supervisor_args",
        f"pretrained={model},device=cpu,batch_size=16,dtype=float32",
        "--knowledge",
        str(kb),
        "--out",
        str(out),
        "--holdout_rate",
        "0",
        "--langs",
        "en",
        "--limit",
        "3",
        "--gen_kwargs",
        "do_sample=False,max_gen_toks=64",
        "--templates",
        str(TEMPLATES_TINY),
        "--seed_model",
        str(model),
    ]
    assert main(argv) == 0
    sessions = [obj for _, obj in iter_complete_lines(out / "train.jsonl")]
    assert [s["meta"]["label"] for s in sessions] == [
        "Albert Einstein",
        "Marie Curie",
        "Edward III of England",
    ]
    for s in sessions:
        msgs, meta = s["messages"], s["meta"]
        assert msgs[0] == {"role": "system", "content": f"You are {meta['label']}."}
        assert sorted(m["content"] for m in msgs[1::2]) == sorted(q["question"] for q in QUESTIONS)
        assert all(m["content"] == REPLY for m in msgs[2::2])
        # the contrastive prompt returned the same questions: dropped as duplicates and counted
        assert meta["query_types"] == ["role_specific"] * 2 and meta["filtered"]["duplicate_query"] == 2
        assert meta["supervisor"]["backend"] == "hf" and meta["alignment"] == "self"
        assert meta["usage"]["completion_tokens"] > 0
    # the local supervisor's samples went to the response cache: a second output dir needs no generation
    assert main([*argv[:7], str(tmp_path / "again"), *argv[8:]]) == 0
    report = json.loads((tmp_path / "again" / "report.json").read_text("utf-8"))
    assert report["this_run"]["cached_calls"] == report["this_run"]["calls"] == 12
