"""MT-Bench through the CLI: one run with WikiRoleEval, failure states, resume, the full benchmark, dry
run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.cli import main
from tasks.mtbench.data import load_answers, load_questions
from tests.support.fake_openai import FakeOpenAI, Fault
from tests.test_mtbench_fidelity import MT_DIR, PUBLISHED, judge_flags, make_replay, show_result, task_results

REPO = Path(__file__).resolve().parents[1]
WRE_MINI = REPO / "tests" / "fixtures" / "wikiroleeval_mini.jsonl"

pytestmark = pytest.mark.skipif(not MT_DIR.is_dir(), reason="shared MT-Bench data not found at ../shared")


def _wre_stub(body: dict[str, Any]) -> str:
    """Minimal WikiRoleEval model and judge replies (format only; not a fidelity check)."""
    content = body["messages"][-1]["content"]
    if "most suitable role" in content or "最符合的角色" in content:
        return "The most suitable role is [Sherlock Holmes]"
    if "[Tips" in content or "提示" in content or "1 to 10" in content or "1到10" in content:
        return "Fine.\n7"
    if ("refus" in content or "拒" in content) and "score" not in content.lower():
        return "1"
    return "I am the character."


def _judge_cmd(
    answers: Path, out: Path, server: FakeOpenAI, *extra: str, task: str = "mtbench_roleplay"
) -> list[str]:
    return [
        "judge",
        "--tasks",
        task,
        "--responses",
        str(answers),
        "--data_path",
        str(MT_DIR),
        "--output_path",
        str(out),
        *judge_flags(server),
        *extra,
    ]


def test_one_run_with_wikiroleeval(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    replay = make_replay("gpt-3.5-turbo")
    firsts = list(replay.by_first_turn)

    def responder(body: dict[str, Any]) -> str:
        text = "\n".join(str(m.get("content")) for m in body["messages"])
        return replay(body) if any(f in text for f in firsts) else _wre_stub(body)

    fake_openai.set_responder(responder)
    out = tmp_path / "run"
    rc = main(
        [
            "run",
            "--model",
            "local-chat-completions",
            "--model_args",
            f"model=gpt-3.5-turbo,base_url={fake_openai.chat_url},num_concurrent=4",
            "--tasks",
            "mtbench_roleplay,wikiroleeval",
            "--data_path",
            f"mtbench_roleplay={MT_DIR},wikiroleeval={WRE_MINI}",
            "--output_path",
            str(out),
            "--judge_base_url",
            fake_openai.base_url,
            "--bootstrap_resamples",
            "100",
        ]
    )
    assert rc == 0 and replay.mismatches == []
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert set(results["tasks"]) == {"mtbench_roleplay", "wikiroleeval"}
    assert results["tasks"]["mtbench_roleplay"]["metrics"] == pytest.approx(
        dict(zip(("turn1", "turn2", "all"), PUBLISHED["gpt-3.5-turbo"], strict=True))
    )
    spec = json.loads((out / "run.json").read_text(encoding="utf-8"))["spec"]
    # each task keeps its own judge defaults: MT-Bench gpt-4 at temperature 0 with one sample
    assert spec["tasks"]["mtbench_roleplay"]["judge"] == {
        "model": "gpt-4",
        "temperature": 0.0,
        "samples": 1,
        "max_tokens": 2048,
    }
    assert spec["tasks"]["wikiroleeval"]["judge"]["model"] == "gpt-4-1106-preview"
    assert "single-v1" in spec["tasks"]["mtbench_roleplay"]["templates"]
    samples = [json.loads(x) for x in (out / "samples.jsonl").open(encoding="utf-8")]
    mt = [s for s in samples if s["task"] == "mtbench_roleplay"]
    assert [s["session_id"] for s in mt] == [f"q{i}" for i in range(91, 101)]
    assert mt[0]["turns"][1]["generation"]["gen_kwargs"]["temperature"] == 0.7


def test_api_error_is_counted_then_resumed(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    model = "gpt-3.5-turbo"
    fake_openai.set_responder(make_replay(model))
    # Every judge request about q92 (Sheldon) fails with HTTP 500 during the first invocation.
    fake_openai.add_fault(
        Fault(kind="status", status=500, times=50, match=lambda b: "Sheldon" in json.dumps(b["messages"]))
    )
    out = tmp_path / "judged"
    answers = MT_DIR / "model_answer" / f"{model}.jsonl"
    rc = main(_judge_cmd(answers, out, fake_openai, "--judge_max_retries", "0"))
    assert rc == 1  # incomplete: re-run to retry
    res = task_results(out)
    assert res["failures"]["api_error"] == 2 and res["n_valid"] == 18
    # q92 published: 5 / 6; the failed rows are excluded, not scored as 0 or -1
    assert res["metrics"]["turn1"] == pytest.approx((8.2 * 10 - 5) / 9)
    assert res["metrics"]["all"] == pytest.approx((8.4 * 20 - 11) / 18)
    exported = out / "fastchat/mtbench_roleplay/model_judgment/gpt-4_single.jsonl"
    rows = [json.loads(x) for x in exported.open(encoding="utf-8")]
    assert sorted((r["question_id"], r["judgment"], r["score"]) for r in rows if r["score"] == -1) == [
        (92, "$ERROR$", -1),
        (92, "$ERROR$", -1),
    ]
    assert show_result(exported)[model] == pytest.approx(res["metrics"])

    fake_openai.reset()
    fake_openai.set_responder(make_replay(model))
    assert main(_judge_cmd(answers, out, fake_openai, "--judge_max_retries", "0")) == 0
    assert fake_openai.count() == 2  # only the two failed calls
    assert task_results(out)["metrics"] == pytest.approx(
        dict(zip(("turn1", "turn2", "all"), PUBLISHED[model], strict=True))
    )
    assert main(_judge_cmd(answers, out, fake_openai, "--judge_max_retries", "0")) == 0
    assert fake_openai.count() == 2  # nothing left to do


def test_unparseable_rating_is_a_counted_parse_error(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    replay = make_replay("alpaca-13b")

    def responder(body: dict[str, Any]) -> str:
        reply = replay(body)
        if "Sheldon" in json.dumps(body["messages"]) and body["messages"][0]["content"].startswith("You are"):
            return "I will not give a number."  # q92 turn 1
        return reply

    fake_openai.set_responder(responder)
    out = tmp_path / "judged"
    assert main(_judge_cmd(MT_DIR / "model_answer" / "alpaca-13b.jsonl", out, fake_openai)) == 0
    res = task_results(out)
    assert res["failures"]["parse_error"] == 1 and res["failures"]["not_scored"] == 1
    assert res["n_valid_by_turn"] == {"turn1": 9, "turn2": 10}
    assert res["metrics"]["turn1"] == pytest.approx((5.9 * 10 - 6) / 9)
    assert res["metrics"]["turn2"] == pytest.approx(5.0)


def test_duplicate_answers_last_wins_and_is_counted(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    src = MT_DIR / "model_answer" / "claude-v1.jsonl"
    lines = src.read_text(encoding="utf-8").splitlines()
    q91 = json.loads(next(x for x in lines if json.loads(x)["question_id"] == 91))
    stale = dict(q91, choices=[{"index": 0, "turns": ["old answer", "old answer 2"]}])
    answers = tmp_path / "claude-v1.jsonl"
    answers.write_text(json.dumps(stale) + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    fake_openai.set_responder(make_replay("claude-v1", answers))
    out = tmp_path / "judged"
    assert main(_judge_cmd(answers, out, fake_openai)) == 0
    res = task_results(out)
    assert res["failures"]["duplicate_answers"] == 1
    assert res["metrics"] == pytest.approx(
        dict(zip(("turn1", "turn2", "all"), PUBLISHED["claude-v1"], strict=True))
    )


def test_missing_answer_is_exit_2_before_any_call(
    fake_openai: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = (MT_DIR / "model_answer" / "gpt-4.jsonl").read_text(encoding="utf-8").splitlines()
    answers = tmp_path / "partial.jsonl"
    answers.write_text(
        "\n".join(x for x in lines if json.loads(x)["question_id"] != 97) + "\n", encoding="utf-8"
    )
    out = tmp_path / "judged"
    assert main(_judge_cmd(answers, out, fake_openai)) == 2
    assert "no answer for question_id 97" in capsys.readouterr().err
    assert fake_openai.count() == 0 and not out.exists()


def test_full_mtbench_per_category(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    questions = load_questions(MT_DIR / "question.jsonl")
    model = "gpt-4"
    # a synthetic but distinct rating for every question and turn, some of them halves
    ratings = {
        (
            model,
            q.question_id,
            t,
        ): f"{(q.question_id * 7 + t * 3) % 10 + 1}{'.5' if q.question_id % 9 == 0 else ''}"
        for q in questions
        for t in (1, 2)
    }
    replay = make_replay(model)
    replay.ratings = ratings
    fake_openai.set_responder(replay)
    out = tmp_path / "full"
    assert main(_judge_cmd(MT_DIR / "model_answer" / f"{model}.jsonl", out, fake_openai, task="mtbench")) == 0
    assert replay.mismatches == []
    res = task_results(out, "mtbench")
    cat = {q.question_id: q.category for q in questions}
    df = pd.DataFrame(
        [{"qid": q, "turn": t, "score": float(v), "category": cat[q]} for (_, q, t), v in ratings.items()]
    )
    assert res["metrics"]["all"] == pytest.approx(df["score"].mean())
    assert res["metrics"]["turn2"] == pytest.approx(df[df.turn == 2]["score"].mean())
    assert set(res["by_category"]) == set(df["category"])
    for c, g in df.groupby("category"):
        assert res["by_category"][c]["all"] == pytest.approx(g["score"].mean())
        assert res["by_category"][c]["turn1"] == pytest.approx(g[g.turn == 1]["score"].mean())
    assert res["n_valid"] == 160
    # math/reasoning/coding were graded with the reference-answer prompts
    samples = {s["question_id"]: s for s in map(json.loads, (out / "samples.jsonl").open(encoding="utf-8"))}
    assert samples[111]["judge_prompts"] == ["single-math-v1", "single-math-v1-multi-turn"]
    assert samples[111]["turns"][0]["judgments"]["rating"]["template"] == "single-math-v1"
    assert (
        "[The Start of Reference Answer]"
        in samples[111]["turns"][0]["judgments"]["rating"]["prompt"][1]["content"]
    )
    assert samples[81]["judge_prompts"] == ["single-v1", "single-v1-multi-turn"]


def test_dry_run_counts_calls(
    fake_openai: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dry"
    rc = main(
        _judge_cmd(MT_DIR / "model_answer" / "gpt-4.jsonl", out, fake_openai, "--dry_run", task="mtbench")
    )
    assert rc == 0 and fake_openai.count() == 0
    assert "160" in capsys.readouterr().out


def test_rescore_reproduces_results(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.set_responder(make_replay("vicuna-13b-v1.3"))
    out = tmp_path / "judged"
    assert main(_judge_cmd(MT_DIR / "model_answer" / "vicuna-13b-v1.3.jsonl", out, fake_openai)) == 0
    before = task_results(out)
    shutil.rmtree(out / "fastchat")
    assert main(["score", str(out), "--bootstrap_resamples", "200"]) == 0
    after = task_results(out)
    assert after["metrics"] == before["metrics"] and after["ci95"] == before["ci95"]
    exported = out / "fastchat/mtbench_roleplay/model_answer/vicuna-13b-v1.3.jsonl"
    assert len(load_answers(exported).answers) == 10
