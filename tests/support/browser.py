"""Headless Chromium through selenium for the browser tests (Debian's `chromium` + `chromium-driver`).

Tests skip with a clear reason when the browser is not installed, unless ``DITTO_BENCH_REQUIRE_BROWSER=1``
(set by .ci/run, which installs both), where a missing browser fails them. Screenshots go to
``$DITTO_BENCH_TEST_ARTIFACTS`` or ``tests/_artifacts/``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _find(names: tuple[str, ...], env: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_paths() -> tuple[str | None, str | None]:
    """(chromium binary, chromedriver) or None where missing."""
    return (
        _find(("chromium", "chromium-browser"), "DITTO_BENCH_CHROMIUM"),
        _find(("chromedriver",), "DITTO_BENCH_CHROMEDRIVER"),
    )


def artifacts_dir() -> Path:
    """Where screenshots go (created on first use)."""
    path = Path(os.environ.get("DITTO_BENCH_TEST_ARTIFACTS") or REPO / "tests" / "_artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_driver(width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium WebDriver; skips (or fails under DITTO_BENCH_REQUIRE_BROWSER) without one."""
    binary, driver = browser_paths()
    if binary is None or driver is None:
        missing = " and ".join(n for n, p in (("chromium", binary), ("chromedriver", driver)) if p is None)
        reason = f"{missing} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("DITTO_BENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " but DITTO_BENCH_REQUIRE_BROWSER=1")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--disable-extensions",
        "--no-first-run",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def screenshot(drv: Any, name: str) -> Path:
    """Save a full-window screenshot as ``<artifacts>/<name>.png``."""
    path = artifacts_dir() / f"{name}.png"
    drv.save_screenshot(str(path))
    return path
