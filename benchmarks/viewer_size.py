"""Size and time to first render of ``ditto-bench view`` pages for 400 and 4,000 sessions.

What it does:

1. makes one real WikiRoleEval run through the CLI (``ditto-bench judge`` on the 8 fixture sessions against
   the loopback fake judge, 3 samples per judgment) and replicates its records to N sessions (new session ids,
   same content: real-sized conversations, judge prompts and completions);
2. writes the viewer page of each run with ``ditto-bench view`` (build time, file size);
3. opens each page in headless Chromium (selenium) and reads the time from navigation start to the page's
   first render (``performance.now()`` when the session table is drawn), the median of 3 loads; then the time
   to open one session and to answer a first full-text search (which inflates every session once);
4. measures an empty page (a script that only marks itself rendered) the same way, in the same browser, as
   the reference, and prints each page's first render as a ratio to it and as a cost per session.

Target: 4,000 sessions render first in well under a few seconds (lazy: only the index is parsed up front and
200 rows drawn; a session is inflated when opened). Run: ``python benchmarks/viewer_size.py [--sessions
400,4000]``. Needs chromium + chromedriver; a benchmark, not a test (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EMPTY_PAGE = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>empty</title></head><body>"
    "<script>document.body.setAttribute('data-render-ms', String(performance.now()));"
    "document.body.setAttribute('data-ready', '1');</script></body></html>"
)


def make_base_run(root: Path) -> Path:
    from harness.cli import main
    from tests.support.fake_openai import FakeOpenAI
    from tests.wre_support import load_items, realistic_verdicts, write_items

    server = FakeOpenAI().start()
    try:
        server.set_responder(realistic_verdicts)
        responses = write_items(root / "responses.jsonl", load_items())
        out = root / "base"
        rc = main([
            "judge", "--tasks", "wikiroleeval", "--responses", str(responses), "--output_path", str(out),
            "--judge_base_url", server.base_url, "--judge_model", "judge-x", "--bootstrap_resamples", "100",
            "--no_cache",
        ])  # fmt: skip
        if rc != 0:
            raise SystemExit(f"base run failed with exit code {rc}")
    finally:
        server.stop()
    return out


def replicate(base: Path, out: Path, n: int) -> Path:
    """A run directory with ``n`` sessions: the base run's records cycled with fresh session ids."""
    out.mkdir(parents=True)
    for name in ("run.json", "results.json"):
        shutil.copy(base / name, out / name)
    recs = [json.loads(line) for line in (base / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    with open(out / "samples.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            rec = dict(recs[i % len(recs)])
            rec["session_id"] = f"wre-{i + 1:05d}"
            rec["index"] = i
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return out


def _ready(drv: Any, timeout: float = 120.0) -> float:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, timeout, poll_frequency=0.02).until(
        lambda d: d.execute_script("return document.body && document.body.dataset.ready === '1'")
    )
    return float(drv.execute_script("return parseFloat(document.body.dataset.renderMs)"))


def first_render_ms(drv: Any, page: Path, loads: int = 3) -> float:
    times = []
    for _ in range(loads):
        drv.get("about:blank")
        drv.get(page.as_uri())
        times.append(_ready(drv))
    return statistics.median(times)


def interaction_ms(drv: Any, page: Path) -> tuple[float, float]:
    """(open the first session, first full-text search over every session), in ms of wall time."""
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get("about:blank")
    drv.get(page.as_uri())
    _ready(drv)
    t0 = time.perf_counter()
    drv.find_element("css selector", "#sessions tbody a").click()
    WebDriverWait(drv, 60, poll_frequency=0.01).until(lambda d: d.find_elements("id", "session-detail"))
    t_open = (time.perf_counter() - t0) * 1000
    total = len(drv.execute_script("return JSON.parse(document.getElementById('ditto-data').textContent)"
                                   ".runs[0].sessions"))  # fmt: skip
    t0 = time.perf_counter()
    drv.find_element("id", "f-search").send_keys("baker street")  # in 1 of the 8 base sessions

    def narrowed(d: Any) -> bool:
        m = re.match(r"showing \d+ of (\d+) matching", d.find_element("id", "count").text)
        return m is not None and 0 < int(m.group(1)) < total

    WebDriverWait(drv, 300, poll_frequency=0.02).until(narrowed)
    t_search = (time.perf_counter() - t0) * 1000  # includes the 150 ms typing debounce
    return t_open, t_search


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", default="400,4000", help="comma-separated session counts")
    args = ap.parse_args()
    counts = [int(x) for x in args.sessions.split(",")]

    from harness.cli import main as cli
    from tests.support.browser import make_driver

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = make_base_run(root)
        empty = root / "empty.html"
        empty.write_text(EMPTY_PAGE, encoding="utf-8")
        pages: dict[int, tuple[Path, float]] = {}
        for n in counts:
            run = replicate(base, root / f"run{n}", n)
            t0 = time.perf_counter()
            if cli(["view", str(run), "--out", str(root / f"view{n}.html")]) != 0:
                raise SystemExit("ditto-bench view failed")
            pages[n] = (root / f"view{n}.html", time.perf_counter() - t0)
        drv = make_driver()
        try:
            ref = first_render_ms(drv, empty)
            print(f"reference (empty page): first render {ref:.0f} ms")
            print(f"{'sessions':>8} {'samples MB':>10} {'page MB':>8} {'build s':>8} {'render ms':>10} "
                  f"{'x empty':>8} {'ms/1k sess':>10} {'open ms':>8} {'search ms':>10}")  # fmt: skip
            for n, (page, build_s) in pages.items():
                raw_mb = (root / f"run{n}" / "samples.jsonl").stat().st_size / 1e6
                size_mb = page.stat().st_size / 1e6
                ms = first_render_ms(drv, page)
                t_open, t_search = interaction_ms(drv, page)
                print(
                    f"{n:>8} {raw_mb:>10.1f} {size_mb:>8.1f} {build_s:>8.1f} {ms:>10.0f} {ms / ref:>8.1f} "
                    f"{(ms - ref) / n * 1000:>10.0f} {t_open:>8.0f} {t_search:>10.0f}"
                )
        finally:
            drv.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
