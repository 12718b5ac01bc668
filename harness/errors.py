"""Error types. Each carries the exit code the CLI uses when it ends a command."""

from __future__ import annotations


class DittoError(Exception):
    """Base class for errors reported to the user as one line."""

    exit_code = 1


class ConfigError(DittoError):
    """Bad flags or an inconsistent configuration; found before any model or judge call."""

    exit_code = 2


class DataError(DittoError):
    """A malformed input file; the message names file:line and the field."""

    exit_code = 2


class BackendError(DittoError):
    """A model backend could not be created or used."""

    exit_code = 1
