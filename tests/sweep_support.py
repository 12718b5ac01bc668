"""The tiny cross-supervision sweep of the tests: two scripted API supervisors and a scripted judge on one
loopback server, two tiny local seeds, a generated test set — all offline and deterministic.

``respond`` plays every model on the server: requests to a supervisor with a system message are a
role-play evaluation (answered from the profile in context, if any), other supervisor requests are Ditto's
simulation prompts (the scripted supervisor; ``sup-b``'s in-character answers are longer), and judge
requests get verdicts that are a hash of the judge prompt, so every number depends on the replies.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from ditto_train.generate.scripted import prompt_kind, scripted_reply
from tests.wre_support import metric_of

JUDGE = "judge-x"
SUPERVISORS = ("sup-a", "sup-b")
_YOU = re.compile(r"^(?:Your name: |你的名字：)(.+)$", re.MULTILINE)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big")


def _judge(body: dict[str, Any]) -> str:
    prompt = body["messages"][-1]["content"]
    metric = metric_of(prompt)
    h = _digest(prompt)
    if metric == "consistency":
        zh = "[候选角色开始]" in prompt
        block = prompt.split("[候选角色开始]" if zh else "[Candidates Start]", 1)[1]
        cands = [line[2:].strip() for line in block.splitlines() if line.startswith("- ")]
        cands = [c[1:].split("]", 1)[0] if c.startswith("[") else c for c in cands]  # "[Name] summary"
        pick = cands[h % len(cands)] if cands else "nobody"
        return f"最符合的角色为[{pick}]" if zh else f"Analysis.\nThe most suitable role is [{pick}]"
    if metric == "knowledge":
        return f"Analysis.\n{1 + h % 10}"
    return str(h % 2)


def respond(body: dict[str, Any]) -> str | list[str]:
    model = body["model"]
    msgs = body["messages"]
    if model == JUDGE:
        return _judge(body)
    if msgs and msgs[0]["role"] == "system":  # supervise: answer in character, from the injected profile
        found = _YOU.search(msgs[0]["content"])
        name = found.group(1) if found else "someone"
        question = msgs[-1]["content"]
        extra = " I remember it well." if model == "sup-b" else ""
        return f"I am {name}. As for '{question[:30]}', let me tell you.{extra}"
    out = scripted_reply(body)
    if model == "sup-b" and prompt_kind(msgs[-1]["content"]) == "response" and isinstance(out, str):
        return out + " That is how I saw it."
    return out


def write_sweep(
    path: Path,
    *,
    base_url: str,
    kb: Path,
    test_data: Path,
    seeds: dict[str, Path],
    pairs: list[list[str]] | None = None,
    supervisors: dict[str, dict[str, Any]] | None = None,
    gpus: int = 1,
) -> Path:
    """Write the tiny sweep file (the shape of examples/sweeps/tiny_cpu.yaml) and return its path."""
    import yaml

    sups = supervisors or {
        name: {
            "model": "local-chat-completions",
            "model_args": f"model={name},base_url={base_url},num_concurrent=4",
            "gpus": 0,
        }
        for name in SUPERVISORS
    }
    doc: dict[str, Any] = {
        "out": "out",
        "knowledge": str(kb),
        "test_data": str(test_data),
        "tasks": ["wikiroleeval"],
        "judge": {"model": JUDGE, "base_url": base_url, "samples": 1, "concurrency": 8},
        "supervisors": sups,
        "seeds": {name: {"pretrained": str(p), "gpus": gpus} for name, p in seeds.items()},
        "generate": {"langs": "en,zh", "limit": 2, "concurrency": 8, "holdout_rate": 0, "no_cache": True},
        "train": {"config": "sft_tiny_cpu.yaml", "max_steps": 12, "max_length": 128, "logging_steps": 1},
        "eval": {
            "model": "hf",
            "model_args": "batch_size=4",
            "gen_kwargs": "max_gen_toks=8",
            "limit": 2,
            "bootstrap_resamples": 50,
            "no_cache": True,
        },
        "pairs": pairs or "all",
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- no-op stages

NOOP_SCRIPT = r"""
import json, os, sys, time
args = sys.argv[1:]
def flag(name):
    return args[args.index(name) + 1] if name in args else None
name, kind = os.environ["NOOP_STAGE"], os.environ["NOOP_KIND"]
if name in os.environ.get("NOOP_FAIL", "").split(","):
    print(f"error: stage {name} was made to fail", file=sys.stderr)
    sys.exit(3)
time.sleep(float(os.environ.get("NOOP_SLEEP", "0")))
d = flag("--output_path") or flag("--out") or flag("--output_dir")
os.makedirs(d, exist_ok=True)
seen = {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "args": args}
def dump(fn, obj):
    with open(os.path.join(d, fn), "w") as fh:
        json.dump(obj, fh)
if kind == "train":
    dump("training_record.json", {"status": "ok", "output": {"eval_model_args": "pretrained=" + d}, **seen})
elif kind == "generate":
    dump("run.json", seen)
    dump("report.json", {"output_lines": 1, "this_run": {"api_error_sessions": 0, "pending_after_run": 0}})
else:
    value = (sum(map(ord, d.rsplit("/", 2)[-2] + d.rsplit("/", 1)[-1])) % 100) / 100
    metrics = {lang: {"consistency": value, "knowledge": 10 * value, "rejection": 1 - value}
               for lang in ("all", "en", "zh")}
    dump("results.json", {"tasks": {"wikiroleeval": {"metrics": metrics}}})
    dump("run.json", {"status": "complete", **seen})
"""


def noop_stage(stage: Any) -> Any:
    """The same stage with its command replaced by a no-op that writes a complete record of its kind.

    Environment knobs (through the profile's ``env``): ``NOOP_FAIL`` (comma-separated stage names that
    exit 3), ``NOOP_SLEEP`` (seconds each stage sleeps). The stage name and kind travel in the launcher.
    """
    import dataclasses
    import sys

    launcher = (
        "env",
        f"NOOP_STAGE={stage.name}",
        f"NOOP_KIND={stage.kind}",
        sys.executable,
        "-c",
        NOOP_SCRIPT,
    )
    return dataclasses.replace(stage, launcher=launcher)


def noop_sweep_file(path: Path, n_seeds: int, n_sups: int, *, gpus: int = 0) -> Path:
    """A sweep file of ``n_seeds`` × ``n_sups`` stand-in models (for no-op stages: nothing is loaded)."""
    import yaml

    kb = path.parent / "kb.jsonl"
    kb.write_text('{"id": "Q1", "label": "A", "lang": "en"}\n', encoding="utf-8")
    doc = {
        "out": "out",
        "knowledge": "kb.jsonl",
        "test_data": str(Path(__file__).resolve().parent / "fixtures" / "wikiroleeval_mini.jsonl"),
        "judge": {"model": JUDGE, "base_url": "http://127.0.0.1:9/v1"},
        "supervisors": {
            f"sup{i}": {
                "model": "local-chat-completions",
                "model_args": f"model=s{i},base_url=http://127.0.0.1:9/v1",
            }
            for i in range(n_sups)
        },
        "seeds": {f"seed{i}": {"pretrained": f"org/seed-{i}", "gpus": gpus} for i in range(n_seeds)},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path
