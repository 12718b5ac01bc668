"""Everything a run checks before it trains: output folder, data, tokenizer, chat template, batch plan.

`prepare` writes nothing. It is the whole of `--dry_run`, and the first half of a real run, so every bad input
is reported before a model is loaded or a GPU is touched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError, DataError
from harness.types import ChatMessage

from .config import SFTRunConfig
from .data import DataSummary, TokenStats, load_conversations, token_stats
from .template import TemplateChoice, apply_template, resolve_chat_template, stop_token_trained

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PAPER_EPOCHS = 5.0


@dataclass
class Prepared:
    """A checked run: the config plus what was derived from the data, the tokenizer and the environment."""

    cfg: SFTRunConfig
    conversations: list[list[ChatMessage]]
    data: DataSummary
    tokenizer: PreTrainedTokenizerBase
    template: TemplateChoice
    added_tokens: list[str]
    stop_token_trained: bool
    tokens: TokenStats
    world_size: int
    gradient_accumulation_steps: int
    global_batch_size: int
    planned_steps: int
    implied_epochs: float
    use_cpu: bool
    bf16: bool
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The derived facts shown by --dry_run and stored in the training record."""
        return {
            "rows": self.data.rows,
            "messages": self.data.messages,
            "assistant_turns": self.data.assistant_turns,
            **self.tokens.as_dict(),
            "data_sha256": self.data.sha256,
            "chat_template": self.template.source,
            "chat_template_sha256": self.template.sha256,
            "added_tokens": self.added_tokens,
            "stop_token_trained": self.stop_token_trained,
            "world_size": self.world_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "global_batch_size": self.global_batch_size,
            "planned_steps": self.planned_steps,
            "implied_epochs": round(self.implied_epochs, 3),
            "device": "cpu" if self.use_cpu else "cuda",
            "bf16": self.bf16,
        }


def world_size() -> int:
    """Number of training processes (set by `accelerate launch` / torchrun; 1 for a plain run)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def is_main_process() -> bool:
    """True on the process that prints and writes records (rank 0, or the only process)."""
    return os.environ.get("RANK", "0") == "0"


def check_output_dir(cfg: SFTRunConfig) -> None:
    """Refuse an output_dir that is a file. Whether a directory is reused, resumed or refused is the stage
    contract's decision (ditto_train.sft.stage), taken once the data is checked."""
    assert cfg.output_dir is not None
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir {out} exists and is not a directory")


def load_tokenizer(model: str) -> PreTrainedTokenizerBase:
    """Load the seed model's tokenizer, turning loader errors into one-line ConfigErrors."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot load the tokenizer of model {model!r}: {first}") from None


def _device() -> tuple[bool, bool]:
    """(use_cpu, cuda_has_bf16) for this machine."""
    import torch

    cuda = torch.cuda.is_available()
    return (not cuda, bool(cuda and torch.cuda.is_bf16_supported()))


def prepare(cfg: SFTRunConfig, after_data: Callable[[], None] | None = None) -> Prepared:
    """Check output folder, data, tokenizer and template; compute the batch/step plan. Writes nothing
    itself; ``after_data`` runs once the data is valid, before the tokenizer is loaded (the CLI opens the
    stage there, so bad data leaves no directory and a finished one costs no model load)."""
    assert cfg.data is not None and cfg.model is not None
    check_output_dir(cfg)
    conversations, data = load_conversations(cfg.data)
    if after_data is not None:
        after_data()
    n_proc = world_size()
    accum = cfg.accumulation_for(n_proc)
    global_batch = cfg.per_device_train_batch_size * n_proc * accum
    steps = cfg.planned_steps(data.rows, n_proc)
    implied_epochs = steps * global_batch / data.rows
    notes: list[str] = []
    if cfg.max_steps > 0 and not PAPER_EPOCHS / 2 <= implied_epochs <= PAPER_EPOCHS * 2:
        notes.append(
            f"max_steps={cfg.max_steps} at global batch {global_batch} is {implied_epochs:.1f} epochs of "
            f"{data.rows} rows (the paper: ~{PAPER_EPOCHS:g}); pass --max_steps 0 to train by "
            "num_train_epochs"
        )

    tokenizer = load_tokenizer(cfg.model)
    template = resolve_chat_template(tokenizer, cfg.chat_template)
    if template.missing_tokens and cfg.mode == "lora":
        raise ConfigError(
            f"the shipped ChatML template needs {', '.join(template.missing_tokens)}, which the tokenizer of "
            f"{cfg.model!r} lacks; a LoRA adapter cannot add tokens here. Use mode=full, or "
            "chat_template=<a .jinja file with generation markers in the model's own format>"
        )
    added = apply_template(tokenizer, template)
    trained_stop = stop_token_trained(tokenizer)
    if not trained_stop:
        notes.append(
            "the chat template leaves the end-of-turn token out of the loss; the model may not learn to stop"
        )
    tokens = token_stats(conversations, tokenizer, cfg.max_length)
    if tokens.rows_without_assistant_tokens == data.rows:
        raise DataError(
            f"{cfg.data}: no conversation has an assistant token within max_length={cfg.max_length}; "
            "raise max_length"
        )
    if tokens.rows_without_assistant_tokens:
        notes.append(
            f"{tokens.rows_without_assistant_tokens} of {data.rows} rows have no assistant token within "
            f"max_length={cfg.max_length} and will be dropped"
        )
    use_cpu, cuda_bf16 = _device()
    bf16 = cfg.bf16 if cfg.bf16 is not None else cuda_bf16
    return Prepared(
        cfg=cfg,
        conversations=conversations,
        data=data,
        tokenizer=tokenizer,
        template=template,
        added_tokens=added,
        stop_token_trained=trained_stop,
        tokens=tokens,
        world_size=n_proc,
        gradient_accumulation_steps=accum,
        global_batch_size=global_batch,
        planned_steps=steps,
        implied_epochs=implied_epochs,
        use_cpu=use_cpu,
        bf16=bf16,
        warnings=notes,
    )
