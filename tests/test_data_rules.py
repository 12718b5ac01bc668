"""Issue 9 §6: one name rule for labels, candidates and verdicts; duplicate sessions refused or allowed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import DataError
from judges.names import normalize_name
from tasks.wikiroleeval.data import is_gold_candidate, load_wikiroleeval
from tasks.wikiroleeval.scoring import aggregate
from tests.test_e2e_wikiroleeval import _judge_args
from tests.wre_records import record, turn
from tests.wre_support import load_items, write_items

EN = "Analysis.\nThe most suitable role is [{}]"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Marie Curie ", "Marie Curie"),
        ("  Marie   Curie\t", "Marie Curie"),
        ("Marie\u00a0Curie", "Marie Curie"),  # no-break space
        ("Marie\u3000Curie", "Marie Curie"),  # ideographic space
        ("Ｍａｒｉｅ Ｃｕｒｉｅ", "Marie Curie"),  # full-width letters (NFKC)
        ("Marie\u200b Curie", "Marie Curie"),  # zero-width space
        ("\ufeffMarie Curie", "Marie Curie"),  # BOM
        ("李白（唐代诗人）", "李白(唐代诗人)"),
        ("marie curie", "marie curie"),  # case is kept: comparison stays case-sensitive
    ],
)
def test_normalize_name_golden(raw: str, expected: str) -> None:
    assert normalize_name(raw) == expected
    assert normalize_name(normalize_name(raw)) == normalize_name(raw)


def test_trailing_space_label_scores_like_a_clean_one() -> None:
    """Before: validation stripped, scoring compared raw, so every consistency turn of this session was 0."""
    clean = record("a", "en", "Bob", [0], [turn([EN.format("Bob")] * 3, ["0"] * 3, ["x\n8"] * 3)])
    spaced = record("a", "en", "Bob ", [0], [turn([EN.format("Bob")] * 3, ["0"] * 3, ["x\n8"] * 3)])
    wide = record("a", "en", "Ｂｏｂ", [0], [turn([EN.format(" Bob")] * 3, ["0"] * 3, ["x\n8"] * 3)])
    for rec in (clean, spaced, wide):
        assert aggregate([rec], seed=0, n_boot=10)["metrics"]["all"]["consistency"] == 1.0
    # a real miss stays a miss, and case still matters
    other = record("a", "en", "Bob ", [0], [turn([EN.format("bob")] * 3, ["0"] * 3, ["x\n8"] * 3)])
    assert aggregate([other], seed=0, n_boot=10)["metrics"]["all"]["consistency"] == 0.0


def test_validation_uses_the_same_rule() -> None:
    assert is_gold_candidate("Marie  Curie", "Marie Curie ")
    assert is_gold_candidate("[Ｍａｒｉｅ Ｃｕｒｉｅ] physicist", "Marie Curie")
    assert not is_gold_candidate("marie curie", "Marie Curie")


def _item(items: list[dict[str, Any]], label: str) -> dict[str, Any]:
    return next(i for i in items if i["meta"]["label"] == label)


def test_trailing_space_label_end_to_end(judge_server: Any, tmp_path: Path) -> None:
    item = _item(load_items(), "Sherlock Holmes")
    item["meta"]["label"] = "Sherlock Holmes "
    path = write_items(tmp_path / "r.jsonl", [item])
    judge_server.set_responder(
        lambda body: (
            EN.format("Sherlock Holmes")
            if "[Candidates Start]" in body["messages"][-1]["content"]
            else ("0" if "Output 1" in body["messages"][-1]["content"] else "x\n8")
        )
    )
    out = tmp_path / "run"
    assert (
        main(["judge", "--tasks", "wikiroleeval", "--responses", str(path), *_judge_args(judge_server, out)])
        == 0
    )
    res = json.loads((out / "results.json").read_text())["tasks"]["wikiroleeval"]
    assert res["metrics"]["all"]["consistency"] == 1.0
    # the released code compares raw strings: officially every turn misses
    assert res["official"]["metrics"]["all"]["consistency"] == 0.0


# --- duplicates ----------------------------------------------------------------------------------------


def _dup_file(tmp_path: Path) -> Path:
    items = load_items()
    a = _item(items, "Sherlock Holmes")
    b = _item(items, "林黛玉")
    return write_items(tmp_path / "dups.jsonl", [a, b, dict(a)])


def test_duplicate_session_refused_with_both_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _dup_file(tmp_path)
    with pytest.raises(DataError) as exc:
        load_wikiroleeval(path, require_messages=True)
    msg = str(exc.value)
    assert f"{path}:3: duplicate session" in msg and f"{path}:1" in msg and "--allow_duplicates" in msg
    assert f"{path}:3" in capsys.readouterr().err


def test_duplicate_session_cli_exit_2_and_nothing_written(
    judge_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _dup_file(tmp_path)
    out = tmp_path / "run"
    rc = main(["judge", "--tasks", "wikiroleeval", "--responses", str(path), *_judge_args(judge_server, out)])
    assert rc == 2
    assert not out.exists() and judge_server.requests == []
    err = capsys.readouterr().err
    assert f"{path}:3" in err and f"{path}:1" in err


def test_allow_duplicates_keeps_both_and_warns(
    judge_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _dup_file(tmp_path)
    judge_server.set_responder(lambda body: "0")
    out = tmp_path / "run"
    args = ["judge", "--tasks", "wikiroleeval", "--responses", str(path), "--allow_duplicates"]
    main([*args, *_judge_args(judge_server, out)])
    err = capsys.readouterr().err
    assert "duplicate session" in err and f"{path}:3" in err and f"{path}:1" in err
    res = json.loads((out / "results.json").read_text())["tasks"]["wikiroleeval"]
    assert res["n_sessions"] == 3


def test_mtbench_duplicate_question_refused(tmp_path: Path) -> None:
    from tasks.mtbench.task import make_roleplay_task
    from tests.test_mtbench_fidelity import MT_DIR

    data = tmp_path / "mt"
    data.mkdir()
    for name in ("judge_prompts.jsonl",):
        (data / name).write_bytes((MT_DIR / name).read_bytes())
    lines = (MT_DIR / "question.jsonl").read_text(encoding="utf-8").splitlines()
    roleplay = [json.loads(x) for x in lines if json.loads(x)["category"] == "roleplay"][:2]
    copy = dict(roleplay[0], question_id=9999)
    (data / "question.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in [*roleplay, copy]), encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"question.jsonl:3: duplicate question.*question.jsonl:1"):
        make_roleplay_task().load(data, limit=None, responses=None)
    task = make_roleplay_task(allow_duplicates=True)
    assert len(task.load(data, limit=None, responses=None).sessions) == 3
