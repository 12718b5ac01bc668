"""Batch judging (``--judge_batch``) against a loopback fake of the Files and Batches API, through the real
``openai`` client: same numbers as synchronous judging, resume without resubmission, every failure path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from harness import batch_judge
from harness.batch_judge import BatchOptions, check_unique, completion_of, split_request_lines
from harness.cli import main
from tests.support.fake_batch import FakeBatchAPI, Plan
from tests.test_e2e_wikiroleeval import _check_golden, _two_sessions, _verdicts
from tests.wre_support import scripted_judge

N_CALLS = 21  # 7 turns x 3 metrics in the two golden sessions


@pytest.fixture
def batch_api() -> Iterator[FakeBatchAPI]:
    with FakeBatchAPI() as api:
        yield api


@pytest.fixture
def golden(tmp_path: Path) -> tuple[Path, Any]:
    path, (a, b) = _two_sessions(tmp_path)
    return path, scripted_judge(_verdicts(a, b))


def _judge_cmd(base_url: str, responses: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "judge", "--tasks", "wikiroleeval", "--responses", str(responses), "--output_path", str(out),
        "--judge_base_url", base_url, "--judge_model", "judge-x", "--bootstrap_resamples", "200",
        "--cache_path", str(cache), *extra,
    ]


def _batch_cmd(api: FakeBatchAPI, responses: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    batch = ("--judge_batch", "--judge_batch_poll", "0.01")
    return _judge_cmd(api.base_url, responses, out, cache, *batch, *extra)


def _journal(out: Path) -> list[dict[str, Any]]:
    path = out / "journal.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def _results(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())["tasks"]["wikiroleeval"]


def test_batch_equals_sync(judge_server: Any, batch_api: FakeBatchAPI, golden: Any, tmp_path: Path) -> None:
    responses, judge = golden
    judge_server.set_responder(judge)
    batch_api.responder = judge
    sync_out, batch_out = tmp_path / "sync", tmp_path / "batch"
    assert main(_judge_cmd(judge_server.base_url, responses, sync_out, tmp_path / "c1.sqlite")) == 0
    assert main(_batch_cmd(batch_api, responses, batch_out, tmp_path / "c2.sqlite")) == 0
    _check_golden(batch_out)
    a, b = _results(sync_out), _results(batch_out)
    for key in ("metrics", "ci95", "failures", "rejection_confusion", "usage"):
        assert a[key] == b[key], key
    # one batch, one upload; every body is exactly what the synchronous judge POSTed
    assert len(batch_api.created()) == 1 and batch_api.count("POST", "/v1/files") == 1
    (lines,) = batch_api.uploaded_lines()
    assert sorted(json.dumps(x["body"], sort_keys=True) for x in lines) == sorted(
        json.dumps(r["body"], sort_keys=True) for r in judge_server.requests
    )
    assert {x["method"] for x in lines} == {"POST"} and {x["url"] for x in lines} == {"/v1/chat/completions"}
    assert len({x["custom_id"] for x in lines}) == N_CALLS
    # it went through validating -> in_progress -> finalizing -> completed, one status check each
    assert batch_api.histories() == [["validating", "in_progress", "finalizing", "completed"]]
    assert batch_api.count("GET", "/v1/batches/") == 3
    # the batch id is journalled before any judgment it produced; the request file is kept in the run
    kinds = [(e["k"], e.get("event")) for e in _journal(batch_out)]
    assert kinds.index(("batch", "submitted")) < kinds.index(("judge", None))
    assert kinds[-1] == ("judge", None) and ("batch", "collected") in kinds
    assert (batch_out / "batches" / "requests-0001.jsonl").is_file()
    # the cache was filled: a new run on the same cache needs no batch at all
    assert main(_batch_cmd(batch_api, responses, tmp_path / "again", tmp_path / "c2.sqlite")) == 0
    assert len(batch_api.created()) == 1
    _check_golden(tmp_path / "again", judge_calls=0)


def test_split_samples_one_request_per_sample(
    judge_server: Any, batch_api: FakeBatchAPI, golden: Any, tmp_path: Path
) -> None:
    responses, judge = golden
    judge_server.set_responder(judge)
    batch_api.responder = judge
    flag = "--judge_split_samples"
    sync_cmd = _judge_cmd(judge_server.base_url, responses, tmp_path / "s", tmp_path / "c1.sqlite", flag)
    assert main(sync_cmd) == 0
    assert main(_batch_cmd(batch_api, responses, tmp_path / "b", tmp_path / "c2.sqlite", flag)) == 0
    a, b = _results(tmp_path / "s"), _results(tmp_path / "b")
    for key in ("metrics", "ci95", "failures", "usage"):
        assert a[key] == b[key], key
    assert b["usage"]["judge_calls"] == 3 * N_CALLS
    (lines,) = batch_api.uploaded_lines()
    assert len(lines) == 3 * N_CALLS and all("n" not in x["body"] for x in lines)


def test_request_files_split_at_limits(
    batch_api: FakeBatchAPI, golden: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    responses, judge = golden
    batch_api.responder = judge
    batch_api.max_requests = 5  # the fake refuses a larger file, as the API does above 50,000
    monkeypatch.setattr(batch_judge, "BatchOptions", lambda **kw: BatchOptions(max_requests=5, **kw))
    out = tmp_path / "run"
    assert main(_batch_cmd(batch_api, responses, out, tmp_path / "c.sqlite")) == 0
    _check_golden(out)
    assert [len(x) for x in batch_api.uploaded_lines()] == [5, 5, 5, 5, 1]


def test_split_request_lines_units() -> None:
    lines = [b"a" * 10 + b"\n"] * 7
    assert [len(f) for f in split_request_lines(lines, max_requests=3, max_bytes=1000)] == [3, 3, 1]
    assert [len(f) for f in split_request_lines(lines, max_requests=100, max_bytes=25)] == [2, 2, 2, 1]
    with pytest.raises(Exception, match="over the batch file limit"):
        split_request_lines([b"x" * 30], max_bytes=25)


def test_duplicate_custom_ids_refused(batch_api: FakeBatchAPI) -> None:
    with pytest.raises(ValueError, match="duplicate custom_id"):
        check_unique(["a", "b", "a"])
    # and the fake, like the service, fails such a batch at validation
    client = openai.OpenAI(base_url=batch_api.base_url, api_key="EMPTY", max_retries=0)
    line = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}
    data = (json.dumps(line) + "\n") * 2
    f = client.files.create(file=("dup.jsonl", data.encode()), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert b.status == "validating"
    b = client.batches.retrieve(b.id)
    assert b.status == "failed" and b.errors is not None and b.errors.data is not None
    assert b.errors.data[0].code == "duplicate_custom_id"


def test_resume_reattaches_and_never_resubmits(
    batch_api: FakeBatchAPI, golden: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    responses, judge = golden
    batch_api.responder = judge
    out = tmp_path / "run"

    def ctrl_c(_s: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_judge, "_sleep", ctrl_c)
    assert main(_batch_cmd(batch_api, responses, out, tmp_path / "c.sqlite")) == 130
    captured = capfd.readouterr()
    err = " ".join((captured.err + captured.out).split())
    assert "batch_" in err and "--judge_batch_cancel" in err and "re-attach" in err
    submitted = [e for e in _journal(out) if e.get("event") == "submitted"]
    assert [e["id"] for e in submitted] == [batch_api.created()[0]["id"]]  # recorded before polling
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    monkeypatch.undo()
    assert main(_batch_cmd(batch_api, responses, out, tmp_path / "c.sqlite")) == 0
    assert len(batch_api.created()) == 1 and batch_api.count("POST", "/v1/files") == 1
    _check_golden(out)


@pytest.mark.parametrize("plan", [
    Plan(fail_rows=lambda cid: '"consistency"' in cid),
    Plan(outcome="expired", finished_rows=8),
    Plan(outcome="no_output"),
], ids=["error_file", "expired", "no_output_file"])
def test_failed_expired_missing_rows_resubmitted(
    batch_api: FakeBatchAPI, golden: Any, tmp_path: Path, plan: Plan
) -> None:
    responses, judge = golden
    batch_api.responder = judge
    batch_api.plans = [plan]
    out = tmp_path / "run"
    assert main(_batch_cmd(batch_api, responses, out, tmp_path / "c.sqlite")) == 0
    _check_golden(out)
    first, second = batch_api.uploaded_lines()
    expected = {
        "completed": 7,  # the seven consistency rows failed with HTTP 500
        "expired": N_CALLS - 8,
        "no_output": N_CALLS,
    }
    assert len(first) == N_CALLS and len(second) == expected[plan.outcome]
    done_first = {x["custom_id"] for x in first} - {x["custom_id"] for x in second}
    assert len(done_first) == N_CALLS - len(second)  # nothing the first batch did was sent again
    assert batch_api.histories()[0][-1] == ("expired" if plan.outcome == "expired" else "completed")
    if plan.outcome == "no_output":
        assert batch_api.created()[0]["output_file_id"] is None
        assert batch_api.created()[0]["error_file_id"] is not None


def test_fallback_sync_judges_failed_rows_directly(
    batch_api: FakeBatchAPI, golden: Any, tmp_path: Path
) -> None:
    responses, judge = golden
    batch_api.responder = judge
    batch_api.plans = [Plan(fail_rows=lambda cid: '"knowledge"' in cid)]
    out = tmp_path / "run"
    cmd = _batch_cmd(batch_api, responses, out, tmp_path / "c.sqlite", "--judge_batch_fallback", "sync")
    assert main(cmd) == 0
    _check_golden(out)
    assert len(batch_api.created()) == 1
    assert batch_api.count("POST", "/v1/chat/completions") == 7  # the seven knowledge rows


def test_failed_batch_is_recorded_then_rerun_completes(
    batch_api: FakeBatchAPI, golden: Any, tmp_path: Path
) -> None:
    responses, judge = golden
    batch_api.responder = judge
    batch_api.plans = [Plan(outcome="failed")]
    out = tmp_path / "run"
    assert main(_batch_cmd(batch_api, responses, out, tmp_path / "c.sqlite")) == 1
    assert len(batch_api.created()) == 1  # a batch refused at validation is not resubmitted as is
    res = _results(out)
    assert res["judging"]["calls_api_error"] == N_CALLS
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    j = samples[0]["turns"][0]["judgments"]["consistency"]
    assert j["status"] == "api_error" and "failed validation" in j["error"]
    assert main(_batch_cmd(batch_api, responses, out, tmp_path / "c.sqlite")) == 0
    assert len(batch_api.created()) == 2
    _check_golden(out)


def test_cancel_then_resume(
    batch_api: FakeBatchAPI, golden: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    responses, judge = golden
    batch_api.responder = judge
    out = tmp_path / "run"

    def ctrl_c(_s: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_judge, "_sleep", ctrl_c)
    assert main(_batch_cmd(batch_api, responses, out, tmp_path / "c.sqlite")) == 130
    monkeypatch.undo()
    assert main(_batch_cmd(batch_api, responses, out, tmp_path / "c.sqlite", "--judge_batch_cancel")) == 1
    (first,) = batch_api.created()
    assert first["status"] == "cancelling" and batch_api.count("POST", "/v1/batches/") == 1
    # the next run collects the cancelled batch (nothing finished) and resubmits its rows
    assert main(_batch_cmd(batch_api, responses, out, tmp_path / "c.sqlite")) == 0
    assert [b["status"] for b in batch_api.created()] == ["cancelled", "completed"]
    assert batch_api.histories()[0] == ["validating", "in_progress", "cancelling", "cancelled"]
    _check_golden(out)


def test_completion_of_reads_choices_by_index() -> None:
    body = {"choices": [{"index": 1, "message": {"content": "b"}}, {"index": 0, "message": {"content": "a"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
    c = completion_of(body, 3)
    assert c.texts == ["a", "b", None] and c.usage.prompt_tokens == 5 and c.status == "ok"
    assert completion_of({"choices": []}, 1).status == "api_error"


def test_dry_run_shows_batch_price(tmp_path: Path, golden: Any, capfd: pytest.CaptureFixture[str]) -> None:
    responses, _ = golden
    base = ["judge", "--tasks", "wikiroleeval", "--responses", str(responses), "--output_path",
            str(tmp_path / "run"), "--dry_run"]
    assert main([*base, "--judge_model", "gpt-4-1106-preview"]) == 0
    text = " ".join(capfd.readouterr().out.split())
    assert "USD synchronous" in text and "USD with --judge_batch" in text
    sync = float(text.split(" USD synchronous")[0].rsplit("≈ ", 1)[1])
    batch = float(text.split(" USD with --judge_batch")[0].rsplit("≈ ", 1)[1])
    assert batch == pytest.approx(sync / 2, abs=0.006)
    assert main([*base, "--judge_model", "my-local-judge"]) == 0
    text = " ".join(capfd.readouterr().out.split())
    assert "no price known" in text and "USD" not in text
    assert not (tmp_path / "run").exists()


def test_api_refusal_is_one_line_and_recorded(
    batch_api: FakeBatchAPI, golden: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    responses, judge = golden
    batch_api.responder = judge
    batch_api.refuse_create = 400
    out = tmp_path / "run"
    assert main(_batch_cmd(batch_api, responses, out, tmp_path / "c.sqlite")) == 1
    err = [x for x in capfd.readouterr().err.splitlines() if "error:" in x]
    assert len(err) == 1 and "Batch API: creating a batch" in err[0] and "HTTP 400" in err[0], err
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    assert not [e for e in _journal(out) if e.get("k") == "batch"]
    batch_api.refuse_create = None  # a re-run submits normally
    assert main(_batch_cmd(batch_api, responses, out, tmp_path / "c.sqlite")) == 0
    _check_golden(out)


def test_batch_with_the_mock_judge_is_refused_before_anything(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = ["run", "--model", "mock", "--judge_model", "mock", "--tasks", "wikiroleeval",
           "--data_path", "sample", "--output_path", str(out), "--judge_batch"]
    assert main(cmd) == 2
    assert not out.exists()
