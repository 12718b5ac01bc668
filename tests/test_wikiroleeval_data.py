"""Tests for the WikiRoleEval loader and validator (tasks/wikiroleeval/data.py)."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError, DataError
from tasks.wikiroleeval.data import (
    WikiItem,
    file_sha256,
    is_gold_candidate,
    load_wikiroleeval,
    resolve_data_path,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MINI = FIXTURES / "wikiroleeval_mini.jsonl"
TOPLEVEL = FIXTURES / "wikiroleeval_toplevel.jsonl"
RESPONSES = FIXTURES / "wikiroleeval_responses.jsonl"

SCORING_FIELDS = (
    "system", "prompts", "lang", "label", "summary", "candidates", "evidence", "rejection_labels"
)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


def _scoring(item: WikiItem) -> tuple[Any, ...]:
    return tuple(getattr(item, name) for name in SCORING_FIELDS)


def _to_toplevel(row: dict[str, Any], rejection_key: str = "rejection labels") -> dict[str, Any]:
    out = copy.deepcopy(row)
    meta = out["meta"]
    out["role_consist_cands"] = meta.pop("role_consist_cands")
    out["evidence"] = meta.pop("evidence")
    out[rejection_key] = meta.pop("rejection_labels")
    return out


# --- the fixture files themselves (other tests hand-compute scores from them) ---


def test_mini_fixture_shape() -> None:
    items = load_wikiroleeval(MINI)
    assert len(items) == 8
    assert [i.lang for i in items].count("en") == 5
    assert [i.lang for i in items].count("zh") == 3
    assert sum(len(i.prompts) for i in items) == 33
    assert sum(len(i.prompts) for i in items if i.lang == "en") == 21
    assert sum(len(i.prompts) for i in items if i.lang == "zh") == 12
    assert sum(sum(i.rejection_labels) for i in items) == 9
    assert [i.session_id for i in items] == [f"wre-{n:04d}" for n in range(1, 9)]
    gold_positions = set()
    for item in items:
        assert 3 <= len(item.prompts) <= 6
        assert 1 in item.rejection_labels and 0 in item.rejection_labels
        assert len(item.candidates) == 4
        matches = [k for k, cand in enumerate(item.candidates) if is_gold_candidate(cand, item.label)]
        assert len(matches) == 1, item.label
        gold_positions.add(matches[0])
        assert item.messages is None
    assert len(gold_positions) > 1, "gold candidate must not always sit in the same position"
    assert any(c.startswith("[") for i in items for c in i.candidates), "need a '[Name] summary' item"


def test_raw_is_the_original_object() -> None:
    items = load_wikiroleeval(MINI)
    assert [i.raw for i in items] == _rows(MINI)
    assert "ref_messages" in items[0].raw and "type" in items[0].raw and "source" in items[0].raw


def test_toplevel_fixture_matches_meta_layout() -> None:
    mini = {i.label: i for i in load_wikiroleeval(MINI)}
    top = load_wikiroleeval(TOPLEVEL)
    assert len(top) == 2
    assert {i.lang for i in top} == {"en", "zh"}
    assert "rejection labels" in top[0].raw and "rejection_labels" not in top[0].raw["meta"]
    for item in top:
        assert _scoring(item) == _scoring(mini[item.label])


@pytest.mark.parametrize("rejection_key", ["rejection labels", "rejection_labels"])
def test_all_items_identical_in_both_layouts(tmp_path: Path, rejection_key: str) -> None:
    rows = _rows(MINI)
    top = _write(tmp_path / "top.jsonl", [_to_toplevel(r, rejection_key) for r in rows])
    assert [_scoring(i) for i in load_wikiroleeval(top)] == [_scoring(i) for i in load_wikiroleeval(MINI)]


def test_label_summary_lang_may_be_top_level(tmp_path: Path) -> None:
    row = _to_toplevel(_rows(MINI)[0])
    for key in ("label", "summary", "lang"):
        row[key] = row["meta"].pop(key)
    (item,) = load_wikiroleeval(_write(tmp_path / "x.jsonl", [row]))
    assert _scoring(item) == _scoring(load_wikiroleeval(MINI)[0])


def test_field_in_both_places_with_equal_values_is_fine(tmp_path: Path) -> None:
    row = _rows(MINI)[0]
    row["evidence"] = list(row["meta"]["evidence"])
    row["rejection labels"] = list(row["meta"]["rejection_labels"])
    (item,) = load_wikiroleeval(_write(tmp_path / "x.jsonl", [row]))
    assert item.evidence == row["evidence"]


def test_blank_lines_skipped_but_counted(tmp_path: Path) -> None:
    rows = _rows(MINI)[:3]
    lines = ["", json.dumps(rows[0]), "   ", json.dumps(rows[1]), json.dumps(rows[2])]
    path = _write(tmp_path / "x.jsonl", lines)
    items = load_wikiroleeval(path)
    assert [i.line for i in items] == [2, 4, 5]
    assert [i.session_id for i in items] == ["wre-0002", "wre-0004", "wre-0005"]


def test_duplicate_sessions_allowed(tmp_path: Path) -> None:
    # Issue 9 §6: a duplicate is refused by default; --allow_duplicates keeps both (still warned).
    row = _rows(MINI)[0]
    items = load_wikiroleeval(_write(tmp_path / "x.jsonl", [row, row]), allow_duplicates=True)
    assert [i.session_id for i in items] == ["wre-0001", "wre-0002"]


def test_utf8_bom_and_crlf_tolerated(tmp_path: Path) -> None:
    rows = _rows(MINI)[:2]
    path = tmp_path / "x.jsonl"
    text = "\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    path.write_bytes(("\ufeff" + text + "\r\n").encode())
    assert [i.label for i in load_wikiroleeval(path)] == [r["meta"]["label"] for r in rows]


# --- validation errors: one line, path:line, the field as spelled in the file ---

Mutation = Callable[[dict[str, Any]], Any]


def _walk(row: dict[str, Any], path: str) -> tuple[Any, Any]:
    """Return (container, key) for a slash path such as ``meta/evidence/0`` (digits index lists)."""
    target: Any = row
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split("/")]
    for key in keys[:-1]:
        target = target[key]
    return target, keys[-1]


def _set(path: str, value: Any) -> Mutation:
    def mutate(row: dict[str, Any]) -> dict[str, Any]:
        target, key = _walk(row, path)
        target[key] = value
        return row

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(row: dict[str, Any]) -> dict[str, Any]:
        target, key = _walk(row, path)
        del target[key]
        return row

    return mutate


def _toplevel_then(mutation: Mutation) -> Mutation:
    return lambda row: mutation(_to_toplevel(row))


def _meta_plus_top(key: str, value: Any) -> Mutation:
    def mutate(row: dict[str, Any]) -> dict[str, Any]:
        row[key] = value
        return row

    return mutate


# Row 2 of the mini file is Marie Curie: 5 turns, lang en.
BROKEN: list[tuple[str, Mutation, str | None, str]] = [
    ("not_an_object", lambda row: [row], None, "expected a JSON object, got list"),
    ("missing_system", _delete("system"), "system", "missing"),
    ("system_not_str", _set("system", None), "system", "expected a string, got null"),
    ("prompts_empty", _set("prompts", []), "prompts", "non-empty list"),
    ("prompt_blank", _set("prompts/1", "  "), "prompts[1]", "non-empty string"),
    ("evidence_short", _set("meta/evidence", ["- a", "- b", "- c", "- d"]), "meta.evidence",
     "has 4 entries but 'prompts' has 5"),
    ("evidence_not_str", _set("meta/evidence/0", ["- a"]), "meta.evidence[0]", "expected a string, got list"),
    ("evidence_toplevel_short", _toplevel_then(_set("evidence", ["- a"])), "evidence",
     "has 1 entries but 'prompts' has 5"),
    ("label_bool", _set("meta/rejection_labels", [False, 0, 0, 1, 1]), "meta.rejection_labels[0]",
     "expected 0 or 1, got false"),
    ("label_string", _set("meta/rejection_labels", [0, "1", 0, 1, 1]), "meta.rejection_labels[1]",
     'expected 0 or 1, got "1"'),
    ("label_two", _set("meta/rejection_labels", [0, 0, 2, 1, 1]), "meta.rejection_labels[2]",
     "expected 0 or 1, got 2"),
    ("labels_toplevel_long", _toplevel_then(_set("rejection labels", [0, 0, 0, 1, 1, 1])), "rejection labels",
     "has 6 entries but 'prompts' has 5"),
    ("labels_missing", _delete("meta/rejection_labels"), "rejection_labels", "missing (looked for"),
    ("cands_without_gold", _set("meta/role_consist_cands", ["Lise Meitner", "Pierre Curie", "A", "B"]),
     "meta.role_consist_cands", "gold label 'Marie Curie' is not among the 4 candidates"),
    ("cands_empty", _set("meta/role_consist_cands", []), "meta.role_consist_cands", "non-empty list"),
    ("cands_missing", _delete("meta/role_consist_cands"), "role_consist_cands", "missing"),
    ("label_empty", _set("meta/label", ""), "meta.label", "non-empty string"),
    ("lang_fr", _set("meta/lang", "fr"), "meta.lang", 'expected "en" or "zh", got "fr"'),
    ("summary_null", _set("meta/summary", None), "meta.summary", "expected a string, got null"),
    ("meta_not_object", _set("meta", ["x"]), "meta", "expected an object, got list"),
    ("evidence_conflict", _meta_plus_top("evidence", ["- x"] * 5), "evidence",
     "differs from 'meta.evidence'"),
    ("labels_spelling_conflict", _toplevel_then(_meta_plus_top("rejection_labels", [1, 1, 1, 1, 1])),
     "rejection labels", "differs from 'rejection_labels'"),
]


@pytest.mark.parametrize(
    ("mutation", "field", "problem"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_broken_item_reports_one_line(
    tmp_path: Path, mutation: Mutation, field: str | None, problem: str
) -> None:
    rows = _rows(MINI)
    broken = mutation(copy.deepcopy(rows[1]))
    path = _write(tmp_path / "broken.jsonl", [rows[0], rows[2], broken, rows[3]])
    with pytest.raises(DataError) as info:
        load_wikiroleeval(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:3: ")
    if field is not None:
        assert f"field '{field}': " in message
    assert problem in message
    assert info.value.exit_code == 2


def test_exact_message_format(tmp_path: Path) -> None:
    row = _rows(MINI)[1]
    row["meta"]["evidence"] = row["meta"]["evidence"][:4]
    path = _write(tmp_path / "x.jsonl", [row])
    with pytest.raises(DataError) as info:
        load_wikiroleeval(path)
    assert str(info.value) == f"{path}:1: field 'meta.evidence': has 4 entries but 'prompts' has 5"


def test_invalid_json_line(tmp_path: Path) -> None:
    rows = _rows(MINI)
    path = _write(tmp_path / "x.jsonl", [rows[0], '{"system": "You are', rows[1]])
    with pytest.raises(DataError) as info:
        load_wikiroleeval(path)
    assert str(info.value).startswith(f"{path}:2: invalid JSON")
    assert "\n" not in str(info.value)


def test_invalid_utf8_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(json.dumps(_rows(MINI)[0]).encode() + b"\n\xff\xfe\n")
    with pytest.raises(DataError, match=r":2: not valid UTF-8"):
        load_wikiroleeval(path)


def test_first_bad_line_wins(tmp_path: Path) -> None:
    rows = _rows(MINI)
    bad_lang = _set("meta/lang", "de")(copy.deepcopy(rows[0]))
    bad_label = _set("meta/label", "")(copy.deepcopy(rows[1]))
    path = _write(tmp_path / "x.jsonl", [rows[2], bad_lang, bad_label])
    with pytest.raises(DataError, match=r":2: field 'meta.lang'"):
        load_wikiroleeval(path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="empty file"):
        load_wikiroleeval(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_wikiroleeval(tmp_path / "nope.jsonl")


# --- limit ---


def test_limit_keeps_first_items() -> None:
    items = load_wikiroleeval(MINI, limit=3)
    assert [i.line for i in items] == [1, 2, 3]
    assert len(load_wikiroleeval(MINI, limit=100)) == 8


def test_limit_still_validates_every_line(tmp_path: Path) -> None:
    rows = _rows(MINI)
    path = _write(tmp_path / "x.jsonl", [*rows[:3], _set("meta/lang", "fr")(rows[3])])
    with pytest.raises(DataError, match=r":4: field 'meta.lang'"):
        load_wikiroleeval(path, limit=1)


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_below_one_is_a_config_error(limit: int) -> None:
    with pytest.raises(ConfigError):
        load_wikiroleeval(MINI, limit=limit)


# --- candidates ---


@pytest.mark.parametrize(
    ("candidate", "label", "expected"),
    [
        ("Sherlock Holmes", "Sherlock Holmes", True),
        ("  Sherlock Holmes ", "Sherlock Holmes", True),
        ("[Edward III of England] Edward III was King of England.", "Edward III of England", True),
        ("Edward III of England, king of England", "Edward III of England", True),
        ("Edward III of England (1312–1377)", "Edward III of England", True),
        ("诸葛亮，字孔明", "诸葛亮", True),
        ("[诸葛亮] 三国时期蜀汉丞相", "诸葛亮", True),
        ("Alice", "Alice", True),
        ("Alicent Hightower", "Alice", False),
        ("[Jean-Pierre Sauvage] Marie Curie's successor", "Marie Curie", False),
        ("sherlock holmes", "Sherlock Holmes", False),
        ("Napoleon", "", False),
    ],
)
def test_is_gold_candidate(candidate: str, label: str, expected: bool) -> None:
    assert is_gold_candidate(candidate, label) is expected


# --- require_messages (the `ditto-bench judge` input) ---


def test_responses_fixture_loads_with_messages() -> None:
    items = load_wikiroleeval(RESPONSES, require_messages=True)
    mini = load_wikiroleeval(MINI)
    assert [_scoring(i) for i in items] == [_scoring(i) for i in mini]
    for item in items:
        assert item.messages is not None
        assert item.messages[0] == {"role": "system", "content": item.system}
        assert [m["content"] for m in item.messages[1::2]] == item.prompts
        assert len(item.messages[2::2]) == len(item.prompts)


def test_messages_not_required_by_default() -> None:
    items = load_wikiroleeval(RESPONSES)
    assert all(i.messages is None for i in items)
    assert "messages" in items[0].raw


def test_mini_file_lacks_messages() -> None:
    with pytest.raises(DataError, match=r":1: field 'messages': missing"):
        load_wikiroleeval(MINI, require_messages=True)


def _edit_messages(edit: Callable[[list[dict[str, Any]]], Any]) -> Mutation:
    def mutate(row: dict[str, Any]) -> dict[str, Any]:
        edit(row["messages"])
        return row

    return mutate


def _swap(messages: list[dict[str, Any]]) -> None:
    messages[3], messages[4] = messages[4], messages[3]


BROKEN_MESSAGES: list[tuple[str, Mutation, str, str]] = [
    ("missing_last_assistant", _edit_messages(lambda m: m.pop()), "messages",
     "turn 4: user message has no assistant reply"),
    ("missing_last_turn", _edit_messages(lambda m: m.__delitem__(slice(-2, None))), "messages",
     "has 3 assistant turns but 'prompts' has 4 (turn 4 missing)"),
    ("dropped_middle_turn", _edit_messages(lambda m: m.__delitem__(slice(3, 5))), "messages[3]",
     "turn 2: user content differs from 'prompts[1]'"),
    ("wrong_order", _edit_messages(_swap), "messages[3]", "turn 2: expected role 'user', got 'assistant'"),
    ("mismatched_user_text", _edit_messages(lambda m: m[5].update(content="Something else?")), "messages[5]",
     "turn 3: user content differs from 'prompts[2]'"),
    ("no_system_first", _edit_messages(lambda m: m.pop(0)), "messages[0]", "expected role 'system'"),
    ("assistant_content_null", _edit_messages(lambda m: m[2].update(content=None)), "messages[2]",
     "string 'role' and 'content'"),
    ("extra_turn", _edit_messages(lambda m: m.extend([{"role": "user", "content": "More?"},
                                                      {"role": "assistant", "content": "No."}])),
     "messages[9]", "turn 5: extra turn"),
    ("messages_not_list", _set("messages", "hello"), "messages", "expected a list of messages"),
    ("messages_empty", _set("messages", []), "messages", "is empty"),
]


@pytest.mark.parametrize(
    ("mutation", "field", "problem"), [b[1:] for b in BROKEN_MESSAGES], ids=[b[0] for b in BROKEN_MESSAGES]
)
def test_broken_messages(tmp_path: Path, mutation: Mutation, field: str, problem: str) -> None:
    rows = _rows(RESPONSES)
    assert len(rows[0]["prompts"]) == 4  # Sherlock Holmes; the expected messages above rely on it
    path = _write(tmp_path / "r.jsonl", [rows[1], mutation(copy.deepcopy(rows[0]))])
    with pytest.raises(DataError) as info:
        load_wikiroleeval(path, require_messages=True)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:2: field '{field}': ")
    assert problem in message


def test_messages_allow_other_system_text_and_empty_replies(tmp_path: Path) -> None:
    row = _rows(RESPONSES)[0]
    row["messages"][0]["content"] = "You are a detective."
    row["messages"][2]["content"] = ""
    row["messages"][4]["name"] = "extra keys are ignored"
    (item,) = load_wikiroleeval(_write(tmp_path / "r.jsonl", [row]), require_messages=True)
    assert item.messages is not None
    assert item.messages[0]["content"] == "You are a detective."
    assert item.messages[2] == {"role": "assistant", "content": ""}
    assert item.messages[4] == {"role": "assistant", "content": row["messages"][4]["content"]}


# --- helpers ---


def test_file_sha256() -> None:
    assert file_sha256(MINI) == hashlib.sha256(MINI.read_bytes()).hexdigest()


def test_resolve_data_path_prefers_given_file(tmp_path: Path) -> None:
    assert resolve_data_path(MINI, tmp_path / "cache") == MINI
    assert not (tmp_path / "cache").exists()
    with pytest.raises(DataError, match="data file not found"):
        resolve_data_path(tmp_path / "missing.jsonl", tmp_path / "cache")


def test_loaded_items_do_not_hold_the_parsed_lines(tmp_path: Path) -> None:
    # Each item keeps its validated fields; the original object (here with a 20 KB field the engine never
    # uses) is read back from the file when asked for, not held: memory is far below the file's size.
    import tracemalloc

    row = dict(_rows(MINI)[0])
    rows = []
    for i in range(200):
        r = json.loads(json.dumps(row))
        r["system"] = f"{r['system']} ({i})"
        r["unused"] = "x" * 20_000
        rows.append(r)
    path = _write(tmp_path / "big.jsonl", rows)
    tracemalloc.start()
    try:
        items = load_wikiroleeval(path)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < path.stat().st_size / 4, (held, path.stat().st_size)
    assert items[7].raw == rows[7]


def test_an_item_read_back_from_a_changed_file_is_an_error(tmp_path: Path) -> None:
    rows = _rows(MINI)
    path = _write(tmp_path / "x.jsonl", rows)
    items = load_wikiroleeval(path)
    edited = [dict(r) for r in rows]
    edited[1]["system"] = edited[1]["system"].upper()
    _write(path, edited)
    with pytest.raises(DataError, match=r"x\.jsonl:2: the file changed"):
        _ = items[1].raw


def test_given_replies_are_read_back_not_held(tmp_path: Path) -> None:
    # A judge run's replies (here 20 KB each) stay in the file: loading a response file holds far less than
    # the replies' size, and the replies read back are the file's assistant turns, in order.
    import tracemalloc

    row = dict(_rows(RESPONSES)[0])
    rows = []
    for i in range(100):
        r = json.loads(json.dumps(row))
        r["system"] = f"{r['system']} ({i})"
        r["messages"][0]["content"] = r["system"]
        for m in r["messages"][2::2]:
            m["content"] = f"reply {i} " + "y" * 20_000
        rows.append(r)
    path = _write(tmp_path / "responses.jsonl", rows)
    tracemalloc.start()
    try:
        items = load_wikiroleeval(path, require_messages=True)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < path.stat().st_size / 4, (held, path.stat().st_size)
    expected = [m["content"] for m in rows[7]["messages"][2::2]]
    replies = items[7].replies
    assert replies is not None and len(replies) == len(expected)
    assert list(replies) == expected and replies == expected and replies[1] == expected[1]
    assert replies[-1:] == expected[-1:]


def test_given_replies_read_back_from_a_changed_file_are_an_error(tmp_path: Path) -> None:
    rows = _rows(RESPONSES)
    path = _write(tmp_path / "r.jsonl", rows)
    items = load_wikiroleeval(path, require_messages=True)
    edited = json.loads(json.dumps(rows))
    edited[1]["messages"][2]["content"] += " (edited)"
    _write(path, edited)
    assert items[0].replies is not None and list(items[0].replies)  # line 1 is unchanged
    with pytest.raises(DataError, match=r"r\.jsonl:2: the file changed"):
        list(items[1].replies or ())
