"""``--include_path DIR``: user task modules, registered by name next to the built-in tasks.

Every ``*.py`` file in DIR (not starting with ``_``) is imported as a module; it registers its tasks with a
module-level ``DITTO_TASKS = {"name": factory}``, where ``factory(**options)`` returns an object providing the
:class:`harness.task.Task` protocol (options: ``shuffle_candidates``, ``seed``). See docs/tasks.md.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path

from harness.errors import ConfigError
from harness.task import TASKS

_loaded: dict[Path, list[str]] = {}


def include_tasks(paths: Iterable[Path | str]) -> list[str]:
    """Import the task modules of each folder and register their tasks; returns the names registered."""
    names: list[str] = []
    for raw in paths:
        folder = Path(raw).expanduser().resolve()
        if folder in _loaded:
            names += _loaded[folder]
            continue
        if not folder.is_dir():
            raise ConfigError(f"--include_path {raw}: no such directory")
        found: list[str] = []
        for file in sorted(folder.glob("*.py")):
            if file.name.startswith("_"):
                continue
            found += _register(file)
        if not found:
            raise ConfigError(f"--include_path {raw}: no module in it defines DITTO_TASKS")
        _loaded[folder] = found
        names += found
    return names


def _register(file: Path) -> list[str]:
    digest = hashlib.sha256(str(file).encode("utf-8")).hexdigest()[:10]
    mod_name = f"ditto_user_tasks_{file.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"--include_path: cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a user's module: say which file and why, in one line
        del sys.modules[mod_name]
        raise ConfigError(f"--include_path: {file}: import failed: {type(exc).__name__}: {exc}") from exc
    tasks = getattr(module, "DITTO_TASKS", None)
    if tasks is None:
        return []
    if not isinstance(tasks, dict) or not all(isinstance(k, str) and callable(v) for k, v in tasks.items()):
        raise ConfigError(f"--include_path: {file}: DITTO_TASKS must map task names to factories")
    out: list[str] = []
    for name, factory in tasks.items():
        if name in TASKS and not TASKS[name].startswith(mod_name + ":"):
            raise ConfigError(f"--include_path: {file}: task {name!r} is already registered ({TASKS[name]})")
        attr = f"_ditto_factory_{len(out)}"
        setattr(module, attr, factory)
        TASKS[name] = f"{mod_name}:{attr}"
        out.append(name)
    return out
