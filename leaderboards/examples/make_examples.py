"""Regenerate the example run records and tables in ``leaderboards/examples/``.

Run from the repository root with the shared data next to it (``../shared/data/mt_bench``)::

    python leaderboards/examples/make_examples.py

For each model in ``tables.json``, ``ditto-bench judge --tasks mtbench_roleplay`` judges FastChat's published
answer file against a local OpenAI-compatible server (``tests/support/fake_openai.py``) that replays
FastChat's published GPT-4 ratings (:class:`tasks.mtbench.replay.FastChatReplay`). Only ``run.json`` and
``results.json`` of each run are kept (what a leaderboard reads). Then every table in ``tables.json`` is
rendered in each format. Offline; takes a few seconds.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from harness.cli import main  # noqa: E402
from leaderboards.cli import leaderboard_main  # noqa: E402
from tasks.mtbench.data import load_answers, load_judge_prompts, load_questions, load_references  # noqa: E402
from tasks.mtbench.replay import FastChatReplay, load_published_ratings  # noqa: E402
from tests.support.fake_openai import FakeOpenAI  # noqa: E402

EXAMPLES = Path("leaderboards/examples")
MT_DIR = Path("../shared/data/mt_bench")
KEEP = ("run.json", "results.json")


def make_runs(models: list[str], server: FakeOpenAI) -> None:
    """Judge each model's published answers against the replayed published ratings."""
    ratings = load_published_ratings(MT_DIR / "derived" / "gpt-4_single_roleplay_5models.tsv")
    for model in models:
        answers = MT_DIR / "model_answer" / f"{model}.jsonl"
        replay = FastChatReplay(
            questions=load_questions(MT_DIR / "question.jsonl"),
            answers=load_answers(answers),
            ratings=ratings,
            prompts=load_judge_prompts(MT_DIR / "judge_prompts.jsonl"),
            references=load_references(MT_DIR / "reference_answer" / "gpt-4.jsonl"),
            model=model,
        )
        server.set_responder(replay)
        out = EXAMPLES / "runs" / f"mtbench_roleplay-{model}"
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
                "--overwrite",
                "--judge_base_url",
                server.base_url,
                "--judge_model",
                "gpt-4",
                "--no_cache",
            ]
        )
        if rc != 0 or replay.mismatches:
            raise SystemExit(f"{model}: judge run failed (rc {rc}, mismatches {replay.mismatches[:3]})")
        for item in out.iterdir():
            if item.name not in KEEP:
                shutil.rmtree(item) if item.is_dir() else item.unlink()


def make_tables(spec: dict[str, Any]) -> None:
    """Render every table of ``tables.json`` in every listed format."""
    for table in spec["tables"]:
        for fmt, ext in table["formats"].items():
            target = EXAMPLES / f"{table['stem']}.{ext}"
            if leaderboard_main([*table["args"], "--format", fmt, "--out", str(target)]) != 0:
                raise SystemExit(f"rendering {target} failed")


def run() -> None:
    """Regenerate everything (cwd must be the repository root)."""
    if Path.cwd().resolve() != REPO:
        raise SystemExit(f"run this from the repository root ({REPO})")
    spec = json.loads((EXAMPLES / "tables.json").read_text(encoding="utf-8"))
    server = FakeOpenAI().start()
    try:
        make_runs(spec["runs"], server)
    finally:
        server.stop()
    make_tables(spec)


if __name__ == "__main__":
    run()
