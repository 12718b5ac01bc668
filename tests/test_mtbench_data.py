"""MT-Bench data: loading, validation, FastChat layouts, answer files, and the checksummed download."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import DataError
from tasks.mtbench import data as mt_data
from tasks.mtbench.data import load_answers, load_questions, temperature_for
from tasks.mtbench.task import make_full_task, make_roleplay_task

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mt_bench"


@pytest.fixture(scope="module")
def mt_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("shared MT-Bench data not found at ../shared/data/mt_bench")
    return SHARED


def test_official_questions(mt_dir: Path) -> None:
    qs = load_questions(mt_dir / "question.jsonl")
    assert len(qs) == 80 and all(len(q.turns) == 2 for q in qs)
    roleplay = [q.question_id for q in qs if q.category == "roleplay"]
    assert roleplay == list(range(91, 101))
    temps = {q.category: temperature_for(q) for q in qs}
    assert temps == {
        "writing": 0.7,
        "roleplay": 0.7,
        "reasoning": 0.0,
        "math": 0.0,
        "coding": 0.0,
        "extraction": 0.0,
        "stem": 0.1,
        "humanities": 0.1,
    }


def test_roleplay_task_sessions(mt_dir: Path) -> None:
    task = make_roleplay_task(shuffle_candidates=True, seed=7)
    data = task.load(mt_dir, limit=None, responses=None)
    assert [s.session_id for s in data.sessions] == [f"q{i}" for i in range(91, 101)]
    s = data.sessions[0]
    assert s.system is None and len(s.prompts) == 2
    assert s.gen_overrides == {"temperature": 0.7, "max_gen_toks": 1024}
    assert isinstance(data.sha256, dict)
    assert data.sha256["question.jsonl"] == mt_data.QUESTIONS.remote.sha256
    assert "reference_answer/gpt-4.jsonl" not in data.sha256  # roleplay never uses references
    hashes = task.template_hashes()
    assert set(hashes) == {"single-v1", "single-v1-multi-turn", "judge_prompts.jsonl"}


def test_full_task_loads_references(mt_dir: Path) -> None:
    task = make_full_task()
    data = task.load(mt_dir, limit=None, responses=None)
    assert len(data.sessions) == 80
    assert isinstance(data.sha256, dict)
    assert data.sha256["reference_answer/gpt-4.jsonl"] == mt_data.REFERENCES.remote.sha256
    assert len(task.template_hashes()) == 5
    assert len(task.load(mt_dir, limit=3, responses=None).sessions) == 3


def _fastchat_tree(root: Path, mt_dir: Path) -> Path:
    """FastChat's own layout: data/judge_prompts.jsonl next to data/mt_bench/."""
    bench = root / "data" / "mt_bench"
    (bench / "reference_answer").mkdir(parents=True)
    shutil.copy(mt_dir / "question.jsonl", bench / "question.jsonl")
    shutil.copy(mt_dir / "reference_answer" / "gpt-4.jsonl", bench / "reference_answer" / "gpt-4.jsonl")
    shutil.copy(mt_dir / "judge_prompts.jsonl", root / "data" / "judge_prompts.jsonl")
    return bench


def test_judge_prompts_one_level_up(tmp_path: Path, mt_dir: Path) -> None:
    bench = _fastchat_tree(tmp_path, mt_dir)
    data = make_full_task().load(bench, limit=None, responses=None)
    assert isinstance(data.sha256, dict)
    assert data.sha256["judge_prompts.jsonl"] == mt_data.JUDGE_PROMPTS.remote.sha256


def test_missing_and_bad_files(tmp_path: Path, mt_dir: Path) -> None:
    with pytest.raises(DataError, match="expected a folder"):
        make_roleplay_task().load(mt_dir / "question.jsonl", limit=None, responses=None)
    (tmp_path / "question.jsonl").write_text((mt_dir / "question.jsonl").read_text(encoding="utf-8"))
    with pytest.raises(DataError, match="judge_prompts.jsonl not found"):
        make_roleplay_task().load(tmp_path, limit=None, responses=None)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"question_id": 1, "category": "x", "turns": ["a"]}\n\n{"question_id": 1,\n', encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"bad\.jsonl:3: invalid JSON"):
        load_questions(bad)
    bad.write_text(
        '{"question_id": 1, "category": "x", "turns": ["a"]}\n{"question_id": 1, "category": "x", '
        '"turns": ["b"]}\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"bad\.jsonl:2: field 'question_id': 1 already used on line 1"):
        load_questions(bad)
    bad.write_text('{"question_id": "1", "category": "x", "turns": ["a"]}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: field 'question_id'"):
        load_questions(bad)


def test_changed_prompt_placeholder_is_refused(tmp_path: Path, mt_dir: Path) -> None:
    bench = _fastchat_tree(tmp_path, mt_dir)
    prompts = tmp_path / "data" / "judge_prompts.jsonl"
    prompts.write_text(prompts.read_text(encoding="utf-8").replace("{answer}", "{reply}"), encoding="utf-8")
    with pytest.raises(DataError, match="unknown placeholder"):
        make_roleplay_task().load(bench, limit=None, responses=None)


def test_answer_file_duplicates_keep_last(tmp_path: Path, mt_dir: Path) -> None:
    lines = (mt_dir / "model_answer" / "alpaca-13b.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(next(line for line in lines if json.loads(line)["question_id"] == 91))
    stale = dict(first, choices=[{"index": 0, "turns": ["stale 1", "stale 2"]}])
    path = tmp_path / "my-model.jsonl"
    path.write_text(json.dumps(stale) + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    af = load_answers(path)
    assert af.model == "my-model"  # FastChat's rule: the file name, not model_id
    assert af.duplicates == {91: 1}
    assert af.answers[91].turns == tuple(first["choices"][0]["turns"])
    data = make_roleplay_task().load(mt_dir, limit=None, responses=path)
    assert data.sessions[0].given_replies == first["choices"][0]["turns"]


def test_answer_file_missing_question(tmp_path: Path, mt_dir: Path) -> None:
    lines = (mt_dir / "model_answer" / "alpaca-13b.jsonl").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "partial.jsonl"
    path.write_text(
        "\n".join(x for x in lines if json.loads(x)["question_id"] != 95) + "\n", encoding="utf-8"
    )
    with pytest.raises(DataError, match="no answer for question_id 95"):
        make_roleplay_task().load(mt_dir, limit=None, responses=path)


# ------------------------------------------------------------------------------------------- download


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        pass


@pytest.fixture
def mirror(tmp_path: Path, mt_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A loopback HTTP server laid out like FastChat's fastchat/llm_judge/data; upstream is pointed at it
    too."""
    root = tmp_path / "mirror"
    _fastchat_tree(root, mt_dir)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/data"
    monkeypatch.setenv(mt_data.MIRRORS_ENV, base)
    # Never reach the real upstream from a test: a missing path on the same loopback server.
    monkeypatch.setattr(mt_data, "UPSTREAM_DATA_URL", f"http://127.0.0.1:{server.server_address[1]}/nowhere")
    try:
        yield root / "data"
    finally:
        server.shutdown()
        server.server_close()


def test_download_verified_and_cached(mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_full_task().load(None, limit=None, responses=None)
    assert len(data.sessions) == 80
    assert data.sha256 == {
        "question.jsonl": mt_data.QUESTIONS.remote.sha256,
        "judge_prompts.jsonl": mt_data.JUDGE_PROMPTS.remote.sha256,
        "reference_answer/gpt-4.jsonl": mt_data.REFERENCES.remote.sha256,
    }
    # Second load: served from the cache (the mirror is gone).
    monkeypatch.setenv(mt_data.MIRRORS_ENV, "http://127.0.0.1:9/unreachable")
    assert len(make_roleplay_task().load(None, limit=None, responses=None).sessions) == 10


def test_download_checksum_mismatch_is_refused(mirror: Path) -> None:
    q = mirror / "mt_bench" / "question.jsonl"
    q.write_bytes(q.read_bytes().replace(b"Elon Musk", b"Elon Muzk"))
    with pytest.raises(DataError, match="could not download mt_bench-question.jsonl") as err:
        make_roleplay_task().load(None, limit=None, responses=None)
    assert "sha256 mismatch" in str(err.value)
