"""Checks of flags and ``k=v`` arguments that run before any directory, model or request is created.

Every problem is one :class:`ConfigError` line naming the flag (exit 2); a key that is merely unknown is a
warning with close matches, because backends accept extra keyword arguments we cannot enumerate.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

Warn = Callable[[str], None]

# --gen_kwargs: the value type each known key must have (bool before int: bool is an int subclass).
GEN_KWARG_TYPES: dict[str, tuple[type, ...]] = {
    "max_gen_toks": (int,),
    "max_tokens": (int,),
    "temperature": (int, float),
    "top_p": (int, float),
    "top_k": (int,),
    "min_p": (int, float),
    "do_sample": (bool,),
    "repetition_penalty": (int, float),
    "presence_penalty": (int, float),
    "frequency_penalty": (int, float),
    "seed": (int,),
    "until": (str, list),
    "num_beams": (int,),
}
_GEN_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "max_gen_toks": (lambda v: v >= 1, ">= 1"),
    "max_tokens": (lambda v: v >= 1, ">= 1"),
    "temperature": (lambda v: v >= 0, ">= 0"),
    "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "min_p": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "repetition_penalty": (lambda v: v > 0, "> 0"),
    "num_beams": (lambda v: v >= 1, ">= 1"),
}
# --model_args keys whose value type we know, whatever the backend.
_MODEL_ARG_INTS = {"num_concurrent": 1, "max_retries": 0, "max_length": 1, "max_gen_toks": 1,
                   "max_batch_size": 1, "seed": None}
_MODEL_ARG_POSITIVE = ("timeout",)
_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list"}


def _type_name(types: tuple[type, ...]) -> str:
    if types == (int, float):
        return "a number"
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def check_gen_kwargs(gen_kwargs: Mapping[str, Any], warn: Warn, flag: str = "--gen_kwargs") -> None:
    """Value types and ranges of known generation keys; unknown keys are warned about with close matches."""
    for key, value in gen_kwargs.items():
        types = GEN_KWARG_TYPES.get(key)
        if types is None:
            close = difflib.get_close_matches(key, GEN_KWARG_TYPES, n=2)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            warn(f"{flag}: {key!r} is not a generation key ditto-bench knows; passed on as is{hint}")
            continue
        if not _is(value, types):
            raise ConfigError(f"{flag}: {key}={value!r}: expected {_type_name(types)}")
        rng = _GEN_RANGES.get(key)
        if rng is not None and not rng[0](value):
            raise ConfigError(f"{flag}: {key}={value!r}: must be {rng[1]}")


def accepted_keys(cls: Any) -> set[str]:
    """Keyword arguments the ``__init__`` of ``cls`` or of any base class names (``**kwargs`` aside)."""
    keys: set[str] = set()
    for klass in getattr(cls, "__mro__", (cls,)):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        keys |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    keys.discard("self")
    return keys


def check_model_args(
    model: str, args: Mapping[str, Any], known: set[str] | None, warn: Warn, flag: str = "--model_args"
) -> None:
    """Value types of the integer/timeout keys; keys ``known`` does not list are warned about."""
    for key, minimum in _MODEL_ARG_INTS.items():
        if key in args:
            value = args[key]
            if not _is(value, (int,)):
                raise ConfigError(f"{flag}: {key}={value!r}: expected an integer")
            if minimum is not None and value < minimum:
                raise ConfigError(f"{flag}: {key}={value!r}: must be >= {minimum}")
    if "batch_size" in args:
        bs = args["batch_size"]
        ok = _is(bs, (int,)) and bs >= 1 or isinstance(bs, str) and bs.split(":")[0] == "auto"
        if not ok:
            raise ConfigError(f"{flag}: batch_size={bs!r}: expected an integer >= 1 or 'auto'")
    for key in _MODEL_ARG_POSITIVE:
        if key in args and (not _is(args[key], (int, float)) or args[key] <= 0):
            raise ConfigError(f"{flag}: {key}={args[key]!r}: expected a number > 0")
    if known:
        for key in args:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                warn(f"{flag}: {key!r} is not an argument --model {model} names{hint}")


def looks_like_path(value: str) -> bool:
    """A ``pretrained=`` value meant as a local folder rather than a hub id (``org/name``)."""
    text = str(value)
    return (
        text.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or text in (".", "..")
        or text.endswith(("/", "\\"))
        or text.count("/") > 1
        or (os.sep != "/" and os.sep in text)
    )


def check_local_model(args: Mapping[str, Any], flag: str = "--model_args") -> None:
    """``pretrained=``/``peft=`` that look like paths must exist; offline, a hub id must be in the cache."""
    for key in ("pretrained", "peft", "tokenizer"):
        value = args.get(key)
        if not isinstance(value, str) or not value:
            continue
        if looks_like_path(value) or Path(value).expanduser().exists():
            path = Path(value).expanduser()
            if not path.is_dir():
                raise ConfigError(f"{flag}: {key}={value}: no such directory")
            continue
        if _hub_offline() and not _in_hub_cache(value, args.get("revision")):
            raise ConfigError(
                f"{flag}: {key}={value}: not a local directory and not in the Hugging Face cache, and "
                "HF_HUB_OFFLINE=1 forbids downloading it"
            )


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _in_hub_cache(repo_id: str, revision: Any) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return True
    rev = str(revision) if isinstance(revision, str) and revision else None
    found = try_to_load_from_cache(repo_id, "config.json", revision=rev)
    return isinstance(found, str)


def check_output_path(path: Path, flag: str = "--output_path") -> None:
    """The run directory must be a directory (or not exist yet) somewhere we can write; nothing is created."""
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"{flag} {p}: is a file, not a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise ConfigError(f"{flag} {p}: directory is not writable")
        return
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{flag} {p}: {parent} is a file, so the directory cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {p}: cannot create it ({parent} is not writable)")


def at_least(value: float | None, minimum: float, flag: str, *, strict: bool = False) -> None:
    """``value`` (when given) must be ``>= minimum`` (``> minimum`` with ``strict``)."""
    if value is None:
        return
    bad = value <= minimum if strict else value < minimum
    if bad:
        raise ConfigError(f"{flag} must be {'>' if strict else '>='} {minimum:g}, got {value:g}")
