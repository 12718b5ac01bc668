"""A polite, cached, retrying JSON-over-HTTP client for the Wikimedia APIs.

Wikimedia's API etiquette asks for a descriptive User-Agent with contact details, serial (not parallel)
requests, ``maxlag`` on MediaWiki API calls and honouring ``Retry-After``. This client makes one request at a
time, spaces requests by at least ``1 / max_rps`` seconds, retries 429/5xx, timeouts, dropped connections and
``maxlag`` errors with exponential back-off (:class:`harness.retry.RetryPolicy`, the judge client's policy),
and keeps every successful response in an on-disk SQLite cache (:class:`harness.completer.TextCache` on
:class:`harness.cache.ResponseCache`), so a re-run or a resumed run repeats no request.

Only the standard library does the networking (``urllib``); bodies are requested gzip-compressed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.cache import ResponseCache
from harness.completer import TextCache
from harness.errors import DittoError
from harness.retry import RetryPolicy, parse_retry_after


class FetchError(DittoError):
    """A request that failed for good (after retries, or with a non-retryable status)."""

    exit_code = 1


@dataclass
class HttpStats:
    """Counters reported at the end of a collection run."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0


class PoliteHttpClient:
    """Serial JSON GET client with a rate limit, bounded retries and an on-disk cache."""

    def __init__(
        self,
        *,
        user_agent: str,
        max_rps: float = 5.0,
        max_retries: int = 5,
        timeout: float = 60.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        cache: ResponseCache | None = None,
    ) -> None:
        self.user_agent = user_agent
        self.min_interval = 1.0 / max_rps if max_rps > 0 else 0.0
        self.max_retries = max_retries
        self.timeout = timeout
        self.policy = RetryPolicy(max_retries=max_retries, backoff_base=backoff_base, backoff_max=backoff_max)
        self.cache = TextCache(cache, field="body") if cache is not None else None
        self.stats = HttpStats()
        self._last = 0.0

    @staticmethod
    def build_url(url: str, params: Mapping[str, Any] | None) -> str:
        """``url`` with ``params`` appended in sorted order (a stable cache key)."""
        if not params:
            return url
        query = urllib.parse.urlencode(sorted((k, str(v)) for k, v in params.items()))
        return f"{url}{'&' if '?' in url else '?'}{query}"

    def get_json(
        self, url: str, params: Mapping[str, Any] | None = None, *, accept: str = "application/json"
    ) -> Any:
        """GET ``url?params`` and return the decoded JSON body.

        MediaWiki errors returned with HTTP 200 (``{"error": {"code": ...}}``) are raised as
        :class:`FetchError`, except ``maxlag``/``ratelimited``, which are retried like a 503.
        """
        full = self.build_url(url, params)
        key = hashlib.sha256(f"GET {full}".encode()).hexdigest()
        if self.cache is not None:
            hit = self.cache.lookup([key])[0]
            if hit is not None:
                self.stats.cache_hits += 1
                return json.loads(hit)
        body = self._fetch(full, accept)
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            self.stats.failures += 1
            raise FetchError(f"GET {_short(full)}: response is not JSON ({exc.msg})") from None
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            self.stats.failures += 1
            err = data["error"]
            raise FetchError(
                f"GET {_short(full)}: API error {err.get('code')}: {str(err.get('info', ''))[:200]}"
            )
        if self.cache is not None:
            self.cache.store([key], [body])
        return data

    def _wait_turn(self) -> None:
        if self.min_interval:
            delay = self._last + self.min_interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self._last = time.monotonic()

    def _fetch(self, url: str, accept: str) -> str:
        headers = {"User-Agent": self.user_agent, "Accept": accept, "Accept-Encoding": "gzip"}
        last = ""
        for attempt in self.policy.attempts():
            self._wait_turn()
            self.stats.requests += 1
            retry_after: float | None = None
            try:
                req = urllib.request.Request(url, headers=headers)
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                    if resp.headers.get("Content-Encoding", "").lower() == "gzip":
                        raw = gzip.decompress(raw)
                text: str = raw.decode("utf-8")
                if _is_lag_error(text):
                    last, retry_after = "API asked to slow down (maxlag/ratelimited)", 5.0
                else:
                    return text
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                if not self.policy.retryable(exc.code):
                    self.stats.failures += 1
                    raise FetchError(f"GET {_short(url)}: HTTP {exc.code}") from None
                retry_after = parse_retry_after(exc.headers.get) if exc.headers else None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            except (OSError, EOFError, UnicodeDecodeError) as exc:  # truncated gzip, reset mid-body
                last = f"{type(exc).__name__}: {exc}"
            if self.policy.exhausted(attempt):
                break
            self.stats.retries += 1
            time.sleep(self.policy.delay(attempt, retry_after))
        self.stats.failures += 1
        raise FetchError(f"GET {_short(url)}: gave up after {self.max_retries + 1} attempts ({last})")


def _is_lag_error(text: str) -> bool:
    # Cheap check before parsing: only small error bodies can be maxlag answers.
    if len(text) > 2000 or '"error"' not in text:
        return False
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return False
    err = data.get("error") if isinstance(data, dict) else None
    return isinstance(err, dict) and err.get("code") in ("maxlag", "ratelimited")


def _short(url: str) -> str:
    return url if len(url) <= 160 else url[:157] + "..."
