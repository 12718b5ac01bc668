"""Third-party log output of a run goes to ``<run dir>/ditto-bench.log`` (redacted), not to the console.

lm-eval, openai, aiohttp, httpx and transformers log warnings and whole tracebacks ("Session is closed",
connection errors) while a run is going; the console shows our own summary of the causes instead (see
:mod:`harness.report`). While attached, those loggers write only to the log file, every record passed
through :func:`harness.redact.redact`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from harness.redact import redact

LOG_FILE = "ditto-bench.log"
THIRD_PARTY = (
    "lm-eval", "lm_eval", "openai", "aiohttp", "asyncio", "httpx", "httpx2", "httpcore", "urllib3",
    "transformers", "huggingface_hub", "datasets", "accelerate", "peft", "vllm",
)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RunLog:
    """The attached file handler; :meth:`close` restores the loggers as they were."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handler = logging.FileHandler(path, encoding="utf-8", delay=True)
        self.handler.setFormatter(_RedactingFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        self.handler.setLevel(logging.INFO)
        self._saved: dict[str, tuple[list[logging.Handler], bool, int]] = {}
        for name in THIRD_PARTY:
            logger = logging.getLogger(name)
            self._saved[name] = (list(logger.handlers), logger.propagate, logger.level)
            for h in list(logger.handlers):
                logger.removeHandler(h)
            logger.addHandler(self.handler)
            logger.propagate = False
            if logger.level == logging.NOTSET or logger.level > logging.WARNING:
                logger.setLevel(logging.WARNING)

    def close(self) -> None:
        for name, (handlers, propagate, level) in self._saved.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self.handler)
            for h in handlers:
                logger.addHandler(h)
            logger.propagate = propagate
            logger.setLevel(level)
        self._saved.clear()
        self.handler.close()


def attach_run_log(run_dir: Path) -> RunLog:
    """Route third-party logging to ``run_dir/ditto-bench.log`` until the returned log is closed."""
    return RunLog(Path(run_dir) / LOG_FILE)
