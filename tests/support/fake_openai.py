"""A real OpenAI-compatible HTTP server on 127.0.0.1 for offline tests and benchmarks.

The server runs an aiohttp app on its own event loop in a background thread, so both an in-process
CLI run and a subprocess CLI run can talk to it over loopback. Tests script replies with a
responder and inject failures with `Fault`s (HTTP status, slow reply, garbage body, dropped
connection, empty choices). Run it standalone with `python -m tests.support.fake_openai --port 0`;
the first stdout line is the base URL.

Only aiohttp and the standard library are imported here, so the standalone process starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

FaultKind = Literal["status", "timeout", "garbage", "disconnect", "empty_choices", "few_choices"]
Responder = Callable[[dict[str, Any]], "str | list[str]"]

# A body that starts like a completion and then breaks off, as a misbehaving proxy might send it.
GARBAGE_BODY = '{"id": "chatcmpl-garbage", "choices": [<<upstream error: not json'

_ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "bad_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout", "request_timeout"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass
class Fault:
    """One injected failure, applied to the next `times` requests that `match` accepts.

    Attributes:
        kind: "status" (error JSON with `status`), "timeout" (sleep `delay`, then answer normally),
            "garbage" (HTTP 200 with a body that is not JSON), "disconnect" (close the connection
            without any response), "empty_choices" (HTTP 200 with `"choices": []`) or "few_choices"
            (HTTP 200 with only the first `choices` of the `n` requested, as an endpoint ignoring `n`).
        status: HTTP status for kind="status" (429, 500, 503, ...).
        retry_after: seconds written to the Retry-After header of a status fault; None = no header.
        delay: seconds to sleep for kind="timeout".
        match: predicate on the parsed JSON request body; None matches every request.
        times: how many matching requests this fault applies to.
        content_type: Content-Type of the garbage body. With "application/json" the openai client
            raises json.JSONDecodeError; with a non-JSON type it returns the raw text (a str, not a
            ChatCompletion) unless strict response validation is on.
        choices: how many choices a "few_choices" fault returns.
        echo_headers: a "status" fault's error message repeats the request headers (as some proxies do).
    """

    kind: FaultKind
    status: int = 500
    retry_after: float | None = None
    delay: float = 5.0
    match: Callable[[dict[str, Any]], bool] | None = None
    times: int = 1
    content_type: str = "application/json"
    choices: int = 1
    echo_headers: bool = False


def _text_of(content: Any) -> str:
    """Plain text of a message content that is either a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def default_responder(body: dict[str, Any]) -> str:
    """Reply "reply to: <first 40 characters of the last user message>"."""
    last_user = ""
    for msg in body.get("messages") or []:
        if isinstance(msg, dict) and msg.get("role") == "user":
            last_user = _text_of(msg.get("content"))
    return f"reply to: {last_user[:40]}"


def _token_estimate(texts: list[str]) -> int:
    """Deterministic stand-in for a token count: total characters // 4, at least 1."""
    return max(1, sum(len(t) for t in texts) // 4)


def _error_response(status: int, message: str, retry_after: float | None = None) -> web.Response:
    etype, code = _ERROR_TYPES.get(status, ("server_error", f"http_{status}"))
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return web.json_response(
        {"error": {"message": message, "type": etype, "code": code}}, status=status, headers=headers
    )


class FakeOpenAI:
    """OpenAI-compatible chat-completions server on 127.0.0.1 (random port), in a background thread.

    Use as `with FakeOpenAI() as srv: ...` or `srv = FakeOpenAI().start(); ...; srv.stop()`.
    `base_url` is ".../v1" (openai client); `chat_url` is the full endpoint (lm-eval
    local-chat-completions). The responder runs on the server's event loop, so keep it quick.
    """

    def __init__(self, latency: float = 0.0) -> None:
        self._default_latency = latency
        self.latency: float = latency
        self._responder: Responder | None = None
        self._faults: list[Fault] = []
        self._log: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._n_created = 0
        # Answer every request with one choice whatever its `n`, as some OpenAI-compatible servers do.
        self.ignore_n = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The bound TCP port (only after start())."""
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """OpenAI client base URL, e.g. "http://127.0.0.1:PORT/v1"."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_url(self) -> str:
        """Full chat-completions endpoint (what lm-eval's local-chat-completions wants)."""
        return f"{self.base_url}/chat/completions"

    def start(self, port: int = 0, timeout: float = 10.0) -> FakeOpenAI:
        """Bind 127.0.0.1:`port` (0 = any free port) and serve in a daemon thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("FakeOpenAI already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._runner, self._port = loop.run_until_complete(self._serve(port))
            except BaseException as exc:  # reported to the starting thread, not swallowed
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"FakeOpenAI did not start within {timeout} s")
        if failure:
            self._thread = None
            raise RuntimeError(f"FakeOpenAI failed to start: {failure[0]!r}") from failure[0]
        return self

    async def _serve(self, port: int) -> tuple[web.AppRunner, int]:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        app.router.add_post("/chat/completions", self._handle_chat)
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_get("/models", self._handle_models)
        # handler_cancellation: a client that gives up (timeout fault) frees its handler at once.
        # A short shutdown_timeout keeps stop() from waiting on sleeping timeout faults.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        bound = int(runner.addresses[0][1])
        return runner, bound

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down and join its thread. Safe to call twice."""
        loop, runner, thread = self._loop, self._runner, self._thread
        if loop is None or thread is None:
            return
        if runner is not None and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(runner.cleanup(), loop)
            try:
                fut.result(timeout)
            except Exception:  # a stuck cleanup must not hide the test's own result; the loop stops anyway
                pass
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = self._runner = self._thread = None
        self._port = None

    def __enter__(self) -> FakeOpenAI:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting

    def set_responder(self, fn: Responder | None) -> None:
        """Set the function body -> content (str for every choice, or one per choice); None = default."""
        self._responder = fn

    def add_fault(self, fault: Fault) -> None:
        """Queue a fault; faults are consumed FIFO among those matching a request."""
        if fault.times < 1:
            raise ValueError(f"Fault.times must be >= 1, got {fault.times}")
        with self._lock:
            self._faults.append(fault)

    def reset(self) -> None:
        """Clear faults, responder and request log; latency back to the constructor value."""
        with self._lock:
            self._faults.clear()
            self._log.clear()
        self._responder = None
        self.latency = self._default_latency
        self.ignore_n = False

    @property
    def pending_faults(self) -> int:
        """Number of queued fault applications not yet consumed."""
        with self._lock:
            return sum(f.times for f in self._faults)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Snapshot of the request log: {"path", "body", "has_auth", "auth_sha256", "t", "fault"} per request.

        ``auth_sha256`` is the sha256 (hex) of the Authorization header as received, or None: tests can
        check which key reached which endpoint while the log never holds a key."""
        with self._lock:
            return list(self._log)

    def count(self, pred: Callable[[dict[str, Any]], bool] | None = None) -> int:
        """Number of logged requests (that satisfy `pred`, which gets a log entry)."""
        with self._lock:
            return len(self._log) if pred is None else sum(1 for r in self._log if pred(r))

    # ------------------------------------------------------------------ handlers

    def _take_fault(self, body: dict[str, Any]) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.match is None or fault.match(body):
                    fault.times -= 1
                    if fault.times <= 0:
                        del self._faults[i]
                    return fault
        return None

    async def _handle_models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "tests"}],
            }
        )

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        # The Authorization value is a secret and never stored; its hash says which key arrived.
        auth = request.headers.get("Authorization")
        entry: dict[str, Any] = {
            "path": request.path,
            "body": None,
            "has_auth": auth is not None,
            "auth_sha256": None if auth is None else hashlib.sha256(auth.encode()).hexdigest(),
            "t": time.time(),
            "fault": None,
        }
        try:
            parsed = json.loads(await request.read())
        except ValueError as exc:
            entry["fault"] = "bad_request"
            with self._lock:
                self._log.append(entry)
            return _error_response(400, f"request body is not valid JSON: {exc}")
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {"_raw": parsed}
        entry["body"] = body
        fault = self._take_fault(body)
        if fault is not None:
            entry["fault"] = fault.kind
        with self._lock:
            self._log.append(entry)

        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if fault is not None:
            if fault.kind == "status":
                message = f"injected fault: HTTP {fault.status}"
                if fault.echo_headers:
                    message += " for request with headers " + json.dumps(dict(request.headers))
                return _error_response(fault.status, message, retry_after=fault.retry_after)
            if fault.kind == "timeout":
                await asyncio.sleep(fault.delay)
            elif fault.kind == "garbage":
                return web.Response(status=200, text=GARBAGE_BODY, content_type=fault.content_type)
            elif fault.kind == "disconnect":
                # Drop the TCP connection before any byte of a response; the client sees EOF.
                transport = request.transport
                if transport is not None:
                    transport.abort()
                raise asyncio.CancelledError
            elif fault.kind == "empty_choices":
                return web.json_response(self._completion(body, []))
            elif fault.kind == "few_choices":
                return web.json_response(self._completion(body, self._contents(body)[: fault.choices]))
        try:
            contents = self._contents(body)
        except Exception as exc:  # a broken responder shows up as a 500 the test can see
            entry["fault"] = "responder_error"
            return _error_response(500, f"responder failed: {exc!r}")
        return web.json_response(self._completion(body, contents))

    def _contents(self, body: dict[str, Any]) -> list[str]:
        n = body.get("n") or 1
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if self.ignore_n:
            n = 1
        fn = self._responder or default_responder
        out = fn(body)
        if isinstance(out, str):
            return [out] * n
        if not out:
            raise ValueError("responder returned an empty list")
        return [str(out[i % len(out)]) for i in range(n)]

    def _completion(self, body: dict[str, Any], contents: list[str]) -> dict[str, Any]:
        with self._lock:
            self._n_created += 1
            serial = self._n_created
        prompt_texts = [_text_of(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict)]
        prompt_tokens = _token_estimate(prompt_texts)
        completion_tokens = _token_estimate(contents)
        return {
            "id": f"chatcmpl-fake-{serial}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model", "fake-model")),
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": c},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
                for i, c in enumerate(contents)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _import_responder(spec: str) -> Responder:
    """``package.module:function`` with the repository root importable (this file runs as a script)."""
    import importlib

    module_name, _, attr = spec.partition(":")
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    fn = getattr(importlib.import_module(module_name), attr)
    if not callable(fn):
        raise SystemExit(f"--responder {spec}: not callable")
    return fn  # type: ignore[no-any-return]


def serve_forever_cli(argv: list[str] | None = None) -> int:
    """Run the fake server as a standalone process until SIGTERM/SIGINT.

    Prints the base URL (".../v1") as the first stdout line, flushed, so a parent process can read it.
    """
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0 = pick a free one)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each request sleeps")
    parser.add_argument(
        "--responder", default=None, metavar="MODULE:FUNCTION",
        help="responder to import (module path relative to the repository root); default echoes the user",
    )
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = FakeOpenAI(latency=args.latency)
    if args.responder:
        server.set_responder(_import_responder(args.responder))
    server.start(port=args.port)
    sys.stdout.write(server.base_url + "\n")
    sys.stdout.flush()
    try:
        # Short waits so the main thread notices the signal promptly.
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


@contextlib.contextmanager
def run_fake_openai_process(
    latency: float = 0.0, start_timeout: float = 30.0, responder: str | None = None
) -> Iterator[str]:
    """Run the server in a separate Python process (own GIL); yield its base URL, terminate on exit.

    ``responder`` is a ``module:function`` spec imported by the child (see ``serve_forever_cli``).
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--port", "0", "--latency", str(latency)]
    if responder:
        cmd += ["--responder", responder]
    # stderr goes to a file, not a pipe nobody reads, so a chatty server can never block on it.
    with tempfile.TemporaryFile() as err_file:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, text=True)
        try:
            assert proc.stdout is not None
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                ready = sel.select(start_timeout)
            line = proc.stdout.readline().strip() if ready else ""
            if not line.startswith("http://127.0.0.1:"):
                proc.kill()
                proc.wait(timeout=5)
                err_file.seek(0)
                err = err_file.read().decode(errors="replace")[-2000:]
                raise RuntimeError(
                    f"fake server process did not report its URL (got {line!r}); stderr: {err}"
                )
            yield line
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()


if __name__ == "__main__":
    raise SystemExit(serve_forever_cli())
