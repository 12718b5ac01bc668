"""`ditto-bench train`: supervised fine-tuning of a seed model on `{"messages": [...]}` dialogues.

    ditto-bench train --config FILE [--KEY VALUE ...] [--dry_run]
    python -m ditto_train.sft.cli ...                 (same; the form `accelerate launch -m` uses)

Precedence: dataclass defaults (the paper's), then the YAML file, then `--KEY VALUE` flags, one per config key
(`--KEY=VALUE` also works; a bare boolean flag means true; lists are comma-separated; `null` clears).
Bad flags, config or data exit with status 2 and one line on stderr, before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Any

from harness.errors import ConfigError, DittoError
from harness.stage import Stage, read_stage

from .config import (
    SFTRunConfig,
    config_fields,
    parse_bool,
    parse_flag_value,
    resolve_config,
    type_label,
    unknown_key_message,
)
from .prepare import Prepared, is_main_process, prepare
from .record import read_record
from .stage import record_written_files, train_stage
from .train import run_training

PROG = "ditto-bench train"
_OWN_FLAGS = ("config", "dry_run", "help")


def usage() -> str:
    """Help text built from the config fields' own help strings and defaults."""
    hints = typing.get_type_hints(SFTRunConfig)
    lines = [
        f"usage: {PROG} --config FILE [--KEY VALUE ...] [--dry_run]",
        "",
        "Fine-tune a seed model on simulated dialogues (assistant-only loss) with TRL.",
        "Precedence: defaults < --config YAML < --KEY VALUE flags. See docs/training.md.",
        "",
        "  --config FILE          YAML file of config keys",
        "  --dry_run              validate config and data, print the resolved config and counts, exit",
        "  -h, --help             show this help",
        "",
        "config keys (--KEY VALUE):",
    ]
    for name, f in config_fields().items():
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kind = type_label(hints[name])
        lines.append(f"  --{name} ({kind}, default {default!r})")
        lines.append(f"      {f.metadata.get('help', '')}")
    return "\n".join(lines)


def parse_argv(argv: list[str]) -> tuple[str | None, bool, bool, dict[str, Any]]:
    """Split argv into (config path, dry_run, help, typed overrides); ConfigError on anything unknown."""
    fields = config_fields()
    hints = typing.get_type_hints(SFTRunConfig)
    config_path: str | None = None
    dry_run = want_help = False
    flags: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in ("-h", "--help"):
            want_help = True
            i += 1
            continue
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"unexpected argument {token!r}; options look like --key value")
        name, has_eq, value = token[2:].partition("=")
        name = name.replace("-", "_")
        takes_bare = name == "dry_run" or (name in fields and hints[name] in (bool, bool | None))
        if not has_eq:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and not nxt.startswith("--"):
                value = nxt
                i += 1
            elif takes_bare:
                value = "true"
            elif name in fields or name == "config":
                raise ConfigError(f"--{name} needs a value")
        i += 1
        if name == "config":
            config_path = value
        elif name == "dry_run":
            dry_run = parse_bool(value, "--dry_run")
        elif name not in fields:
            raise ConfigError(unknown_key_message(name, None, extra=_OWN_FLAGS))
        else:
            flags[name] = parse_flag_value(name, value)
    return config_path, dry_run, want_help, flags


def _print_summary(prep: Prepared, *, dry_run: bool) -> None:
    import yaml
    from rich.console import Console
    from rich.table import Table

    out = Console(soft_wrap=True)
    if dry_run:
        out.print("# resolved config", markup=False)
        out.print(
            yaml.safe_dump(prep.cfg.to_dict(), sort_keys=False, allow_unicode=True).rstrip(), markup=False
        )
    table = Table(title="SFT plan" + (" (dry run: nothing trained or written)" if dry_run else ""))
    table.add_column("item")
    table.add_column("value", overflow="fold")
    for key, value in prep.summary().items():
        table.add_row(key, str(value))
    out.print(table)
    err = Console(stderr=True, soft_wrap=True)
    for note in prep.warnings:
        err.print(f"warning: {note}", markup=False)


def _one_line(message: str) -> str:
    return " ".join(message.split())


class _AlreadyTrained(Exception):
    """The stage record says this exact training is finished: nothing to do."""


def main(argv: list[str] | None = None) -> int:
    """Entry point for `ditto-bench train`; returns 0 (ok), 2 (bad config or data) or 1 (other errors)."""
    args = list(sys.argv[1:] if argv is None else argv)
    stage: Stage | None = None
    try:
        config_path, dry_run, want_help, flags = parse_argv(args)
        if want_help:
            print(usage())
            return 0
        cfg = resolve_config(config_path, flags)
        main_proc = is_main_process()

        def check_stage() -> None:
            # Once the data is valid and before the tokenizer loads: a finished training is a no-op, a
            # refused directory is said at once. Nothing is written until the whole preparation passed.
            nonlocal stage
            stage = train_stage(cfg)
            if main_proc and stage.peek(overwrite=cfg.overwrite_output_dir) == "done":
                raise _AlreadyTrained
            if not main_proc and _finished(stage):  # other ranks never lock: the main process holds it
                raise _AlreadyTrained

        prep = prepare(cfg, after_data=None if dry_run else check_stage)
        if main_proc:  # under accelerate/torchrun every rank runs this; one summary is enough
            _print_summary(prep, dry_run=dry_run)
        if dry_run:
            return 0
        assert stage is not None
        if main_proc and stage.open(overwrite=cfg.overwrite_output_dir) == "done":
            raise _AlreadyTrained
        if not main_proc and _finished(stage):  # other ranks follow the main process's record, unlocked
            raise _AlreadyTrained
        record = _train(prep, stage, main_proc)
    except _AlreadyTrained:
        if is_main_process():
            _print_done(stage)
        return 0
    except DittoError as exc:
        print(f"{PROG}: error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    finally:
        if stage is not None:
            stage.close()
    if not is_main_process():
        return 0
    output = record["output"]
    print(
        f"saved {output['kind']} to {output['dir']} (final loss {record['final_loss']}); evaluate with:\n"
        f"  ditto-bench run --model hf --model_args {output['eval_model_args']} ..."
    )
    return 0


def _finished(stage: Stage) -> bool:
    rec = read_stage(stage.root)
    return rec is not None and rec.is_complete(stage.fingerprint)


def _train(prep: Prepared, stage: Stage, main_proc: bool) -> dict[str, Any]:
    """Train under the stage: its outputs are whatever the training left, its status how it ended."""
    try:
        record = run_training(prep, extra={"lineage": stage.lineage, "stage_fingerprint": stage.fingerprint})
    except BaseException as exc:
        if main_proc and stage.record is not None:
            record_written_files(stage)
            stage.finish("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                         error=f"{type(exc).__name__}: {exc}")
        raise
    if main_proc:
        record_written_files(stage)
        stage.finish("complete")
    return record


def _print_done(stage: Stage | None) -> None:
    where = stage.root if stage is not None else "output_dir"
    hint = ""
    try:
        hint = read_record(where)["output"]["eval_model_args"] if stage is not None else ""
    except (OSError, KeyError, ValueError):
        hint = ""
    print(f"{where} already holds this training, finished (same fingerprint); nothing to do")
    if hint:
        print(f"evaluate with:\n  ditto-bench run --model hf --model_args {hint} ...")


if __name__ == "__main__":
    raise SystemExit(main())
