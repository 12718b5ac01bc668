"""CLI pieces of the Ditto commands (knowledge, generate) on top of :mod:`harness.cli_common`."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from ditto_train.knowledge.schema import LANGS
from harness.cli_common import RESPONSE_CACHE, CacheFlags, split_list
from harness.errors import ConfigError

if TYPE_CHECKING:
    from ditto_train.knowledge.schema import Lang

__all__ = ["HTTP_CACHE", "RESPONSE_CACHE", "parse_langs"]
HTTP_CACHE = CacheFlags("HTTP", "http.sqlite")
"""Wikidata/Wikipedia API answers of ``ditto-bench knowledge``."""


def parse_langs(text: str, flag: str, *, allow_empty: bool = False) -> tuple[Lang, ...]:
    """A comma-separated subset of ``en,zh`` (order kept, repeats dropped); :class:`ConfigError` otherwise."""
    langs = tuple(dict.fromkeys(split_list(text)))
    if any(x not in LANGS for x in langs) or (not langs and not allow_empty):
        raise ConfigError(f"{flag}: expected a comma-separated subset of en,zh, got {text!r}")
    return cast("tuple[Lang, ...]", langs)
