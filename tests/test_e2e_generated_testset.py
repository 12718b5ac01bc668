"""Issue 4 acceptance: a test set from `ditto-bench generate --split test` is scored by `ditto-bench run`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.cli import main
from tests.fixtures.knowledge.e2e import make_generated_testset
from tests.wre_support import scripted_judge


def test_generated_testset_runs(judge_server: Any, tmp_path: Path) -> None:
    testset = make_generated_testset(tmp_path / "gen", judge_server)
    lines = [json.loads(x) for x in testset.read_text(encoding="utf-8").splitlines() if x.strip()]
    judge = scripted_judge({}, fallback=["Analysis.\nThe most suitable role is [nobody]\n5"])

    def respond(body: dict[str, Any]) -> Any:
        if body["model"] == "roleplayer":
            return "I would rather not say."
        return judge(body)

    judge_server.reset()
    judge_server.set_responder(respond)
    out = tmp_path / "run"
    rc = main([
        "run", "--model", "local-chat-completions",
        "--model_args", f"model=roleplayer,base_url={judge_server.chat_url},num_concurrent=2",
        "--tasks", "wikiroleeval", "--data_path", str(testset), "--output_path", str(out),
        "--judge_base_url", judge_server.base_url, "--judge_model", "judge-x", "--bootstrap_resamples", "100",
    ])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())["tasks"]["wikiroleeval"]
    n_turns = sum(len(item["prompts"]) for item in lines)
    assert res["n_sessions"] == len(lines) and res["n_turns"] == n_turns
    assert res["metrics"]["all"]["knowledge"] == 5.0
    assert res["metrics"]["all"]["consistency"] == 0.0  # "nobody" is never the gold label
