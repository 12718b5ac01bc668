"""Tests of the tiny offline model builder (tests/support/tiny_model.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.tiny_model import build_tiny_model, build_tiny_tokenizer, quick_sft

pytestmark = pytest.mark.slow

SYS_USER = [
    {"role": "system", "content": "You are Edward III of England, king of England."},
    {"role": "user", "content": "你好！What year is it?"},
]
TEXTS = [
    "Hello, Edward III of England! It is 1337; the war begins.",
    "你好，李白！“床前明月光，疑是地上霜。”——《静夜思》",
    "Anne, Princess Royal & Zhang Ziyi (章子怡): 99% sure?\n\n  indented 🐉",
]


def test_build_reload_round_trip(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    gen = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert "max_new_tokens" not in gen and "max_length" not in gen

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    fresh = build_tiny_tokenizer()
    assert (tok.eos_token, tok.pad_token, tok.padding_side) == ("<|im_end|>", "<|endoftext|>", "left")
    assert gen["eos_token_id"] == tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert gen["pad_token_id"] == tok.pad_token_id
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids == fresh.encode(text)  # reload rebuilds the same pre-tokenizer: identical ids
        assert tok.decode(ids) == text
    # Trained merges make common text shorter than one token per byte.
    assert len(tok.encode(TEXTS[0])) < len(TEXTS[0].encode()) / 2

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen2" and model.config.hidden_size == 64
    assert model.config.num_hidden_layers == 2 and model.config.vocab_size == len(tok)
    assert sum(p.numel() for p in model.parameters()) < 200_000


def test_build_is_deterministic(tmp_path: Path, tiny_model_dir: Path) -> None:
    again = build_tiny_model(tmp_path / "again", seed=0)
    other = build_tiny_model(tmp_path / "other", seed=1)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name
    assert (other / "model.safetensors").read_bytes() != (again / "model.safetensors").read_bytes()


def test_chat_template_renders_chatml(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tok.apply_chat_template(SYS_USER, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are Edward III of England, king of England.<|im_end|>\n"
        "<|im_start|>user\n你好！What year is it?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    convo = [*SYS_USER, {"role": "assistant", "content": "It is 1340."}]
    out: Any = tok.apply_chat_template(
        convo, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tok.decode(masked) == "It is 1340.<|im_end|>"


def test_no_system_variant_rejects_system_role(tiny_model_nosys_dir: Path) -> None:
    import jinja2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_nosys_dir)
    with pytest.raises(jinja2.TemplateError, match="System role not supported"):
        tok.apply_chat_template(SYS_USER, tokenize=False)
    text = tok.apply_chat_template(SYS_USER[1:], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\n你好！What year is it?<|im_end|>\n<|im_start|>assistant\n"


def test_llama_arch_builds_and_reloads(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = build_tiny_model(tmp_path / "llama", arch="llama")
    tok = AutoTokenizer.from_pretrained(out)
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "llama"
    assert all(tok.decode(tok.encode(t)) == t for t in TEXTS)
    with pytest.raises(ValueError, match="arch"):
        build_tiny_model(tmp_path / "bad", arch="gpt2")  # type: ignore[arg-type]


def test_hflm_generate_until(tiny_model_dir: Path, tiny_model_nosys_dir: Path) -> None:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    lm = HFLM(pretrained=str(tiny_model_dir), device="cpu", batch_size=2)
    convs = [
        SYS_USER,
        [{"role": "user", "content": "Hi"}],
        [*SYS_USER, {"role": "assistant", "content": "It is 1340."}, {"role": "user", "content": "再说。"}],
    ]
    gk = {"until": [], "max_gen_toks": 8, "do_sample": False}
    reqs = [
        Instance(request_type="generate_until", doc={}, arguments=(lm.apply_chat_template(c), gk), idx=i)
        for i, c in enumerate(convs)
    ]
    outs = lm.generate_until(reqs, disable_tqdm=True)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert len(outs) == 3 and all(isinstance(o, str) for o in outs)
    assert all(len(tok.encode(o)) <= 8 for o in outs)
    # Same requests one at a time give the same greedy text (left padding is right).
    assert [lm.generate_until([r], disable_tqdm=True)[0] for r in reqs] == outs

    # HFLM catches the template error and silently drops the system prompt: the gotcha the harness's
    # system-prompt fallback exists for.
    lm_nosys = HFLM(pretrained=str(tiny_model_nosys_dir), device="cpu", batch_size=2)
    assert "Edward III" not in lm_nosys.apply_chat_template(SYS_USER)


def test_quick_sft_learns_replies(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [
        {
            "messages": [
                {"role": "system", "content": "You are a sleepy dragon."},
                {"role": "user", "content": "Who are you?"},
                {"role": "assistant", "content": "I am sleeping in the mountain."},
            ]
        },
        {
            "messages": [
                {"role": "system", "content": "你是一位图书馆守护者。"},
                {"role": "user", "content": "你好"},
                {"role": "assistant", "content": "欢迎来到图书馆。"},
            ]
        },
    ]
    out = quick_sft(tiny_model_dir, tmp_path / "sft", rows, steps=30)
    tok = AutoTokenizer.from_pretrained(out)
    model: Any = AutoModelForCausalLM.from_pretrained(out)
    for row in rows:
        enc: Any = tok.apply_chat_template(
            row["messages"][:2], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=24, do_sample=False)
        reply = tok.decode(gen[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        assert reply == row["messages"][2]["content"]
    with pytest.raises(ValueError):
        quick_sft(tiny_model_dir, tmp_path / "none", [])
