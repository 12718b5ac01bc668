"""Run SFT with TRL's SFTTrainer: assistant-only loss, full fine-tune or LoRA, record written last.

Works unchanged under `accelerate launch` (DeepSpeed ZeRO-3 / FSDP configs in ditto_train/configs/): the
trainer reads the distributed setup from the environment, and only the main process writes the record.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import SFTRunConfig
from .prepare import Prepared, is_main_process, prepare
from .record import FAILED_NAME, RECORD_NAME, base_record, loss_curve, write_json_atomic

if TYPE_CHECKING:
    from trl import SFTConfig, SFTTrainer

# Schedulers that take a floor learning rate through lr_scheduler_kwargs.
_MIN_LR_SCHEDULERS = ("cosine_with_min_lr",)


def _model_init_kwargs(cfg: SFTRunConfig) -> dict[str, Any]:
    """from_pretrained keyword arguments for the seed model."""
    kwargs: dict[str, Any] = {"dtype": cfg.dtype}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    return kwargs


def sft_args(prep: Prepared) -> SFTConfig:
    """Translate our config into TRL's SFTConfig (assistant-only loss, CPU when there is no CUDA)."""
    from trl import SFTConfig

    cfg = prep.cfg
    scheduler_kwargs = {"min_lr": cfg.min_lr} if cfg.lr_scheduler_type in _MIN_LR_SCHEDULERS else {}
    return SFTConfig(
        output_dir=str(cfg.output_dir),
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
        num_train_epochs=cfg.num_train_epochs,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=prep.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        lr_scheduler_kwargs=scheduler_kwargs,
        # transformers 5 has no warmup_ratio: a float in [0, 1) given as warmup_steps is the ratio.
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        bf16=prep.bf16,
        use_cpu=prep.use_cpu,
        # transformers 5 renamed gradient_checkpointing (TRL's default: on) to activation_checkpointing;
        # the new name takes precedence over the old default and avoids a deprecation warning.
        activation_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy=cfg.save_strategy,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to="none",
        assistant_only_loss=True,
        max_length=cfg.max_length,
        packing=cfg.packing,
        eos_token=prep.template.eos_token,
        dataloader_num_workers=cfg.dataloader_num_workers,
        dataset_num_proc=cfg.dataset_num_proc,
        model_init_kwargs=_model_init_kwargs(cfg),
    )


def _lora_config(cfg: SFTRunConfig) -> Any:
    from peft import LoraConfig

    targets: str | list[str] = cfg.lora_target_modules
    if targets == ["all-linear"]:
        targets = "all-linear"  # peft's keyword for every linear layer except the output head
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


def build_trainer(prep: Prepared) -> SFTTrainer:
    """Create the SFTTrainer for a prepared run (loads the model; TRL tokenizes the dataset)."""
    from datasets import Dataset
    from trl import SFTTrainer

    cfg = prep.cfg
    args = sft_args(prep)  # before loading the model, so ZeRO-3 can partition it at load time
    model: Any = cfg.model
    if prep.added_tokens:
        # The shipped ChatML needs tokens this model lacks: load it ourselves to grow the embeddings.
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(cfg.model), **_model_init_kwargs(cfg))
        model.resize_token_embeddings(len(prep.tokenizer))
        args.model_init_kwargs = None  # used above; TRL would warn that they are ignored
    from harness.progress import trainer_status_callback

    dataset = Dataset.from_list([{"messages": list(m)} for m in prep.conversations])
    status = trainer_status_callback()  # status lines in batch logs, where the Trainer's bar is silent
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=prep.tokenizer,
        peft_config=_lora_config(cfg) if cfg.mode == "lora" else None,
        callbacks=[status] if status is not None else None,
    )


def _base_model_info(cfg: SFTRunConfig) -> dict[str, Any]:
    assert cfg.model is not None
    local = Path(cfg.model)
    return {"spec": cfg.model, "local_path": str(local.resolve()) if local.is_dir() else None}


def eval_model_args(cfg: SFTRunConfig, output_dir: Path) -> str:
    """`--model_args` for `ditto-bench run --model hf` that evaluates this run's output."""
    out = output_dir.resolve()
    if cfg.mode == "full":
        return f"pretrained={out}"
    base = _base_model_info(cfg)
    # The adapter folder carries the training tokenizer and chat template; the base may have another template.
    return f"pretrained={base['local_path'] or base['spec']},peft={out},tokenizer={out}"


def _record_common(prep: Prepared) -> dict[str, Any]:
    cfg = prep.cfg
    return {
        "config": cfg.to_dict(),
        "resolved": prep.summary(),
        "warnings": prep.warnings,
        "base_model": _base_model_info(cfg),
        "data": {
            "path": str(Path(prep.data.path).resolve()),
            "sha256": prep.data.sha256,
            "rows": prep.data.rows,
        },
        "chat_template": {
            "source": prep.template.source,
            "reason": prep.template.reason,
            "path": prep.template.path,
            "sha256": prep.template.sha256,
            "eos_token": prep.template.eos_token,
            "added_tokens": prep.added_tokens,
            "stop_token_trained": prep.stop_token_trained,
        },
        "paper_settings": {
            "source": "Ditto §5.1 + App. C; conflict resolved as documented in docs/training.md",
            "max_length": 8192,
            "global_batch_size": 128,
            "max_steps": 300,
            "num_train_epochs": 5,
            "learning_rate": 2e-6,
            "min_lr": 2e-7,
            "warmup_ratio": 0.1,
        },
    }


def run_training(prep: Prepared, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train, save the model (full) or adapter (LoRA) with its tokenizer, then write and return the record.

    On any exception the main process writes `training_failed.json` (error and the loss so far) and re-raises;
    `training_record.json` is only ever written after the model is saved.
    """
    cfg = prep.cfg
    assert cfg.output_dir is not None
    out = Path(cfg.output_dir)
    main = is_main_process()
    if main and out.is_dir():
        # A stale record must not make a half-finished rerun look complete.
        (out / RECORD_NAME).unlink(missing_ok=True)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    trainer: SFTTrainer | None = None
    resume = _last_checkpoint(out) if cfg.resume else None
    try:
        trainer = build_trainer(prep)
        result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model(str(out))
    except BaseException as exc:
        if main:
            history = list(trainer.state.log_history) if trainer is not None else []
            failed = base_record("failed") | _record_common(prep) | (extra or {})
            failed |= {"error": f"{type(exc).__name__}: {exc}", "loss_curve": loss_curve(history)}
            write_json_atomic(out / FAILED_NAME, failed)
        raise
    history = list(trainer.state.log_history)
    curve = loss_curve(history)
    record = base_record("ok") | _record_common(prep) | (extra or {})
    record |= {
        "output": {
            "dir": str(out.resolve()),
            "kind": "model" if cfg.mode == "full" else "peft_adapter",
            "eval_model_args": eval_model_args(cfg, out),
        },
        "resumed_from": resume,
        "global_step": trainer.state.global_step,
        "final_loss": curve[-1]["loss"] if curve else None,
        "train_loss_mean": result.training_loss,
        "loss_curve": curve,
        "log_history": history,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "wall_time_s": round(time.monotonic() - t0, 3),
    }
    if main:
        (out / FAILED_NAME).unlink(missing_ok=True)
        write_json_atomic(out / RECORD_NAME, record)
    return record


def _last_checkpoint(out: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not out.is_dir():
        return None
    last = get_last_checkpoint(str(out))
    return str(last) if last else None


def train(cfg: SFTRunConfig) -> dict[str, Any]:
    """Prepare (validate everything) and train; the programmatic twin of `ditto-bench train`."""
    return run_training(prepare(cfg))
