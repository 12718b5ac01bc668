"""Live Wikipedia (en, zh): article text and summary from one TextExtracts request per page.

``action=query&prop=extracts&explaintext=1&exsectionformat=wiki`` returns the whole article as plain text with
``== Heading ==`` lines; the *summary* is its lead section (everything before the first heading), which is
what the REST ``page/summary`` endpoint would return as well, so one request per (role, language) suffices.
Chinese pages are converted to one script with MediaWiki's ``variant`` parameter (``zh-cn`` by default),
because zh.wikipedia stores a mix of simplified and traditional text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ditto_train.knowledge.http import FetchError, PoliteHttpClient

DEFAULT_WIKIPEDIA_API = "https://{lang}.wikipedia.org/w/api.php"
_HEADING = re.compile(r"^\s*==.*==\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Article:
    """One fetched article; ``missing`` when the page does not exist."""

    pageid: int
    title: str
    content: str
    summary: str
    missing: bool = False


def lead_section(text: str) -> str:
    """The text before the first ``== Heading ==`` line, stripped."""
    m = _HEADING.search(text)
    return (text[: m.start()] if m else text).strip()


def clean_extract(text: str) -> str:
    """Collapse the blank-line runs TextExtracts leaves around removed tables and templates."""
    text = re.sub(r"\n{3,}", "\n\n", text.replace("\r\n", "\n"))
    return text.strip()


class WikipediaClient:
    """TextExtracts over a :class:`PoliteHttpClient`."""

    def __init__(
        self,
        http: PoliteHttpClient,
        *,
        api_url: str = DEFAULT_WIKIPEDIA_API,
        zh_variant: str | None = "zh-cn",
    ) -> None:
        if "{lang}" not in api_url:
            raise ValueError(
                "the Wikipedia API URL must contain '{lang}', e.g. https://{lang}.wikipedia.org/w/api.php"
            )
        self.http = http
        self.api_url = api_url
        self.zh_variant = zh_variant or None

    def article(self, lang: str, title: str) -> Article:
        """Fetch ``title`` from the ``lang`` Wikipedia (redirects followed)."""
        params: dict[str, Any] = {
            "action": "query",
            "prop": "extracts",
            "explaintext": 1,
            "exsectionformat": "wiki",
            "redirects": 1,
            "titles": title,
            "format": "json",
            "formatversion": 2,
            "maxlag": 5,
        }
        if lang == "zh" and self.zh_variant:
            params["variant"] = self.zh_variant
        data = self.http.get_json(self.api_url.format(lang=lang), params)
        return parse_extract(data, title)


def parse_extract(data: Any, title: str) -> Article:
    """The single page of a ``formatversion=2`` TextExtracts answer (``missing`` when absent)."""
    try:
        pages = data["query"]["pages"]
    except (KeyError, TypeError):
        raise FetchError(f"Wikipedia answer for {title!r} has no query.pages") from None
    if isinstance(pages, dict):  # formatversion=1 shape: {pageid: page}
        pages = list(pages.values())
    if not pages:
        return Article(0, title, "", "", missing=True)
    page = pages[0]
    if page.get("missing") is not None or page.get("invalid") is not None:
        return Article(0, str(page.get("title", title)), "", "", missing=True)
    content = clean_extract(str(page.get("extract") or ""))
    return Article(
        int(page.get("pageid") or 0),
        str(page.get("title", title)),
        content,
        lead_section(content),
        missing=not content,
    )
