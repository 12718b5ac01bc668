"""Export a run in FastChat's own formats, so ``show_result.py`` and friends read it.

Written under ``<run_dir>/fastchat/<task>/``:

* ``model_judgment/<judge>_single.jsonl``: one line per judged (question, turn) with FastChat's fields
  ``question_id, model, judge, user_prompt, judgment, score, turn, tstamp``. A judgment whose rating could not
  be parsed keeps its text and gets ``score -1``; a judge call that failed after its retries gets FastChat's
  ``"$ERROR$"`` text and ``score -1`` (FastChat's own sentinels, so ``show_result``'s ``score != -1`` filter
  drops exactly the rows our aggregation excludes). Turns never judged are not written.
* ``model_answer/<model>.jsonl``: the answers (``choices[0].turns``) of every question with all turns
  generated.

The model name is FastChat's: the answer file name in ``judge`` mode, otherwise the model under test as given
in the run's model arguments (``model=`` or ``pretrained=``), made safe for a file name.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.jsonl import atomic_write_jsonl
from tasks.mtbench.judge import user_prompt_of
from tasks.mtbench.scoring import METRIC, derive_judgment

API_ERROR_OUTPUT = "$ERROR$"  # FastChat's judgment text after every retry failed


def safe_name(name: str) -> str:
    """A file-name-safe version of a model or judge name."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._")
    return cleaned or "model"


def model_name(spec_model: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> str:
    """FastChat model name of a run: the answer file's name in judge mode, else the model argument."""
    for rec in records:
        if rec.get("answer_model"):
            return safe_name(str(rec["answer_model"]))
    args = spec_model.get("model_args") or {}
    for key in ("model", "pretrained"):
        value = args.get(key)
        if isinstance(value, str) and value:
            return safe_name(value.rstrip("/").split("/")[-1] if key == "pretrained" else value)
    return safe_name(str(spec_model.get("model") or "model"))


def judgment_rows(
    records: Sequence[Mapping[str, Any]], *, model: str, judge_model: str, tstamp: float
) -> list[dict[str, Any]]:
    """FastChat ``gpt-4_single.jsonl`` records for every finished judgment, sorted by (question, turn)."""
    rows: list[dict[str, Any]] = []
    for rec in sorted(records, key=lambda r: int(r["question_id"])):
        for turn in rec["turns"]:
            j = turn["judgments"].get(METRIC)
            if j is None:
                continue
            _, status, score = derive_judgment(j)
            if status == "pending":
                continue
            texts = j.get("completions") or []
            text = texts[0] if j["status"] == "ok" and texts and texts[0] is not None else API_ERROR_OUTPUT
            rows.append(
                {
                    "question_id": int(rec["question_id"]),
                    "model": model,
                    "judge": [judge_model, j["template"]],
                    "user_prompt": user_prompt_of(j["prompt"]),
                    "judgment": text,
                    "score": -1 if score is None else score,
                    "turn": int(turn["turn"]) + 1,
                    "tstamp": tstamp,
                }
            )
    return rows


def answer_rows(records: Sequence[Mapping[str, Any]], *, model: str, tstamp: float) -> list[dict[str, Any]]:
    """FastChat ``model_answer`` records for questions whose every turn has a reply."""
    rows: list[dict[str, Any]] = []
    for rec in sorted(records, key=lambda r: int(r["question_id"])):
        replies = [m["content"] for m in rec["messages"] if m["role"] == "assistant"]
        if len(replies) < len(rec["prompts"]):
            continue
        meta = rec.get("answer_meta") or {}
        answer_id = (
            meta.get("answer_id")
            or hashlib.sha256(
                json.dumps([model, rec["question_id"], replies], ensure_ascii=False).encode("utf-8")
            ).hexdigest()[:22]
        )
        rows.append(
            {
                "question_id": int(rec["question_id"]),
                "answer_id": answer_id,
                "model_id": meta.get("model_id") or model,
                "choices": [{"index": 0, "turns": replies}],
                "tstamp": tstamp,
            }
        )
    return rows


def export(
    run_dir: Path, task: str, records: Sequence[Mapping[str, Any]], *, model: str, judge_model: str
) -> list[str]:
    """Write the FastChat judgment and answer files of one task; returns their paths relative to
    ``run_dir``."""
    base = run_dir / "fastchat" / task
    tstamp = time.time()
    targets = {
        base / "model_judgment" / f"{safe_name(judge_model)}_single.jsonl": judgment_rows(
            records, model=model, judge_model=judge_model, tstamp=tstamp
        ),
        base / "model_answer" / f"{model}.jsonl": answer_rows(records, model=model, tstamp=tstamp),
    }
    for path, rows in targets.items():
        atomic_write_jsonl(path, rows)
        # A reused run directory may hold files of an earlier model or judge; only this run's files stay.
        for stale in path.parent.glob("*.jsonl"):
            if stale != path:
                stale.unlink()
    return [str(p.relative_to(run_dir)) for p in targets]
