"""Build the inputs of ``examples/sweeps/tiny_cpu.yaml`` offline, into ``runs/tiny_cpu/``.

    python examples/sweeps/tiny_cpu_setup.py
    python tests/support/fake_openai.py --port 8765 --responder tests.sweep_support:respond &
    ditto-bench sweep examples/sweeps/tiny_cpu.yaml

It writes a knowledge base of the six fixture roles (collected from a loopback Wikidata/Wikipedia server),
a WikiRoleEval-format test set for three held-out roles (generated with the scripted supervisor) and two
tiny random chat models (Qwen2- and Llama-shaped). Nothing is downloaded. Run it from the repository root.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from tests.fixtures.knowledge.e2e import make_generated_testset
    from tests.support.fake_openai import FakeOpenAI
    from tests.support.tiny_model import build_tiny_model

    work = ROOT / "runs" / "tiny_cpu"
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "test" / "test.jsonl").exists():
        with FakeOpenAI() as server:
            make_generated_testset(work, server)
    for name, seed, arch in (("seed0", 0, "qwen2"), ("seed1", 1, "llama")):
        if not (work / name / "config.json").exists():
            build_tiny_model(work / name, seed=seed, arch=arch)  # type: ignore[arg-type]
    print(f"inputs ready in {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
