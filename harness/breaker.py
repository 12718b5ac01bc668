"""Circuit breaker of a run phase (the rollout of the model under test, the judging).

A phase stops early instead of spending every remaining call on a cause that will not go away:

* the first **non-retryable** failure (HTTP 400, 401, 403 or 404: a bad request or model name, a rejected
  key, a wrong URL) stops the phase at once;
* **K consecutive** failed calls of a retryable kind (each after its own retries: 5xx, timeouts, a refused
  connection) stop it too; any success resets the count. ``DEFAULT_MAX_CONSECUTIVE`` is K's default.

Calls already in flight finish and are journalled; calls not yet sent stay pending. The run is then
recorded as incomplete with the cause (``run.json`` ``stopped``) and a re-run of the same command resumes
where it stopped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MAX_CONSECUTIVE = 20
NON_RETRYABLE_STATUS = frozenset({400, 401, 403, 404})

# "HTTP 401: ..." (the judge client), "ClientResponseError: 401, message=..." (aiohttp, the target),
# "Error code: 404 - ..." (openai).
_STATUS = re.compile(r"(?:HTTP |ClientResponseError: |Error code: |status(?: code)?[ =:]+)(\d{3})\b")


def http_status(error: str | None) -> int | None:
    """The HTTP status named in a recorded error message, if any."""
    if not error:
        return None
    m = _STATUS.search(error)
    return int(m.group(1)) if m else None


@dataclass
class Trip:
    """Why a phase was stopped."""

    phase: str
    reason: str  # "non_retryable" or "consecutive_failures"
    error: str
    failures: int

    def as_dict(self) -> dict[str, object]:
        return {"phase": self.phase, "reason": self.reason, "error": self.error, "failures": self.failures}

    def describe(self) -> str:
        if self.reason == "non_retryable":
            return f"{self.phase} stopped at the first non-retryable error: {self.error}"
        return f"{self.phase} stopped after {self.failures} consecutive failed calls; last: {self.error}"


class CircuitBreaker:
    """Counts one phase's call outcomes; :attr:`trip` is set once the phase must stop."""

    def __init__(
        self,
        phase: str,
        *,
        max_consecutive: int = DEFAULT_MAX_CONSECUTIVE,
        on_trip: Callable[[Trip], None] | None = None,
    ) -> None:
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}")
        self.phase = phase
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.trip: Trip | None = None
        self.on_trip = on_trip

    @property
    def open(self) -> bool:
        return self.trip is not None

    def success(self) -> None:
        self.consecutive = 0

    def failure(self, error: str | None, *, status: int | None = None) -> Trip | None:
        """Count one failed call (after its retries); returns the trip when this one opens the breaker."""
        if self.trip is not None:
            return None
        message = (error or "unknown error").splitlines()[0][:300] if error else "unknown error"
        code = status if status is not None else http_status(error)
        self.consecutive += 1
        if code in NON_RETRYABLE_STATUS:
            self.trip = Trip(self.phase, "non_retryable", message, self.consecutive)
        elif self.consecutive >= self.max_consecutive:
            self.trip = Trip(self.phase, "consecutive_failures", message, self.consecutive)
        if self.trip is not None and self.on_trip is not None:
            self.on_trip(self.trip)
        return self.trip
