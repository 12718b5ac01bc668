"""End to end: `ditto-bench judge` / `run` against a scripted judge on a real loopback HTTP server.

The numbers below are computed by hand from the scripted verdicts (see the comments), not by the code
under test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tests.wre_support import load_items, replay_then_judge, scripted_judge, write_items

GOLD_A, GOLD_B = "Sherlock Holmes", "林黛玉"


def _two_sessions(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    items = load_items()
    a = next(i for i in items if i["meta"]["label"] == GOLD_A)  # en, 4 turns, labels [0,0,1,0]
    b = next(i for i in items if i["meta"]["label"] == GOLD_B)  # zh, 3 turns, labels [0,1,0]
    return write_items(tmp_path / "responses.jsonl", [a, b]), [a, b]


def _verdicts(a: dict[str, Any], b: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    pa, pb = a["prompts"], b["prompts"]
    ans = "Step by step analysis.\nThe most suitable role is [{}]"
    zh = "逐步分析。\n最符合的角色为[{}]"
    return {
        # session A, consistency: 1, 1/2, 0 (no verdict -> 0, official), 2/3 (case-sensitive miss)
        ("consistency", pa[0]): [ans.format(GOLD_A)] * 3,
        ("consistency", pa[1]): [ans.format(GOLD_A), ans.format("Hercule Poirot"), "I cannot decide."],
        ("consistency", pa[2]): ["no verdict here", "", "The most suitable role is"],
        ("consistency", pa[3]): [ans.format("sherlock holmes"), ans.format(GOLD_A), ans.format(GOLD_A)],
        # session A, rejection vs labels [0,0,1,0]:
        # pred 0 -> 1; tie 1/0 first seen 1 -> 0; 1 -> 1; none -> excluded
        ("rejection", pa[0]): ["0", "0", "1"],
        ("rejection", pa[1]): ["1", "garbage", "0"],
        ("rejection", pa[2]): ["1", "1", "1"],
        ("rejection", pa[3]): ["nonsense", "maybe", "yes"],
        # session A, knowledge: mean(8,9,10)=9; mean(7,7)=7; 0 out of range -> mean(5,6)=5.5; none -> excluded
        ("knowledge", pa[0]): ["Accurate.\n8", "Accurate.\n9", "Accurate.\n10"],
        ("knowledge", pa[1]): ["Fine.\nScore: 7", "Fine.\n7/10", "Fine.\nseven"],
        ("knowledge", pa[2]): ["Wrong.\n0", "Meh.\n5", "Meh.\n6"],
        ("knowledge", pa[3]): ["", "no score", "Score: eleven"],
        # session B (zh), consistency: 1, 2/3, 1/3
        ("consistency", pb[0]): [zh.format(GOLD_B)] * 3,
        ("consistency", pb[1]): [zh.format("薛宝钗"), zh.format(GOLD_B), zh.format(GOLD_B)],
        ("consistency", pb[2]): [zh.format(GOLD_B), zh.format("王熙凤"), zh.format("王熙凤")],
        # session B, rejection vs labels [0,1,0]:
        # 0 -> 1; 0 vs 1 -> 0 (under-refusal); 1 vs 0 -> 0 (over-refusal)
        ("rejection", pb[0]): ["0", "0", "0"],
        ("rejection", pb[1]): ["0", "0", "1"],
        ("rejection", pb[2]): ["1", "1", "0"],
        # session B, knowledge: 4; mean(6,6,9)=7; mean(2,3,4)=3
        ("knowledge", pb[0]): ["分析。\n4", "分析。\n4", "分析。\n4"],
        ("knowledge", pb[1]): ["分析。\n评分：6", "分析。\n6", "分析。\n9"],
        ("knowledge", pb[2]): ["分析。\n2", "分析。\n3", "分析。\n4"],
    }


EXPECTED = {
    "all": {
        "consistency": (1 + 0.5 + 0 + 2 / 3 + 1 + 2 / 3 + 1 / 3) / 7,
        "knowledge": 35.5 / 6,
        "rejection": 3 / 6,
    },
    "en": {"consistency": (1 + 0.5 + 0 + 2 / 3) / 4, "knowledge": 21.5 / 3, "rejection": 2 / 3},
    "zh": {"consistency": (1 + 2 / 3 + 1 / 3) / 3, "knowledge": 14 / 3, "rejection": 1 / 3},
}


def _judge_args(server: Any, out: Path, *extra: str) -> list[str]:
    return [
        "--output_path", str(out), "--judge_base_url", server.base_url, "--judge_model", "judge-x",
        "--judge_concurrency", "8", "--bootstrap_resamples", "200", *extra,
    ]


def _check_golden(out: Path, judge_calls: int = 21) -> dict[str, Any]:
    res = json.loads((out / "results.json").read_text())["tasks"]["wikiroleeval"]
    for split, metrics in EXPECTED.items():
        for metric, value in metrics.items():
            assert res["metrics"][split][metric] == pytest.approx(value, abs=1e-12), (split, metric)
    assert res["n_sessions"] == 2 and res["n_turns"] == 7
    f = res["failures"]
    assert f["consistency"]["parse_error"] == 4 and f["consistency"]["turns_no_verdict"] == 1
    assert f["rejection"]["parse_error"] == 4 and f["rejection"]["turns_no_verdict"] == 1
    assert f["knowledge"]["parse_error"] == 5 and f["knowledge"]["turns_no_verdict"] == 1
    assert all(f[m]["api_error"] == 0 for m in f)
    conf = res["rejection_confusion"]
    assert {k: conf["en"][k] for k in ("tp", "fn", "fp", "tn")} == {"tp": 1, "fn": 0, "fp": 1, "tn": 1}
    assert {k: conf["zh"][k] for k in ("tp", "fn", "fp", "tn")} == {"tp": 0, "fn": 1, "fp": 1, "tn": 1}
    assert res["usage"]["judge_calls"] == judge_calls
    for split in EXPECTED:
        for metric in ("consistency", "knowledge", "rejection"):
            if split != "all":  # one session per language: no interval
                assert res["ci95"][split][metric] is None
                continue
            lo, hi = res["ci95"][split][metric]
            assert lo <= res["metrics"][split][metric] + 1e-12 and hi >= res["metrics"][split][metric] - 1e-12
    return res


def test_judge_golden_numbers(judge_server: Any, tmp_path: Path) -> None:
    path, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(scripted_judge(_verdicts(a, b)))
    out = tmp_path / "run"
    rc = main(["judge", "--tasks", "wikiroleeval", "--responses", str(path), *_judge_args(judge_server, out)])
    assert rc == 0
    _check_golden(out)
    # each judge request: one user message, temperature 0.2, n=3, max_tokens 2048, the requested model
    bodies = [r["body"] for r in judge_server.requests]
    assert len(bodies) == 21
    assert all(b["n"] == 3 and b["temperature"] == 0.2 and b["max_tokens"] == 2048 for b in bodies)
    assert all(b["model"] == "judge-x" and [m["role"] for m in b["messages"]] == ["user"] for b in bodies)
    # the consistency judge never sees the gold label outside the candidate list, nor the system prompt
    for body in bodies:
        text = body["messages"][0]["content"]
        assert a["system"] not in text and b["system"] not in text
    # run directory contents
    for name in ("run.json", "samples.jsonl", "results.json", "ditto_review.jsonl"):
        assert (out / name).exists(), name
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete"
    assert set(run["spec"]["tasks"]["wikiroleeval"]["templates"]) >= {"consistency.en", "knowledge.zh"}
    assert run["spec"]["tasks"]["wikiroleeval"]["data_sha256"]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["session_id"] for s in samples] == ["wre-0001", "wre-0002"]
    j = samples[0]["turns"][1]["judgments"]["consistency"]
    assert j["completions"][1].endswith("[Hercule Poirot]")
    assert [p["status"] for p in j["parsed"]] == ["ok", "ok", "parse_error"]
    assert j["score"] == pytest.approx(0.5)


def test_review_file_matches_official_scoring(judge_server: Any, tmp_path: Path) -> None:
    """The official scoring.py semantics over ditto_review.jsonl give our consistency/knowledge means."""
    import numpy as np
    import pandas as pd

    path, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(scripted_judge(_verdicts(a, b)))
    out = tmp_path / "run"
    args = ["judge", "--tasks", "wikiroleeval", "--responses", str(path), *_judge_args(judge_server, out)]
    assert main(args) == 0
    rows: dict[str, list[Any]] = {"consistency": [], "knowledge": [], "lang": []}
    for line in (out / "ditto_review.jsonl").read_text().splitlines():
        each = json.loads(line)
        rows["consistency"] += each["consist_scores"]
        rows["knowledge"] += [s if s else np.nan for s in each["knowledge_scores"]]
        rows["lang"] += [each["meta"]["lang"]] * len(each["consist_scores"])
        assert len(each["reject_scores"]) == len(each["meta"]["rejection_labels"])
    df = pd.DataFrame(rows).astype({"consistency": float, "knowledge": float})
    assert df["consistency"].mean() == pytest.approx(EXPECTED["all"]["consistency"])
    assert df["knowledge"].mean() == pytest.approx(EXPECTED["all"]["knowledge"])
    by_lang = df.groupby("lang").mean()
    assert by_lang.loc["zh", "knowledge"] == pytest.approx(EXPECTED["zh"]["knowledge"])


def test_run_api_model_golden_and_history(judge_server: Any, tmp_path: Path) -> None:
    """`run` with local-chat-completions: the model gets the full history; same golden numbers."""
    path, (a, b) = _two_sessions(tmp_path)
    respond = replay_then_judge([a, b], scripted_judge(_verdicts(a, b)))

    judge_server.set_responder(respond)
    out = tmp_path / "run"
    rc = main([
        "run", "--model", "local-chat-completions",
        "--model_args", f"model=roleplayer,base_url={judge_server.chat_url},num_concurrent=4,max_retries=2",
        "--tasks", "wikiroleeval", "--data_path", str(path), "--gen_kwargs", "max_gen_toks=64",
        *_judge_args(judge_server, out),
    ])
    assert rc == 0
    _check_golden(out)
    model_calls = [r["body"] for r in judge_server.requests if r["body"]["model"] == "roleplayer"]
    assert len(model_calls) == 7
    calls_a = [c for c in model_calls if c["messages"][0]["content"] == a["system"]]
    last_a = max(calls_a, key=lambda c: len(c["messages"]))
    assert last_a["messages"] == a["messages"][:-1]  # system unchanged + full history + last user turn
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert samples[0]["messages"] == a["messages"]
    gen = samples[0]["turns"][3]["generation"]
    assert gen["status"] == "ok" and gen["sent_messages"] == a["messages"][:-1]
    assert gen["gen_kwargs"]["max_gen_toks"] == 64


def test_rerun_makes_no_calls_and_cache_serves_new_dir(judge_server: Any, tmp_path: Path) -> None:
    path, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(scripted_judge(_verdicts(a, b)))
    cache = tmp_path / "cache.sqlite"
    args = ["judge", "--tasks", "wikiroleeval", "--responses", str(path), "--cache_path", str(cache)]
    assert main([*args, *_judge_args(judge_server, tmp_path / "r1")]) == 0
    n = judge_server.count()
    assert n == 21
    assert main([*args, *_judge_args(judge_server, tmp_path / "r1")]) == 0  # resume of a finished run
    assert judge_server.count() == n
    assert main([*args, *_judge_args(judge_server, tmp_path / "r2")]) == 0  # new run dir, same cache
    assert judge_server.count() == n
    res2 = _check_golden(tmp_path / "r2", judge_calls=0)
    assert res2["usage"]["cached_calls"] == 21 and res2["usage"]["judge_calls"] == 0
    # score re-aggregates without any call and reproduces results.json
    before = json.loads((tmp_path / "r1" / "results.json").read_text())
    assert main(["score", str(tmp_path / "r1")]) == 0
    after = json.loads((tmp_path / "r1" / "results.json").read_text())
    assert after["tasks"]["wikiroleeval"]["metrics"] == before["tasks"]["wikiroleeval"]["metrics"]
    assert judge_server.count() == n
