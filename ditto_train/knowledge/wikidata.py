"""Live Wikidata: SPARQL candidate lists and ``wbgetentities`` lookups.

Candidate retrieval follows App. A of the Ditto paper: instances (``wdt:P31``) of a class — humans ``Q5``
and fictional humans ``Q15632617`` — that have a Chinese label and a Chinese description, ranked by the
number of sitelinks, top N per class. The paper counts ``?sitelink schema:about ?person`` rows; we read the
precomputed ``wikibase:sitelinks`` count instead, which is the same number but lets the query service answer
before its 60-second limit. ``min_sitelinks`` adds a lower bound that prunes the ~11M humans early.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ditto_train.knowledge.claims import API_LANGUAGES, entity_id, labels_by_lang
from ditto_train.knowledge.http import FetchError, PoliteHttpClient

DEFAULT_SPARQL_URL = "https://query.wikidata.org/sparql"
DEFAULT_WIKIDATA_API = "https://www.wikidata.org/w/api.php"
CLASS_CATEGORY = {"Q5": "real", "Q15632617": "virtual"}
BATCH = 50  # wbgetentities accepts at most 50 ids per request for ordinary clients


@dataclass(frozen=True)
class Candidate:
    """One entity from a SPARQL candidate list."""

    qid: str
    sitelinks: int
    category: str
    zh_label: str = ""


def candidate_query(class_qid: str, top_n: int, min_sitelinks: int = 0) -> str:
    """The SPARQL text for one class (our wording of the paper's App. A query)."""
    bound = f"\n  FILTER(?sitelinks >= {int(min_sitelinks)})" if min_sitelinks > 0 else ""
    return (
        "PREFIX wd: <http://www.wikidata.org/entity/>\n"
        "PREFIX wdt: <http://www.wikidata.org/prop/direct/>\n"
        "PREFIX wikibase: <http://wikiba.se/ontology#>\n"
        "PREFIX schema: <http://schema.org/>\n"
        "PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>\n"
        "SELECT DISTINCT ?item ?zhLabel ?sitelinks WHERE {\n"
        f"  ?item wdt:P31 wd:{class_qid} ;\n"
        "        wikibase:sitelinks ?sitelinks ;\n"
        "        rdfs:label ?zhLabel ;\n"
        "        schema:description ?zhDescription .\n"
        '  FILTER(LANG(?zhLabel) = "zh")\n'
        f'  FILTER(LANG(?zhDescription) = "zh"){bound}\n'
        "}\n"
        f"ORDER BY DESC(?sitelinks) LIMIT {int(top_n)}"
    )


def parse_sparql_candidates(data: Any, category: str) -> list[Candidate]:
    """Candidates from a ``application/sparql-results+json`` document."""
    try:
        bindings = data["results"]["bindings"]
    except (KeyError, TypeError):
        raise FetchError("SPARQL response has no results.bindings") from None
    out: list[Candidate] = []
    for b in bindings:
        qid = entity_id(str(b.get("item", {}).get("value", "")))
        if qid is None:
            continue
        try:
            sites = int(b.get("sitelinks", {}).get("value", 0))
        except (TypeError, ValueError):
            sites = 0
        out.append(Candidate(qid, sites, category, str(b.get("zhLabel", {}).get("value", ""))))
    return out


def merge_candidates(lists: Iterable[list[Candidate]]) -> list[Candidate]:
    """One ranked list: deduplicated by id (first class wins), most sitelinks first, then by id number."""
    seen: dict[str, Candidate] = {}
    for lst in lists:
        for c in lst:
            seen.setdefault(c.qid, c)
    return sorted(seen.values(), key=lambda c: (-c.sitelinks, int(c.qid[1:])))


class WikidataClient:
    """SPARQL and ``wbgetentities`` over a :class:`PoliteHttpClient`, with an in-memory label table."""

    def __init__(
        self,
        http: PoliteHttpClient,
        *,
        api_url: str = DEFAULT_WIKIDATA_API,
        sparql_url: str = DEFAULT_SPARQL_URL,
    ) -> None:
        self.http = http
        self.api_url = api_url
        self.sparql_url = sparql_url
        # Labels of properties and claim values, shared by all roles. Tens of thousands of short strings for
        # a 10k-role pool: small next to the articles, and it spares one request per role.
        self.labels: dict[str, dict[str, str]] = {}

    def candidates(self, class_qid: str, top_n: int, min_sitelinks: int = 0) -> list[Candidate]:
        """Top ``top_n`` candidates of one class."""
        data = self.http.get_json(
            self.sparql_url,
            {"query": candidate_query(class_qid, top_n, min_sitelinks), "format": "json"},
            accept="application/sparql-results+json",
        )
        return parse_sparql_candidates(data, CLASS_CATEGORY.get(class_qid, class_qid))

    def entities(self, ids: list[str], sitelinks: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Entities by id (labels, descriptions, aliases, claims, chosen sitelinks); missing ids omitted."""
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            data = self.http.get_json(
                self.api_url,
                {
                    "action": "wbgetentities",
                    "ids": "|".join(chunk),
                    "format": "json",
                    "maxlag": 5,
                    "props": "labels|descriptions|aliases|claims|sitelinks",
                    "languages": API_LANGUAGES,
                    "sitefilter": "|".join(sitelinks),
                },
            )
            out.update(_entities_of(data))
        return out

    def resolve_labels(self, ids: Iterable[str]) -> Mapping[str, Mapping[str, str]]:
        """Make sure the label table holds ``ids`` (one request per 50 unknown ids); return the table."""
        todo = sorted(i for i in set(ids) if i not in self.labels)
        for start in range(0, len(todo), BATCH):
            chunk = todo[start : start + BATCH]
            data = self.http.get_json(
                self.api_url,
                {
                    "action": "wbgetentities",
                    "ids": "|".join(chunk),
                    "props": "labels",
                    "languages": API_LANGUAGES,
                    "format": "json",
                    "maxlag": 5,
                },
            )
            found = _entities_of(data)
            for eid in chunk:
                # Unknown or deleted ids get an empty entry so they are not asked for again.
                self.labels[eid] = labels_by_lang(found.get(eid, {}))
        return self.labels


def _entities_of(data: Any) -> dict[str, dict[str, Any]]:
    entities = data.get("entities") if isinstance(data, dict) else None
    if not isinstance(entities, dict):
        raise FetchError("wbgetentities response has no 'entities' object")
    return {k: v for k, v in entities.items() if isinstance(v, dict) and "missing" not in v}
