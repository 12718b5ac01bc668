"""Supervised fine-tuning for the Ditto recipe (TRL SFTTrainer, assistant-only loss).

Importing this package is cheap; torch, transformers and TRL load only when a run starts.
Entry point: `ditto_train.sft.cli.main(argv) -> int` (`ditto-bench train ...`).
"""

from __future__ import annotations

from .config import SFTRunConfig, resolve_config

__all__ = ["SFTRunConfig", "resolve_config"]
