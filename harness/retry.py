"""The one retry policy of the HTTP clients (the judge / API-supervisor client and the Wikimedia client).

Which HTTP statuses are worth retrying, how a ``Retry-After`` (or ``retry-after-ms``) header is read, and
how long to wait otherwise: exponential backoff with jitter, capped. The clients keep their own loops
(one is async, one is not) and count every attempt; they ask this policy what to do.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

# Timeouts, conflicts, too-early, rate limits and the transient 5xx family (incl. Cloudflare's 52x, 529).
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})


def parse_retry_after(get: Callable[[str], str | None]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date); ``None``: absent.

    ``get`` looks a header up by name (case-insensitively, as every HTTP library's header map does).
    """
    raw_ms = get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` retries after the first attempt; backoff ``base * 2**(k-1)``, jittered, capped."""

    max_retries: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0

    @staticmethod
    def retryable(status: int) -> bool:
        """Whether a response with HTTP ``status`` may succeed when sent again."""
        return status in RETRYABLE_STATUS

    def attempts(self) -> range:
        """Attempt numbers 1 .. max_retries + 1."""
        return range(1, self.max_retries + 2)

    def exhausted(self, attempt: int) -> bool:
        """True when ``attempt`` was the last one allowed."""
        return attempt > self.max_retries

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed ``attempt``: the server's ``Retry-After`` if given, else backoff."""
        if retry_after is not None:
            return min(max(0.0, retry_after), self.backoff_max)
        backoff = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return backoff * (0.5 + random.random() / 2)
