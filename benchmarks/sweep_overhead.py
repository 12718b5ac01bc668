"""The sweep driver's time per stage beyond the stage's own work, as the grid grows (goal: < 1 s, flat).

    python benchmarks/sweep_overhead.py [--grids 2,4,8] [--executor local]

Every stage is a no-op (tests/sweep_support.py: it writes a complete record of its kind and exits), so what
is left is the driver: planning and fingerprints, the done-checks, launching the stage wrapper, polling,
stamps, ``sweep.json`` after every event, the grid, the figures. For each N × N grid (N seeds × N
supervisors: 2N + N + 2N² stages) it prints the sweep's wall time, the stages' own time (the sum of the
attempts' ``wall_s``, measured around each command by the wrapper), the one-off time of ``grid.*`` and the
figures, the driver's time per stage (wall − own − outputs, / stages) and, as the reference measured in the
same run, the same no-op commands run one after another without the sweep.
A second pass over the finished sweep (nothing to launch) shows the cost of the done-checks alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _reference(stages: list, out: Path) -> float:
    """The no-op commands of ``stages`` run directly, serially (what the sweep's stages do by themselves)."""
    from ditto_train.sweep.stage_exec import StageJob, resolve_command

    t0 = time.perf_counter()
    for st in stages:
        job = StageJob(st.name, st.kind, st.args, st.launcher, str(out), st.fingerprint, str(ROOT))
        subprocess.run(resolve_command(job), cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def measure(n: int, executor: str) -> dict[str, float]:
    import contextlib
    import io

    from ditto_train.sweep.driver import SweepOptions, run_sweep
    from ditto_train.sweep.plan import build_plan
    from ditto_train.sweep.spec import load_profile, load_sweep
    from tests.sweep_support import noop_stage, noop_sweep_file

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec = load_sweep(noop_sweep_file(work / "sweep.yaml", n, n))
        out = work / "out"
        quiet = contextlib.redirect_stderr(io.StringIO())
        t0 = time.perf_counter()
        with quiet:
            rc = run_sweep(
                spec, load_profile(None), SweepOptions(out=out, executor=executor), transform=noop_stage
            )
        wall = time.perf_counter() - t0
        assert rc == 0, f"sweep failed (rc {rc})"
        doc = json.loads((out / "sweep.json").read_text())
        stages = len(doc["stages"])
        own = sum(s["attempt"]["wall_s"] for s in doc["stages"].values())
        outputs = doc["timing"]["outputs_s"]
        t1 = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            run_sweep(
                spec, load_profile(None), SweepOptions(out=out, executor=executor), transform=noop_stage
            )
        rerun = time.perf_counter() - t1
        plan = [noop_stage(st) for st in build_plan(spec).values()]
        ref = _reference(plan, work / "ref")
    return {
        "n": n,
        "stages": stages,
        "wall": wall,
        "own": own,
        "outputs": outputs,
        "ref": ref,
        "rerun": rerun,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grids", default="2,4,8", help="grid sizes N (N seeds x N supervisors)")
    p.add_argument("--executor", default="local", choices=["local", "ray", "slurm"])
    args = p.parse_args()
    print(
        f"{'grid':>6} {'stages':>6} {'sweep s':>8} {'own s':>7} {'outputs s':>9} {'driver/stage s':>14} "
        f"{'direct s':>8} {'sweep/direct':>12} {'re-run s':>8} {'re-run/stage s':>14}"
    )
    for n in (int(x) for x in args.grids.split(",")):
        r = measure(n, args.executor)
        per = (r["wall"] - r["own"] - r["outputs"]) / r["stages"]
        ratio, rerun_per = r["wall"] / r["ref"], r["rerun"] / r["stages"]
        print(
            f"{n}x{n:<4} {r['stages']:>6} {r['wall']:>8.2f} {r['own']:>7.2f} {r['outputs']:>9.2f} "
            f"{per:>14.3f} {r['ref']:>8.2f} {ratio:>12.2f} {r['rerun']:>8.2f} {rerun_per:>14.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
