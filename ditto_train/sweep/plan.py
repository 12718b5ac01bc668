"""The sweep as stages: what each one runs, what it needs, where it writes and its plan fingerprint.

Per supervisor: ``generate/SUP`` (the train split, shared by every seed) and ``supervise/SUP`` (the
supervisor evaluated with the character's profile injected). Per seed: ``baseline/SEED``. Per pair:
``train/SEED+SUP`` and ``eval/SEED+SUP``. A stage's directory is ``OUT/<name>``.

A stage's command is the standalone command's own argument list, with two placeholders resolved only when
it is launched (so the fingerprint does not depend on where ``out`` lives): ``{out}`` (the sweep's output
directory) and ``{trained:train/SEED+SUP}`` (the ``eval_model_args`` the training recorded). The plan
fingerprint of a stage is the sha256 of its command, its launcher, the content hashes of the files it reads
from outside the sweep, and the plan fingerprints of its input stages: change anything upstream and every
stage downstream of it is planned again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ditto_train.sweep.spec import Seed, Supervisor, SweepSpec
from harness.errors import ConfigError
from harness.jsonl import file_sha256

KINDS = ("generate", "supervise", "baseline", "train", "eval")
OUT = "{out}"
PLAN_VERSION = 1


@dataclass(frozen=True)
class Stage:
    """One node of the sweep's DAG."""

    name: str
    kind: str
    args: tuple[str, ...]
    """``ditto-bench`` arguments (subcommand first), with placeholders."""
    deps: tuple[str, ...]
    gpus: int
    cpus: int
    time_min: int | None
    seed: str | None
    supervisor: str | None
    fingerprint: str = ""
    launcher: tuple[str, ...] = field(default=())
    """Empty: ``python -m harness.cli``; else e.g. ``accelerate launch --num_processes 8 -m ...``."""

    def dir(self, out: Path) -> Path:
        return out / self.name


def pair_name(seed: str, supervisor: str) -> str:
    return f"{seed}+{supervisor}"


def _flag_args(flags: Mapping[str, Any], *, bool_values: bool = False) -> list[str]:
    """``{k: v}`` as ``--k v``, by key; ``True`` is a bare ``--k`` (``--k true`` with ``bool_values``)."""
    out: list[str] = []
    for key, value in sorted(flags.items()):  # key order in the file must not change a fingerprint
        if value is None:
            continue
        if isinstance(value, bool):
            if bool_values:
                out += [f"--{key}", "true" if value else "false"]
            elif value:
                out.append(f"--{key}")
            continue
        out += [f"--{key}", str(value)]
    return out


def _judge_args(judge: Mapping[str, Any]) -> list[str]:
    named = {(k if k.startswith("judge_") else f"judge_{k}"): v for k, v in judge.items()}
    return _flag_args(named)


def _join_args(*parts: str | None) -> str:
    return ",".join(p.strip(",") for p in parts if p)


def _chat_url(model: str, model_args: str | None) -> str | None:
    """``run``'s lm-eval API backends post to the full ``…/chat/completions`` URL (generate takes either)."""
    if model_args is None or model != "local-chat-completions":
        return model_args
    parts = []
    for part in model_args.split(","):
        key, _, value = part.partition("=")
        if key.strip() == "base_url" and not value.rstrip("/").endswith("/chat/completions"):
            part = f"{key}={value.rstrip('/')}/chat/completions"
        parts.append(part)
    return ",".join(parts)


class _Builder:
    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec
        ev = dict(spec.eval)
        self.eval_model = str(ev.pop("model", "hf"))
        self.eval_model_args = ev.pop("model_args", None)
        self.eval_flags = _flag_args(ev)
        self.judge = _judge_args(spec.judge)
        data: list[str] = []
        if spec.test_data is not None:
            data = [
                "--data_path",
                f"wikiroleeval={spec.test_data}" if len(spec.tasks) > 1 else str(spec.test_data),
            ]
        self.run_common = ["--tasks", ",".join(spec.tasks), *data]
        self.stages: dict[str, Stage] = {}
        hashes = {"knowledge": file_sha256(spec.knowledge)}
        if spec.test_data is not None:
            hashes["test_data"] = file_sha256(spec.test_data)
        if "config" in spec.train:
            hashes["train_config"] = file_sha256(Path(spec.train["config"]))
        self.hashes = hashes

    def add(self, stage: Stage, reads: Iterable[str]) -> None:
        blob = {
            "plan_version": PLAN_VERSION,
            "kind": stage.kind,
            "args": list(stage.args),
            "launcher": list(stage.launcher),
            "files": {k: self.hashes[k] for k in reads if k in self.hashes},
            "inputs": {d: self.stages[d].fingerprint for d in stage.deps},
        }
        fp = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()
        self.stages[stage.name] = Stage(**{**stage.__dict__, "fingerprint": fp})

    def supervisor(self, sup: Supervisor) -> None:
        gen = ["generate", "--supervisor", sup.model]
        if sup.model_args:
            gen += ["--supervisor_args", sup.model_args]
        gen += [
            "--knowledge",
            str(self.spec.knowledge),
            "--out",
            f"{OUT}/generate/{sup.name}",
            "--split",
            "train",
        ]
        gen += _flag_args(self.spec.generate)
        res: dict[str, Any] = {"gpus": sup.gpus, "cpus": sup.cpus, "time_min": sup.time_min}
        self.add(
            Stage(f"generate/{sup.name}", "generate", tuple(gen), (), seed=None, supervisor=sup.name, **res),
            ["knowledge"],
        )
        run = ["run", "--model", sup.model]
        args = _chat_url(sup.model, sup.model_args)
        if args:
            run += ["--model_args", args]
        run += [
            *self.run_common,
            "--inject_profile",
            str(self.spec.knowledge),
            "--output_path",
            f"{OUT}/supervise/{sup.name}",
            *self.judge,
            *self.eval_flags,
        ]
        self.add(
            Stage(
                f"supervise/{sup.name}", "supervise", tuple(run), (), seed=None, supervisor=sup.name, **res
            ),
            ["knowledge", "test_data"],
        )

    def _eval_args(self, model_args: str, out_dir: str, seed: Seed) -> tuple[str, ...]:
        return (
            "run",
            "--model",
            self.eval_model,
            "--model_args",
            _join_args(model_args, self.eval_model_args, seed.eval_model_args),
            *self.run_common,
            "--output_path",
            out_dir,
            *self.judge,
            *self.eval_flags,
        )

    def seed(self, seed: Seed) -> None:
        res: dict[str, Any] = {"gpus": seed.gpus_for_eval, "cpus": seed.cpus, "time_min": seed.time_min}
        self.add(
            Stage(
                f"baseline/{seed.name}",
                "baseline",
                self._eval_args(f"pretrained={seed.pretrained}", f"{OUT}/baseline/{seed.name}", seed),
                (),
                seed=seed.name,
                supervisor=None,
                **res,
            ),
            ["test_data"],
        )

    def pair(self, seed: Seed, sup: Supervisor) -> None:
        pair = pair_name(seed.name, sup.name)
        train = dict(self.spec.train)
        cfg = train.pop("config", None)
        args = ["train"] + (["--config", str(cfg)] if cfg else [])
        args += [
            "--model",
            seed.pretrained,
            "--data",
            f"{OUT}/generate/{sup.name}/train.jsonl",
            "--output_dir",
            f"{OUT}/train/{pair}",
            *_flag_args(train, bool_values=True),
        ]
        launcher: tuple[str, ...] = ()
        if seed.gpus > 1:  # data-parallel / ZeRO training: one process per GPU, as docs/training.md runs it
            config = ("--config_file", seed.accelerate_config) if seed.accelerate_config else ()
            launcher = ("accelerate", "launch", *config, "--num_processes", str(seed.gpus))
            launcher += ("-m", "ditto_train.sft.cli")
        res: dict[str, Any] = {"gpus": seed.gpus, "cpus": seed.cpus, "time_min": seed.time_min}
        self.add(
            Stage(
                f"train/{pair}",
                "train",
                tuple(args),
                (f"generate/{sup.name}",),
                seed=seed.name,
                supervisor=sup.name,
                launcher=launcher,
                **res,
            ),
            ["train_config"],
        )
        res["gpus"] = seed.gpus_for_eval
        self.add(
            Stage(
                f"eval/{pair}",
                "eval",
                self._eval_args(f"{{trained:train/{pair}}}", f"{OUT}/eval/{pair}", seed),
                (f"train/{pair}",),
                seed=seed.name,
                supervisor=sup.name,
                **res,
            ),
            ["test_data"],
        )


def build_plan(spec: SweepSpec) -> dict[str, Stage]:
    """Every stage of the sweep, in a topological order (inputs before the stages that read them)."""
    b = _Builder(spec)
    used_sups = {sup for _, sup in spec.pairs}
    used_seeds = {seed for seed, _ in spec.pairs}
    for name, sup in spec.supervisors.items():
        if name in used_sups:
            b.supervisor(sup)
    for name, seed in spec.seeds.items():
        if name in used_seeds:
            b.seed(seed)
    for seed_name, sup_name in spec.pairs:
        b.pair(spec.seeds[seed_name], spec.supervisors[sup_name])
    return b.stages


def select(plan: Mapping[str, Stage], pattern: str | None) -> set[str]:
    """Names of the stages ``--only PATTERN`` selects (comma-separated globs on stage names or kinds)."""
    import fnmatch

    if not pattern:
        return set(plan)
    pats = [p.strip() for p in pattern.split(",") if p.strip()]
    chosen = {n for n, st in plan.items() for p in pats if fnmatch.fnmatchcase(n, p) or st.kind == p}
    if not chosen:
        raise ConfigError(f"--only {pattern!r}: matches no stage (names look like {next(iter(plan))})")
    return chosen


def dependants(plan: Mapping[str, Stage], name: str) -> set[str]:
    """Every stage that needs ``name``, directly or through others."""
    out: set[str] = set()
    frontier = [name]
    while frontier:
        cur = frontier.pop()
        for st in plan.values():
            if cur in st.deps and st.name not in out:
                out.add(st.name)
                frontier.append(st.name)
    return out
