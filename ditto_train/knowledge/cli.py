"""``ditto-bench knowledge``: build the character knowledge base (Wikidata + Wikipedia → JSONL).

Examples::

    ditto-bench knowledge --out kb.jsonl --contact you@example.org            # live, top 5000 per class
    ditto-bench knowledge --out kb.jsonl --input wikidata-subset.json.gz      # offline: Wikidata dump subset
    ditto-bench knowledge --out kb_en.jsonl --input kb.jsonl --langs en        # re-slice an existing KB

Re-running the same command resumes: finished roles are skipped, and every HTTP answer is cached.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ditto_train.cli_common import HTTP_CACHE, parse_langs
from ditto_train.knowledge.collect import CollectStats
from ditto_train.knowledge.schema import Lang
from harness import __version__
from harness.cli_common import command_parser, run_cli, split_list
from harness.errors import ConfigError
from harness.stage import Stage

DEFAULT_UA = f"ditto-bench/{__version__} (Ditto character-knowledge collector; python-urllib)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ditto-bench knowledge``."""
    from ditto_train.knowledge.wikidata import DEFAULT_SPARQL_URL, DEFAULT_WIKIDATA_API
    from ditto_train.knowledge.wikipedia import DEFAULT_WIKIPEDIA_API

    p = command_parser("knowledge", __doc__.split("\n\n")[0])
    p.add_argument(
        "--out", required=True, type=Path, help="knowledge-base JSONL to write (appended; resumable)"
    )
    p.add_argument(
        "--input",
        type=Path,
        default=None,
        help="offline source: a knowledge-base JSONL or a Wikidata JSON dump subset (.json/.jsonl[.gz|.bz2])",
    )
    p.add_argument(
        "--source",
        choices=["live", "dump", "kb"],
        default=None,
        help="where profiles come from (default: live without --input, else detected from the file)",
    )
    p.add_argument(
        "--classes",
        default="Q5,Q15632617",
        help="Wikidata classes to query (P31); default humans Q5 and fictional humans Q15632617",
    )
    p.add_argument("--top_n", type=int, default=5000, help="candidates per class, by sitelinks (paper: 5000)")
    p.add_argument("--min_sitelinks", type=int, default=0, help="drop candidates with fewer sitelinks")
    p.add_argument("--langs", default="en,zh", help="languages to write records for (en, zh)")
    p.add_argument(
        "--require_langs",
        default="en",
        help="keep a role only if it has a Wikipedia article in each of these (default en; '' = none)",
    )
    p.add_argument("--limit", type=int, default=None, help="stop once this many roles are in --out")
    p.add_argument("--max_claims", type=int, default=60, help="claims kept per record (default 60)")
    p.add_argument(
        "--no_wikipedia",
        action="store_true",
        help="dump source only: do not fetch articles (summary and content stay empty)",
    )
    p.add_argument("--sparql_url", default=DEFAULT_SPARQL_URL)
    p.add_argument("--wikidata_url", default=DEFAULT_WIKIDATA_API, help="MediaWiki API of Wikidata")
    p.add_argument("--wikipedia_url", default=DEFAULT_WIKIPEDIA_API, help="MediaWiki API, with {lang}")
    p.add_argument("--zh_variant", default="zh-cn", help="script conversion of zh articles ('' = as stored)")
    p.add_argument(
        "--contact",
        default=None,
        help="e-mail or URL added to the User-Agent, as Wikimedia's policy asks for live runs",
    )
    p.add_argument("--user_agent", default=DEFAULT_UA, help="User-Agent header (contact appended)")
    p.add_argument(
        "--max_rps", type=float, default=5.0, help="at most this many requests per second (0 = no limit)"
    )
    p.add_argument(
        "--max_retries", type=int, default=5, help="retries on 429/5xx/timeouts/maxlag (default 5)"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an --out written with another configuration (only that file and its record go)",
    )
    HTTP_CACHE.add_to(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Execute a parsed ``knowledge`` command."""
    from ditto_train.knowledge.collect import copy_kb
    from ditto_train.knowledge.schema import detect_kind

    langs = parse_langs(args.langs, "--langs")
    require = parse_langs(args.require_langs, "--require_langs", allow_empty=True)
    classes = split_list(args.classes)
    if not classes or any(not (c.startswith("Q") and c[1:].isdigit()) for c in classes):
        raise ConfigError(f"--classes: expected Wikidata class ids like Q5,Q15632617, got {args.classes!r}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be >= 1")
    if args.top_n < 1:
        raise ConfigError("--top_n must be >= 1")
    source = args.source or ("live" if args.input is None else detect_kind(args.input))
    if source != "live" and args.input is None:
        raise ConfigError(f"--source {source} needs --input FILE")
    if args.no_wikipedia and source != "dump":
        raise ConfigError("--no_wikipedia only applies to --source dump")
    if args.out.resolve() == (args.input.resolve() if args.input else None):
        raise ConfigError("--out must differ from --input")

    stage = _stage(args, source, classes, langs, require)
    decision = stage.open(overwrite=args.overwrite)
    with stage:
        if decision == "done":
            print(f"ditto-bench knowledge: {args.out} is already complete (same fingerprint); nothing to do",
                  file=sys.stderr)
            return 0
        stage.add_outputs(args.out.name, f"{args.out.name}.skipped.jsonl")
        stats: CollectStats
        try:
            if source == "kb":
                stats = copy_kb(args.input, args.out, langs, args.limit)
            else:
                stats = _collect(args, source, classes, langs, require)
        except BaseException as exc:
            stage.finish("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                         error=f"{type(exc).__name__}: {exc}")
            raise
        stage.finish("complete" if not stats.errors else "incomplete")
    _print_stats(args.out, stats)
    return 0 if not stats.errors else 1


def _stage(
    args: argparse.Namespace, source: str, classes: list[str], langs: tuple[Lang, ...],
    require: tuple[Lang, ...],
) -> Stage:
    """The knowledge stage: its record sits beside --out as ``<out>.stage.json``."""
    from harness.identity import file_identity
    from harness.lineage import with_upstream

    spec = {
        "source": source, "classes": classes, "top_n": args.top_n, "min_sitelinks": args.min_sitelinks,
        "langs": list(langs), "require_langs": list(require), "max_claims": args.max_claims,
        "no_wikipedia": args.no_wikipedia, "zh_variant": args.zh_variant,
        "urls": {"sparql": args.sparql_url, "wikidata": args.wikidata_url, "wikipedia": args.wikipedia_url},
    }
    inputs = {"input": with_upstream(file_identity(args.input))} if args.input is not None else {}
    return Stage(
        args.out, "knowledge", spec, inputs, flag="--out", single_file=True, scope={"limit": args.limit},
        owned={f"{args.out.name}.skipped.jsonl"}.__contains__,
    )


def _collect(
    args: argparse.Namespace,
    source: str,
    classes: list[str],
    langs: tuple[Lang, ...],
    require: tuple[Lang, ...],
) -> CollectStats:
    from ditto_train.knowledge.collect import Collector, EntityFetcher, LabelResolver
    from ditto_train.knowledge.dump import load_entities, scan_dump
    from ditto_train.knowledge.http import PoliteHttpClient
    from ditto_train.knowledge.wikidata import WikidataClient, merge_candidates
    from ditto_train.knowledge.wikipedia import WikipediaClient
    from harness.progress import make_progress

    ua = args.user_agent + (f"; contact: {args.contact}" if args.contact else "")
    talks_to_wikimedia = (source == "live" and "wikidata.org" in args.wikidata_url) or (
        not args.no_wikipedia and "wikipedia.org" in args.wikipedia_url
    )
    if talks_to_wikimedia and not args.contact:
        print(
            "ditto-bench knowledge: warning: no --contact given; Wikimedia asks clients to name one in the "
            "User-Agent",
            file=sys.stderr,
        )
    cache = HTTP_CACHE.open(args)
    http = PoliteHttpClient(
        user_agent=ua, max_rps=args.max_rps, max_retries=args.max_retries, timeout=args.timeout, cache=cache
    )
    wiki = (
        None
        if args.no_wikipedia
        else WikipediaClient(http, api_url=args.wikipedia_url, zh_variant=args.zh_variant)
    )
    try:
        # Live and dump runs differ only in where entities and labels come from.
        lookups: tuple[EntityFetcher, LabelResolver]
        if source == "live":
            wd = WikidataClient(http, api_url=args.wikidata_url, sparql_url=args.sparql_url)
            candidates = merge_candidates(wd.candidates(c, args.top_n, args.min_sitelinks) for c in classes)
            sites = [f"{lang}wiki" for lang in dict.fromkeys(langs + require)]
            lookups = (lambda ids: wd.entities(ids, sites), wd.resolve_labels)
        else:
            ranked, labels = scan_dump(args.input, classes, args.top_n, args.min_sitelinks)
            candidates = merge_candidates(ranked)
            entities = load_entities(args.input, {c.qid for c in candidates})
            lookups = (lambda ids: {i: entities[i] for i in ids if i in entities}, lambda ids: labels)
        fetch_entities, resolve_labels = lookups
        collector = Collector(
            args.out, fetch_entities, resolve_labels, wiki, langs, require, args.max_claims, args.limit
        )
        with make_progress() as progress:
            task = progress.add_task("knowledge", total=len(candidates))
            stats = collector.run(candidates, on_progress=lambda n: progress.advance(task, n))
        stats_http = http.stats
        print(
            f"http: {stats_http.requests} requests, {stats_http.cache_hits} cache hits, "
            f"{stats_http.retries} retries, {stats_http.failures} failures",
            file=sys.stderr,
        )
        return stats
    finally:
        if cache is not None:
            cache.close()


def _print_stats(out: Path, stats: CollectStats) -> None:
    from rich.table import Table

    from harness.progress import console

    table = Table(title=f"knowledge base {out}")
    table.add_column("item")
    table.add_column("count", justify="right")
    table.add_row("candidates", str(stats.candidates))
    table.add_row("roles in output (before this run)", str(stats.roles_done_before))
    table.add_row("roles in output (now)", str(stats.roles_kept))
    for lang, n in sorted(stats.records.items()):
        table.add_row(f"records written ({lang})", str(n))
    for reason, n in sorted(stats.skipped.items()):
        table.add_row(f"skipped: {reason}", str(n))
    table.add_row("errors (retried next run)", str(len(stats.errors)))
    console.print(table)
    for err in stats.errors[:10]:
        console.print(f"[red]error[/red] {err}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``ditto-bench knowledge ARGS``; returns the exit code."""
    return run_cli(build_parser(), argv, run, resumable=True)
