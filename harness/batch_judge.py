"""Judging through the OpenAI Batch API (``--judge_batch``): half the price, same records.

In batch mode the engine rolls out first, then hands every pending judge call here. Each call becomes one
line of a JSONL request file (``custom_id`` = the judgment's key, the body exactly what the synchronous
judge would POST), split at the API's limits (50,000 requests, 200 MB per file) and by judge model. Each
file is kept under ``<run>/batches/``, uploaded (``files.create``, purpose ``batch``), turned into a batch
(``batches.create``, window 24h), and the batch id is written to the run journal **before** polling starts.
Polling reports status and counts; finished batches' output and error files are downloaded and joined on
``custom_id`` (the output order is not the input order), the response cache is filled and each judgment is
journalled with :func:`harness.judging.judge_entry`, exactly as the synchronous phase does, so records
and aggregation do not know which way a judgment came.

Resume: a re-run reads the batch entries of the journal and re-attaches to every batch it has not
collected yet; rows such a batch covers are never submitted again. Rows that failed, expired or are
missing from the output (a completed batch may have no output file, only an error file) are resubmitted
in a new batch (up to ``max_rounds`` rounds), or judged synchronously with ``--judge_batch_fallback sync``.
A batch that fails validation is not resubmitted as is (it would fail again): its rows are recorded as
``api_error`` (or judged synchronously with the fallback). Ctrl-C leaves the batches running and prints how
to re-attach or cancel them (``--judge_batch_cancel``).

The request file also works with vLLM's offline runner (``vllm run-batch -i FILE -o OUT --model M``); see
docs/judges.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from harness.chat_client import ChatClient, SamplingParams
from harness.completer import CachedCompleter, Completer, param_fields
from harness.errors import BackendError, ConfigError
from harness.journal import Journal
from harness.jsonl import atomic_write_text, iter_complete_lines
from harness.judging import PlannedCall, judge, judge_entry
from harness.progress import console
from harness.redact import redact
from harness.task import JudgeSettings
from harness.types import Completion, Usage

ENDPOINT: Final = "/v1/chat/completions"
MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1024 * 1024
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
BATCH_DIR = "batches"

# USD per 1M tokens (input, output) at the synchronous price; the Batch API charges half.
# OpenAI's published list prices; check the provider's pricing page before relying on them.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4": (30.0, 60.0),
    "gpt-4-1106-preview": (10.0, 30.0),
    "gpt-4-0125-preview": (10.0, 30.0),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4o": (2.50, 10.0),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-3.5-turbo": (0.50, 1.50),
}
BATCH_DISCOUNT = 0.5
_sleep = time.sleep  # the poll wait (tests replace it)


@dataclass(frozen=True)
class BatchOptions:
    """How batch judging behaves (flags ``--judge_batch_*``)."""

    poll_interval: float = 60.0
    fallback: str = "batch"  # "batch": resubmit failed rows in a new batch; "sync": judge them directly
    max_rounds: int = 3
    cancel: bool = False
    max_requests: int = MAX_REQUESTS
    max_bytes: int = MAX_BYTES


# ------------------------------------------------------------------------------------------ request lines


def judgment_key(p: PlannedCall) -> list[Any]:
    """The journal key of a judgment: task, session id, turn, metric."""
    return [p.task, p.session.session_id, p.call.turn, p.call.metric]


def custom_id(p: PlannedCall, sample: int | None = None) -> str:
    """``custom_id`` of a judgment's request: its key as compact JSON (plus the sample index when the
    samples are sent as separate requests)."""
    key = judgment_key(p) + ([sample] if sample is not None else [])
    return json.dumps(key, ensure_ascii=False, separators=(",", ":"))


def request_body(client: ChatClient, p: PlannedCall, params: SamplingParams, n: int) -> dict[str, Any]:
    """The chat-completions body the synchronous judge sends for this call (same fields, same order)."""
    body: dict[str, Any] = {
        "model": client.model, "messages": list(p.call.messages), **params.payload_fields()
    }
    if n != 1:
        body["n"] = n
    return body


@dataclass(frozen=True)
class _Unit:
    """One request of one judgment (all samples, or one sample with ``--judge_split_samples``)."""

    call: PlannedCall
    sample: int | None
    body: dict[str, Any]

    @property
    def cid(self) -> str:
        return custom_id(self.call, self.sample)


def request_line(unit: _Unit) -> bytes:
    line = {"custom_id": unit.cid, "method": "POST", "url": ENDPOINT, "body": unit.body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def split_request_lines(
    lines: Sequence[bytes], *, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES
) -> list[list[bytes]]:
    """Pack request lines into files of at most ``max_requests`` lines and ``max_bytes`` bytes, in order."""
    files: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        if len(line) > max_bytes:
            raise ConfigError(
                f"one judge request is {len(line)} bytes, over the batch file limit {max_bytes}"
            )
        if current and (len(current) >= max_requests or size + len(line) > max_bytes):
            files.append(current)
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        files.append(current)
    return files


def check_unique(cids: Sequence[str]) -> None:
    """Refuse a request file with a repeated ``custom_id`` (servers hang or fail on them)."""
    seen: set[str] = set()
    for cid in cids:
        if cid in seen:
            raise ValueError(f"duplicate custom_id in a batch request file: {cid}")
        seen.add(cid)


# ------------------------------------------------------------------------------------------ journal


@dataclass
class _Recorded:
    id: str
    file: str
    model: str
    requests: int
    collected: bool = False
    cancel_requested: bool = False


def recorded_batches(journal_path: Path, endpoint: str) -> list[_Recorded]:
    """The batches this run submitted to ``endpoint``, in submission order, with their collection state."""
    out: dict[str, _Recorded] = {}
    for _, e in iter_complete_lines(journal_path):
        if e.get("k") != "batch":
            continue
        bid = str(e.get("id"))
        if e.get("event") == "submitted" and e.get("endpoint") == endpoint:
            out[bid] = _Recorded(bid, str(e["file"]), str(e["model"]), int(e["requests"]))
        elif bid in out and e.get("event") == "collected":
            out[bid].collected = True
        elif bid in out and e.get("event") == "cancel_requested":
            out[bid].cancel_requested = True
    return list(out.values())


def _cids_of(path: Path) -> list[str]:
    return [str(e["custom_id"]) for _, e in iter_complete_lines(path)]


# ------------------------------------------------------------------------------------------ results


@dataclass
class _RowResult:
    body: dict[str, Any] | None = None
    error: str | None = None


def _row_error(row: Mapping[str, Any]) -> str | None:
    """Why an output/error-file row did not give a completion (None when it did)."""
    err = row.get("error")
    if err:
        return f"{err.get('code')}: {err.get('message')}" if isinstance(err, Mapping) else str(err)
    resp = row.get("response") or {}
    status = resp.get("status_code")
    if status != 200:
        body = resp.get("body") or {}
        msg = (body.get("error") or {}).get("message") if isinstance(body, Mapping) else None
        return f"HTTP {status}: {msg or 'no message'}"
    return None


def parse_rows(text: str, source: str) -> dict[str, _RowResult]:
    """Rows of an output or error file by ``custom_id``."""
    out: dict[str, _RowResult] = {}
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            cid = str(row["custom_id"])
        except (ValueError, KeyError, TypeError):
            continue  # an unreadable row is simply missing: its request is resubmitted
        why = _row_error(row)
        out[cid] = _RowResult(error=f"{source}: {why}") if why else _RowResult(body=row["response"]["body"])
    return out


def completion_of(body: Mapping[str, Any], n: int) -> Completion:
    """A chat-completion body as the synchronous client reads it (choice index → sample, usage summed)."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return Completion(texts=[None] * n, status="api_error", error="malformed response: no choices")
    texts: list[str | None] = [None] * n
    for pos, choice in enumerate(choices):
        idx = choice.get("index", pos) if isinstance(choice, Mapping) else None
        if isinstance(idx, int) and 0 <= idx < n:
            content = (choice.get("message") or {}).get("content")
            texts[idx] = content if isinstance(content, str) else None
    raw_usage = body.get("usage") or {}
    usage = Usage(
        calls=1,
        prompt_tokens=int(raw_usage.get("prompt_tokens") or 0),
        completion_tokens=int(raw_usage.get("completion_tokens") or 0),
    )
    return Completion(texts=texts, usage=usage, attempts=1)


# ------------------------------------------------------------------------------------------ the phase


@contextmanager
def api_errors(what: str) -> Iterator[None]:
    """An error of the Files/Batches API (after the client's own retries) as one line, exit code 1."""
    import openai

    try:
        yield
    except openai.APIStatusError as exc:
        raise BackendError(f"Batch API: {what}: HTTP {exc.status_code}: {redact(str(exc))[:300]}") from None
    except openai.APIError as exc:
        raise BackendError(f"Batch API: {what}: {type(exc).__name__}: {redact(str(exc))[:300]}") from None


@dataclass
class _Judgment:
    call: PlannedCall
    units: list[_Unit]
    n: int
    results: dict[str, Completion] = field(default_factory=dict)  # cid -> completion of that request
    errors: dict[str, str] = field(default_factory=dict)
    rounds: int = 0


class BatchJudge:
    """The batch judge phase of one invocation (see the module docstring)."""

    def __init__(
        self,
        *,
        clients: Mapping[str, Completer],
        settings: Mapping[str, JudgeSettings],
        journal: Journal,
        run_dir: Path,
        base_url: str,
        api_key: str | None,
        options: BatchOptions,
        resume_command: str | None = None,
    ) -> None:
        import openai

        self.clients = clients
        self.settings = settings
        self.journal = journal
        self.run_dir = run_dir
        self.endpoint = base_url.rstrip("/")
        self.options = options
        self.resume_command = resume_command
        self.api = openai.OpenAI(base_url=self.endpoint, api_key=api_key or "EMPTY", max_retries=5)
        self.params = {
            t: SamplingParams(temperature=js.temperature, max_tokens=js.max_tokens)
            for t, js in settings.items()
        }
        self.counts = {"ok": 0, "api_error": 0}
        self.by_cid: dict[str, _Judgment] = {}
        self._done: set[int] = set()  # id() of the judgments journalled in this invocation
        self._no_retry: set[str] = set()  # custom_ids of rows whose batch failed validation

    # ----------------------------------------------------------------------------------- planning

    def _chat_client(self, task: str) -> ChatClient:
        """The judge's HTTP client (inside its cache wrapper, if any): its model and sample mode."""
        client = self.clients[task]
        inner = client.inner if isinstance(client, CachedCompleter) else client
        if not isinstance(inner, ChatClient):
            raise ConfigError("--judge_batch needs an OpenAI-compatible judge, not --judge_model mock")
        return inner

    def _judgment(self, p: PlannedCall) -> _Judgment:
        client, n = self._chat_client(p.task), self.settings[p.task].samples
        params = self.params[p.task]
        if client.split_samples and n > 1:
            units = [_Unit(p, i, request_body(client, p, params, 1)) for i in range(n)]
        else:
            units = [_Unit(p, None, request_body(client, p, params, n))]
        return _Judgment(p, units, n)

    def _cache_of(self, task: str) -> CachedCompleter | None:
        """The judge's response cache (the completer's own scope and store), or ``None`` without one."""
        client = self.clients[task]
        return client if isinstance(client, CachedCompleter) else None

    def _keys(self, cached: CachedCompleter, j: _Judgment) -> list[str]:
        return cached.scope.keys(j.call.call.messages, param_fields(self.params[j.call.task]), j.n)

    def _from_cache(self, j: _Judgment) -> bool:
        cached = self._cache_of(j.call.task)
        if cached is None:
            return False
        hits = cached.store.lookup(self._keys(cached, j))
        if not all(h is not None for h in hits):
            return False
        self._record(j, Completion(texts=hits, cached=True))
        return True

    def _record(self, j: _Judgment, result: Completion) -> None:
        self.journal.append(judge_entry(j.call, result))
        self.counts[result.status] += 1
        cached = self._cache_of(j.call.task)
        if cached is not None and result.status == "ok" and not result.cached and len(result.texts) == j.n:
            cached.store.store(self._keys(cached, j), result.texts)

    # ----------------------------------------------------------------------------------- submission

    def _submit(self, units: Sequence[_Unit]) -> list[_Recorded]:
        """Write, upload and create batches for ``units``; journal each batch id as soon as it exists."""
        by_model: dict[str, list[_Unit]] = {}
        for u in units:
            by_model.setdefault(str(u.body["model"]), []).append(u)
        made: list[_Recorded] = []
        folder = self.run_dir / BATCH_DIR
        folder.mkdir(parents=True, exist_ok=True)
        for model, group in by_model.items():
            check_unique([u.cid for u in group])
            lines = [request_line(u) for u in group]
            parts = split_request_lines(
                lines, max_requests=self.options.max_requests, max_bytes=self.options.max_bytes
            )
            for part in parts:
                serial = len(list(folder.glob("requests-*.jsonl"))) + 1
                name = f"requests-{serial:04d}.jsonl"
                data = b"".join(part)
                atomic_write_text(folder / name, data.decode("utf-8"))
                with api_errors(f"uploading {name}"):
                    uploaded = self.api.files.create(file=(name, data), purpose="batch")
                with api_errors(f"creating a batch from {name}"):
                    batch = self.api.batches.create(
                        input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h",
                        metadata={"ditto_bench": "judge", "request_file": name},
                    )
                self.journal.append({
                    "k": "batch", "event": "submitted", "id": batch.id, "input_file_id": uploaded.id,
                    "file": f"{BATCH_DIR}/{name}", "model": model, "requests": len(part),
                    "endpoint": self.endpoint, "time": time.time(),
                })
                console.print(f"[bold]batch[/] {batch.id}: {len(part)} requests submitted ({model})")
                made.append(_Recorded(batch.id, f"{BATCH_DIR}/{name}", model, len(part)))
        return made

    # ----------------------------------------------------------------------------------- polling

    def _poll(self, batches: Sequence[_Recorded]) -> dict[str, Any]:
        """Wait until every batch is terminal; returns the final batch objects by id."""
        final: dict[str, Any] = {}
        last: dict[str, str] = {}
        try:
            while len(final) < len(batches):
                for b in batches:
                    if b.id in final:
                        continue
                    with api_errors(f"checking {b.id}"):
                        obj = self.api.batches.retrieve(b.id)
                    rc = obj.request_counts
                    line = f"{obj.status} {rc.completed if rc else 0}/{rc.total if rc else b.requests} done"
                    if rc and rc.failed:
                        line += f", {rc.failed} failed"
                    if last.get(b.id) != line:
                        console.print(f"[bold]batch[/] {b.id}: {line}", highlight=False)
                        last[b.id] = line
                    if obj.status in TERMINAL:
                        final[b.id] = obj
                if len(final) < len(batches):
                    _sleep(self.options.poll_interval)
        except KeyboardInterrupt:
            running = [b.id for b in batches if b.id not in final]
            how = self.resume_command or "re-run the same command"
            console.print(
                f"[yellow]interrupted[/]: {len(running)} batch(es) keep running on the server "
                f"({', '.join(running)}); {how} to re-attach to them, "
                "or add --judge_batch_cancel to cancel them",
                highlight=False,
            )
            raise
        return final

    def _collect(self, b: _Recorded, obj: Any) -> None:
        """Download a terminal batch's files and assign each row to its judgment."""
        rows: dict[str, _RowResult] = {}
        for fid, source in ((obj.error_file_id, "batch error file"), (obj.output_file_id, "batch output")):
            if fid:
                with api_errors(f"downloading {source} {fid} of {b.id}"):
                    text = self.api.files.content(fid).text
                rows.update(parse_rows(text, f"{source} {b.id}"))
        batch_error = None
        if obj.status == "failed":
            errs = getattr(obj.errors, "data", None) or []
            detail = "; ".join(f"{e.code}: {e.message}" for e in errs[:3]) or "no detail"
            batch_error = f"batch {b.id} failed validation: {detail}"
        usage = Usage()
        for cid in _cids_of(self.run_dir / b.file):
            j = self.by_cid.get(cid)
            if j is None or cid in j.results:
                continue
            row = rows.get(cid)
            if row is not None and row.body is not None:
                n = 1 if next(u for u in j.units if u.cid == cid).sample is not None else j.n
                res = completion_of(row.body, n)
                if res.status == "ok":
                    j.results[cid] = res
                    j.errors.pop(cid, None)
                    usage.add(res.usage)
                    continue
                j.errors[cid] = f"batch {b.id}: {res.error}"
            elif row is not None:
                j.errors[cid] = redact(row.error or "error")
            else:
                j.errors[cid] = batch_error or f"batch {b.id} ({obj.status}): row missing from the output"
                if batch_error is not None:
                    self._no_retry.add(cid)  # the same request file would fail validation again
        self.journal.append({
            "k": "batch", "event": "collected", "id": b.id, "status": obj.status,
            "request_counts": obj.request_counts.model_dump() if obj.request_counts else None,
            "usage": {"calls": usage.calls, "prompt_tokens": usage.prompt_tokens,
                      "completion_tokens": usage.completion_tokens},
            "error": batch_error,
        })

    def _finish_ready(self, judgments: Sequence[_Judgment]) -> None:
        for j in judgments:
            if len(j.results) == len(j.units) and id(j) not in self._done:
                self._done.add(id(j))
                parts = [j.results[u.cid] for u in j.units]
                if len(parts) == 1:
                    result = parts[0]
                else:
                    usage = Usage()
                    for part in parts:
                        usage.add(part.usage)
                    result = Completion(texts=[p.texts[0] for p in parts], usage=usage, attempts=len(parts))
                self._record(j, result)

    # ----------------------------------------------------------------------------------- entry points

    def cancel(self) -> int:
        """Cancel every batch of this run that is not collected yet; returns how many were asked."""
        live = [b for b in recorded_batches(self.journal.path, self.endpoint) if not b.collected]
        for b in live:
            with api_errors(f"cancelling {b.id}"):
                obj = self.api.batches.cancel(b.id)
            self.journal.append({"k": "batch", "event": "cancel_requested", "id": b.id, "time": time.time()})
            console.print(f"[bold]batch[/] {b.id}: cancel requested ({obj.status})", highlight=False)
        if not live:
            console.print("no running batch recorded for this run")
        return len(live)

    def judge(self, calls: Sequence[PlannedCall]) -> dict[str, int]:
        """The engine's batch hook: judge ``calls`` (with ``options.cancel``: cancel this run's batches)."""
        if self.options.cancel:
            self.cancel()
            return dict(self.counts)
        if not calls:
            return dict(self.counts)
        return self.run(calls)

    def run(self, calls: Sequence[PlannedCall]) -> dict[str, int]:
        judgments = [self._judgment(p) for p in calls]
        judgments = [j for j in judgments if not self._from_cache(j)]
        for j in judgments:
            for u in j.units:
                self.by_cid[u.cid] = j
        # Re-attach: rows covered by a batch we have not collected are waited for, never resubmitted.
        live = [b for b in recorded_batches(self.journal.path, self.endpoint) if not b.collected]
        covered = {cid for b in live for cid in _cids_of(self.run_dir / b.file)}
        if live:
            console.print(f"[bold]batch[/]: re-attaching to {len(live)} batch(es) of this run")
        todo = [u for j in judgments for u in j.units if u.cid not in covered]
        active = live + (self._submit(todo) if todo else [])
        for round_no in range(1, self.options.max_rounds + 1):
            if not active:
                break
            final = self._poll(active)
            for b in active:
                self._collect(b, final[b.id])
            self._finish_ready(judgments)
            retry = [
                u for j in judgments if id(j) not in self._done for u in j.units
                if u.cid not in j.results and u.cid not in self._no_retry
            ]
            if not retry or self.options.fallback == "sync" or round_no == self.options.max_rounds:
                break
            console.print(f"[bold]batch[/]: resubmitting {len(retry)} failed, expired or missing request(s)")
            active = self._submit(retry)
        left = [j for j in judgments if id(j) not in self._done]
        if left and self.options.fallback == "sync":
            console.print(f"[bold]judging[/]: {len(left)} call(s) the batches did not finish, synchronously")
            sync = judge([j.call for j in left], self.clients, self.settings, self.journal, 0)
            for k, v in sync.items():
                self.counts[k] += v
            return self.counts
        for j in left:
            first = next(iter(j.errors.values()), "not judged by any batch")
            texts: list[str | None] = [None] * j.n
            self._record(j, Completion(texts=texts, status="api_error", error=first, attempts=len(j.units)))
        return self.counts


# ------------------------------------------------------------------------------------------ dry-run prices


def price_usd(model: str, prompt_tokens: int, completion_tokens: int) -> tuple[float, float] | None:
    """(synchronous, batch) price in USD of a token estimate, or None for a model not in the table."""
    price = PRICES_PER_MTOK.get(model)
    if price is None:
        return None
    sync = (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000
    return sync, sync * BATCH_DISCOUNT


def price_lines(plan: Mapping[str, Mapping[str, Any]]) -> Iterator[str]:
    """One line per task of a dry-run plan: synchronous and batch price, or tokens only."""
    for name, p in plan.items():
        model = str(p["judge_model"])
        tokens = (int(p["est_prompt_tokens"]), int(p["est_completion_tokens"]))
        got = price_usd(model, *tokens)
        if got is None:
            yield (f"{name}: judge {model}: no price known; ≈{tokens[0]} prompt + {tokens[1]} completion "
                   "tokens (batch: the same tokens at the provider's batch rate)")
        else:
            yield (f"{name}: judge {model}: ≈ {got[0]:.2f} USD synchronous, ≈ {got[1]:.2f} USD with "
                   "--judge_batch (list prices, see docs/judges.md)")
