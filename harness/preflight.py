"""One minimal request to each API endpoint a command will use, before any work is done.

A rollout can take hours before its first judge call, so a rejected key, an unknown model, an unreachable
host or an endpoint that ignores ``n`` is found here instead: the command stops with one line naming the
endpoint, the model and the cause (exit 2). The request asks for one token; it is not journalled, not
cached and not counted as a judgment. ``--no_preflight`` skips it. Transient answers (429, 5xx) are only a
warning: the run's own retries deal with those.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from harness.endpoint import chat_completions_url
from harness.errors import ConfigError
from harness.redact import redact

NO_PREFLIGHT_ENV = "DITTO_BENCH_NO_PREFLIGHT"  # set (and not 0): as --no_preflight, for every command


def preflight_disabled() -> bool:
    """True when ``$DITTO_BENCH_NO_PREFLIGHT`` is set to anything but ``0``."""
    import os

    return os.environ.get(NO_PREFLIGHT_ENV, "") not in ("", "0")


TRANSIENT = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
PREFLIGHT_TIMEOUT = 30.0


class PreflightError(ConfigError):
    """An endpoint cannot serve the run (exit 2)."""


@dataclass(frozen=True)
class Endpoint:
    """What to check: ``role`` names it in messages (judge, target, supervisor)."""

    role: str
    base_url: str
    model: str
    api_key: str | None
    n: int = 1
    timeout: float = PREFLIGHT_TIMEOUT


def _error_message(body: bytes) -> str:
    try:
        obj = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip().splitlines()[0][:200] if body.strip() else ""
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err.get("code") or "")[:200]
    if isinstance(err, str):
        return err[:200]
    if isinstance(obj, dict) and "detail" in obj:
        return str(obj["detail"])[:200]
    return ""


def _status_cause(status: int, message: str) -> str:
    detail = f": {message}" if message else ""
    if status in (401, 403):
        return f"rejected API key (HTTP {status}{detail}); check the key for this endpoint"
    if status == 404:
        return f"unknown model or wrong URL (HTTP 404{detail})"
    return f"the endpoint refused the request (HTTP {status}{detail})"


def _network_cause(exc: BaseException, timeout: float) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (nothing listens on that host and port)"
    if isinstance(reason, TimeoutError | socket.timeout):
        return f"timed out after {timeout:g} s without an answer"
    if isinstance(reason, socket.gaierror):
        return f"host not found ({reason.strerror or reason})"
    if isinstance(reason, ConnectionResetError):
        return "connection reset by the server"
    return f"unreachable ({type(reason).__name__}: {reason})"


def check_endpoint(ep: Endpoint, warn: Callable[[str], None]) -> None:
    """Send the minimal request; raise :class:`PreflightError` for a cause that dooms the run."""
    url = chat_completions_url(ep.base_url)
    where = f"preflight: {ep.role} {url} (model {ep.model!r})"
    body: dict[str, object] = {
        "model": ep.model,
        "messages": [{"role": "user", "content": "Reply with the single word: ok"}],
        "max_tokens": 1,
        "temperature": 0,
    }
    if ep.n > 1:
        body["n"] = ep.n
    headers = {"Content-Type": "application/json"}
    if ep.api_key:
        headers["Authorization"] = f"Bearer {ep.api_key}"
    req = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=ep.timeout) as resp:  # noqa: S310 (http/https checked)
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        message = redact(_error_message(exc.read() or b""))
        if exc.code in TRANSIENT:
            warn(f"{where}: HTTP {exc.code} ({message or 'no message'}); the run will retry")
            return
        raise PreflightError(f"{where}: {_status_cause(exc.code, message)}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise PreflightError(f"{where}: {_network_cause(exc, ep.timeout)}") from None
    try:
        choices = json.loads(raw)["choices"]
        if not isinstance(choices, list):
            raise TypeError("choices is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise PreflightError(f"{where}: not an OpenAI-compatible chat completion ({exc})") from None
    if ep.n > 1 and len(choices) != ep.n:
        raise PreflightError(
            f"{where}: the endpoint ignores `n` (asked for {ep.n} samples, got {len(choices)}); "
            "pass --judge_split_samples to send one request per sample"
        )
