"""The stage contract (issue 11) and one writer per directory (issue 9 §2, §4) through the real commands.

Every command that writes a directory keeps ``stage.json``; same fingerprint and complete is a no-op, same
and unfinished resumes, another is refused unless --overwrite, which deletes only what ditto-bench wrote.
A second process on a directory in use exits 2 naming the holder's pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import ConfigError
from harness.stage import STAGE_FILE, Stage, read_stage
from tests.support.fake_openai import FakeOpenAI
from tests.test_e2e_wikiroleeval import _judge_args, _two_sessions, _verdicts
from tests.wre_support import FIXTURES, scripted_judge

REPO_ROOT = Path(__file__).resolve().parents[1]
MINI = FIXTURES / "wikiroleeval_mini.jsonl"


def _run_cmd(server: FakeOpenAI, out: Path, data: Path, *extra: str, model_args: str = "") -> list[str]:
    return [
        "run", "--model", "local-chat-completions",
        "--model_args", f"model=roleplayer,base_url={server.chat_url},max_retries=1{model_args}",
        "--tasks", "wikiroleeval", "--data_path", str(data), "--output_path", str(out), "--limit", "1",
        "--gen_kwargs", "max_gen_toks=16", "--bootstrap_resamples", "20",
        "--judge_base_url", server.base_url, "--judge_model", "judge-x", *extra,
    ]


def _judge_cmd(server: FakeOpenAI, path: Path, out: Path, *extra: str) -> list[str]:
    return ["judge", "--tasks", "wikiroleeval", "--responses", str(path), *_judge_args(server, out, *extra)]


def _err_lines(capfd: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capfd.readouterr().err.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------- the record


def test_stage_record_decisions(tmp_path: Path) -> None:
    d = tmp_path / "s"

    def stage(spec: dict[str, Any], model: str = "m1") -> Stage:
        return Stage(d, "run", spec, {"model": {"id": model}}, flag="--output_path",
                     record_names=("run.json",))

    st = stage({"a": 1})
    assert st.open(overwrite=False) == "fresh"
    st.add_outputs("run.json", "samples.jsonl")
    (d / "run.json").write_text("{}")
    (d / "samples.jsonl").write_text("x\n")
    st.finish("incomplete")
    st.close()
    rec = read_stage(d)
    assert rec is not None and rec.kind == "run" and rec.schema_version == 1 and rec.status == "incomplete"
    assert not rec.is_complete(st.fingerprint) and rec.outputs["samples.jsonl"] is not None
    assert set(rec.environment) >= {"python", "platform", "packages", "git"}

    with stage({"a": 1}) as again:
        assert again.open(overwrite=False) == "resume"
        again.finish("complete")
    with stage({"a": 1}) as third:
        assert third.open(overwrite=False) == "done"
    assert read_stage(d).is_complete(st.fingerprint)  # type: ignore[union-attr]
    # a changed output is no longer "done": the work is redone, not trusted
    (d / "samples.jsonl").write_text("edited\n")
    with stage({"a": 1}) as fourth:
        assert fourth.open(overwrite=False) == "resume"
        fourth.finish("complete")
    # another model (same spec) is another fingerprint: refused, naming the input
    with pytest.raises(ConfigError, match=r"differs in: inputs\.model\)"):
        stage({"a": 1}, model="m2").open(overwrite=False)
    with pytest.raises(ConfigError, match=r"differs in: a\)"):
        stage({"a": 2}).open(overwrite=False)


def test_peek_writes_nothing(tmp_path: Path) -> None:
    d = tmp_path / "never"
    assert Stage(d, "train", {"x": 1}, flag="output_dir").peek(overwrite=False) == "fresh"
    assert not d.exists()


# --------------------------------------------------------------------------------------- two processes


def _holder(path: Path, command: str, tmp_path: Path, single_file: bool = False) -> subprocess.Popen[str]:
    """A separate process holding the DirLock of ``path`` until its stdin closes."""
    lock = f"DirLock.for_file(Path({str(path)!r}), {command!r})" if single_file else (
        f"DirLock(Path({str(path)!r}), {command!r})"
    )
    code = (
        "import sys\nfrom pathlib import Path\nfrom harness.dirlock import DirLock\n"
        f"with {lock}:\n    print('locked', flush=True)\n    sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=30)


def test_two_judge_processes_on_one_output_path(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    path, (a, b) = _two_sessions(tmp_path)
    judged = scripted_judge(_verdicts(a, b))
    gate = threading.Event()  # holds the first run's second judgment until the checks below are done

    def respond(body: dict[str, Any]) -> Any:
        if judge_server.count() > 1:
            gate.wait(60)
        return judged(body)

    judge_server.set_responder(respond)
    out = tmp_path / "run"
    cmd = [*_judge_cmd(judge_server, path, out), "--judge_concurrency", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    first = subprocess.Popen([sys.executable, "-m", "harness.cli", *cmd], cwd=REPO_ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while judge_server.count() < 2:
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.02)
        second = subprocess.run([sys.executable, "-m", "harness.cli", *cmd], cwd=REPO_ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        lines = [x for x in second.stderr.splitlines() if x.strip()]
        assert second.returncode == 2 and len(lines) == 1, second.stderr
        assert str(out) in lines[0] and f"pid {first.pid}" in lines[0]
        score = subprocess.run([sys.executable, "-m", "harness.cli", "score", str(out)], cwd=REPO_ROOT,
                               env=env, capture_output=True, text=True, timeout=60)
        assert score.returncode == 2 and f"pid {first.pid}" in score.stderr  # score on a running run: refused
        assert json.loads((out / "run.json").read_text())["status"] == "running"  # and nothing rewritten
        first.kill()  # kill -9: the OS drops the lock with the process
        first.wait(timeout=30)
    finally:
        gate.set()
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    judge_server.set_responder(judged)
    assert main(_judge_cmd(judge_server, path, out)) == 0  # no stale lock: the re-run resumes
    journal = [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines()]
    keys = [(e["sid"], e["turn"], e["metric"]) for e in journal if e["k"] == "judge"]
    assert len(keys) == len(set(keys)) == 21  # one writer: no duplicate judgments


@pytest.mark.parametrize("command", ["run", "judge", "score", "generate", "knowledge", "train"])
def test_every_writing_command_refuses_a_directory_in_use(
    command: str, judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # with the preflight on: a directory in use is refused before any request (count 0 below)
    monkeypatch.delenv("DITTO_BENCH_NO_PREFLIGHT", raising=False)
    path, _ = _two_sessions(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    single = command == "knowledge"
    target = tmp_path / "kb.jsonl" if single else out
    argv: list[str]
    if command == "run":
        argv = _run_cmd(judge_server, out, MINI)
    elif command == "judge":
        argv = _judge_cmd(judge_server, path, out)
    elif command == "score":
        argv = ["score", str(out)]
    elif command == "generate":
        from tests.fixtures.knowledge.e2e import api_supervisor_args

        argv = ["generate", *api_supervisor_args(judge_server.base_url), "--knowledge", str(_kb(tmp_path)),
                "--out", str(out), "--holdout_rate", "0"]
    elif command == "knowledge":
        argv = ["knowledge", "--out", str(target), "--input", str(_kb(tmp_path)), "--source", "kb"]
    else:
        data = tmp_path / "sft.jsonl"
        data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                                 {"role": "assistant", "content": "hello"}]}) + "\n")
        argv = ["train", "--model", str(tmp_path / "no-such-model"), "--data", str(data),
                "--output_dir", str(out)]
    holder = _holder(target, command, tmp_path, single_file=single)
    try:
        capfd.readouterr()
        rc = main(argv)
        lines = _err_lines(capfd)
    finally:
        _release(holder)
    assert rc == 2, lines
    assert any(str(out if not single else tmp_path) in x and f"pid {holder.pid}" in x for x in lines), lines
    assert judge_server.count() == 0


def _kb(tmp_path: Path) -> Path:
    """A two-language knowledge base of the fixture roles (copied from the generate fixture, if built)."""
    from tests.fixtures.knowledge.e2e import build_fixture_kb

    kb = tmp_path / "kbsrc" / "kb.jsonl"
    if not kb.exists():
        build_fixture_kb(kb.parent)
    return kb


# ------------------------------------------------------------------------------ no-op, overwrite, sweep


def test_same_run_twice_is_a_no_op(judge_server: FakeOpenAI, tmp_path: Path,
                                   capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(_run_cmd(judge_server, out, MINI)) == 0
    n = judge_server.count()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capfd.readouterr()
    assert main(_run_cmd(judge_server, out, MINI)) == 0
    assert "already complete" in capfd.readouterr().err
    assert judge_server.count() == n  # no model or judge call
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing rewritten
    rec = read_stage(out)
    assert rec is not None and rec.kind == "run" and rec.status == "complete"
    assert {"run.json", "samples.jsonl", "results.json", "journal.jsonl", "ditto_review.jsonl"} <= set(
        rec.outputs
    )
    assert all(len(v or "") == 64 for v in rec.outputs.values())
    assert rec.inputs["model"]["id"] == f"api:{judge_server.base_url}|roleplayer"
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["ditto_bench_run"] == 1 and run_json["fingerprint"] == rec.fingerprint


def test_overwrite_deletes_only_what_ditto_bench_wrote(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    data = out / "my_sessions.jsonl"  # the user's --data_path, kept in the run directory
    data.write_bytes(MINI.read_bytes())
    assert main(_run_cmd(judge_server, out, data, "--overwrite")) == 0  # a directory with the user's file
    (out / "notes.json").write_text('{"mine": true}\n')
    assert main(_run_cmd(judge_server, out, data, "--seed", "7")) == 2  # another configuration: refused
    capfd.readouterr()
    assert main(_run_cmd(judge_server, out, data, "--seed", "7", "--overwrite")) == 0
    err = capfd.readouterr().err
    removed = next(line for line in err.splitlines() if "removed from" in line)
    for name in ("run.json", "samples.jsonl", "results.json", "journal.jsonl", "ditto_review.jsonl"):
        assert name in removed
    assert "my_sessions.jsonl" not in removed and "notes.json" not in removed
    assert data.read_bytes() == MINI.read_bytes()  # the user's files survive, untouched
    assert json.loads((out / "notes.json").read_text()) == {"mine": True}
    rec = read_stage(out)
    assert rec is not None and rec.status == "complete" and "my_sessions.jsonl" in rec.foreign
    assert "my_sessions.jsonl" not in rec.outputs and "notes.json" not in rec.outputs


def test_kill_during_the_first_run_json_write_is_resumable(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / ".run.json.k2x9_q0a").write_text('{"ditto_bench_run": 1, "fing')  # atomic_open's temp, torn
    assert main(_run_cmd(judge_server, out, MINI)) == 0  # no --overwrite needed
    assert not (out / ".run.json.k2x9_q0a").exists()  # swept when the directory was opened
    # the same with the stage record already written (a kill between stage.json and run.json)
    rec = json.loads((out / STAGE_FILE).read_text())
    rec["status"] = "running"
    (out / STAGE_FILE).write_text(json.dumps(rec))
    for name in ("run.json", "results.json", "samples.jsonl"):
        (out / name).unlink()
    (out / ".run.json.zz1_abcd").write_text("{")
    (out / ".stage.json.aaaa1111").write_text("{")
    n = judge_server.count()
    assert main(_run_cmd(judge_server, out, MINI)) == 0
    assert judge_server.count() == n  # resumed from the journal
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") and "lock" not in p.name) == []
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_a_start_that_failed_before_any_work_is_reused(
    judge_server: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.engine as engine

    out = tmp_path / "run"

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConfigError("--model_args num_concurrent: expected an integer, got 'abc'")

    with monkeypatch.context() as m:
        m.setattr(engine, "load_backend", broken)
        # (num_concurrent=abc itself is now refused before the directory exists: harness/validate.py)
        assert main(_run_cmd(judge_server, out, MINI, model_args=",num_concurrent=3")) == 2
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    assert read_stage(out).status == "failed"  # type: ignore[union-attr]
    # the corrected command (another fingerprint) reuses the directory without --overwrite
    assert main(_run_cmd(judge_server, out, MINI, model_args=",num_concurrent=2")) == 0
    assert read_stage(out).status == "complete"  # type: ignore[union-attr]


def test_a_different_configuration_after_real_work_is_still_refused(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(_run_cmd(judge_server, out, MINI)) == 0
    capfd.readouterr()
    assert main(_run_cmd(judge_server, out, MINI, model_args=",revision=v2")) == 2
    line = _err_lines(capfd)[0]
    assert "inputs.model" in line and "--overwrite" in line


# ------------------------------------------------------------------------------------- identity + cache


def test_api_revision_enters_the_cache_key(judge_server: FakeOpenAI, tmp_path: Path) -> None:
    def model_calls() -> int:
        return judge_server.count(lambda r: r["body"]["model"] == "roleplayer")

    assert main(_run_cmd(judge_server, tmp_path / "a", MINI, model_args=",revision=v1")) == 0
    first = model_calls()
    assert first > 0
    assert main(_run_cmd(judge_server, tmp_path / "b", MINI, model_args=",revision=v1")) == 0
    assert model_calls() == first  # same identity: every reply from the cache
    assert main(_run_cmd(judge_server, tmp_path / "c", MINI, model_args=",revision=v2")) == 0
    assert model_calls() == 2 * first  # re-served under the same name, another revision: asked again
    ident = read_stage(tmp_path / "c").inputs["model"]  # type: ignore[union-attr]
    assert ident["revision"] == "v2" and ident["id"].endswith("|roleplayer@v2")


def test_one_environment_capture_counts_untracked_files(tmp_path: Path) -> None:
    from ditto_train.sft.record import git_state
    from harness.runrecord import git_info

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=t@example.org", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "a.py"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "a"], cwd=repo, check=True)
    assert git_info(repo)["dirty"] is False
    (repo / "new.py").write_text("y = 2\n")  # untracked: can change what runs
    info = git_info(repo)
    assert info["dirty"] is True and info["untracked"] == 1 and info["modified"] == 0
    assert git_state(repo) == info  # the training record uses the same capture


# ------------------------------------------------------------------------------------ generate, lineage


def test_generate_records_schema_status_supervisor_and_lineage(
    fake_openai: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ditto_train.generate.scripted import scripted_reply
    from tests.fixtures.knowledge.e2e import api_supervisor_args

    fake_openai.set_responder(scripted_reply)
    kb = _kb(tmp_path)
    out = tmp_path / "gen"
    argv = ["generate", *api_supervisor_args(fake_openai.base_url), "--knowledge", str(kb), "--out", str(out),
            "--holdout_rate", "0", "--langs", "en", "--limit", "2"]
    assert main(argv) == 0
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["ditto_bench_generate"] == 1 and run_json["status"] == "complete"
    assert json.loads((out / "report.json").read_text())["status"] == "complete"
    rec = read_stage(out)
    assert rec is not None and rec.kind == "generate" and rec.status == "complete"
    assert rec.lineage["supervisor"]["model"] == "scripted-sup"
    assert rec.inputs["knowledge"]["upstream"]["kind"] == "knowledge"
    n = fake_openai.count()
    assert main(argv) == 0 and fake_openai.count() == n  # complete, same scope: a no-op
    capsys.readouterr()
    assert main(["lineage", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.index("generate ") < text.index("knowledge ") and "scripted-sup" in text
    assert main(["lineage", str(out), "--json"]) == 0
    chain = json.loads(capsys.readouterr().out)
    assert [e["kind"] for e in chain] == ["generate", "knowledge"]


def test_two_generate_processes_on_one_out(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    from ditto_train.generate.scripted import scripted_reply
    from tests.fixtures.knowledge.e2e import api_supervisor_args

    gate = threading.Event()

    def respond(body: dict[str, Any]) -> Any:
        gate.wait(60)  # the first generate waits on its first supervisor call
        return scripted_reply(body)

    fake_openai.set_responder(respond)
    kb = _kb(tmp_path)
    out = tmp_path / "gen"
    argv = ["generate", *api_supervisor_args(fake_openai.base_url), "--knowledge", str(kb), "--out", str(out),
            "--holdout_rate", "0", "--langs", "en", "--limit", "1", "--concurrency", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    first = subprocess.Popen([sys.executable, "-m", "harness.cli", *argv], cwd=REPO_ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while fake_openai.count() < 1:
            assert first.poll() is None and time.monotonic() < deadline, "the first generate did not start"
            time.sleep(0.02)
        second = subprocess.run([sys.executable, "-m", "harness.cli", *argv], cwd=REPO_ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        lines = [x for x in second.stderr.splitlines() if x.strip()]
        assert second.returncode == 2 and len(lines) == 1, second.stderr
        assert str(out) in lines[0] and f"pid {first.pid}" in lines[0]
        assert fake_openai.count() == 1  # the second asked the supervisor nothing
        gate.set()
        assert first.wait(timeout=120) == 0
    finally:
        gate.set()
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    rows = (out / "train.jsonl").read_text().splitlines()
    assert len(rows) == 1  # one writer: every session once


def test_knowledge_refuses_another_configuration_into_the_same_out(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    kb = _kb(tmp_path)
    out = tmp_path / "slice.jsonl"
    assert main(["knowledge", "--out", str(out), "--input", str(kb), "--langs", "en"]) == 0
    rec = read_stage(out)
    assert rec is not None and rec.kind == "knowledge" and rec.status == "complete"
    assert (tmp_path / "slice.jsonl.stage.json").is_file()
    before = out.read_bytes()
    capfd.readouterr()
    assert main(["knowledge", "--out", str(out), "--input", str(kb), "--langs", "zh"]) == 2
    assert "differs in: langs" in capfd.readouterr().err and out.read_bytes() == before
    assert main(["knowledge", "--out", str(out), "--input", str(kb), "--langs", "zh", "--overwrite"]) == 0
    assert out.read_bytes() != before and '"lang": "en"' not in out.read_text()


def test_other_bootstrap_resamples_on_a_finished_run_reaggregates_without_calls(
    judge_server: FakeOpenAI, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert main(_run_cmd(judge_server, out, MINI)) == 0
    n = judge_server.count()
    argv = [*_run_cmd(judge_server, out, MINI), "--bootstrap_resamples", "30"]
    assert main(argv) == 0 and judge_server.count() == n
    rec = read_stage(out)
    assert rec is not None and rec.status == "complete" and rec.scope == {"bootstrap_resamples": 30}


def test_other_ranks_of_a_distributed_train_never_take_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ditto_train.sft.config import resolve_config
    from ditto_train.sft.stage import train_stage

    data = tmp_path / "sft.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "hello"}]}) + "\n")
    out = tmp_path / "out"
    flags = {"model": str(tmp_path / "m"), "data": str(data), "output_dir": str(out)}
    with train_stage(resolve_config(None, flags)) as st:  # a finished training of exactly this config
        st.open(overwrite=False)
        st.finish("complete")
    holder = _holder(out, "train", tmp_path)  # the main process (rank 0) holds the directory
    monkeypatch.setenv("RANK", "1")
    try:
        rc = main(["train", *(x for k, v in flags.items() for x in (f"--{k}", v))])
    finally:
        _release(holder)
    assert rc == 0  # rank 1 follows the record: finished, nothing to do (not "in use")


def test_score_on_a_folder_that_is_no_run_leaves_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """``score`` on the wrong folder: one line, exit 2, and no lock file (nor anything else) left in it."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    capfd.readouterr()
    assert main(["score", str(folder)]) == 2
    assert len(_err_lines(capfd)) == 1
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_a_stage_error_is_recorded_redacted(tmp_path: Path) -> None:
    """The error a failed stage records (generate's, train's: any exception text) never holds a key."""
    from harness.redact import register_secret
    from harness.stage import Stage

    secret = "sk-stageSENTINEL-4242424242"
    register_secret(secret)
    stage = Stage(tmp_path / "s", "generate", {"a": 1}, flag="--out")
    assert stage.open(overwrite=False) == "fresh"
    with stage:
        stage.finish("failed", error=f"ValueError: key {secret} was rejected " + "x" * 600)
    raw = (tmp_path / "s" / STAGE_FILE).read_text()
    assert secret not in raw and "[REDACTED]" in raw
    assert len(json.loads(raw)["error"]) <= 500
