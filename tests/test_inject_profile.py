"""``ditto-bench run --inject_profile KB``: the character's profile goes into the system context, rendered
with the response-simulation template (supervision performance, the paper's Table 3 "w/ Knowledge")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ditto_train.generate.profile_context import ProfileInjector
from harness.cli import main
from tests.fixtures.knowledge.e2e import make_generated_testset
from tests.support.fake_openai import FakeOpenAI
from tests.wre_support import scripted_judge


@pytest.fixture(scope="module")
def testset(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeOpenAI) -> Path:
    fake_openai.reset()
    return make_generated_testset(tmp_path_factory.mktemp("inject"), fake_openai)


def _run(server: FakeOpenAI, testset: Path, out: Path, *extra: str) -> int:
    judge = scripted_judge({}, fallback=["Analysis.\nThe most suitable role is [nobody]\n5"])
    server.set_responder(lambda body: "I am who I am." if body["model"] == "roleplayer" else judge(body))
    return main(
        [
            "run",
            "--model",
            "local-chat-completions",
            "--model_args",
            f"model=roleplayer,base_url={server.chat_url},num_concurrent=2",
            "--tasks",
            "wikiroleeval",
            "--data_path",
            str(testset),
            "--output_path",
            str(out),
            "--limit",
            "2",
            "--judge_base_url",
            server.base_url,
            "--judge_model",
            "judge-x",
            "--judge_samples",
            "1",
            "--bootstrap_resamples",
            "20",
            "--no_cache",
            *extra,
        ]
    )


def _systems(server: FakeOpenAI) -> list[str]:
    return [
        b["messages"][0]["content"]
        for b in (r["body"] for r in server.requests)
        if b["model"] == "roleplayer" and b["messages"][0]["role"] == "system"
    ]


def test_profile_is_injected_with_the_response_simulation_template(
    fake_openai: FakeOpenAI, testset: Path, tmp_path: Path
) -> None:
    kb = testset.parent.parent / "kb.jsonl"
    items = [json.loads(x) for x in testset.read_text(encoding="utf-8").splitlines() if x.strip()][:2]
    fake_openai.reset()
    assert _run(fake_openai, testset, tmp_path / "plain") == 0
    plain = _systems(fake_openai)
    assert plain and all("Your name:" not in s for s in plain)
    fake_openai.reset()
    assert _run(fake_openai, testset, tmp_path / "injected", "--inject_profile", str(kb)) == 0
    injected = _systems(fake_openai)
    assert len(injected) == len(plain)
    injector = ProfileInjector(kb)
    for item in items:
        label = item["meta"]["label"]
        context = next(s for s in injected if s.startswith(item["system"]))
        assert context.startswith(item["system"] + "\n\n")
        body = context[len(item["system"]) + 2 :]
        # exactly T_R for this role, with its question line left out
        entry = injector.entry_for(label, item["meta"]["lang"], item["meta"].get("id"))
        assert entry is not None
        full = injector.prompts.response(injector.index.load(entry), "QQQ")[0]["content"]
        kept = [line for line in full.split("\n") if line.strip() and "QQQ" not in line]
        assert [line for line in body.split("\n") if line.strip()] == kept  # T_R less its question line
        assert f"Your name: {label}" in body or f"你的名字：{label}" in body
        assert "Question:" not in body and "问题：" not in body
    spec = json.loads((tmp_path / "injected/run.json").read_text())["spec"]
    assert spec["inject_profile"]["sessions"]["wikiroleeval"] == {"injected": 2, "without_character": 0}
    assert set(spec["inject_profile"]["templates"]) >= {"response_sim.en", "profile.en"}
    assert "inject_profile" not in json.loads((tmp_path / "plain/run.json").read_text())["spec"]
    # with and without the profile are different runs: one directory refuses the other configuration
    assert _run(fake_openai, testset, tmp_path / "plain", "--inject_profile", str(kb)) == 2


def test_character_missing_from_the_knowledge_base_is_bad_input(
    fake_openai: FakeOpenAI, testset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = testset.parent.parent / "kb.jsonl"
    first = json.loads(testset.read_text(encoding="utf-8").splitlines()[0])
    lines = [
        x
        for x in kb.read_text(encoding="utf-8").splitlines()
        if not (
            json.loads(x)["label"] == first["meta"]["label"]
            and json.loads(x)["lang"] == first["meta"]["lang"]
        )
    ]
    small = tmp_path / "kb.jsonl"
    small.write_text("\n".join(lines) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert _run(fake_openai, testset, tmp_path / "run", "--inject_profile", str(small)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--inject_profile" in err[0] and first["meta"]["label"] in err[0]
    assert not (tmp_path / "run").exists()
