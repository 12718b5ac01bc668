"""The generator's merged file keeps one record per session, even when a part file holds it twice."""

from __future__ import annotations

import json
from pathlib import Path

from ditto_train.generate.output import merge_parts, part_path


def test_a_session_written_twice_is_merged_once_last_line_winning(tmp_path: Path) -> None:
    rows = [
        {"messages": [], "meta": {"id": "r1", "lang": "en", "v": 1}},
        {"messages": [], "meta": {"id": "r2", "lang": "en", "v": 1}},
        {"messages": [], "meta": {"id": "r1", "lang": "en", "v": 2}},  # a second writer's copy
    ]
    part_path(tmp_path, "train", "en").write_text("".join(json.dumps(r) + "\n" for r in rows))
    target, n = merge_parts(tmp_path, "train", {("r1", "en"): 1, ("r2", "en"): 2})
    merged = [json.loads(x) for x in target.read_text().splitlines()]
    assert n == 2 and [(m["meta"]["id"], m["meta"]["v"]) for m in merged] == [("r1", 2), ("r2", 1)]
