"""The sweep file (intent only) and the cluster profile (facts about where it runs).

Every key of both is documented in ``docs/sweeps.md``. Relative paths in a file are resolved against that
file's folder, so a sweep file and its inputs can travel together; ``--out`` on the command line is
relative to the working directory. Bad input raises :class:`ConfigError` with one line naming the file and
the key (``sweep.yaml: supervisors.qwen-72b.gpus: expected an integer >= 0, got 'four'``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

SWEEP_KEYS = (
    "out",
    "knowledge",
    "test_data",
    "tasks",
    "judge",
    "supervisors",
    "seeds",
    "generate",
    "train",
    "eval",
    "pairs",
)
SUPERVISOR_KEYS = ("model", "model_args", "gpus", "cpus", "time_min")
SEED_KEYS = (
    "pretrained",
    "gpus",
    "cpus",
    "time_min",
    "eval_gpus",
    "eval_model_args",
    "accelerate_config",
)
PROFILE_KEYS = ("executor", "gpus", "max_parallel", "env", "ray", "slurm")
RAY_KEYS = ("address", "num_cpus", "num_gpus", "runtime_env")
SLURM_KEYS = (
    "cluster",
    "folder",
    "partition",
    "account",
    "qos",
    "time_min",
    "gpus_per_node",
    "cpus_per_gpu",
    "mem_gb",
    "constraint",
    "setup",
    "additional_parameters",
    "poll_s",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _where(file: Path, key: str) -> str:
    return f"{file.name}: {key}"


def load_yaml(path: Path, what: str) -> dict[str, Any]:
    """A YAML mapping from ``path``; a one-line ConfigError for a missing file, bad YAML or a non-mapping."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror or exc}") from None
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{line}: not valid YAML: {problem}") from None
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(obj).__name__}")
    return obj


def _unknown(file: Path, obj: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    import difflib

    for key in obj:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(allowed)})"
            raise ConfigError(f"{_where(file, prefix + str(key))}: unknown key{hint}")


def _int(file: Path, key: str, value: Any, low: int = 0) -> int:
    if type(value) is not int or value < low:
        raise ConfigError(f"{_where(file, key)}: expected an integer >= {low}, got {value!r}")
    return value


def _str(file: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{_where(file, key)}: expected a non-empty string, got {value!r}")
    return value


def _flags(file: Path, key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{_where(file, key)}: expected a mapping of flag names to values")
    for k, v in value.items():
        if not isinstance(k, str) or not _NAME.match(k.lstrip("-")):
            raise ConfigError(f"{_where(file, key)}: {k!r} is not a flag name")
        if isinstance(v, dict | list):
            raise ConfigError(
                f"{_where(file, f'{key}.{k}')}: expected a scalar value, got {type(v).__name__}"
            )
    return {k.lstrip("-"): v for k, v in value.items()}


def _config_file(file: Path, key: str, value: Any) -> Path:
    """A file next to the sweep file, else a name of ``ditto_train/configs`` (sft_paper.yaml, fsdp.yaml)."""
    cfg = resolve_path(file.parent, _str(file, key, value))
    if not cfg.is_file():
        packaged = Path(__file__).resolve().parents[1] / "configs" / str(value)
        if not packaged.is_file():
            raise ConfigError(f"{_where(file, key)}: {cfg} is not a file (nor one of ditto_train/configs)")
        cfg = packaged
    return cfg.resolve()


def resolve_path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


@dataclass(frozen=True)
class Supervisor:
    name: str
    model: str
    model_args: str | None
    gpus: int = 0
    cpus: int = 1
    time_min: int | None = None


@dataclass(frozen=True)
class Seed:
    name: str
    pretrained: str
    gpus: int = 0
    cpus: int = 1
    time_min: int | None = None
    eval_gpus: int | None = None
    eval_model_args: str | None = None
    accelerate_config: str | None = None

    @property
    def gpus_for_eval(self) -> int:
        return self.gpus if self.eval_gpus is None else self.eval_gpus


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file."""

    path: Path
    out: Path | None
    knowledge: Path
    test_data: Path | None
    tasks: tuple[str, ...]
    judge: dict[str, Any]
    supervisors: dict[str, Supervisor]
    seeds: dict[str, Seed]
    generate: dict[str, Any]
    train: dict[str, Any]
    eval: dict[str, Any]
    pairs: tuple[tuple[str, str], ...]


def _resources(file: Path, key: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, low in (("gpus", 0), ("cpus", 1), ("time_min", 1), ("eval_gpus", 0)):
        if name in obj and obj[name] is not None:
            out[name] = _int(file, f"{key}.{name}", obj[name], low)
    return out


def _supervisors(file: Path, raw: Any) -> dict[str, Supervisor]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{_where(file, 'supervisors')}: expected a mapping of names to supervisors")
    out: dict[str, Supervisor] = {}
    for name, entry in raw.items():
        key = f"supervisors.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{_where(file, key)}: names are letters, digits, '.', '_' and '-'")
        if not isinstance(entry, dict):
            raise ConfigError(f"{_where(file, key)}: expected a mapping with model and model_args")
        _unknown(file, entry, SUPERVISOR_KEYS, key + ".")
        args = entry.get("model_args")
        if args is not None and not isinstance(args, str):
            raise ConfigError(f"{_where(file, key + '.model_args')}: expected a k=v,... string")
        out[name] = Supervisor(
            name=name,
            model=_str(file, key + ".model", entry.get("model")),
            model_args=args,
            **_resources(file, key, entry),
        )
    return out


def _seeds(file: Path, raw: Any) -> dict[str, Seed]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{_where(file, 'seeds')}: expected a mapping of names to seed models")
    out: dict[str, Seed] = {}
    for name, entry in raw.items():
        key = f"seeds.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{_where(file, key)}: names are letters, digits, '.', '_' and '-'")
        if not isinstance(entry, dict):
            raise ConfigError(f"{_where(file, key)}: expected a mapping with pretrained")
        _unknown(file, entry, SEED_KEYS, key + ".")
        pretrained = _str(file, key + ".pretrained", entry.get("pretrained"))
        local = resolve_path(file.parent, pretrained)
        if not Path(pretrained).is_absolute() and local.exists():
            pretrained = str(local.resolve())  # a folder next to the sweep file; else a hub name
        extra: dict[str, Any] = {}
        if entry.get("eval_model_args") is not None:
            extra["eval_model_args"] = _str(file, key + ".eval_model_args", entry["eval_model_args"])
        if entry.get("accelerate_config") is not None:
            extra["accelerate_config"] = str(
                _config_file(file, key + ".accelerate_config", entry["accelerate_config"])
            )
        out[name] = Seed(name=name, pretrained=pretrained, **_resources(file, key, entry), **extra)
    return out


def _pairs(file: Path, raw: Any, seeds: Mapping[str, Seed], sups: Mapping[str, Supervisor]) -> tuple:
    if raw is None or raw == "all":
        return tuple((s, v) for s in seeds for v in sups)
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{_where(file, 'pairs')}: expected 'all' or a list of [seed, supervisor]")
    out: list[tuple[str, str]] = []
    for i, pair in enumerate(raw):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ConfigError(f"{_where(file, f'pairs[{i}]')}: expected [seed, supervisor], got {pair!r}")
        seed, sup = pair
        if seed not in seeds:
            raise ConfigError(f"{_where(file, f'pairs[{i}]')}: {seed!r} is not one of seeds")
        if sup not in sups:
            raise ConfigError(f"{_where(file, f'pairs[{i}]')}: {sup!r} is not one of supervisors")
        if (seed, sup) not in out:
            out.append((seed, sup))
    return tuple(out)


def load_sweep(path: Path) -> SweepSpec:
    """Read and validate a sweep file."""
    path = Path(path)
    raw = load_yaml(path, "sweep file")
    _unknown(path, raw, SWEEP_KEYS, "")
    base = path.parent
    for key in ("knowledge", "supervisors", "seeds"):
        if key not in raw:
            raise ConfigError(f"{_where(path, key)}: required")
    knowledge = resolve_path(base, _str(path, "knowledge", raw["knowledge"]))
    if not knowledge.is_file():
        raise ConfigError(f"{_where(path, 'knowledge')}: {knowledge} is not a file")
    test_data = None
    if raw.get("test_data") is not None:
        test_data = resolve_path(base, _str(path, "test_data", raw["test_data"]))
        if not test_data.is_file():
            raise ConfigError(f"{_where(path, 'test_data')}: {test_data} is not a file")
    tasks_raw = raw.get("tasks", ["wikiroleeval"])
    if isinstance(tasks_raw, str):
        tasks_raw = [t.strip() for t in tasks_raw.split(",") if t.strip()]
    if not isinstance(tasks_raw, list) or not tasks_raw or not all(isinstance(t, str) for t in tasks_raw):
        raise ConfigError(f"{_where(path, 'tasks')}: expected a list of task names")
    from harness.task import TASKS

    for t in tasks_raw:
        if t not in TASKS:
            raise ConfigError(f"{_where(path, 'tasks')}: unknown task {t!r} (known: {', '.join(TASKS)})")
    if "wikiroleeval" not in tasks_raw:
        raise ConfigError(f"{_where(path, 'tasks')}: the grid needs wikiroleeval (its three metrics)")
    train = _flags(path, "train", raw.get("train"))
    if "config" in train:
        train["config"] = str(_config_file(path, "train.config", train["config"]))
    for reserved, key in (("model", "train"), ("data", "train"), ("output_dir", "train")):
        if reserved in train:
            raise ConfigError(f"{_where(path, f'{key}.{reserved}')}: set by the sweep for each pair")
    generate = _flags(path, "generate", raw.get("generate"))
    for reserved in ("supervisor", "supervisor_args", "knowledge", "out", "split"):
        if reserved in generate:
            raise ConfigError(f"{_where(path, f'generate.{reserved}')}: set by the sweep for each supervisor")
    ev = _flags(path, "eval", raw.get("eval"))
    for reserved in ("tasks", "output_path", "data_path", "inject_profile"):
        if reserved in ev:
            raise ConfigError(f"{_where(path, f'eval.{reserved}')}: set by the sweep for each evaluation")
    judge = _flags(path, "judge", raw.get("judge"))
    supervisors = _supervisors(path, raw["supervisors"])
    seeds = _seeds(path, raw["seeds"])
    out = raw.get("out")
    return SweepSpec(
        path=path,
        out=resolve_path(base, _str(path, "out", out)) if out is not None else None,
        knowledge=knowledge.resolve(),
        test_data=test_data.resolve() if test_data else None,
        tasks=tuple(dict.fromkeys(tasks_raw)),
        judge=judge,
        supervisors=supervisors,
        seeds=seeds,
        generate=generate,
        train=train,
        eval=ev,
        pairs=_pairs(path, raw.get("pairs"), seeds, supervisors),
    )


@dataclass(frozen=True)
class Profile:
    """Where the sweep runs: executor defaults, GPUs of this machine, Ray address, Slurm facts."""

    path: Path | None = None
    executor: str | None = None
    gpus: int | None = None
    max_parallel: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    ray: dict[str, Any] = field(default_factory=dict)
    slurm: dict[str, Any] = field(default_factory=dict)


def load_profile(path: Path | None) -> Profile:
    """Read and validate a profile (``None``: the empty profile)."""
    if path is None:
        return Profile()
    path = Path(path)
    raw = load_yaml(path, "--profile")
    _unknown(path, raw, PROFILE_KEYS, "")
    executor = raw.get("executor")
    if executor is not None and executor not in ("local", "ray", "slurm"):
        raise ConfigError(f"{_where(path, 'executor')}: expected local, ray or slurm, got {executor!r}")
    env = raw.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) for k in env):
        raise ConfigError(f"{_where(path, 'env')}: expected a mapping of variable names to values")
    ray = raw.get("ray") or {}
    slurm = raw.get("slurm") or {}
    for key, obj, allowed in (("ray", ray, RAY_KEYS), ("slurm", slurm, SLURM_KEYS)):
        if not isinstance(obj, dict):
            raise ConfigError(f"{_where(path, key)}: expected a mapping")
        _unknown(path, obj, allowed, key + ".")
    if "cluster" in slurm and slurm["cluster"] not in ("slurm", "local", "debug"):
        raise ConfigError(f"{_where(path, 'slurm.cluster')}: expected slurm, local or debug")
    return Profile(
        path=path,
        executor=executor,
        gpus=_int(path, "gpus", raw["gpus"]) if raw.get("gpus") is not None else None,
        max_parallel=_int(path, "max_parallel", raw["max_parallel"], 1) if raw.get("max_parallel") else None,
        env={k: str(v) for k, v in env.items()},
        ray=dict(ray),
        slurm=dict(slurm),
    )
