"""The SFT run configuration: one dataclass, its paper defaults, and defaults < YAML < flags loading.

Paper settings (Ditto, §5.1 and App. C; see docs/training.md):

* sequence length 8,192; global batch 128; warm-up ratio 0.1;
* §5.1 says "5 epochs, LR 2e-7", App. C says "300 steps, LR 2e-6 with minimum LR 2e-7".

Our resolution of the conflict: the peak learning rate is 2e-6 and it decays (cosine) to a floor of 2e-7, so
§5.1's "2e-7" is read as the floor. The step budget is ``max_steps=300``, which wins whenever it is > 0:
5 epochs of the 7,086 WikiRole sessions at global batch 128 is ~277 steps, so the two statements agree on the
paper's own data. On a dataset of another size the two diverge; set ``max_steps`` to 0 (or -1) to train by
``num_train_epochs`` instead. The run prints and records the implied epoch count either way.

This module imports no torch/transformers, so config errors surface in well under a second.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import ConfigError

Mode = Literal["full", "lora"]
SchedulerName = Literal["cosine_with_min_lr", "cosine", "linear", "constant", "constant_with_warmup"]
SaveStrategy = Literal["no", "steps", "epoch"]
DType = Literal["float32", "bfloat16", "float16", "auto"]

# Words accepted for booleans given as strings (flags, or quoted YAML values).
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class SFTRunConfig:
    """Everything one `ditto-bench train` run needs. Defaults are the paper's (see the module docstring)."""

    model: str | None = field(
        default=None, metadata=_help("Seed model: a local HF directory or a hub id (required).")
    )
    data: str | None = field(
        default=None, metadata=_help('Training data: JSONL with one {"messages": [...]} per line (required).')
    )
    output_dir: str | None = field(
        default=None,
        metadata=_help("Where the model (full) or adapter (lora) and training_record.json go (required)."),
    )
    mode: Mode = field(
        default="full", metadata=_help("full: fine-tune all weights (the paper); lora: train an adapter.")
    )
    chat_template: str = field(
        default="auto",
        metadata=_help(
            "auto: the model's template if it has {% generation %} markers or TRL can patch it, else "
            "the shipped ChatML; model: the model's (or TRL-patched) template, error otherwise; chatml: "
            "the shipped ChatML; or a path to a .jinja file with {% generation %} markers."
        ),
    )
    max_length: int = field(
        default=8192, metadata=_help("Max tokens per conversation; longer ones are truncated.")
    )
    max_steps: int = field(
        default=300,
        metadata=_help("Optimizer steps; wins when > 0 (App. C). Set 0 to train by num_train_epochs."),
    )
    num_train_epochs: float = field(
        default=5.0, metadata=_help("Epochs (§5.1); used only when max_steps <= 0.")
    )
    global_batch_size: int | None = field(
        default=128,
        metadata=_help(
            "Sequences per optimizer step across all processes (App. C: 128). gradient_accumulation_steps is "
            "derived from it; null to set gradient_accumulation_steps yourself."
        ),
    )
    per_device_train_batch_size: int = field(
        default=1, metadata=_help("Sequences per device per micro-step.")
    )
    gradient_accumulation_steps: int | None = field(
        default=None,
        metadata=_help(
            "null: global_batch_size / (per_device_train_batch_size x world size). Set it only if "
            "global_batch_size is null or agrees with it."
        ),
    )
    learning_rate: float = field(
        default=2e-6, metadata=_help("Peak learning rate after warm-up (App. C: 2e-6).")
    )
    min_lr: float = field(
        default=2e-7,
        metadata=_help("Floor of the cosine decay (App. C: 2e-7); used by cosine_with_min_lr only."),
    )
    lr_scheduler_type: SchedulerName = field(
        default="cosine_with_min_lr", metadata=_help("LR schedule after warm-up.")
    )
    warmup_ratio: float = field(
        default=0.1, metadata=_help("Fraction of steps with linear warm-up (paper: 0.1).")
    )
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay (not stated in the paper)."))
    max_grad_norm: float = field(
        default=1.0, metadata=_help("Gradient clipping norm (not stated in the paper).")
    )
    packing: bool = field(
        default=False, metadata=_help("Pack several conversations per sequence (paper: off).")
    )
    seed: int = field(default=42, metadata=_help("Seed for data order, init of LoRA weights and dropout."))
    bf16: bool | None = field(
        default=None, metadata=_help("bf16 mixed precision; auto (null): on when CUDA has bf16.")
    )
    dtype: DType = field(
        default="float32",
        metadata=_help(
            "Dtype the weights are loaded in; float32 keeps fp32 master weights under bf16 autocast."
        ),
    )
    gradient_checkpointing: bool = field(
        default=True,
        metadata=_help("Recompute activations in backward; needed for 8k-token sequences on big models."),
    )
    attn_implementation: str | None = field(
        default=None,
        metadata=_help("Attention kernel (e.g. sdpa, flash_attention_2); null: transformers' choice."),
    )
    lora_r: int = field(default=16, metadata=_help("LoRA rank (mode=lora)."))
    lora_alpha: int = field(default=32, metadata=_help("LoRA alpha (mode=lora)."))
    lora_dropout: float = field(default=0.05, metadata=_help("LoRA dropout (mode=lora)."))
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata=_help("Modules that get adapters; ['all-linear'] = every linear layer but the output head."),
    )
    logging_steps: int = field(default=1, metadata=_help("Log loss and learning rate every N steps."))
    save_strategy: SaveStrategy = field(
        default="no", metadata=_help("Intermediate checkpoints: no, steps or epoch.")
    )
    save_steps: int = field(default=100, metadata=_help("Checkpoint interval when save_strategy=steps."))
    save_total_limit: int | None = field(default=1, metadata=_help("Keep at most this many checkpoints."))
    resume: bool = field(
        default=False,
        metadata=_help("Resume from the last checkpoint in output_dir (needs save_strategy != no)."),
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata=_help("Allow an output_dir that is not empty (its old record is removed first)."),
    )
    dataloader_num_workers: int = field(default=0, metadata=_help("DataLoader worker processes."))
    dataset_num_proc: int | None = field(
        default=None, metadata=_help("Processes for tokenizing the dataset.")
    )

    def __post_init__(self) -> None:
        """Check what can be checked without a model or a GPU; raise ConfigError saying what to do."""
        for name in ("model", "data", "output_dir"):
            if not getattr(self, name):
                raise ConfigError(f"missing required key '{name}' (set it in the YAML file or pass --{name})")
        positive = (
            "max_length",
            "per_device_train_batch_size",
            "logging_steps",
            "save_steps",
            "lora_r",
            "lora_alpha",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"'{name}' must be > 0, got {getattr(self, name)}")
        for name in (
            "global_batch_size",
            "gradient_accumulation_steps",
            "save_total_limit",
            "dataset_num_proc",
        ):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"'{name}' must be > 0 or null, got {value}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ConfigError(
                "set max_steps > 0 or num_train_epochs > 0; both are off, so nothing would train"
            )
        if self.learning_rate <= 0:
            raise ConfigError(f"'learning_rate' must be > 0, got {self.learning_rate}")
        if self.lr_scheduler_type == "cosine_with_min_lr" and not 0 <= self.min_lr <= self.learning_rate:
            raise ConfigError(
                f"min_lr ({self.min_lr}) must be between 0 and learning_rate ({self.learning_rate}); "
                "lower min_lr or pick another lr_scheduler_type"
            )
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"'warmup_ratio' must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"'lora_dropout' must be in [0, 1), got {self.lora_dropout}")
        if not self.lora_target_modules:
            raise ConfigError("'lora_target_modules' is empty; use ['all-linear'] or name the modules")
        if self.global_batch_size is None and self.gradient_accumulation_steps is None:
            raise ConfigError("set global_batch_size or gradient_accumulation_steps (both are null)")
        if self.global_batch_size is not None and self.global_batch_size % self.per_device_train_batch_size:
            raise ConfigError(
                f"global_batch_size {self.global_batch_size} is not a multiple of "
                f"per_device_train_batch_size {self.per_device_train_batch_size}"
            )
        if self.resume and self.save_strategy == "no":
            raise ConfigError("resume=true needs checkpoints: set save_strategy to steps or epoch")
        if self.resume and self.overwrite_output_dir:
            raise ConfigError("resume and overwrite_output_dir exclude each other; pick one")

    def accumulation_for(self, world_size: int) -> int:
        """Gradient accumulation steps for `world_size` processes; ConfigError if the batch won't divide."""
        per_step = self.per_device_train_batch_size * world_size
        if self.global_batch_size is None:
            assert self.gradient_accumulation_steps is not None  # guaranteed by __post_init__
            return self.gradient_accumulation_steps
        if self.global_batch_size % per_step:
            raise ConfigError(
                f"global_batch_size {self.global_batch_size} is not divisible by per_device_train_batch_size "
                f"{self.per_device_train_batch_size} x {world_size} processes; change one of them"
            )
        accum = self.global_batch_size // per_step
        if self.gradient_accumulation_steps is not None and self.gradient_accumulation_steps != accum:
            raise ConfigError(
                f"gradient_accumulation_steps {self.gradient_accumulation_steps} disagrees with "
                f"global_batch_size {self.global_batch_size} (which needs {accum} on {world_size} "
                "process(es)); set global_batch_size to null to use your value"
            )
        return accum

    def planned_steps(self, rows: int, world_size: int) -> int:
        """Optimizer steps the run will take: max_steps when > 0, else epochs x steps per epoch."""
        if self.max_steps > 0:
            return self.max_steps
        global_batch = self.per_device_train_batch_size * world_size * self.accumulation_for(world_size)
        return max(1, math.ceil(self.num_train_epochs * math.ceil(rows / global_batch)))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view of the config (what the training record stores)."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------
# Loading: defaults, then YAML, then flags.


def config_fields() -> dict[str, dataclasses.Field[Any]]:
    """The dataclass fields by name (the only keys a YAML file or a flag may set)."""
    return {f.name: f for f in dataclasses.fields(SFTRunConfig)}


def unknown_key_message(key: str, where: str | None, extra: tuple[str, ...] = ()) -> str:
    """One line naming an unknown key and its close matches, e.g. for `learning_rat`.

    `where` is the YAML file; None means the command line, where keys are spelled `--key`.
    """
    names = [*config_fields(), *extra]
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    if where is None:
        hint = f" (did you mean: {', '.join('--' + c for c in close)}?)" if close else ""
        return f"unknown option --{key}{hint}"
    hint = f" (did you mean: {', '.join(close)}?)" if close else ""
    return f"{where}: unknown config key '{key}'{hint}"


def type_label(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (types.UnionType, typing.Union):
        parts = [a for a in typing.get_args(hint) if a is not type(None)]
        return " or ".join(type_label(p) for p in parts) + " or null"
    if origin is list:
        return "a list of strings"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _coerce(hint: Any, value: Any) -> Any:
    """Convert `value` to `hint` or raise ValueError. Strings are accepted for numbers because YAML 1.1 reads
    `2e-6` (no dot) as a string, and flags always arrive as strings."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        inner = [a for a in args if a is not type(None)]
        # "auto" means null only for the tri-state booleans (bf16), not for strings such as paths.
        nulls = {"null", "none", "auto"} if inner == [bool] else {"null", "none"}
        if value is None or (isinstance(value, str) and value.lower() in nulls):
            if type(None) in args:
                return None
        return _coerce(inner[0], value)
    if origin is Literal:
        if value in typing.get_args(hint):
            return value
        raise ValueError
    if origin is list:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ValueError
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ValueError
    if hint is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            return int(value.strip())
        raise ValueError
    if hint is float:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
        raise ValueError
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError
    raise ValueError


def parse_bool(text: str, where: str) -> bool:
    """A boolean given as a word (true/false, yes/no, on/off, 1/0); ConfigError otherwise."""
    word = text.strip().lower()
    if word not in _TRUE | _FALSE:
        raise ConfigError(f"{where} expects true or false, got {text!r}")
    return word in _TRUE


def coerce_value(key: str, value: Any, where: str) -> Any:
    """Type-check one config value against its field; ConfigError naming `where` and the key on mismatch."""
    fields = config_fields()
    if key not in fields:
        raise ConfigError(unknown_key_message(key, where))
    hint = typing.get_type_hints(SFTRunConfig)[key]
    try:
        return _coerce(hint, value)
    except (ValueError, TypeError):
        raise ConfigError(f"{where}: key '{key}' expects {type_label(hint)}, got {value!r}") from None


def read_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into checked, typed values (unknown keys and bad types raise ConfigError)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys, got {type(raw).__name__}")
    return {str(k): coerce_value(str(k), v, str(path)) for k, v in raw.items()}


def parse_flag_value(key: str, text: str) -> Any:
    """Parse a flag's string the way YAML would (so `null`, `[a, b]` work), then type-check it."""
    import yaml

    try:
        value = yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        value = text
    hint = typing.get_type_hints(SFTRunConfig).get(key)
    # A flag meant as a string stays the literal text (e.g. a path such as `on` or `123`).
    if hint in (str, str | None) and value is not None and not isinstance(value, str):
        value = text
    return coerce_value(key, value, f"--{key}")


def resolve_config(yaml_path: str | Path | None, flags: dict[str, Any]) -> SFTRunConfig:
    """Build the config: dataclass defaults, then the YAML file, then already-typed flags (last wins)."""
    merged: dict[str, Any] = {}
    if yaml_path is not None:
        merged.update(read_yaml_config(yaml_path))
    merged.update(flags)
    return SFTRunConfig(**merged)
