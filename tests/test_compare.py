"""``ditto-bench compare``: paired differences with bootstrap CIs and a Wilcoxon test, for MT-Bench and
WikiRoleEval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from harness.cli import main
from leaderboards.cli import compare_main
from leaderboards.compare import compare_runs
from tests.support.fake_openai import FakeOpenAI
from tests.test_mtbench_fidelity import MT_DIR, judge_flags, make_replay

REPO = Path(__file__).resolve().parents[1]
WRE_RESPONSES = REPO / "tests" / "fixtures" / "wikiroleeval_responses.jsonl"


def _mt_judged(server: FakeOpenAI, model: str, out: Path) -> Path:
    server.set_responder(make_replay(model))
    rc = main(
        [
            "judge",
            "--tasks",
            "mtbench_roleplay",
            "--responses",
            str(MT_DIR / "model_answer" / f"{model}.jsonl"),
            "--data_path",
            str(MT_DIR),
            "--output_path",
            str(out),
            *judge_flags(server),
        ]
    )
    assert rc == 0
    return out


def _wre_judged(server: FakeOpenAI, knowledge: int, out: Path) -> Path:
    def responder(body: dict[str, Any]) -> str:
        content = body["messages"][-1]["content"]
        if "most suitable role" in content or "最符合的角色" in content:
            return "The most suitable role is [Sherlock Holmes]"
        if "[Tips" in content or "提示" in content or "1 to 10" in content or "1到10" in content:
            return f"Reasoning.\n{knowledge}"
        return "1"

    server.set_responder(responder)
    rc = main(
        [
            "judge",
            "--tasks",
            "wikiroleeval",
            "--responses",
            str(WRE_RESPONSES),
            "--output_path",
            str(out),
            "--judge_base_url",
            server.base_url,
            "--bootstrap_resamples",
            "100",
            "--no_cache",
        ]
    )
    assert rc in (0, 1)
    return out


@pytest.mark.skipif(not MT_DIR.is_dir(), reason="shared MT-Bench data not found at ../shared")
def test_mtbench_paired_difference(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    a = _mt_judged(fake_openai, "gpt-3.5-turbo", tmp_path / "a")
    b = _mt_judged(fake_openai, "gpt-4", tmp_path / "b")
    results, notes = compare_runs(a, b, seed=0, n_boot=500)
    by = {r.split: r for r in results}
    assert set(by) == {"all", "turn1", "turn2"}
    assert (
        by["all"].diff == pytest.approx(8.9 - 8.4) and by["all"].n_pairs == 20 and by["all"].n_sessions == 10
    )
    assert by["turn1"].diff == pytest.approx(8.4 - 8.2) and by["turn2"].diff == pytest.approx(9.4 - 8.6)
    lo, hi = by["all"].ci95 or [0.0, 0.0]
    diff = by["all"].diff
    assert diff is not None and lo <= diff <= hi
    # the Wilcoxon test runs on per-question mean differences
    a_rows = {
        (r["question_id"], r["turn"]): r["score"]
        for r in map(json.loads, (a / "fastchat/mtbench_roleplay/model_judgment/gpt-4_single.jsonl").open())
    }
    b_rows = {
        (r["question_id"], r["turn"]): r["score"]
        for r in map(json.loads, (b / "fastchat/mtbench_roleplay/model_judgment/gpt-4_single.jsonl").open())
    }
    per_q = [sum(b_rows[(q, t)] - a_rows[(q, t)] for t in (1, 2)) / 2 for q in range(91, 101)]
    assert by["all"].p_wilcoxon == pytest.approx(stats.wilcoxon(per_q, zero_method="wilcox").pvalue)
    assert notes == [
        n for n in notes if "data_sha256" in n
    ]  # same judge and templates; only the answers differ


@pytest.mark.skipif(not MT_DIR.is_dir(), reason="shared MT-Bench data not found at ../shared")
def test_compare_cli_formats_and_refusals(
    fake_openai: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _mt_judged(fake_openai, "alpaca-13b", tmp_path / "a")
    b = _mt_judged(fake_openai, "vicuna-13b-v1.3", tmp_path / "b")
    capsys.readouterr()
    assert compare_main([str(a), str(b), "--format", "json", "--bootstrap_resamples", "200"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["difference"] == "B - A"
    assert {r["split"]: round(r["diff"], 6) for r in doc["results"]} == {
        "all": round(7.175 - 5.45, 6),
        "turn1": round(7.25 - 5.9, 6),
        "turn2": round(7.1 - 5.0, 6),
    }
    assert compare_main([str(a), str(b), "--format", "md", "--bootstrap_resamples", "50"]) == 0
    assert "| mtbench_roleplay | all | rating | 10 | 20 | 5.450 | 7.175 | 1.725 |" in capsys.readouterr().out
    assert compare_main([str(a), str(b), "--bootstrap_resamples", "50"]) == 0  # rich table
    # not the same items: a changed prompt is refused
    samples = b / "samples.jsonl"
    recs = [json.loads(x) for x in samples.open(encoding="utf-8")]
    recs[0]["prompts"][0] += " (edited)"
    samples.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    assert compare_main([str(a), str(b)]) == 2
    assert "different prompts" in capsys.readouterr().err
    assert compare_main([str(a), str(tmp_path / "missing")]) == 2


def test_wikiroleeval_paired_difference(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    a = _wre_judged(fake_openai, 7, tmp_path / "a")
    b = _wre_judged(fake_openai, 5, tmp_path / "b")
    results, _ = compare_runs(a, b, seed=0, n_boot=200)
    by = {(r.split, r.metric): r for r in results}
    assert {s for s, _ in by} == {"all", "en", "zh"}
    know = by[("all", "knowledge")]
    assert (
        know.mean_a == pytest.approx(7.0)
        and know.mean_b == pytest.approx(5.0)
        and know.diff == pytest.approx(-2)
    )
    assert know.ci95 == pytest.approx([-2.0, -2.0])
    assert know.p_wilcoxon is not None and know.p_wilcoxon < 0.05
    cons = by[("all", "consistency")]
    assert cons.diff == pytest.approx(0.0) and cons.p_wilcoxon == 1.0
    n_turns = sum(len(json.loads(x)["turns"]) for x in (a / "samples.jsonl").open(encoding="utf-8"))
    assert know.n_pairs == n_turns
