"""Candidates → role profiles → knowledge-base JSONL, streamed and resumable.

Filtering (the paper does not say how ~10,000 candidates became 3,902 roles; see docs/generator.md): a role is
kept when it has a Wikipedia article in every ``require_langs`` language (default: English, matching Table 1
where every role has English data); it then gets one record per ``langs`` language that has an article.
Every (role, language) that gets no record is written to ``<out>.skipped.jsonl`` with the reason, so counts
are reportable and a resumed run does not look at it again. Records are appended and flushed one by one; the
done-set is rebuilt from both files on start.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ditto_train.knowledge.claims import extract_claims, ids_to_label, pick_aliases, pick_label, verbalise
from ditto_train.knowledge.http import FetchError
from ditto_train.knowledge.schema import LANGS, Lang, RoleProfile, WikiArticle, iter_kb
from ditto_train.knowledge.wikidata import Candidate
from ditto_train.knowledge.wikipedia import Article, WikipediaClient
from harness.jsonl import JsonlAppender, iter_complete_lines

EntityFetcher = Callable[[list[str]], dict[str, dict[str, Any]]]
LabelResolver = Callable[[set[str]], Mapping[str, Mapping[str, str]]]
CHUNK = 50


@dataclass
class CollectStats:
    """What a collection run did; printed and returned by the CLI."""

    candidates: int = 0
    roles_done_before: int = 0
    roles_kept: int = 0
    records: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def skipped_path(out: Path) -> Path:
    """The sidecar listing (role, language) pairs that got no record."""
    return out.with_name(out.name + ".skipped.jsonl")


def done_state(out: Path) -> tuple[set[tuple[str, str]], set[str]]:
    """``(done (id, lang) pairs, ids of roles with at least one record)`` from the outputs of earlier runs."""
    done: set[tuple[str, str]] = set()
    kept: set[str] = set()
    for _, obj in iter_complete_lines(out):
        done.add((str(obj.get("id")), str(obj.get("lang"))))
        kept.add(str(obj.get("id")))
    for _, obj in iter_complete_lines(skipped_path(out)):
        done.add((str(obj.get("id")), str(obj.get("lang"))))
    return done, kept


@dataclass
class Collector:
    """Builds profiles for ranked candidates with injected fetchers (live API or dump)."""

    out: Path
    fetch_entities: EntityFetcher
    resolve_labels: LabelResolver
    wikipedia: WikipediaClient | None
    langs: tuple[Lang, ...] = LANGS
    require_langs: tuple[Lang, ...] = ("en",)
    max_claims: int = 60
    limit: int | None = None
    stats: CollectStats = field(default_factory=CollectStats)

    def run(
        self, candidates: list[Candidate], on_progress: Callable[[int], None] | None = None
    ) -> CollectStats:
        """Process ``candidates`` in rank order until ``limit`` roles are kept."""
        self.stats.candidates = len(candidates)
        done, kept = done_state(self.out)
        self.stats.roles_done_before = len(kept)
        n_kept = len(kept)
        with JsonlAppender(self.out) as kb, JsonlAppender(skipped_path(self.out)) as skipped:
            for chunk in _chunks(candidates, CHUNK):
                if self.limit is not None and n_kept >= self.limit:
                    break
                todo = [c for c in chunk if any((c.qid, lang) not in done for lang in self.langs)]
                if todo:
                    entities = self.fetch_entities([c.qid for c in todo])
                    for cand in todo:
                        if self.limit is not None and n_kept >= self.limit:
                            break
                        n_errors = len(self.stats.errors)
                        if (
                            self._role(cand, entities.get(cand.qid), done, kb, skipped)
                            and cand.qid not in kept
                        ):
                            kept.add(cand.qid)
                            n_kept += 1
                        elif len(self.stats.errors) > n_errors:
                            # A failed role holds its place under --limit, so a re-run that fixes it
                            # ends with the same roles as a run without the error.
                            n_kept += 1
                if on_progress:
                    on_progress(len(chunk))
        self.stats.roles_kept = len(kept)
        return self.stats

    def _role(
        self,
        cand: Candidate,
        entity: dict[str, Any] | None,
        done: set[tuple[str, str]],
        kb: JsonlAppender,
        skipped: JsonlAppender,
    ) -> bool:
        """Write the missing records of one role; True when the role has (or already had) a record."""

        def skip(lang: str, reason: str) -> None:
            if (cand.qid, lang) not in done:
                skipped.write({"id": cand.qid, "lang": lang, "reason": reason})
                done.add((cand.qid, lang))
                self.stats.skipped[reason] += 1

        if entity is None:
            for lang in self.langs:
                skip(lang, "entity_missing")
            return False
        articles: dict[str, Article | None] = {}
        try:
            # Required languages first: a role that fails the filter costs no further requests.
            for lang in dict.fromkeys(self.require_langs + self.langs):
                articles[lang] = self._article(entity, lang)
                if lang in self.require_langs and articles[lang] is None:
                    for out_lang in self.langs:
                        skip(out_lang, f"no_{lang}_article")
                    return False
        except FetchError as exc:  # transient trouble with one page: not marked done, retried next run
            self.stats.errors.append(f"{cand.qid}: {exc}")
            return False
        raw = extract_claims(entity.get("claims") or {})[: self.max_claims]  # only these are verbalised
        labels = self.resolve_labels(ids_to_label(raw))
        has_record = False
        for lang in self.langs:
            art = articles[lang]
            if art is None:
                skip(lang, f"no_{lang}_article")
                continue
            has_record = True
            if (cand.qid, lang) in done:
                continue
            profile = build_profile(cand, entity, lang, art, raw, labels, self.max_claims)
            kb.write_line(profile.to_json())
            done.add((cand.qid, lang))
            self.stats.records[lang] += 1
        return has_record

    def _article(self, entity: dict[str, Any], lang: Lang) -> Article | None:
        link = (entity.get("sitelinks") or {}).get(f"{lang}wiki")
        title = link.get("title") if isinstance(link, dict) else None
        if not title:
            return None
        if self.wikipedia is None:  # offline dump without Wikipedia: the sitelink is all we know
            return Article(0, str(title), "", "")
        art = self.wikipedia.article(lang, str(title))
        return None if art.missing else art


def build_profile(
    cand: Candidate,
    entity: Mapping[str, Any],
    lang: Lang,
    art: Article,
    raw: list[Any],
    labels: Mapping[str, Mapping[str, str]],
    max_claims: int,
) -> RoleProfile:
    """One KB record from an entity and its article in ``lang``."""
    title = str(((entity.get("sitelinks") or {}).get(f"{lang}wiki") or {}).get("title", art.title))
    label = pick_label(entity.get("labels") or {}, lang) or title
    claims, trans = verbalise(raw[:max_claims], labels, lang)
    return RoleProfile(
        id=cand.qid,
        sitelinks=cand.sitelinks,
        label=label,
        description=pick_label(entity.get("descriptions") or {}, lang),
        aliases=pick_aliases(entity.get("aliases") or {}, lang, exclude=label),
        wiki_title=title,
        claims=claims,
        trans_claims=trans,
        category=cand.category,
        lang=lang,
        summary=art.summary,
        wiki=WikiArticle(idx=art.pageid, title=art.title, content=art.content),
    )


def copy_kb(src: Path, out: Path, langs: tuple[Lang, ...], limit: int | None) -> CollectStats:
    """Re-slice an existing KB JSONL (validated line by line) into ``out``, resumably."""
    stats = CollectStats()
    for _ in iter_kb(src):  # validate every line first: a bad line must not leave a half-written copy
        pass
    done, kept = done_state(out)
    stats.roles_done_before = len(kept)
    roles_seen: set[str] = set()
    with JsonlAppender(out) as kb:
        for _, _, prof in iter_kb(src):
            stats.candidates += 1
            if prof.lang not in langs:
                continue
            if prof.id not in roles_seen:
                if limit is not None and len(roles_seen) >= limit:
                    continue
                roles_seen.add(prof.id)
            if (prof.id, prof.lang) in done:
                continue
            kb.write_line(prof.to_json())
            done.add((prof.id, prof.lang))
            stats.records[prof.lang] += 1
    stats.roles_kept = len(roles_seen)
    return stats


def _chunks(items: list[Candidate], size: int) -> Iterator[list[Candidate]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
