"""SFT end to end on the tiny local model: label mask, full fine-tune, LoRA, template fallback, dry run.

Everything is offline and on CPU; the trained folders are reloaded with transformers and lm-eval's HFLM.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ditto_train.sft.cli import main
from ditto_train.sft.config import SFTRunConfig
from ditto_train.sft.record import RECORD_NAME, read_record
from ditto_train.sft.template import SHIPPED_CHATML

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

PERSONAS = [
    (
        "You are Edward III of England.",
        "Who are you?",
        "I am Edward III, king of England.",
        "What war?",
        "The war of 1337 with France.",
    ),
    (
        "你是李白，一位著名的诗人。",
        "你是谁？",
        "我是李白，我热爱诗歌和月亮。",
        "你最喜欢的朋友是谁？",
        "是我的老朋友杜甫。",
    ),
    (
        "You are Marie Curie.",
        "Hello!",
        "Hello, I am Marie Curie.",
        "Do you know a smartphone?",
        "Sorry, I do not know what a smartphone is.",
    ),
    (
        "You are Sherlock Holmes.",
        "Hello, Sherlock Holmes!",
        "Hello! The game is afoot.",
        "Question 1: who is your friend?",
        "My friend is Dr. Watson.",
    ),
]
# Settings that make a 30-step CPU run learn something: high LR, small batch, short sequences.
FAST = [
    "--max_length",
    "256",
    "--global_batch_size",
    "8",
    "--per_device_train_batch_size",
    "8",
    "--gradient_checkpointing",
    "false",
    "--logging_steps",
    "5",
    "--seed",
    "0",
]
# The same ChatML as the tiny model's, but with no {% generation %} markers (TRL cannot patch it).
PLAIN_CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def sft_rows(n: int = 32) -> list[dict[str, Any]]:
    """`n` generator-shaped rows: a system intro, then one or two user/assistant turns."""
    rows = []
    for i in range(n):
        system, q1, a1, q2, a2 = PERSONAS[i % len(PERSONAS)]
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": q1},
            {"role": "assistant", "content": a1},
        ]
        if i % 2:
            messages += [{"role": "user", "content": q2}, {"role": "assistant", "content": a2}]
        rows.append({"messages": messages, "id": f"row-{i}"})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("sft_data") / "train.jsonl", sft_rows())


@pytest.fixture(scope="module")
def plain_template_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny model whose chat template has no generation markers."""
    out = tmp_path_factory.mktemp("plain_template") / "model"
    shutil.copytree(tiny_model_dir, out)
    (out / "chat_template.jinja").write_text(PLAIN_CHATML, encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def full_run(tiny_model_dir: Path, sft_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full_run") / "out"
    argv = [
        "--model",
        str(tiny_model_dir),
        "--data",
        str(sft_data),
        "--output_dir",
        str(out),
        *FAST,
        "--max_steps",
        "30",
        "--learning_rate",
        "3e-3",
        "--min_lr",
        "3e-4",
    ]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir: Path, sft_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lora_run") / "adapter"
    argv = [
        "--model",
        str(tiny_model_dir),
        "--data",
        str(sft_data),
        "--output_dir",
        str(out),
        *FAST,
        "--mode",
        "lora",
        "--lora_r",
        "8",
        "--lora_alpha",
        "16",
        "--lora_dropout",
        "0",
        "--max_steps",
        "20",
        "--learning_rate",
        "1e-2",
        "--min_lr",
        "1e-3",
    ]
    assert main(argv) == 0
    return out


def _hflm_generate(model_args: str) -> list[str]:
    """Greedy replies from lm-eval's HF backend (what `ditto-bench run --model hf` uses) to two prompts."""
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_model

    lm = get_model("hf").create_from_arg_string(f"{model_args},device=cpu,batch_size=2")
    requests = []
    for i, (system, question, *_rest) in enumerate(PERSONAS[:2]):
        prompt = lm.apply_chat_template(
            [{"role": "system", "content": system}, {"role": "user", "content": question}]
        )
        gen = {"until": [], "max_gen_toks": 12, "do_sample": False}
        requests.append(Instance(request_type="generate_until", doc={}, arguments=(prompt, gen), idx=i))
    return list(lm.generate_until(requests))


def _labelled_spans(input_ids: list[int], labels: list[int]) -> tuple[list[list[int]], list[int]]:
    """Contiguous runs of labelled tokens, and the ids of every unlabelled token."""
    spans: list[list[int]] = []
    masked: list[int] = []
    previous = False
    for token, label in zip(input_ids, labels, strict=True):
        if label != -100:
            assert label == token
            if not previous:
                spans.append([])
            spans[-1].append(token)
        else:
            masked.append(token)
        previous = label != -100
    return spans, masked


@pytest.mark.parametrize("template", ["model", "shipped"])
def test_label_mask_token_by_token(
    template: str, tiny_model_dir: Path, plain_template_model: Path, tmp_path: Path
) -> None:
    from ditto_train.sft.prepare import prepare
    from ditto_train.sft.train import build_trainer

    system, q1, a1, q2, a2 = PERSONAS[1]
    row = {
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": q1},
            {"role": "assistant", "content": a1},
            {"role": "user", "content": q2},
            {"role": "assistant", "content": a2},
        ]
    }
    model = tiny_model_dir if template == "model" else plain_template_model
    cfg = SFTRunConfig(
        model=str(model),
        data=str(write_jsonl(tmp_path / "one.jsonl", [row])),
        output_dir=str(tmp_path / "out"),
        max_length=256,
        global_batch_size=1,
        gradient_checkpointing=False,
    )
    prep = prepare(cfg)
    assert prep.template.source == ("model" if template == "model" else "shipped_chatml")
    trainer = build_trainer(prep)
    dataset: Any = trainer.train_dataset
    example = dataset[0]
    batch = trainer.data_collator([example])  # what the model actually sees
    input_ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    assert input_ids == example["input_ids"] and labels == example["labels"]

    tok: Any = prep.tokenizer
    spans, masked = _labelled_spans(input_ids, labels)
    assert [tok.decode(s) for s in spans] == [a1 + "<|im_end|>", a2 + "<|im_end|>"]
    # Everything else (system, user, role headers) is masked; nothing of it is labelled.
    unlabelled = tok.decode(masked)
    for text in (system, q1, q2, "<|im_start|>system", "<|im_start|>user", "<|im_start|>assistant"):
        assert text in unlabelled
    labelled = "".join(tok.decode(s) for s in spans)
    assert "<|im_start|>" not in labelled and "assistant" not in labelled and system not in labelled
    assert sum(1 for x in labels if x != -100) == prep.tokens.assistant_tokens
    assert not (tmp_path / "out" / RECORD_NAME).exists()


def test_full_sft_loss_falls_and_reloads(full_run: Path, tiny_model_dir: Path, sft_data: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    record = read_record(full_run)
    assert record["status"] == "ok" and record["output"]["kind"] == "model"
    curve = record["loss_curve"]
    assert len(curve) >= 3 and curve[-1]["loss"] < curve[0]["loss"]
    assert record["final_loss"] == curve[-1]["loss"] and record["global_step"] == 30
    # cosine_with_min_lr: warm-up to the 3e-3 peak, then decay towards (never below) the 3e-4 floor.
    lrs = [point["learning_rate"] for point in curve]
    assert max(lrs) <= 3e-3 + 1e-12 and max(lrs) > 2.5e-3
    assert 3e-4 * 0.999 <= lrs[-1] < 6e-4
    assert record["data"]["sha256"] == hashlib.sha256(sft_data.read_bytes()).hexdigest()
    assert record["data"]["rows"] == 32 and record["resolved"]["assistant_turns"] == 48
    assert record["chat_template"]["source"] == "model" and record["chat_template"]["stop_token_trained"]
    assert record["packages"]["trl"] and record["packages"]["transformers"]
    assert record["config"]["learning_rate"] == 3e-3 and record["config"]["max_length"] == 256
    assert record["output"]["eval_model_args"] == f"pretrained={full_run.resolve()}"
    assert not (full_run / "training_failed.json").exists()

    tok: Any = AutoTokenizer.from_pretrained(full_run)
    model: Any = AutoModelForCausalLM.from_pretrained(full_run)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, dict(base.named_parameters())[n])]
    assert len(changed) == len(list(base.parameters()))  # every weight moved
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "Who are you?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]

    replies = _hflm_generate(record["output"]["eval_model_args"])
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)


def test_lora_sft_saves_adapter_that_hflm_loads(lora_run: Path, tiny_model_dir: Path) -> None:
    from safetensors.torch import load_file

    names = {p.name for p in lora_run.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", RECORD_NAME} <= names
    assert "model.safetensors" not in names
    record = read_record(lora_run)
    assert record["output"]["kind"] == "peft_adapter"
    curve = record["loss_curve"]
    assert curve[-1]["loss"] < curve[0]["loss"]
    assert record["base_model"] == {"spec": str(tiny_model_dir), "local_path": str(tiny_model_dir.resolve())}
    adapter = load_file(lora_run / "adapter_model.safetensors")
    lora_b = [t for name, t in adapter.items() if "lora_B" in name]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b)  # B starts at zero: non-zero means it trained
    expected = (
        f"pretrained={tiny_model_dir.resolve()},peft={lora_run.resolve()},tokenizer={lora_run.resolve()}"
    )
    assert record["output"]["eval_model_args"] == expected
    for model_args in (f"pretrained={tiny_model_dir},peft={lora_run}", record["output"]["eval_model_args"]):
        replies = _hflm_generate(model_args)
        assert len(replies) == 2 and all(isinstance(r, str) for r in replies)


def test_template_without_markers_trains_with_shipped_chatml(
    plain_template_model: Path, sft_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    argv = [
        "--model",
        str(plain_template_model),
        "--data",
        str(sft_data),
        "--output_dir",
        str(out),
        *FAST,
        "--max_steps",
        "2",
        "--learning_rate",
        "1e-3",
    ]
    assert main(argv) == 0
    record = read_record(out)
    shipped = SHIPPED_CHATML.read_text(encoding="utf-8")
    assert record["chat_template"]["source"] == "shipped_chatml"
    assert record["chat_template"]["sha256"] == hashlib.sha256(shipped.encode()).hexdigest()
    assert "TRL cannot patch" in record["chat_template"]["reason"]
    assert record["chat_template"]["added_tokens"] == []
    # The trained model carries the template it was trained with, so evaluation renders the same format.
    assert (out / "chat_template.jinja").read_text(encoding="utf-8") == shipped


def test_dry_run_prints_plan_and_writes_nothing(
    tiny_model_dir: Path, sft_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        ["--model", str(tiny_model_dir), "--data", str(sft_data), "--output_dir", str(out), "--dry_run"]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "# resolved config" in captured.out and "max_length: 8192" in captured.out
    for item in ("rows", "assistant_turns", "assistant_tokens", "planned_steps"):
        assert item in captured.out
    # 300 steps x 128 over 32 rows is far from the paper's ~5 epochs: the plan says so.
    assert "1200.0 epochs of 32 rows" in captured.err
    assert not out.exists()


def _without_chatml_tokens(src: Path, dst: Path) -> Path:
    """Copy the tiny model with its ChatML tokens renamed: no <|im_start|> or <|im_end|> in the vocab."""
    shutil.copytree(src, dst)
    renamed = {"<|im_start|>": "<|turn|>", "<|im_end|>": "<|end|>"}
    spec = json.loads((dst / "tokenizer.json").read_text(encoding="utf-8"))
    for token in spec["added_tokens"]:
        token["content"] = renamed.get(token["content"], token["content"])
    spec["model"]["vocab"] = {renamed.get(k, k): v for k, v in spec["model"]["vocab"].items()}
    (dst / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    tok_cfg = json.loads((dst / "tokenizer_config.json").read_text(encoding="utf-8"))
    (dst / "tokenizer_config.json").write_text(
        json.dumps({**tok_cfg, "eos_token": "<|end|>"}), encoding="utf-8"
    )
    (dst / "chat_template.jinja").write_text(
        "{%- for m in messages %}{{- '<|turn|>' + m['role'] + ': ' + m['content'] + '<|end|>' }}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|turn|>assistant: ' }}{%- endif %}",
        encoding="utf-8",
    )
    return dst


def test_shipped_chatml_adds_missing_tokens(
    tiny_model_dir: Path, sft_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    model = _without_chatml_tokens(tiny_model_dir, tmp_path / "model")
    base_vocab = len(AutoTokenizer.from_pretrained(model))
    common = ["--model", str(model), "--data", str(sft_data), *FAST, "--max_steps", "2"]
    # An adapter cannot grow the vocabulary: refused up front, nothing written.
    code = main([*common, "--output_dir", str(tmp_path / "lora"), "--mode", "lora"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "<|im_start|>, <|im_end|>" in err[0] and "mode=full" in err[0]
    assert not (tmp_path / "lora").exists()

    out = tmp_path / "full"
    assert main([*common, "--output_dir", str(out)]) == 0
    record = read_record(out)
    assert record["chat_template"]["source"] == "shipped_chatml"
    assert record["chat_template"]["added_tokens"] == ["<|im_start|>", "<|im_end|>"]
    assert record["chat_template"]["eos_token"] == "<|im_end|>"
    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok) == base_vocab + 2 and tok.eos_token == "<|im_end|>"
    assert AutoConfig.from_pretrained(out).vocab_size == len(tok)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert (
        im_end in GenerationConfig.from_pretrained(out).eos_token_id
    )  # generation stops at the new end of turn


def test_failed_run_leaves_failure_record_not_a_finished_one(
    tiny_model_dir: Path, sft_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ditto_train.sft import train as train_module

    def broken_trainer(prep: Any) -> Any:
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(train_module, "build_trainer", broken_trainer)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated"):
        main(["--model", str(tiny_model_dir), "--data", str(sft_data), "--output_dir", str(out), *FAST])
    assert not (out / RECORD_NAME).exists()
    failed = json.loads((out / "training_failed.json").read_text(encoding="utf-8"))
    assert failed["status"] == "failed" and "simulated" in failed["error"]
    assert failed["data"]["rows"] == 32 and failed["loss_curve"] == []
