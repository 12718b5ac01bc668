"""One redaction layer for everything the process prints, logs or records.

Every secret the process knows is registered here (:func:`register_secret`): the API keys read from the
environment, and the values of secret-looking ``key=value`` pairs in the command line (``api_key=`` in
``--model_args`` / ``--supervisor_args``). :func:`redact` replaces each registered value, and anything
shaped like a credential (``Bearer <token>``, ``api_key=<value>``, ``"api_key": "<value>"``), with
``[REDACTED]``.

:func:`install_redaction` routes the process's output through :func:`redact`:

* every ``logging`` record, of any logger (ours, lm-eval, openai, httpx2, aiohttp, transformers), is
  redacted when it is created (message, arguments, traceback text), so no handler, whenever or by
  whom it was added, can emit the raw text;
* ``sys.stdout`` and ``sys.stderr`` are wrapped, which covers ``print``, ``warnings``, tracebacks,
  tqdm and the rich consoles (they write to the current ``sys.stderr``/``sys.stdout``);
* the harness's rich consoles (:mod:`harness.progress`) redact their text arguments before layout as
  well, since on a terminal rich may fold a long key across lines or colour parts of it.

Error strings written into records (journal, samples, run.json) are passed through :func:`redact` by
the code that builds them.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterable
from typing import Any, TextIO

MASK = "[REDACTED]"
# Environment variables whose values are keys: the judge key, ours, and the ones the libraries read.
KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "DITTO_BENCH_TARGET_API_KEY",
    "DITTO_BENCH_SUPERVISOR_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "WANDB_API_KEY",
)
# api_key, key, auth_token, token, client_secret, password, auth_header; not tokenizer, max_tokens.
_SECRET_NAME = re.compile(r"(?:^|[_-])(?:api[_-]?key|key|token|secret|password|passwd)$|^auth", re.IGNORECASE)
_SECRET_VAR = re.compile(r"(_KEY|_TOKEN|_SECRET|_PASSWORD)$|API_?KEY", re.IGNORECASE)
MIN_SECRET_LEN = 6  # shorter values ("1", "true") would mask ordinary text; no real key is that short
# Credential-shaped text, whatever its value: Bearer tokens, api_key=..., "api_key": "...".
_SHAPES = (
    re.compile(r"(?i)(\bbearer\s+)(?!\[REDACTED\])[^\s'\",;}\]\)]{6,}"),
    re.compile(
        r"(?i)(\b[\w-]*(?:api[_-]?key|access[_-]?token|auth[_-]?token|secret)['\"]?\s*[=:]\s*['\"]?)"
        r"(?!\[REDACTED\])[^\s'\",&;}\]\)]{6,}"
    ),
)

_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears from now on (``None``, empty and very short values are ignored)."""
    if not value or len(value) < MIN_SECRET_LEN or value == MASK:
        return
    global _pattern
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret that contains another one is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def register_environment(environ: Any = None) -> None:
    """Register the key variables of ``environ`` (default ``os.environ``), named or secret-shaped."""
    env = os.environ if environ is None else environ
    for name, value in env.items():
        if name in KEY_VARIABLES or _SECRET_VAR.search(name):
            register_secret(value)


def register_kv_secrets(texts: Iterable[str]) -> None:
    """Register the values of secret-looking ``name=value`` pairs in comma-separated arguments."""
    for text in texts:
        for part in str(text).split(","):
            name, sep, value = part.partition("=")
            if sep and _SECRET_NAME.search(name.lstrip("-")):
                register_secret(value.strip())


def redact(text: str) -> str:
    """``text`` with every registered secret and every credential-shaped value replaced by ``[REDACTED]``."""
    if not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for shape in _SHAPES:
        text = shape.sub(lambda m: m.group(1) + MASK, text)
    return text


class _RedactingStream:
    """A text stream that redacts every write and delegates everything else to the stream it wraps."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, s: str) -> int:
        self._inner.write(redact(s))
        return len(s)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def wrap_stream(stream: TextIO) -> TextIO:
    """``stream`` behind a redacting wrapper (a stream already wrapped is returned as is)."""
    if isinstance(stream, _RedactingStream):
        return stream
    return _RedactingStream(stream)  # type: ignore[return-value]


def _redacting_factory(base: Any) -> Any:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format: keep what can be shown
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    factory._ditto_redacting = True  # type: ignore[attr-defined]
    return factory


def redact_console(console: Any) -> None:
    """Make ``console.print``/``console.log`` redact their text arguments before rich lays them out."""
    for name in ("print", "log"):
        method = getattr(console, name)
        if getattr(method, "_ditto_redacting", False):
            continue

        def wrapped(*objects: Any, _method: Any = method, **kwargs: Any) -> Any:
            return _method(*(redact(o) if isinstance(o, str) else o for o in objects), **kwargs)

        wrapped._ditto_redacting = True  # type: ignore[attr-defined]
        setattr(console, name, wrapped)


def install_redaction() -> None:
    """Redact every log record and every write to stdout/stderr from now on; idempotent.

    Also registers the key variables of the environment, so a call at the start of a command covers
    every key the process can read.
    """
    register_environment()
    base = logging.getLogRecordFactory()
    if not getattr(base, "_ditto_redacting", False):
        logging.setLogRecordFactory(_redacting_factory(base))
    sys.stdout = wrap_stream(sys.stdout)
    sys.stderr = wrap_stream(sys.stderr)
    from harness import progress  # the consoles every command prints through

    redact_console(progress.console)
    redact_console(progress.out_console)
