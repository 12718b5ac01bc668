"""Bad input to `calibrate`, `lineage` and programmatic runs: one clear line, exit 2, nothing created.

Found by the acceptance audit of issues 10, 13, 14 and 15 (each test names the defect it pins down).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.engine import RunConfig, execute
from harness.errors import ConfigError
from harness.sample import sample_path
from tests.support.fake_openai import FakeOpenAI


def _calibrate(shared_dir: Path, out: Path, *extra: str) -> list[str]:
    mt_dir = shared_dir / "data" / "mt_bench"
    return [
        "calibrate",
        "--set",
        "mtbench",
        "--judge_model",
        "some-judge",
        "--judge_base_url",
        "http://127.0.0.1:9/v1",
        "--data_path",
        str(mt_dir),
        "--reference",
        str(mt_dir / "derived" / "gpt-4_single_roleplay_5models.tsv"),
        "--output_path",
        str(out),
        *extra,
    ]


@pytest.mark.timeout(60)
def test_calibrate_zero_concurrency_is_refused_not_a_hang(
    shared_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`calibrate --judge_concurrency 0` made its run directory and then waited forever for a judge slot."""
    out = tmp_path / "cal"
    assert main(_calibrate(shared_dir, out, "--judge_concurrency", "0")) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--judge_concurrency must be >= 1" in err[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--judge_base_url", "htp:/nohost"], "--judge_base_url: 'htp:/nohost' is not an http(s) URL"),
        (["--output_path", "{file}"], "is a file, not a directory"),
    ],
)
def test_calibrate_checks_flags_before_judging_any_model(
    shared_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    """A bad URL or an output path that is a file was found only after "judging alpaca-13b's answers"."""
    file = tmp_path / "a_file"
    file.write_text("mine", encoding="utf-8")
    argv = _calibrate(shared_dir, tmp_path / "cal", *[e.format(file=file) for e in extra])
    assert main(argv) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "cal").exists() and file.read_text(encoding="utf-8") == "mine"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("judge_concurrency", 0, "--judge_concurrency must be >= 1"),
        ("judge_samples", 0, "--judge_samples must be >= 1"),
        ("judge_timeout", 0.0, "--judge_timeout must be > 0"),
        ("n_boot", 0, "--bootstrap_resamples must be >= 1"),
        ("max_unscored", 1.5, "--max_unscored must be a share between 0 and 1"),
    ],
)
def test_execute_checks_ranges_for_every_caller(
    tmp_path: Path, field: str, value: float, message: str
) -> None:
    """The ranges were checked by the `run` CLI only; `calibrate` and scripts calling execute() got none."""
    cfg = RunConfig(
        tasks=["wikiroleeval"],
        output_path=tmp_path / "run",
        model="mock",
        judge_model="mock",
        data_paths={"wikiroleeval": sample_path("wikiroleeval")},
    )
    setattr(cfg, field, value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        execute(cfg)
    assert not (tmp_path / "run").exists()


def _mock_run(out: Path) -> None:
    argv = ["run", "--model", "mock", "--judge_model", "mock", "--tasks", "wikiroleeval"]
    argv += ["--data_path", "sample", "--output_path", str(out), "--bootstrap_resamples", "20"]
    assert main(argv) == 0


def test_lineage_names_an_unreadable_record(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A corrupt stage.json was reported as "no stage record here", sending the user to the wrong place."""
    run = tmp_path / "run"
    _mock_run(run)
    (run / "stage.json").write_text("{not json", encoding="utf-8")
    capfd.readouterr()
    assert main(["lineage", str(run)]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stage.json: unreadable stage record" in err[0]
    (run / "stage.json").write_text(json.dumps({"kind": "run"}), encoding="utf-8")
    assert main(["lineage", str(run)]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a stage record (missing spec, fingerprint)" in err[0]


def test_lineage_of_a_mock_run_names_the_mock(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The scripted model's identity was an empty API identity, printed as `model: api:|`."""
    run = tmp_path / "run"
    _mock_run(run)
    capfd.readouterr()
    assert main(["lineage", str(run)]) == 0
    out = capfd.readouterr().out
    assert "model: mock:scripted" in out and "api:|" not in out
    stage = json.loads((run / "stage.json").read_text(encoding="utf-8"))
    assert stage["inputs"]["model"]["kind"] == "mock"


def test_sample_smoke_run_has_no_not_fastchat_notes(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The README's smoke command printed two notes that our own sample differs from FastChat's files."""
    argv = ["run", "--model", "mock", "--judge_model", "mock", "--tasks", "mtbench_roleplay"]
    argv += ["--data_path", "sample", "--output_path", str(tmp_path / "run"), "--bootstrap_resamples", "20"]
    assert main(argv) == 0
    assert "differs from FastChat's" not in capfd.readouterr().err


def test_calibrate_refuses_an_unjudged_run(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A --predict_only run as --run gave exit 0 and a table of dashes, credited to the default judge."""
    judged, unjudged = tmp_path / "judged", tmp_path / "unjudged"
    _mock_run(judged)
    argv = ["run", "--model", "mock", "--tasks", "wikiroleeval", "--data_path", "sample"]
    assert main([*argv, "--output_path", str(unjudged), "--predict_only"]) == 0
    capfd.readouterr()
    for ref, new in ((judged, unjudged), (unjudged, judged)):
        out = tmp_path / "cal"
        argv = ["calibrate", "--tasks", "wikiroleeval", "--reference", str(ref), "--run", str(new)]
        assert main([*argv, "--output_path", str(out)]) == 2
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{unjudged}: no judged turn (judge it first: ditto-bench judge" in err[0]
        assert not out.exists()


def test_execute_takes_the_judge_endpoint_form_too(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    """`…/v1/chat/completions` as the judge URL reached execute() unchanged from calibrate: 404 per call."""
    fake_openai.reset()
    fake_openai.set_responder(lambda body: "Rating: [[7]]")
    cfg = RunConfig(
        tasks=["mtbench_roleplay"],
        output_path=tmp_path / "run",
        model="mock",
        judge_model="some-judge",
        judge_base_url=fake_openai.base_url + "/chat/completions",
        data_paths={"mtbench_roleplay": sample_path("mtbench_roleplay")},
        n_boot=20,
    )
    assert execute(cfg) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    assert res["tasks"]["mtbench_roleplay"]["metrics"]["all"] == 7.0
    run = json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))
    assert run["spec"]["judge_base_url"] == fake_openai.base_url
