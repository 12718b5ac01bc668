"""`ditto-bench train` as a stage (harness.stage): spec, inputs with identities, lineage, owned files.

The fingerprint covers every config key that changes the trained weights, the base model by content
(harness.identity) and the training data by sha256. Same fingerprint and finished → exit 0 without training;
same and unfinished → train again into the folder (from the last checkpoint with ``resume``); another →
refused unless ``overwrite_output_dir``, which removes only what an earlier training wrote there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness.identity import file_identity, is_identity_file, model_identity
from harness.lineage import producing_stage, with_upstream
from harness.stage import Stage

from .config import SFTRunConfig
from .record import FAILED_NAME, RECORD_NAME

# Config keys that say where or how to run, not what is trained.
_NOT_IN_SPEC = ("output_dir", "resume", "overwrite_output_dir", "dataloader_num_workers", "dataset_num_proc")
_CHECKPOINT = re.compile(r"^checkpoint-\d+$")
_TRAINER_FILES = frozenset({RECORD_NAME, FAILED_NAME, "README.md", "training_args.bin", "runs"})


def train_owned(name: str) -> bool:
    """Names a training writes into its output_dir (model or adapter files, checkpoints, records)."""
    return name in _TRAINER_FILES or is_identity_file(name) or bool(_CHECKPOINT.match(name))


def train_spec(cfg: SFTRunConfig) -> dict[str, Any]:
    spec = cfg.to_dict()
    for key in _NOT_IN_SPEC:
        spec.pop(key, None)
    spec.pop("model", None)  # by content, in inputs
    spec.pop("data", None)
    return spec


def train_inputs(cfg: SFTRunConfig) -> dict[str, Any]:
    """The base model (by content or hub revision) and the data file (sha256), each with its upstream."""
    assert cfg.model is not None and cfg.data is not None
    inputs: dict[str, Any] = {
        "model": with_upstream(model_identity("hf", {"pretrained": cfg.model})),
        "data": with_upstream(file_identity(Path(cfg.data))),
    }
    template = Path(cfg.chat_template)
    if cfg.chat_template not in ("auto", "model", "chatml") and template.is_file():
        inputs["chat_template"] = file_identity(template)
    return inputs


def train_lineage(cfg: SFTRunConfig, inputs: dict[str, Any]) -> dict[str, Any]:
    """Seed, base model, data and — when generate made the data — the supervisor that made it."""
    assert cfg.data is not None
    out: dict[str, Any] = {
        "seed": cfg.seed,
        "base_model": inputs["model"]["id"],
        "data": {"path": inputs["data"]["path"], "sha256": inputs["data"]["sha256"]},
    }
    found = producing_stage(Path(cfg.data))
    if found is not None and found[1].kind == "generate":
        where, rec = found
        out["data_stage"] = {"kind": rec.kind, "dir": str(where.resolve()), "fingerprint": rec.fingerprint}
        out["supervisor"] = (rec.lineage or {}).get("supervisor") or rec.spec.get("supervisor")
    return out


def train_stage(cfg: SFTRunConfig) -> Stage:
    assert cfg.output_dir is not None
    inputs = train_inputs(cfg)
    return Stage(
        Path(cfg.output_dir), "train", train_spec(cfg), inputs, flag="output_dir", owned=train_owned,
        record_names=(FAILED_NAME,), lineage=train_lineage(cfg, inputs), memoise_outputs=True,
        overwrite_flag="--overwrite_output_dir true",
    )


def record_written_files(stage: Stage) -> None:
    """Add every file the training left in output_dir (not the user's, not our lock) to the outputs."""
    rec = stage.record
    if rec is None or not stage.dir.is_dir():
        return
    skip = {*rec.foreign, "stage.json", stage.lock.lock_path.name}
    stage.add_outputs(*sorted(p.name for p in stage.dir.iterdir() if p.name not in skip))
