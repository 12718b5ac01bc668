"""``ditto-bench calibrate``: golden agreement statistics on tiny inputs, the MT-Bench replay (a judge that
answers the published ratings agrees exactly), and WikiRoleEval run-against-run comparison."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from judges.calibrate import agreement as ag
from judges.calibrate import mtbench as mt
from tasks.mtbench.data import load_answers, load_judge_prompts, load_questions, load_references
from tasks.mtbench.replay import MISMATCH, FastChatReplay, load_published_ratings
from tests.support.fake_openai import FakeOpenAI

MODELS = ("alpaca-13b", "claude-v1", "gpt-3.5-turbo", "gpt-4", "vicuna-13b-v1.3")

# ------------------------------------------------------------------------------ golden statistics


def test_golden_agreement_statistics() -> None:
    a, b = [1.0, 2.0, 3.0], [1.0, 3.0, 2.0]
    # d = (0, 1, 1): 1 - 6 * 2 / (3 * (9 - 1)) = 0.5
    assert ag.spearman(a, b) == pytest.approx(0.5, abs=1e-12)
    # pairs (1,2) concordant, (1,3) concordant, (2,3) discordant: (2 - 1) / 3
    assert ag.kendall(a, b) == pytest.approx(1 / 3, abs=1e-12)
    x, y = [1.0, 2.0, 3.0], [2.0, 2.0, 5.0]
    assert ag.mean_abs_diff(x, y) == pytest.approx(1.0)  # (1 + 0 + 2) / 3
    assert ag.exact_agreement(x, y) == pytest.approx(1 / 3)
    assert ag.within(x, y, 1.0) == pytest.approx(2 / 3)
    assert ag.mean_diff(x, y) == pytest.approx(1.0)  # (1 + 0 + 2) / 3, second judge higher
    # kappa: po = 3/4; pe = (2*1 + 2*3) / 16 = 1/2; (3/4 - 1/2) / (1 - 1/2) = 1/2
    assert ag.cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5, abs=1e-12)
    # perfect disagreement on a balanced set: po = 0, pe = 1/2 -> -1
    assert ag.cohen_kappa([1, 0], [0, 1]) == pytest.approx(-1.0)
    # undefined, not 0 or NaN: constant sides, too few items, chance agreement 1
    assert ag.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None
    assert ag.kendall([1.0], [2.0]) is None
    assert ag.cohen_kappa([1, 1], [1, 1]) is None
    with pytest.raises(ValueError):
        ag.exact_agreement([1], [1, 2])


def test_bootstrap_ci_resamples_groups() -> None:
    groups = [[(1.0, 1.0), (2.0, 2.0)], [(3.0, 3.0)], [(4.0, 4.0), (5.0, 5.0)]]
    assert ag.bootstrap_ci(groups, ag.exact_agreement, seed=0, n_resamples=200) == [1.0, 1.0]
    assert ag.bootstrap_ci([[(1.0, 2.0)]], ag.mean_abs_diff, seed=0) is None  # one group: no interval
    lo, hi = ag.bootstrap_ci(
        [[(0.0, 0.0)], [(0.0, 1.0)], [(0.0, 2.0)]], ag.mean_abs_diff, seed=0, n_resamples=500
    ) or (None, None)
    assert lo is not None and hi is not None and 0.0 <= lo < 1.0 < hi <= 2.0


# ------------------------------------------------------------------------------ MT-Bench replay


def _replay_judge(mt_dir: Path, ratings_path: Path, shift: float = 0.0) -> Any:
    """A judge answering "[[score]]" from the published file, for whichever model's answer it is shown."""
    common: dict[str, Any] = {
        "questions": load_questions(mt_dir / "question.jsonl"),
        "ratings": load_published_ratings(ratings_path),
        "prompts": load_judge_prompts(mt_dir / "judge_prompts.jsonl"),
        "references": load_references(mt_dir / "reference_answer" / "gpt-4.jsonl"),
    }
    replays = [
        FastChatReplay(answers=load_answers(mt_dir / "model_answer" / f"{m}.jsonl"), model=m, **common)
        for m in MODELS
    ]

    def respond(body: dict[str, Any]) -> str:
        for r in replays:
            text = r(body)
            if not text.startswith(MISMATCH):
                if shift:
                    score = float(text.rsplit("[[", 1)[1].split("]]")[0])
                    return f"Rating: [[{min(10.0, score + shift)}]]"
                return text
        return "no rating"

    return respond


def _calibrate(server: FakeOpenAI, mt_dir: Path, ratings: Path, out: Path) -> dict[str, Any]:
    rc = main(
        [
            "calibrate",
            "--set",
            "mtbench",
            "--judge_model",
            "replay-judge",
            "--judge_base_url",
            server.base_url,
            "--data_path",
            str(mt_dir),
            "--reference",
            str(ratings),
            "--output_path",
            str(out),
            "--bootstrap_resamples",
            "200",
            "--judge_concurrency",
            "8",
        ]
    )
    assert rc == 0
    return json.loads((out / "calibration.json").read_text())


def test_replayed_published_ratings_agree_exactly(
    fake_openai: FakeOpenAI, shared_dir: Path, tmp_path: Path
) -> None:
    mt_dir = shared_dir / "data" / "mt_bench"
    ratings = mt_dir / "derived" / "gpt-4_single_roleplay_5models.tsv"
    fake_openai.set_responder(_replay_judge(mt_dir, ratings))
    res = _calibrate(fake_openai, mt_dir, ratings, tmp_path / "cal")
    assert res["n_paired"] == 100 and res["unpaired"]["new_not_scored"] == 0
    o = res["overall"]
    assert o["exact_agreement"] == 1.0 and o["within_1"] == 1.0 and o["mean_abs_diff"] == 0.0
    assert o["spearman"] == pytest.approx(1.0, abs=1e-12) and o["kendall"] == pytest.approx(1.0, abs=1e-12)
    assert o["mean_diff_new_minus_published"] == 0.0
    assert set(res["by_turn"]) == {"turn1", "turn2"} and set(res["by_category"]) == {"roleplay"}
    assert res["by_turn"]["turn2"]["n"] == 50 and res["by_turn"]["turn2"]["exact_agreement"] == 1.0
    ml = res["model_level"]
    assert ml["spearman"] == pytest.approx(1.0) and ml["models"]["gpt-4"]["published"] == pytest.approx(8.9)
    counts = res["confusion"]["counts"]
    assert sum(map(sum, counts)) == 100
    assert sum(counts[i][j] for i in range(10) for j in range(10) if i != j) == 0
    assert (tmp_path / "cal" / "calibration.png").stat().st_size > 1000
    assert fake_openai.count() == 100


def test_shifted_judge_numbers(fake_openai: FakeOpenAI, shared_dir: Path, tmp_path: Path) -> None:
    """A judge one point more generous (capped at 10): hand-countable agreement figures."""
    mt_dir = shared_dir / "data" / "mt_bench"
    ratings_path = mt_dir / "derived" / "gpt-4_single_roleplay_5models.tsv"
    fake_openai.set_responder(_replay_judge(mt_dir, ratings_path, shift=1.0))
    res = _calibrate(fake_openai, mt_dir, ratings_path, tmp_path / "cal")
    published = list(mt.load_reference(ratings_path).ratings.values())
    tens = sum(1 for s in published if s >= 10)  # those stay at 10: exact agreement
    o = res["overall"]
    assert o["exact_agreement"] == pytest.approx(tens / 100)
    assert o["within_1"] == 1.0
    diffs = [min(10.0, s + 1) - s for s in published]
    assert o["mean_abs_diff"] == pytest.approx(sum(diffs) / 100)


def test_reference_needs_file_or_pin(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "calibrate",
            "--set",
            "mtbench",
            "--judge_model",
            "j",
            "--output_path",
            str(tmp_path / "o"),
            "--answers_dir",
            str(tmp_path),
        ]
    )
    assert rc == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--reference FILE" in err[0]
    assert not (tmp_path / "o").exists()


def test_reference_fetched_sha256_pinned(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared_dir: Path
) -> None:
    """Without --reference the pinned upstream file is downloaded and verified (datafetch's mechanism)."""
    import hashlib

    src = tmp_path / "gpt-4_single.jsonl"
    src.write_text(
        json.dumps({"question_id": 91, "model": "m", "judge": ["gpt-4", "single-v1"], "score": 7, "turn": 1})
        + "\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(mt, "PUBLISHED_URL", src.as_uri())
    monkeypatch.setattr(mt, "PUBLISHED_SHA256", hashlib.sha256(src.read_bytes()).hexdigest())
    ref = mt.load_reference(mt.reference_path(None))
    assert ref.ratings == {("m", 91, 1): 7.0}
    monkeypatch.setattr(mt, "PUBLISHED_SHA256", "0" * 64)
    with pytest.raises(Exception, match="sha256"):
        mt.reference_path(None)


def test_reference_jsonl_dedup_and_unparseable(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    rows = [
        {"question_id": 91, "model": "m", "score": 7, "turn": 1},
        {"question_id": 91, "model": "m", "score": 3, "turn": 1},  # duplicate: the first wins
        {"question_id": 92, "model": "m", "score": -1, "turn": 1},  # unparseable upstream
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ref = mt.load_reference(path)
    assert ref.ratings == {("m", 91, 1): 7.0} and ref.duplicates == 1 and ref.unparseable == 1


# ------------------------------------------------------------------------------ WikiRoleEval run vs run


def _wre_run(server: FakeOpenAI, responses: Path, verdicts: Any, out: Path) -> None:
    from tests.wre_support import scripted_judge

    server.set_responder(scripted_judge(verdicts))
    rc = main(
        [
            "judge",
            "--tasks",
            "wikiroleeval",
            "--responses",
            str(responses),
            "--output_path",
            str(out),
            "--judge_base_url",
            server.base_url,
            "--judge_model",
            out.name,
            "--no_cache",
            "--bootstrap_resamples",
            "200",
        ]
    )
    assert rc == 0


def test_wikiroleeval_two_judges(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from tests.test_e2e_wikiroleeval import _two_sessions, _verdicts

    responses, (a, b) = _two_sessions(tmp_path)
    ref_v = _verdicts(a, b)
    new_v = dict(ref_v)
    new_v[("rejection", a["prompts"][0])] = ["1", "1", "1"]  # vote 0 -> 1 on one turn
    new_v[("knowledge", a["prompts"][0])] = ["8", "8", "8"]  # 9 -> 8 on one turn
    _wre_run(judge_server, responses, ref_v, tmp_path / "judge-ref")
    _wre_run(judge_server, responses, new_v, tmp_path / "judge-new")
    out = tmp_path / "cal"
    assert (
        main(
            [
                "calibrate",
                "--tasks",
                "wikiroleeval",
                "--reference",
                str(tmp_path / "judge-ref"),
                "--run",
                str(tmp_path / "judge-new"),
                "--output_path",
                str(out),
                "--bootstrap_resamples",
                "200",
            ]
        )
        == 0
    )
    res = json.loads((out / "calibration.json").read_text())
    assert res["reference"]["judge"] == "judge-ref" and res["run"]["judge"] == "judge-new"
    rej, kno, con = (res["metrics"][m] for m in ("rejection", "knowledge", "consistency"))
    # rejection votes, reference [0,1,1,0,0,1], new [1,1,1,0,0,1]: po 5/6, pe (3*2+3*4)/36 = 1/2
    assert rej["n_turns_voted_by_both"] == 6
    assert rej["vote_agreement"] == pytest.approx(5 / 6)
    assert rej["cohen_kappa"] == pytest.approx(2 / 3)
    # the rejection score of that turn goes 1 -> 0: 3/6 -> 2/6
    move = rej["aggregate_move"]["all"]
    assert move["delta"] == pytest.approx(-1 / 6) and move["paired_mean_diff"] == pytest.approx(-1 / 6)
    assert move["paired_mean_diff_ci95"] is not None
    # knowledge (9,7,5.5,4,7,3) vs (8,7,5.5,4,7,3): same ranks, one point apart on one of six turns
    assert kno["n_turns_scored_by_both"] == 6
    assert kno["spearman"] == pytest.approx(1.0) and kno["mean_abs_diff"] == pytest.approx(1 / 6)
    assert kno["aggregate_move"]["all"]["delta"] == pytest.approx(-1 / 6)
    assert kno["aggregate_move"]["en"]["delta"] == pytest.approx(-1 / 3)
    assert kno["aggregate_move"]["zh"]["delta"] == pytest.approx(0.0)
    assert con["vote_agreement"] == 1.0 and con["aggregate_move"]["all"]["delta"] == 0.0
    capfd.readouterr()
    # the leaderboard refuses the two judges in one column and names the way to quantify the difference
    assert main(["leaderboard", str(tmp_path / "judge-ref"), str(tmp_path / "judge-new")]) == 2
    err = capfd.readouterr().err
    assert "judge" in err and "ditto-bench calibrate" in err, err
    # replies that differ are refused in one line
    items = [json.loads(x) for x in responses.read_text().splitlines()]
    items[1]["messages"][2]["content"] += " (edited)"
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    _wre_run(judge_server, other, ref_v, tmp_path / "judge-other")
    capfd.readouterr()
    rc = main(
        [
            "calibrate",
            "--tasks",
            "wikiroleeval",
            "--reference",
            str(tmp_path / "judge-ref"),
            "--run",
            str(tmp_path / "judge-other"),
            "--output_path",
            str(tmp_path / "cal2"),
        ]
    )
    assert rc == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did not judge the same replies" in err[0], err
    assert not (tmp_path / "cal2").exists()
