"""Pieces shared by the argparse subcommands that have their own parser (knowledge, generate, leaderboard,
compare): the ``ditto-bench NAME`` program name, the parse → run → "one line on stderr and an exit code"
wrapper, the response-cache flag pair, and comma-separated list flags.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import DittoError

if TYPE_CHECKING:
    from harness.cache import ResponseCache


def command_parser(name: str, description: str) -> argparse.ArgumentParser:
    """An argument parser whose program name (and so its usage and error prefix) is ``ditto-bench NAME``."""
    return argparse.ArgumentParser(prog=f"ditto-bench {name}", description=description)


def run_cli(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    command: Callable[[argparse.Namespace], int],
    *,
    error_code: int | None = None,
    resumable: bool = False,
) -> int:
    """Parse ``argv`` (``None``: ``sys.argv[1:]``), run ``command`` and return its exit code.

    A :class:`DittoError` becomes one line ``PROG: error: MESSAGE`` on stderr and the error's own
    ``exit_code`` (or ``error_code`` where given: commands whose every failure is bad input use 2).
    With ``resumable``, Ctrl-C says that re-running resumes and returns 130; otherwise it propagates.
    Bad flags are argparse's to report (usage line, exit 2 via ``SystemExit``), as for every subcommand.
    """
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        return command(args)
    except DittoError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code if error_code is None else error_code
    except KeyboardInterrupt:
        if not resumable:
            raise
        print(f"{parser.prog}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


@dataclass(frozen=True)
class CacheFlags:
    """The ``--cache_path FILE`` / ``--no_cache`` pair of a command that keeps an on-disk response cache.

    ``label`` names the cache in the help text; ``filename`` is its default name in the user cache dir.
    """

    label: str
    filename: str

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Declare both flags on ``parser``."""
        parser.add_argument(
            "--cache_path",
            type=Path,
            default=None,
            help=f"{self.label} cache (default: <user cache dir>/ditto-bench/{self.filename})",
        )
        parser.add_argument(
            "--no_cache", action="store_true", help=f"neither read nor write the {self.label} cache"
        )

    def open(self, args: argparse.Namespace) -> ResponseCache | None:
        """The cache the parsed flags ask for, or ``None`` with ``--no_cache``; the caller closes it."""
        return self.open_at(args.cache_path, no_cache=args.no_cache)

    def open_at(self, cache_path: Path | None, *, no_cache: bool) -> ResponseCache | None:
        """The cache at ``cache_path`` (default: this cache's file in the user cache dir), or ``None``."""
        if no_cache:
            return None
        from harness.cache import ResponseCache
        from harness.datafetch import default_cache_dir

        return ResponseCache(cache_path or default_cache_dir() / self.filename)


RESPONSE_CACHE = CacheFlags("response", "responses.sqlite")
"""Judge, API-model and supervisor answers: shared by ``run``/``judge`` and ``generate``."""


def split_list(text: str) -> list[str]:
    """The items of a comma-separated flag value, stripped, with empty items dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]
