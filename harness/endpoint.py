"""One rule for every OpenAI-compatible base URL the user types.

``run --model_args base_url=…``, ``--judge_base_url``, ``generate --supervisor_args base_url=…`` all accept
the API root (``http://HOST:PORT/v1``) or the full endpoint (``http://HOST:PORT/v1/chat/completions``), with
or without a trailing slash. :func:`api_root` turns either into the root (what the ``openai`` client wants);
:func:`chat_completions_url` into the full endpoint (what lm-eval's API models want).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from harness.errors import ConfigError

_SUFFIX = "/chat/completions"


def check_url(url: str, flag: str) -> str:
    """``url`` stripped, or :class:`ConfigError` naming ``flag`` when it is not an http(s) URL with a host."""
    text = str(url).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.netloc.startswith(":"):
        raise ConfigError(f"{flag}: {url!r} is not an http(s) URL with a host (e.g. http://127.0.0.1:8000/v1)")
    try:
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {url!r}: {exc}") from exc
    return text


def api_root(url: str, flag: str = "base_url") -> str:
    """The API root of ``url`` (``…/v1``): a trailing ``/chat/completions`` and slashes removed."""
    text = check_url(url, flag).rstrip("/")
    if text.endswith(_SUFFIX):
        text = text[: -len(_SUFFIX)].rstrip("/")
    return text


def chat_completions_url(url: str, flag: str = "base_url") -> str:
    """The full chat-completions endpoint of ``url`` (root or endpoint given)."""
    return api_root(url, flag) + _SUFFIX
