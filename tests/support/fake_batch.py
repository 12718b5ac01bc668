"""A loopback fake of OpenAI's Files and Batches endpoints, for batch-judging tests through the real client.

Serves ``POST /v1/chat/completions`` (for the synchronous fallback), ``POST /v1/files`` (multipart upload,
parsed with :mod:`email.parser`), ``GET /v1/files/{id}`` and
``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches/{id}`` and
``POST /v1/batches/{id}/cancel`` on 127.0.0.1 with the standard library's threading HTTP server.

Each ``retrieve`` of a batch moves it one step: ``validating`` → ``in_progress`` → ``finalizing`` →
``completed`` (or the outcome its :class:`Plan` scripts: ``failed`` at validation, ``expired`` with only the
first rows done, ``no_output``: completed with ``output_file_id`` null and every row in the error file).
Rows are answered by a responder (request body → text, or one text per choice), the same contract as
:class:`tests.support.fake_openai.FakeOpenAI`, with the same token counts, so a batch-judged run and a
synchronously judged run of the same completions can be compared exactly. Duplicate ``custom_id``s, a
wrong ``url`` or ``method``, more than ``max_requests`` lines or mixed models fail the batch at validation
with an ``errors`` list, as the real service does.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from tests.support.fake_openai import _text_of, _token_estimate, default_responder

Outcome = Literal["completed", "failed", "expired", "no_output"]
Responder = Callable[[dict[str, Any]], "str | list[str]"]


@dataclass
class Plan:
    """How the next created batch behaves.

    Attributes:
        outcome: ``completed``, ``failed`` (validation error), ``expired`` (only ``finished_rows`` rows are
            done when the window closes; the rest are in the error file as ``batch_expired``) or
            ``no_output`` (completed, ``output_file_id`` null, all rows in the error file).
        fail_rows: custom_id predicate: those rows come back in the error file with HTTP 500.
        finished_rows: rows done before an ``expired`` outcome or a cancel.
    """

    outcome: Outcome = "completed"
    fail_rows: Callable[[str], bool] | None = None
    finished_rows: int = 0


@dataclass
class _Batch:
    obj: dict[str, Any]
    lines: list[dict[str, Any]]
    plan: Plan
    retrieves: int = 0
    cancel_requested: bool = False
    history: list[str] = field(default_factory=lambda: ["validating"])


_BATCH_PATH = re.compile(r"^/v1/batches/([^/]+)(/cancel)?$")
_FILE_PATH = re.compile(r"^/v1/files/([^/]+)(/content)?$")


class FakeBatchAPI:
    """Files + Batches server on 127.0.0.1 (random port) in a daemon thread. Use as a context manager."""

    def __init__(self, *, max_requests: int = 50_000) -> None:
        self.max_requests = max_requests
        self.responder: Responder = default_responder
        self.plans: list[Plan] = []
        self.refuse_create: int | None = None  # an HTTP status to answer batch creation with
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, _Batch] = {}
        self.log: list[tuple[str, str]] = []  # (method, path) of every request
        self._lock = threading.Lock()
        self._serial = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        assert self._server is not None, "FakeBatchAPI is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeBatchAPI:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                return

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                api._dispatch(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                api._dispatch(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-batch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> FakeBatchAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------ inspection

    def created(self) -> list[dict[str, Any]]:
        """The created batch objects, oldest first."""
        with self._lock:
            return [b.obj for b in self.batches.values()]

    def histories(self) -> list[list[str]]:
        """The statuses each batch went through, oldest batch first."""
        with self._lock:
            return [list(b.history) for b in self.batches.values()]

    def uploaded_lines(self) -> list[list[dict[str, Any]]]:
        """The parsed request lines of every uploaded batch input file, in upload order."""
        with self._lock:
            return [
                [json.loads(x) for x in self.contents[fid].splitlines() if x.strip()]
                for fid, f in self.files.items()
                if f["purpose"] == "batch"
            ]

    def count(self, method: str, prefix: str) -> int:
        with self._lock:
            return sum(1 for m, p in self.log if m == method and p.startswith(prefix))

    # ------------------------------------------------------------------------------------ HTTP

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = h.path.split("?", 1)[0]
        with self._lock:
            self.log.append((method, path))
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            status, payload = self._route(method, path, h.headers.get("Content-Type", ""), raw)
        except Exception as exc:  # a fake bug shows up as a 500 the test can see
            status, payload = 500, {"error": {"message": f"fake failed: {exc!r}", "type": "server_error"}}
        if isinstance(payload, bytes):
            body, ctype = payload, "application/octet-stream"
        else:
            body, ctype = json.dumps(payload).encode(), "application/json"
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _route(self, method: str, path: str, ctype: str, raw: bytes) -> tuple[int, Any]:
        if method == "POST" and path == "/v1/files":
            return self._upload(ctype, raw)
        if method == "POST" and path == "/v1/chat/completions":  # the synchronous fallback
            with self._lock:
                self._serial += 1
                rid = f"sync_{self._serial:04d}"
            return 200, self._completion(json.loads(raw), rid)
        if method == "POST" and path == "/v1/batches":
            return self._create(json.loads(raw or b"{}"))
        m = _BATCH_PATH.match(path)
        if m:
            with self._lock:
                batch = self.batches.get(m.group(1))
                if batch is None:
                    return 404, _err("no such batch")
                if m.group(2) and method == "POST":
                    return 200, self._cancel(batch)
                if method == "GET":
                    return 200, self._advance(batch)
        m = _FILE_PATH.match(path)
        if m and method == "GET":
            with self._lock:
                fid = m.group(1)
                if fid not in self.files:
                    return 404, _err("no such file")
                return 200, (self.contents[fid] if m.group(2) else self.files[fid])
        return 404, _err(f"no route for {method} {path}")

    def _upload(self, ctype: str, raw: bytes) -> tuple[int, Any]:
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
        )
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
        if "file" not in fields or "purpose" not in fields:
            return 400, _err("multipart upload needs `file` and `purpose`")
        filename, data = fields["file"]
        purpose = fields["purpose"][1].decode()
        fid = self._store(data, filename or "upload.jsonl", purpose)
        return 200, self.files[fid]

    def _store(self, data: bytes, filename: str, purpose: str) -> str:
        with self._lock:
            self._serial += 1
            fid = f"file-{self._serial:04d}"
            self.files[fid] = {
                "id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed",
            }
            self.contents[fid] = data
        return fid

    def _create(self, req: dict[str, Any]) -> tuple[int, Any]:
        if self.refuse_create is not None:
            return self.refuse_create, _err("scripted refusal: batch quota exceeded")
        if req.get("completion_window") != "24h":
            return 400, _err("completion_window must be 24h")
        if req.get("endpoint") != "/v1/chat/completions":
            return 400, _err("unsupported endpoint")
        with self._lock:
            fid = req.get("input_file_id")
            if fid not in self.files:
                return 400, _err(f"no such input file {fid}")
            lines = [json.loads(x) for x in self.contents[fid].splitlines() if x.strip()]
            plan = self.plans.pop(0) if self.plans else Plan()
            self._serial += 1
            bid = f"batch_{self._serial:04d}"
            obj = {
                "id": bid, "object": "batch", "endpoint": req["endpoint"], "errors": None,
                "input_file_id": fid, "completion_window": "24h", "status": "validating",
                "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "metadata": req.get("metadata"),
            }
            self.batches[bid] = _Batch(obj=obj, lines=lines, plan=plan)
        return 200, obj

    # ------------------------------------------------------------------------------------ state machine

    def _validate(self, batch: _Batch) -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        models: set[str] = set()
        if len(batch.lines) > self.max_requests:
            errors.append({"code": "too_many_requests", "message": f"more than {self.max_requests} requests"})
        for no, line in enumerate(batch.lines, start=1):
            cid = line.get("custom_id")
            if cid in seen:
                errors.append({"code": "duplicate_custom_id", "line": no, "message": f"duplicate {cid}"})
            seen.add(cid)
            if line.get("method") != "POST" or line.get("url") != "/v1/chat/completions":
                errors.append({"code": "invalid_url", "line": no, "message": "method/url"})
            models.add(str((line.get("body") or {}).get("model")))
        if len(models) > 1:
            errors.append({"code": "mixed_models", "message": "one model per batch"})
        if batch.plan.outcome == "failed" and not errors:
            errors.append({"code": "invalid_request", "message": "scripted validation failure"})
        return errors

    def _advance(self, batch: _Batch) -> dict[str, Any]:
        obj = batch.obj
        batch.retrieves += 1
        now = int(time.time())
        status = obj["status"]
        if status == "validating":
            errors = self._validate(batch)
            if errors:
                obj.update(status="failed", failed_at=now, errors={"object": "list", "data": errors})
            else:
                obj.update(status="in_progress", in_progress_at=now)
                obj["request_counts"] = {"total": len(batch.lines), "completed": 0, "failed": 0}
        elif status == "in_progress":
            if batch.plan.outcome == "expired":
                self._finish(batch, "expired", done=batch.plan.finished_rows)
            else:
                obj.update(status="finalizing", finalizing_at=now)
                obj["request_counts"] = self._counts(batch, len(batch.lines))
        elif status == "finalizing":
            self._finish(batch, "completed", done=len(batch.lines))
        elif status == "cancelling":
            self._finish(batch, "cancelled", done=batch.plan.finished_rows)
        if obj["status"] != batch.history[-1]:
            batch.history.append(obj["status"])
        return obj

    def _cancel(self, batch: _Batch) -> dict[str, Any]:
        if batch.obj["status"] in ("validating", "in_progress", "finalizing"):
            batch.obj.update(status="cancelling", cancelling_at=int(time.time()))
            batch.history.append("cancelling")
        return batch.obj

    def _counts(self, batch: _Batch, done: int) -> dict[str, int]:
        failing = batch.plan.fail_rows or (lambda _cid: False)
        if batch.plan.outcome == "no_output":
            return {"total": len(batch.lines), "completed": 0, "failed": done}
        failed = sum(1 for line in batch.lines[:done] if failing(line["custom_id"]))
        return {"total": len(batch.lines), "completed": done - failed, "failed": failed}

    def _finish(self, batch: _Batch, status: str, *, done: int) -> None:
        out_rows: list[dict[str, Any]] = []
        err_rows: list[dict[str, Any]] = []
        failing = batch.plan.fail_rows or (lambda _cid: False)
        for i, line in enumerate(batch.lines):
            cid = line["custom_id"]
            rid = f"batch_req_{batch.obj['id']}_{i}"
            if i >= done:
                code = "batch_expired" if status == "expired" else "batch_cancelled"
                err_rows.append({"id": rid, "custom_id": cid, "response": None,
                                 "error": {"code": code, "message": f"request not run: batch {status}"}})
            elif batch.plan.outcome == "no_output" or failing(cid):
                err_rows.append({"id": rid, "custom_id": cid, "error": None, "response": {
                    "status_code": 500, "request_id": rid,
                    "body": {"error": {"message": "scripted server error", "type": "server_error"}},
                }})
            else:
                out_rows.append({"id": rid, "custom_id": cid, "error": None, "response": {
                    "status_code": 200, "request_id": rid, "body": self._completion(line["body"], rid),
                }})
        out_rows.reverse()  # output order is not input order
        now = int(time.time())
        obj = batch.obj
        obj["request_counts"] = self._counts(batch, done)
        if status == "cancelled" or status == "expired":
            obj["request_counts"]["failed"] += len(batch.lines) - done
        obj.update(status=status, **{f"{status}_at": now})
        if out_rows:
            obj["output_file_id"] = self._store_locked(out_rows, f"{obj['id']}_output.jsonl")
        if err_rows:
            obj["error_file_id"] = self._store_locked(err_rows, f"{obj['id']}_error.jsonl")

    def _store_locked(self, rows: list[dict[str, Any]], name: str) -> str:
        self._serial += 1
        fid = f"file-{self._serial:04d}"
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
        self.files[fid] = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                           "filename": name, "purpose": "batch_output", "status": "processed"}
        self.contents[fid] = data
        return fid

    def _completion(self, body: dict[str, Any], rid: str) -> dict[str, Any]:
        n = body.get("n") or 1
        out = self.responder(body)
        contents = [out] * n if isinstance(out, str) else [str(out[i % len(out)]) for i in range(n)]
        prompt_tokens = _token_estimate(
            [_text_of(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict)]
        )
        completion_tokens = _token_estimate(contents)
        return {
            "id": f"chatcmpl-{rid}", "object": "chat.completion", "created": int(time.time()),
            "model": str(body.get("model")),
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": "stop"}
                for i, c in enumerate(contents)
            ],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }


def _err(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}
