"""The task contract and the task registry.

A task turns a data file into :class:`Session` objects (the user turns to play), says which judge
prompts to send for each generated turn (:class:`JudgeCall`), and aggregates the recorded judge
completions into metrics. The engine owns everything in between (rollout, judging, cache, resume).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.errors import ConfigError
from harness.types import ChatMessage, ParseResult


@dataclass(frozen=True)
class JudgeSettings:
    """Judge defaults of a task (the paper's or the benchmark's), overridable by flags."""

    model: str
    temperature: float
    samples: int
    max_tokens: int


@dataclass
class Session:
    """One multi-turn conversation to roll out (or, in judge-only mode, already rolled out)."""

    task: str
    session_id: str
    index: int
    system: str | None
    prompts: list[str]
    lang: str | None = None
    gen_overrides: dict[str, Any] = field(default_factory=dict)
    # The replies to judge (judge-only mode); any sequence: a task may read them back from its file on use.
    given_replies: Sequence[str] | None = None
    payload: Any = None  # the task's own item (e.g. a WikiItem); not serialised by the engine
    # Strip surrounding whitespace from a local model's reply before it is stored and sent back as
    # history (FastChat does this for MT-Bench's local models; API replies are kept as returned).
    strip_local_replies: bool = False


@dataclass(frozen=True)
class JudgeCall:
    """One judge request for one generated turn."""

    metric: str
    turn: int
    messages: list[ChatMessage]
    template: str  # template id, e.g. "consistency.en"; its hash goes into the run record


@dataclass
class TaskData:
    """Loaded, validated sessions and where they came from."""

    sessions: list[Session]
    source: str
    sha256: str | dict[str, str]


def parse_judgment(judgment: Mapping[str, Any], parse: Callable[[str], ParseResult]) -> list[ParseResult]:
    """One :class:`ParseResult` per sample of a recorded judgment (the ``judgments`` entries of a record).

    A call that failed or never finished gives one ``api_error`` per sample (reason: its status; the
    message is in the judgment's ``error``); a choice without text is ``api_error`` ``missing_choice``;
    a response without choices is one ``api_error`` ``no_choices``. Every completion is parsed by ``parse``.
    """
    texts = list(judgment.get("completions") or [])
    status = judgment.get("status")
    if status != "ok":
        return [ParseResult("api_error", reason=str(status))] * max(1, len(texts))
    return [
        ParseResult("api_error", reason="missing_choice") if t is None else parse(t) for t in texts
    ] or [ParseResult("api_error", reason="no_choices")]


class Task(Protocol):
    """What a benchmark must provide to the engine."""

    name: str
    version: int
    judge_defaults: JudgeSettings
    metrics: tuple[str, ...]

    def load(self, data_path: Path | None, *, limit: int | None, responses: Path | None) -> TaskData: ...

    def default_gen_kwargs(self) -> dict[str, Any]: ...

    def judge_calls(
        self, session: Session, messages: Sequence[ChatMessage], turn: int
    ) -> list[JudgeCall]: ...

    def template_hashes(self) -> dict[str, str]: ...

    def session_extra(self, session: Session) -> dict[str, Any]: ...

    def aggregate(self, records: Sequence[dict[str, Any]], *, seed: int, n_boot: int) -> dict[str, Any]: ...

    def annotated(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``record`` with the derived verdicts added (what samples.jsonl shows); pure."""
        ...

    def scores(self, record: Mapping[str, Any]) -> dict[tuple[int, str], float | int | None]:
        """``{(turn, metric): score}`` derived from ``record`` (None: no score); pure."""
        ...

    def export(
        self,
        run_dir: Path,
        records: Sequence[dict[str, Any]],
        results: dict[str, Any],
        *,
        spec: Mapping[str, Any],
    ) -> list[str]: ...



# name -> "module:factory"; factories take keyword options (e.g. shuffle_candidates) and return a Task.
TASKS: dict[str, str] = {
    "wikiroleeval": "tasks.wikiroleeval.task:make_task",
    "mtbench_roleplay": "tasks.mtbench.task:make_roleplay_task",
    "mtbench": "tasks.mtbench.task:make_full_task",
}


def get_task(name: str, **options: Any) -> Task:
    """Instantiate a registered task; unknown names list close matches."""
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else f" (known: {', '.join(sorted(TASKS))})"
        raise ConfigError(f"--tasks: unknown task {name!r}{hint}")
    module, attr = TASKS[name].split(":")
    try:
        factory: Callable[..., Task] = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--tasks: task {name!r} is not available in this install: {exc}") from exc
    return factory(**options)
