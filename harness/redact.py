"""Fallback of the clients helper's ``harness.redact`` (take theirs on merge): registered secrets and
credential-shaped text are replaced with ``[REDACTED]``."""

from __future__ import annotations

import re

MASK = "[REDACTED]"
_secrets: set[str] = set()
_SHAPES = (
    re.compile(r"(?i)(\bbearer\s+)[^\s'\",;}\]\)]+"),
    re.compile(r"(?i)(\b[\w-]*(?:api[_-]?key|access[_-]?token|secret)['\"]?\s*[=:]\s*['\"]?)[^\s'\",&;}\]\)]+"),
)


def register_secret(value: str | None) -> None:
    if value and len(value) >= 6:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    for shape in _SHAPES:
        text = shape.sub(lambda m: m.group(1) + MASK, text)
    return text


def install_redaction() -> None:
    """No-op in the fallback."""
