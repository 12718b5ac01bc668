"""Lineage: which stage made each input, and ``ditto-bench lineage DIR`` that prints the chain.

Every stage record lists its inputs; an input produced by another ditto-bench stage carries an ``upstream``
reference (``kind``, ``dir``, ``fingerprint``, ``status``) to that stage's record. Following those
references from an evaluation leads back through the training run and the generated data to the knowledge
base: ``run → train → generate → knowledge``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.cli_common import command_parser, run_cli
from harness.errors import ConfigError
from harness.stage import STAGE_FILE, StageRecord, read_stage, read_stage_file


def producing_stage(path: Path) -> tuple[Path, StageRecord] | None:
    """The stage that wrote ``path`` (a stage directory, or a file among a stage's outputs), if any."""
    path = Path(path)
    try:
        if path.is_dir():
            rec = read_stage(path)
            return (path, rec) if rec is not None else None
        if not path.is_file():
            return None
        own = read_stage_file(path.parent / f"{path.name}.{STAGE_FILE}")  # a single-file stage (knowledge)
        if own is not None:
            return path, own
        rec = read_stage_file(path.parent / STAGE_FILE)
    except ConfigError:
        return None  # an unreadable record upstream is not this stage's problem: no link
    if rec is not None and path.name in rec.outputs:
        return path.parent, rec
    return None


def upstream_ref(path: Path) -> dict[str, Any] | None:
    """The ``upstream`` reference of an input at ``path`` (None when no ditto-bench stage made it)."""
    found = producing_stage(path)
    if found is None:
        return None
    where, rec = found
    return {
        "kind": rec.kind, "dir": str(where.resolve()), "fingerprint": rec.fingerprint, "status": rec.status,
    }


def chain(start: Path, *, max_depth: int = 16) -> list[dict[str, Any]]:
    """The stages from ``start`` back to its sources, depth first (each: its record's summary and depth)."""
    if Path(start).is_dir():
        read_stage(Path(start))  # a record here that is unreadable is named as such (ConfigError), not "none"
    found = producing_stage(start)
    if found is None:
        raise ConfigError(f"{start}: no stage record here ({STAGE_FILE}); not a ditto-bench stage directory")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()

    def visit(where: Path, rec: StageRecord, depth: int, via: str | None) -> None:
        key = f"{where.resolve()}|{rec.fingerprint}"
        entry = _summary(where, rec, depth, via)
        if key in seen or depth > max_depth:
            entry["repeated"] = True
            out.append(entry)
            return
        seen.add(key)
        out.append(entry)
        for name, ident in sorted(rec.inputs.items()):
            for ref_item in _refs(ident):
                up = producing_stage(Path(ref_item["dir"]))
                if up is None:
                    out.append({"depth": depth + 1, "via": name, "missing": ref_item})
                    continue
                stale = up[1].fingerprint != ref_item.get("fingerprint")
                visit(up[0], up[1], depth + 1, name + (" (changed since)" if stale else ""))

    visit(found[0], found[1], 0, None)
    return out


def _refs(ident: Any) -> list[dict[str, Any]]:
    """Upstream references held by an input identity (a model's parts may each have one)."""
    if not isinstance(ident, Mapping):
        return []
    refs = [dict(ident["upstream"])] if isinstance(ident.get("upstream"), Mapping) else []
    for part in (ident.get("parts") or {}).values():
        refs += _refs(part)
    return refs


def _summary(where: Path, rec: StageRecord, depth: int, via: str | None) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    spec = rec.spec
    if rec.kind in ("generate",):
        facts["supervisor"] = (rec.lineage or {}).get("supervisor") or spec.get("supervisor")
    if rec.kind == "train":
        facts["seed"] = (rec.lineage or {}).get("seed")
        facts["data"] = (rec.lineage or {}).get("data", {}).get("path")
        facts["supervisor"] = (rec.lineage or {}).get("supervisor")
    if rec.kind in ("run", "judge"):
        model = rec.inputs.get("model") or {}
        facts["model"] = model.get("id")
    return {
        "depth": depth,
        "via": via,
        "kind": rec.kind,
        "dir": str(where),
        "status": rec.status,
        "fingerprint": rec.fingerprint,
        "finished": rec.finished,
        "facts": {k: v for k, v in facts.items() if v is not None},
    }


def format_chain(entries: list[dict[str, Any]]) -> str:
    """The chain as indented lines, one stage per line plus its facts."""
    lines: list[str] = []
    for e in entries:
        pad = "  " * e["depth"]
        if "missing" in e:
            ref = e["missing"]
            lines.append(f"{pad}<- {e['via']}: {ref.get('kind')} {ref.get('dir')} (record gone)")
            continue
        arrow = f"<- {e['via']}: " if e["via"] else ""
        again = " (see above)" if e.get("repeated") else ""
        lines.append(
            f"{pad}{arrow}{e['kind']} {e['dir']} [{e['status']}] fingerprint {e['fingerprint'][:12]}{again}"
        )
        for k, v in e["facts"].items():
            shown = v if isinstance(v, str) else _short(v)
            lines.append(f"{pad}    {k}: {shown}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items() if v is not None and not isinstance(v, Mapping))
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "lineage", "Print the chain of stages that made a directory, back to the knowledge base."
    )
    p.add_argument(
        "dir", type=Path, help="any stage directory (run, train, generate) or a knowledge-base file"
    )
    p.add_argument("--json", action="store_true", help="print the chain as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    import json

    entries = chain(args.dir)
    print(json.dumps(entries, indent=2, ensure_ascii=False) if args.json else format_chain(entries))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``ditto-bench lineage DIR``."""
    return run_cli(build_parser(), argv, run)


def with_upstream(ident: dict[str, Any]) -> dict[str, Any]:
    """Add ``upstream`` references to an identity (and its parts) whose path a ditto-bench stage made."""
    path = ident.get("path")
    if ident.get("kind") in ("local", "file") and path:
        ref = upstream_ref(Path(path))
        if ref is not None:
            ident["upstream"] = ref
    for part in (ident.get("parts") or {}).values():
        if isinstance(part, dict):
            with_upstream(part)
    return ident


def training_lineage(ident: Mapping[str, Any]) -> dict[str, Any] | None:
    """For a model made by ``ditto-bench train``: the training stage's fingerprint, its data and the
    supervisor that made that data, and the seed (read from the training record in the model directory)."""
    import json

    for part in [ident, *(ident.get("parts") or {}).values()]:
        path = part.get("path") if isinstance(part, Mapping) else None
        if not path or not (Path(path) / "training_record.json").is_file():
            continue
        try:
            record = json.loads((Path(path) / "training_record.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        rec_lineage = record.get("lineage") or {}
        try:
            stage = read_stage(Path(path))
        except ConfigError:
            stage = None
        return {
            "train_dir": str(Path(path).resolve()),
            "train_fingerprint": stage.fingerprint if stage is not None else None,
            "data": record.get("data"),
            "supervisor": rec_lineage.get("supervisor"),
            "generate_fingerprint": (rec_lineage.get("data_stage") or {}).get("fingerprint"),
            "seed": (record.get("config") or {}).get("seed"),
        }
    return None
