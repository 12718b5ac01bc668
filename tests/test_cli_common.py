"""The argparse pieces shared by knowledge, generate, leaderboard and compare (the cli_common modules)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ditto_train.cli_common import HTTP_CACHE, RESPONSE_CACHE, parse_langs
from harness.cli_common import CacheFlags, command_parser, run_cli, split_list
from harness.errors import ConfigError, DataError, DittoError


def _parser() -> argparse.ArgumentParser:
    p = command_parser("demo", "A demo command.")
    p.add_argument("--n", type=int, default=0)
    return p


def _raising(exc: BaseException) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        raise exc

    return command


def test_command_parser_names_the_subcommand() -> None:
    p = _parser()
    assert p.prog == "ditto-bench demo"
    assert p.description == "A demo command."
    assert p.format_usage().startswith("usage: ditto-bench demo ")


def test_run_cli_passes_parsed_args_and_returns_the_commands_code() -> None:
    seen: list[int] = []

    def command(args: argparse.Namespace) -> int:
        seen.append(args.n)
        return 7

    assert run_cli(_parser(), ("--n", "3"), command) == 7
    assert seen == [3]


def test_run_cli_reads_sys_argv_when_argv_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["ditto-bench", "--n", "5"])
    assert run_cli(_parser(), None, lambda args: args.n) == 5


@pytest.mark.parametrize(
    ("exc", "code"),
    [(ConfigError("--n must be >= 1"), 2), (DataError("f.jsonl:3: field 'x'"), 2), (DittoError("boom"), 1)],
)
def test_run_cli_turns_errors_into_one_line_and_their_exit_code(
    exc: DittoError, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(_parser(), [], _raising(exc)) == code
    captured = capsys.readouterr()
    assert captured.err == f"ditto-bench demo: error: {exc}\n"
    assert captured.out == ""


def test_run_cli_error_code_overrides_the_errors_own(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(_parser(), [], _raising(DittoError("not a run directory")), error_code=2) == 2
    assert capsys.readouterr().err == "ditto-bench demo: error: not a run directory\n"


def test_run_cli_interrupt_is_130_only_for_resumable_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(_parser(), [], _raising(KeyboardInterrupt()), resumable=True) == 130
    assert capsys.readouterr().err == "ditto-bench demo: interrupted; re-run the same command to resume\n"
    with pytest.raises(KeyboardInterrupt):
        run_cli(_parser(), [], _raising(KeyboardInterrupt()))


def test_run_cli_leaves_bugs_and_bad_flags_alone() -> None:
    with pytest.raises(ValueError, match="a bug"):
        run_cli(_parser(), [], _raising(ValueError("a bug")), error_code=2)
    with pytest.raises(SystemExit) as info:  # argparse reports unknown flags itself, with exit status 2
        run_cli(_parser(), ["--nope"], lambda args: 0)
    assert info.value.code == 2


@pytest.mark.parametrize(
    ("flags", "label", "filename"),
    [(RESPONSE_CACHE, "response", "responses.sqlite"), (HTTP_CACHE, "HTTP", "http.sqlite")],
)
def test_cache_flags_help_text(flags: CacheFlags, label: str, filename: str) -> None:
    p = argparse.ArgumentParser()
    flags.add_to(p)
    helps = {a.option_strings[0]: a.help for a in p._actions if a.option_strings}
    assert helps["--cache_path"] == f"{label} cache (default: <user cache dir>/ditto-bench/{filename})"
    assert helps["--no_cache"] == f"neither read nor write the {label} cache"
    assert p.parse_args([]).cache_path is None


def test_cache_flags_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = argparse.ArgumentParser()
    HTTP_CACHE.add_to(p)
    assert HTTP_CACHE.open(p.parse_args(["--no_cache", "--cache_path", str(tmp_path / "x.sqlite")])) is None

    explicit = HTTP_CACHE.open(p.parse_args(["--cache_path", str(tmp_path / "sub" / "x.sqlite")]))
    assert explicit is not None
    explicit.close()
    assert explicit.path == tmp_path / "sub" / "x.sqlite"

    monkeypatch.setenv("DITTO_BENCH_CACHE_DIR", str(tmp_path / "cache_root"))
    default = HTTP_CACHE.open(p.parse_args([]))
    assert default is not None
    default.close()
    assert default.path == tmp_path / "cache_root" / "http.sqlite"


@pytest.mark.parametrize(
    "module", ["ditto_train.generate.cli", "ditto_train.knowledge.cli"], ids=["generate", "knowledge"]
)
def test_subcommands_keep_their_cache_flags(module: str) -> None:
    parser = importlib.import_module(module).build_parser()
    helps = {a.option_strings[0]: a.help for a in parser._actions if a.option_strings}
    cache = "response" if module.endswith("generate.cli") else "HTTP"
    assert helps["--no_cache"] == f"neither read nor write the {cache} cache"
    assert "--cache_path" in helps


def test_split_list() -> None:
    assert split_list(" a, ,b ,,c ") == ["a", "b", "c"]
    assert split_list("") == []
    assert split_list(" , ") == []
    assert split_list("a,a") == ["a", "a"]  # callers that need unique items deduplicate themselves


def test_parse_langs() -> None:
    assert parse_langs("zh, en,zh", "--langs") == ("zh", "en")
    assert parse_langs(" , ", "--require_langs", allow_empty=True) == ()
    with pytest.raises(ConfigError, match=r"^--langs: expected a comma-separated subset of en,zh, got ''$"):
        parse_langs("", "--langs")
    with pytest.raises(ConfigError, match=r"^--require_langs: .* got 'en,fr'$"):
        parse_langs("en,fr", "--require_langs", allow_empty=True)
