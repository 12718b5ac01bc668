"""Golden tests of the shared JSONL readers and writers (:mod:`harness.jsonl`) and of their callers."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path

import pytest

from ditto_train.knowledge import jsonl as kb_jsonl
from ditto_train.knowledge.schema import iter_kb, profile_from_json
from harness import jsonl, runrecord
from harness.errors import DataError
from harness.journal import Journal
from harness.jsonl import (
    JsonlAppender,
    atomic_open,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    iter_complete_lines,
    iter_jsonl,
    parse_object,
    read_jsonl,
)
from leaderboards.compare import load_run
from tasks.mtbench import data as mt_data
from tasks.mtbench.data import load_answers, load_judge_prompts, load_questions, load_references
from tasks.wikiroleeval import data as wre_data
from tasks.wikiroleeval.data import load_wikiroleeval


def _write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def _error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        list(iter_jsonl(path))
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == 2
    return message


# ------------------------------------------------------------------------------------------------ iter_jsonl


def test_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.jsonl", '\n{"a": 1}\n  \t \n{"a": 2}\r\n\n{"a": 3}')
    assert list(iter_jsonl(path)) == [(2, {"a": 1}), (4, {"a": 2}), (6, {"a": 3})]
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_bad_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.jsonl", '{"a": 1}\n\n{"a" 1}\n{"a": 4}\n')
    assert _error(path) == f"{path}:3: invalid JSON: Expecting ':' delimiter (column 6)"


@pytest.mark.parametrize(
    ("line", "kind"),
    [("[1, 2]", "list"), ("3", "number"), ('"s"', "string"), ("null", "null"), ("true", "boolean")],
)
def test_non_object_line(tmp_path: Path, line: str, kind: str) -> None:
    path = _write(tmp_path / "x.jsonl", '{"a": 1}\n' + line + "\n")
    assert _error(path) == f"{path}:2: expected a JSON object, got {kind}"


def test_bom_and_chinese(tmp_path: Path) -> None:
    rows = [{"label": "武则天", "lang": "zh"}, {"text": "唐朝 “女皇”"}]
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path = _write(tmp_path / "x.jsonl", b"\xef\xbb\xbf" + body.encode("utf-8"))
    assert [obj for _, obj in iter_jsonl(path)] == rows
    # Only a BOM at the very start of the file is a BOM; anywhere else the line is not JSON.
    _write(path, body + "\ufeff{}\n")
    assert _error(path) == f"{path}:3: invalid JSON: Unexpected UTF-8 BOM (decode using utf-8-sig) (column 1)"


def test_invalid_utf8(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.jsonl", b'{"a": 1}\n{"a": "\xff"}\n')
    assert _error(path) == f"{path}:2: not valid UTF-8 (byte 7)"


@pytest.mark.parametrize("content", ["", "\n", "\n \n\t\n", "\ufeff\n"])
def test_empty_file_yields_nothing(tmp_path: Path, content: str) -> None:
    assert list(iter_jsonl(_write(tmp_path / "x.jsonl", content))) == []


def test_missing_and_unreadable(tmp_path: Path) -> None:
    assert _error(tmp_path / "nope.jsonl") == f"{tmp_path / 'nope.jsonl'}: no such file"
    assert _error(tmp_path).startswith(f"{tmp_path}: cannot read: ")


def test_good_lines_come_before_the_error(tmp_path: Path) -> None:
    """Callers validate as they go, so a field error on line 1 wins over bad JSON on line 2."""
    it = iter_jsonl(_write(tmp_path / "x.jsonl", '{"a": 1}\n{oops\n'))
    assert next(it) == (1, {"a": 1})
    with pytest.raises(DataError, match=r"x\.jsonl:2: invalid JSON"):
        next(it)


def test_parse_object_and_kb_profile_messages() -> None:
    assert parse_object(' {"k": [1]} ', "f:1") == {"k": [1]}
    with pytest.raises(DataError, match=r"^f:3: invalid JSON: Expecting property name"):
        profile_from_json("{nope", "f:3")
    with pytest.raises(DataError, match=r"^f:4: expected a JSON object, got list$"):
        profile_from_json("[]", "f:4")


# ------------------------------------------------------------------------------------------------ the callers


def test_callers_empty_file(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.jsonl", "\n\n")
    for load, what in [
        (load_questions, "questions"),
        (load_judge_prompts, "judge prompts"),
        (load_answers, "answers"),
        (load_wikiroleeval, "items"),
    ]:
        with pytest.raises(DataError, match=rf"^{re.escape(str(empty))}: empty file \(no {what}\)$"):
            load(empty)
    assert load_references(empty) == {}  # reference answers are optional per question
    assert list(iter_kb(empty)) == []


def test_callers_report_the_shared_messages(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.jsonl", '{"question_id": 1, "category": "x", "turns": ["a"]}\n"just text"\n')
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: expected a JSON object, got string$"):
        load_questions(path)
    wiki = _write(tmp_path / "w.jsonl", '\n"x"\n')
    with pytest.raises(DataError, match=rf"^{re.escape(str(wiki))}:2: expected a JSON object, got string$"):
        load_wikiroleeval(wiki)
    kb = _write(tmp_path / "kb.jsonl", b'{"label": "A", "lang": "en"}\n{"label": "\xe6"}\n')
    with pytest.raises(DataError, match=rf"^{re.escape(str(kb))}:2: not valid UTF-8 \(byte 11\)$"):
        list(iter_kb(kb))


def test_compare_reads_samples_strictly(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text("{}", encoding="utf-8")
    rec = {"task": "t", "session_id": "s1", "turns": []}
    samples = _write(tmp_path / "samples.jsonl", json.dumps(rec) + "\n\n{broken\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(samples))}:3: invalid JSON: .* \(column 2\)$"):
        load_run(tmp_path)
    _write(samples, json.dumps(rec) + "\n\n")
    assert load_run(tmp_path) == ({}, {"t": {"s1": rec}})


# ------------------------------------------------------------------------------------ append-only outputs


def test_iter_complete_lines_is_tolerant(tmp_path: Path) -> None:
    path = _write(tmp_path / "out.jsonl", '{"a": 1}\n{bad\n[1]\n\n{"a": 2}\n{"a": 3, "b')
    assert list(iter_complete_lines(path)) == [(0, {"a": 1}), (len('{"a": 1}\n{bad\n[1]\n\n'), {"a": 2})]
    assert list(iter_complete_lines(tmp_path / "missing.jsonl")) == []


def test_journal_ignores_and_cuts_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "run" / "journal.jsonl"
    gen = {"k": "gen", "task": "t", "sid": "s", "turn": 0, "text": "你好"}
    journal = Journal(path)
    journal.append(gen)
    journal.close()
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"k": "judge", "task": "t", "sid": "s", "tu')  # killed mid-write
    resumed = Journal(path)
    assert resumed.gens == {("t", "s", 0): gen} and resumed.judges == {}
    judge = {"k": "judge", "task": "t", "sid": "s", "turn": 0, "metric": "m"}
    resumed.append(judge)
    resumed.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == [gen, judge]
    assert Journal(path).judges == {("t", "s", 0, "m"): judge}


def test_appender_reopens_after_close(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with JsonlAppender(path) as out:
        out.write({"n": 1})
    out.write_line('{"n": 2}')
    out.close()
    assert read_jsonl(path) == [{"n": 1}, {"n": 2}]


# -------------------------------------------------------------------------------------------- atomic writing


def test_atomic_writers(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "r.json"
    atomic_write_json(target, {"名": 1.5})
    assert target.read_text(encoding="utf-8") == '{\n  "名": 1.5\n}\n'
    atomic_write_jsonl(target, [{"a": "é"}, {"b": 2}])
    assert target.read_bytes() == '{"a": "é"}\n{"b": 2}\n'.encode()
    atomic_write_text(target, "plain\n")
    assert target.read_text(encoding="utf-8") == "plain\n"
    with pytest.raises(ValueError):
        atomic_write_json(target, {"x": float("nan")})
    assert target.read_text(encoding="utf-8") == "plain\n"
    assert os.listdir(target.parent) == ["r.json"]


def test_atomic_open_failure_leaves_target_untouched(tmp_path: Path) -> None:
    target = _write(tmp_path / "t.jsonl", "old\n")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write(b"half")
        raise RuntimeError("killed")
    assert target.read_text(encoding="utf-8") == "old\n" and os.listdir(tmp_path) == ["t.jsonl"]


def test_old_import_paths_are_the_shared_code() -> None:
    assert runrecord.atomic_write_text is jsonl.atomic_write_text
    assert runrecord.atomic_write_json is jsonl.atomic_write_json
    assert runrecord.atomic_write_jsonl is jsonl.atomic_write_jsonl
    assert runrecord.read_jsonl is jsonl.read_jsonl
    assert kb_jsonl.JsonlAppender is jsonl.JsonlAppender
    assert kb_jsonl.iter_complete_lines is jsonl.iter_complete_lines
    assert kb_jsonl.cut_torn_tail is jsonl.cut_torn_tail
    assert mt_data.file_sha256 is wre_data.file_sha256 is jsonl.file_sha256


def test_file_sha256(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.jsonl", b"x" * ((1 << 16) + 5))
    assert jsonl.file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x", encoding="utf-8")
    atomic = tmp_path / "atomic.txt"
    jsonl.atomic_write_text(atomic, "x")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_journal_index_is_compact_and_the_latest_entry_wins(tmp_path: Path) -> None:
    # 12,000 judge units over 1,000 sessions, each written twice (an error, then ok for another reply):
    # the index keeps one packed row per unit (the dict of tuple keys it replaced took ~190 B a unit).
    import tracemalloc

    from harness.journal import messages_hash

    path = tmp_path / "journal.jsonl"
    msgs = [{"role": "user", "content": "q"}]
    h = messages_hash(msgs)  # type: ignore[arg-type]
    with path.open("w", encoding="utf-8") as fh:
        for status, hh in (("api_error", "0" * 32), ("ok", h)):
            for s in range(1000):
                for turn in range(4):
                    for metric in ("consistency", "knowledge", "rejection"):
                        entry = {"k": "judge", "task": "t", "sid": f"s{s}", "turn": turn, "metric": metric,
                                 "status": status, "h": hh, "completions": [f"{s}/{turn}/{metric}/{status}"]}
                        fh.write(json.dumps(entry) + "\n")
        gen = {"k": "gen", "task": "t", "sid": "s1", "turn": 0, "status": "ok", "text": "r"}
        fh.write(json.dumps(gen) + "\n")
        fh.write('{"k": "judge", "task": "t", "sid": "s1", "turn": -1, "metric": "m"}\n')  # not ours
        fh.write('{"k": "judge", "task": "t", "sid": "s1", "turn')  # torn
    tracemalloc.start()
    try:
        journal = Journal(path)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 12_000 * 80, held
    assert len(journal.judges) == 12_000 and len(journal.gens) == 1
    key = ("t", "s417", 3, "knowledge")
    assert key in journal.judges and journal.judged_ok(key, h)
    assert journal.judgment(key, h)["completions"] == ["417/3/knowledge/ok"]  # type: ignore[index]
    assert journal.judgment(key, "f" * 32) is None and not journal.judged_ok(key, "f" * 32)
    assert ("t", "s417", 4, "knowledge") not in journal.judges
    assert ("t", "s417", 3, "other") not in journal.judges
    assert ("t", "s1", -1, "m") not in journal.judges and journal.gen_ok(("t", "s1", 0))
    assert not journal.gen_ok(("t", "s1", 1)) and not journal.gen_ok(("t", "s2", 0))
    assert sorted(journal.judges)[:2] == [("t", "s0", 0, "consistency"), ("t", "s0", 0, "knowledge")]
    # An append over an indexed unit replaces its row; the torn tail was cut before it.
    journal.append({"k": "judge", "task": "t", "sid": "s417", "turn": 3, "metric": "knowledge",
                    "status": "api_error", "h": h, "completions": []})
    assert not journal.judged_ok(key, h) and journal.judgment(key, h)["status"] == "api_error"  # type: ignore[index]
    journal.close()
    again = Journal(path)
    assert len(again.judges) == 12_000 and not again.judged_ok(key, h)
    assert again.judged_ok(("t", "s416", 3, "knowledge"), h)
    again.close()
