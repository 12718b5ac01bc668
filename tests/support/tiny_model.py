"""Build a tiny random chat model (Qwen2 or Llama) with a locally trained EN+ZH tokenizer.

Nothing is downloaded: the byte-level BPE tokenizer is trained in-process on generated English
and Chinese text, the model is randomly initialised from a fixed seed, and both are saved with
`save_pretrained`, so `AutoTokenizer` / `AutoModelForCausalLM` / lm-eval `HFLM` load the folder.
`quick_sft` fine-tunes it for a few dozen CPU steps so tests get non-degenerate replies.

torch, transformers, tokenizers, datasets and trl are imported inside the functions: importing this
module is cheap, and API-only tests never pay for torch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

# Qwen2's pre-tokenizer split. transformers 5.x rebuilds a Qwen2Tokenizer around the saved vocab with
# exactly this regex (plus NFC); training with the same pipeline keeps ids identical after reload.
QWEN2_PRETOKENIZE_RE = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# ChatML. The {% generation %} block wraps the assistant content *and* <|im_end|>, so TRL's
# assistant_only_loss trains the model to emit the end-of-turn token (i.e. to stop).
_CHATML_BODY = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
CHAT_TEMPLATE: str = _CHATML_BODY

# Same template for a model that rejects the system role, like several real chat models do.
# transformers' raise_exception raises jinja2.TemplateError (what lm-eval's HFLM catches).
NO_SYSTEM_CHAT_TEMPLATE: str = (
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{{- raise_exception('System role not supported') }}"
    "{%- endif %}{%- endfor %}" + _CHATML_BODY
)

# Names and phrases the WikiRoleEval / MT-Bench fixtures and judge prompts use, so they get merges.
_EN_NAMES = [
    "Edward III of England",
    "Anne, Princess Royal",
    "Jean-Pierre Sauvage",
    "Zhang Ziyi",
    "Marie Curie",
    "Albert Einstein",
    "Isaac Newton",
    "Ada Lovelace",
    "Li Bai",
    "Sherlock Holmes",
    "Confucius",
    "Napoleon Bonaparte",
    "Queen Victoria",
    "Leonardo da Vinci",
    "William Shakespeare",
]
_ZH_NAMES = ["李白", "杜甫", "孔子", "章子怡", "爱德华三世", "居里夫人", "诸葛亮", "苏轼", "武则天", "鲁迅"]
_EN_TEMPLATES = [
    "You are {name}, a famous person in history.",
    "Hello, {name}! What do you think about the war of 1337?",
    "I am {name}. I was born in 1312 and I ruled for 50 years.",
    "Please respond in English. Stay in character as {name}.",
    "[Begin] [Instruction] Who are you, {name}? [End]",
    "The most suitable role is [{name}].",
    "Sorry, I do not know what a smartphone is; it is beyond my time.",
    "Score: {digit}/10. The answer is consistent with the role's knowledge.",
    'Question {digit}: "What is the Treaty of Brétigny?" Answer: a peace treaty (1360).',
    "- He declared himself the rightful heir to the French throne.",
]
_ZH_TEMPLATES = [
    "你是{name}，一位著名的历史人物。",
    "你好，{name}！请问你怎么看待这场战争？",
    "我是{name}，我出生于{digit}年，我热爱诗歌和月亮。",
    "请用中文回答。保持{name}的角色。",
    "最合适的角色是[{name}]。",
    "对不起，我不知道什么是智能手机，这超出了我的时代。",
    "评分：{digit}分。回答符合角色的知识和性格。",
    "“床前明月光，疑是地上霜。”——《静夜思》（{name}）",
    "欢迎来到图书馆！我会保护这个村庄。我的剑已经准备好了。",
    "问题{digit}：你最喜欢的朋友是谁？答：是我的老朋友。",
]


def tokenizer_training_text(repeats: int = 3) -> Iterator[str]:
    """Deterministic EN+ZH lines (names, digits, ASCII and full-width punctuation) for BPE training."""
    digits = ["0", "1", "7", "10", "42", "1337", "1360", "2024", "3.5", "99%"]
    for _ in range(repeats):
        for tmpl, (name, digit) in itertools.product(_EN_TEMPLATES, zip(_EN_NAMES, itertools.cycle(digits))):
            yield tmpl.format(name=name, digit=digit)
        for tmpl, (name, digit) in itertools.product(_ZH_TEMPLATES, zip(_ZH_NAMES, itertools.cycle(digits))):
            yield tmpl.format(name=name, digit=digit)
    yield "Numbers 0123456789, symbols !?.,;:'\"()[]{}<>-_/\\@#$%^&*+=~`| and emoji 🙂🐉."
    yield "全角标点：，。！？；：“”‘’（）《》【】…—、"


def build_tiny_tokenizer(
    *, vocab_size: int = 1024, system_role_supported: bool = True, extra_text: list[str] | None = None
) -> PreTrainedTokenizerFast:
    """Train a Qwen2-style byte-level BPE tokenizer on generated EN+ZH text; return it (unsaved).

    eos is <|im_end|>, pad is <|endoftext|>, padding side is left, and the ChatML chat template is
    attached (`NO_SYSTEM_CHAT_TEMPLATE` when `system_role_supported` is False). All 256 bytes are in
    the initial alphabet, so any UTF-8 text encodes and decodes back unchanged (modulo NFC).
    """
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_RE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = list(tokenizer_training_text()) + list(extra_text or [])
    tok.train_from_iterator(lines, trainer=trainer)

    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        bos_token=None,
        unk_token=None,
        model_max_length=2048,
        padding_side="left",
    )
    hf_tok.chat_template = CHAT_TEMPLATE if system_role_supported else NO_SYSTEM_CHAT_TEMPLATE
    return hf_tok


def build_tiny_model(
    out_dir: Path,
    *,
    seed: int = 0,
    arch: Literal["qwen2", "llama"] = "qwen2",
    system_role_supported: bool = True,
    head_dim: int = 16,
) -> Path:
    """Build and save a tiny random causal LM (4 heads of ``head_dim``, 2 layers) with its tokenizer.

    The default (head_dim 16: hidden 64, ~0.1M params) is the smallest that works with transformers;
    vLLM's CPU attention needs ``head_dim=64`` (hidden 256).

    Writes config.json, generation_config.json (eos = [<|im_end|>, <|endoftext|>], pad = <|endoftext|>,
    deliberately no max_new_tokens), model.safetensors, tokenizer files and chat_template.jinja to
    `out_dir`. Deterministic for a given seed and arch. Returns `out_dir`.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tiny_tokenizer(system_role_supported=system_role_supported)
    im_end = tok.convert_tokens_to_ids(EOS_TOKEN)
    endoftext = tok.convert_tokens_to_ids(PAD_TOKEN)
    assert isinstance(im_end, int) and isinstance(endoftext, int)
    dims: dict[str, Any] = {
        "vocab_size": len(tok),
        "hidden_size": 4 * head_dim,
        "intermediate_size": 8 * head_dim,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
        "pad_token_id": endoftext,
        "bos_token_id": endoftext,
        "eos_token_id": im_end,
    }
    torch.manual_seed(seed)
    model: Any
    if arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**dims))
    elif arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**dims))
    else:
        raise ValueError(f"arch must be 'qwen2' or 'llama', got {arch!r}")
    # No max_new_tokens here: it would override the max_length that lm-eval's HFLM passes.
    model.generation_config = GenerationConfig(eos_token_id=[im_end, endoftext], pad_token_id=endoftext)
    tok.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


def quick_sft(
    model_dir: Path,
    out_dir: Path,
    rows: list[dict[str, Any]],
    steps: int = 30,
    *,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> Path:
    """Full fine-tune `model_dir` on chat `rows` ({"messages": [...]}) with TRL on CPU; save to `out_dir`.

    Loss is on assistant tokens only (the chat template's {% generation %} block, <|im_end|> included),
    so after ~30 steps the model reproduces its training replies and stops. Returns `out_dir`.
    """
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    if not rows:
        raise ValueError("quick_sft needs at least one row")
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    args = SFTConfig(
        output_dir=str(out_dir),
        max_steps=steps,
        per_device_train_batch_size=min(8, len(rows)),
        learning_rate=learning_rate,
        lr_scheduler_type="constant",
        logging_steps=max(1, steps // 5),
        save_strategy="no",
        report_to="none",
        assistant_only_loss=True,
        max_length=256,
        # TRL defaults are bf16 and (activation|gradient) checkpointing on; neither suits a CPU toy run.
        # activation_checkpointing is transformers 5.x's new name; the old one warns (FutureWarning).
        bf16=False,
        activation_checkpointing=False,
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=seed,
    )
    dataset = Dataset.from_list([{"messages": r["messages"]} for r in rows])
    trainer = SFTTrainer(model=str(model_dir), args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(out_dir))
    return out_dir
