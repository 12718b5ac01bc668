"""Fidelity: replaying FastChat's answers and published GPT-4 ratings reproduces the published roleplay
numbers.

The test server plays the model under test (the recorded ``model_answer/<model>.jsonl`` answers) and the judge
(the published rating of each question and turn, from ``derived/gpt-4_single_roleplay_5models.tsv``). It
answers a judge request with a rating only when the request is exactly FastChat's prompt for that question and
turn, so the numbers below come out only when generation, prompt filling, parsing and aggregation all match
FastChat.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.cli import main
from tasks.mtbench.data import load_answers, load_judge_prompts, load_questions, load_references
from tasks.mtbench.replay import FastChatReplay, load_published_ratings
from tests.support.fake_openai import FakeOpenAI

MT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mt_bench"
RATINGS = MT_DIR / "derived" / "gpt-4_single_roleplay_5models.tsv"

# mtbench.md §10: FastChat's official gpt-4_single.jsonl, roleplay (q91-100): turn 1, turn 2, both turns.
PUBLISHED = {
    "gpt-4": (8.400, 9.400, 8.900),
    "claude-v1": (8.700, 8.300, 8.500),
    "gpt-3.5-turbo": (8.200, 8.600, 8.400),
    "vicuna-13b-v1.3": (7.250, 7.100, 7.175),
    "alpaca-13b": (5.900, 5.000, 5.450),
}

pytestmark = pytest.mark.skipif(not MT_DIR.is_dir(), reason="shared MT-Bench data not found at ../shared")


def make_replay(model: str, answers: Path | None = None) -> FastChatReplay:
    """The replay responder of one model (its recorded answers, the published ratings)."""
    return FastChatReplay(
        questions=load_questions(MT_DIR / "question.jsonl"),
        answers=load_answers(answers or MT_DIR / "model_answer" / f"{model}.jsonl"),
        ratings=load_published_ratings(RATINGS),
        prompts=load_judge_prompts(MT_DIR / "judge_prompts.jsonl"),
        references=load_references(MT_DIR / "reference_answer" / "gpt-4.jsonl"),
        model=model,
    )


def judge_flags(server: FakeOpenAI) -> list[str]:
    return ["--judge_base_url", server.base_url, "--judge_model", "gpt-4", "--bootstrap_resamples", "200"]


def task_results(run_dir: Path, task: str = "mtbench_roleplay") -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text(encoding="utf-8"))["tasks"][task]


def show_result(path: Path) -> dict[str, dict[str, float]]:
    """FastChat show_result.py (single): drop score -1, mean per model for turn 1, turn 2 and all rows."""
    df_all = pd.read_json(path, lines=True)
    df = df_all[["model", "score", "turn"]]
    df = df[df["score"] != -1]
    out: dict[str, dict[str, float]] = {}
    for model, g in df.groupby("model"):
        out[str(model)] = {
            "turn1": float(g[g["turn"] == 1]["score"].mean()),
            "turn2": float(g[g["turn"] == 2]["score"].mean()),
            "all": float(g["score"].mean()),
        }
    return out


def assert_published(res: dict[str, Any], model: str) -> None:
    t1, t2, both = PUBLISHED[model]
    m = res["metrics"]
    assert (m["turn1"], m["turn2"], m["all"]) == (
        pytest.approx(t1, abs=1e-12),
        pytest.approx(t2, abs=1e-12),
        pytest.approx(both, abs=1e-12),
    ), f"{model}: {m}"
    assert res["n_valid"] == 20
    assert all(v == 0 for v in res["failures"].values()), res["failures"]


def test_published_ratings_file_matches_the_published_means() -> None:
    ratings = load_published_ratings(RATINGS)
    for model, (t1, t2, both) in PUBLISHED.items():
        turn = {t: [float(v) for (m, _, tt), v in ratings.items() if m == model and tt == t] for t in (1, 2)}
        assert len(turn[1]) == len(turn[2]) == 10
        assert sum(turn[1]) / 10 == pytest.approx(t1)
        assert sum(turn[2]) / 10 == pytest.approx(t2)
        assert sum(turn[1] + turn[2]) / 20 == pytest.approx(both)


@pytest.mark.parametrize("model", list(PUBLISHED))
def test_run_reproduces_published_roleplay(model: str, fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    replay = make_replay(model)
    fake_openai.set_responder(replay)
    out = tmp_path / "run"
    rc = main(
        [
            "run",
            "--model",
            "local-chat-completions",
            "--model_args",
            f"model={model},base_url={fake_openai.chat_url},num_concurrent=4",
            "--tasks",
            "mtbench_roleplay",
            "--data_path",
            str(MT_DIR),
            "--output_path",
            str(out),
            *judge_flags(fake_openai),
        ]
    )
    assert rc == 0
    assert replay.mismatches == []
    res = task_results(out)
    assert_published(res, model)
    assert res["by_category"]["roleplay"] == res["metrics"]

    # Generation as FastChat does it: no system message, roleplay temperature 0.7, 1024 new tokens.
    bodies = [r["body"] for r in fake_openai.requests]
    gen = [b for b in bodies if b["messages"][0]["role"] != "system"]
    judge = [b for b in bodies if b["messages"][0]["role"] == "system"]
    assert len(gen) == 20 and len(judge) == 20
    assert {(b["model"], b["temperature"], b["max_tokens"]) for b in gen} == {(model, 0.7, 1024)}
    assert sum(len(b["messages"]) == 3 for b in gen) == 10  # turn 2 carries turn 1 and the model's own answer
    # Judging as FastChat does it: gpt-4, temperature 0, one sample, max_tokens 2048.
    assert {(b["model"], b["temperature"], b["max_tokens"], b.get("n", 1)) for b in judge} == {
        ("gpt-4", 0, 2048, 1)
    }

    # FastChat's own aggregation of the exported judgments gives the same numbers.
    exported = out / "fastchat" / "mtbench_roleplay" / "model_judgment" / "gpt-4_single.jsonl"
    assert show_result(exported)[model] == pytest.approx(res["metrics"])
    answers = load_answers(out / "fastchat" / "mtbench_roleplay" / "model_answer" / f"{model}.jsonl")
    original = load_answers(MT_DIR / "model_answer" / f"{model}.jsonl")
    assert {q: a.turns for q, a in answers.answers.items()} == {
        q: original.answers[q].turns for q in range(91, 101)
    }


@pytest.mark.parametrize("model", list(PUBLISHED))
def test_judge_mode_reproduces_published_roleplay(
    model: str, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    replay = make_replay(model)
    fake_openai.set_responder(replay)
    out = tmp_path / "judged"
    answers = MT_DIR / "model_answer" / f"{model}.jsonl"
    rc = main(
        [
            "judge",
            "--tasks",
            "mtbench_roleplay",
            "--responses",
            str(answers),
            "--data_path",
            str(MT_DIR),
            "--output_path",
            str(out),
            *judge_flags(fake_openai),
        ]
    )
    assert rc == 0
    assert replay.mismatches == []
    assert fake_openai.count() == 20  # judge calls only
    assert_published(task_results(out), model)
    rows = [
        json.loads(x) for x in (out / "fastchat/mtbench_roleplay/model_judgment/gpt-4_single.jsonl").open()
    ]
    assert len(rows) == 20
    assert set(rows[0]) == {
        "question_id",
        "model",
        "judge",
        "user_prompt",
        "judgment",
        "score",
        "turn",
        "tstamp",
    }
    assert {r["model"] for r in rows} == {model}  # the answer file's name, FastChat's rule
    assert {(r["turn"], tuple(r["judge"])) for r in rows} == {
        (1, ("gpt-4", "single-v1")),
        (2, ("gpt-4", "single-v1-multi-turn")),
    }
    if model == "vicuna-13b-v1.3":
        q94 = next(r for r in rows if r["question_id"] == 94 and r["turn"] == 1)
        assert q94["score"] == 8.5 and isinstance(q94["score"], float)


def test_judge_answers_flag(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.set_responder(make_replay("alpaca-13b"))
    rc = main(
        [
            "judge",
            "--tasks",
            "mtbench_roleplay",
            "--answers",
            str(MT_DIR / "model_answer" / "alpaca-13b.jsonl"),
            "--data_path",
            str(MT_DIR),
            "--output_path",
            str(tmp_path / "judged"),
            *judge_flags(fake_openai),
        ]
    )
    assert rc == 0
    assert_published(task_results(tmp_path / "judged"), "alpaca-13b")
