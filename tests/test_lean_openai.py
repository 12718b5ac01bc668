"""The memoised request path of LeanAsyncOpenAI builds exactly what the stock openai client builds."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import openai
import pytest
from openai._models import FinalRequestOptions

from harness.chat_client import ChatClient, SamplingParams
from harness.lean_openai import LeanAsyncOpenAI
from tests.support.fake_openai import FakeOpenAI, Fault

CLIENT_KWARGS: dict[str, Any] = {
    "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-test-not-a-secret", "max_retries": 0, "timeout": 30.0,
}
JSON = {"Content-Type": "application/json"}


def _options(**kw: Any) -> FinalRequestOptions:
    fields: dict[str, Any] = {"method": "post", "url": "/chat/completions", "headers": JSON}
    fields.update(kw)
    return FinalRequestOptions.construct(**fields)


def _shape(req: httpx2.Request) -> tuple[Any, ...]:
    return req.method, str(req.url), list(req.headers.multi_items()), req.content, req.extensions


BODIES = [b'{"a":1}', '{"messages":[{"role":"user","content":"你好"}]}'.encode(), b'{"b":22222}']


def test_bytes_post_matches_stock_request_for_every_body_and_retry_count() -> None:
    stock, lean = openai.AsyncOpenAI(**CLIENT_KWARGS), LeanAsyncOpenAI(**CLIENT_KWARGS)
    for body in BODIES:
        for retries in (0, 2):
            got = lean._build_request(_options(content=body), retries_taken=retries)
            want = stock._build_request(_options(content=body), retries_taken=retries)
            assert _shape(got) == _shape(want)
            assert got.headers["content-length"] == str(len(body))
    assert len(lean._prototypes) == 2  # one shape per retry count, whatever the body


def test_a_post_without_custom_headers_is_sent_as_json() -> None:
    lean = LeanAsyncOpenAI(**CLIENT_KWARGS)
    for _ in range(2):  # stock-built, then from the prototype
        req = lean._build_request(_options(content=b"{}", headers={}))
        assert req.headers["content-type"] == "application/json"


def test_other_shapes_take_the_stock_path_and_are_not_memoised() -> None:
    stock, lean = openai.AsyncOpenAI(**CLIENT_KWARGS), LeanAsyncOpenAI(**CLIENT_KWARGS)
    cases: list[dict[str, Any]] = [
        {"json_data": {"model": "m", "messages": []}},
        {"content": b"{}", "params": {"api-version": "2024-01-01"}},
        {"json_data": {"model": "m"}, "extra_json": {"x": 1}},
        {"method": "get", "url": "/models", "headers": {}},
    ]
    for kw in cases:
        assert _shape(lean._build_request(_options(**kw))) == _shape(stock._build_request(_options(**kw)))
    for client in (stock, lean):  # a bytes body plus extra_body is refused alike
        with pytest.raises(TypeError):
            client._build_request(_options(content=b"{}", extra_json={"x": 1}))
    assert lean._prototypes == {}


def test_custom_headers_and_timeouts_get_their_own_prototype() -> None:
    lean = LeanAsyncOpenAI(**CLIENT_KWARGS)
    a = lean._build_request(_options(content=b"{}"))
    b = lean._build_request(_options(content=b"{}", headers={**JSON, "X-Trace": "1"}))
    c = lean._build_request(_options(content=b"{}", timeout=5.0))
    assert "x-trace" not in a.headers and b.headers["x-trace"] == "1"
    assert c.extensions["timeout"] != a.extensions["timeout"]
    assert len(lean._prototypes) == 3


def test_bodies_of_different_lengths_arrive_intact_over_http(judge_server: FakeOpenAI) -> None:
    """A stale Content-Length from the prototype would truncate or stall the second body."""
    judge_server.set_responder(lambda body: body["messages"][-1]["content"][::-1])
    judge_server.add_fault(Fault(kind="status", status=500, times=1, retry_after=0))
    client = ChatClient(base_url=judge_server.base_url, model="judge", api_key=None, concurrency=4)

    async def go() -> list[Any]:
        try:
            params = SamplingParams()
            calls = [client.complete([{"role": "user", "content": "x" * n}], params) for n in (1, 500, 37)]
            return await asyncio.gather(*calls)
        finally:
            await client.aclose()

    results = asyncio.run(go())
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    assert [len(r.texts[0]) for r in results] == [1, 500, 37]
    logged = judge_server.requests
    assert all(r["body"] is not None for r in logged)  # every body parsed as JSON on the server
    lengths = [len(r["body"]["messages"][-1]["content"]) for r in logged]
    assert len(lengths) == 4 and set(lengths) == {1, 37, 500}  # the faulted request went twice
    assert client.retries == 1


@pytest.mark.parametrize("status", [400, 404])
def test_status_errors_still_raise_openai_errors(judge_server: FakeOpenAI, status: int) -> None:
    judge_server.add_fault(Fault(kind="status", status=status, times=1))
    lean = LeanAsyncOpenAI(**{**CLIENT_KWARGS, "base_url": judge_server.base_url})

    async def go() -> None:
        try:
            for _ in range(2):  # the second request reuses the prototype of the first
                try:
                    await lean.post("/chat/completions", content=b'{"model":"m","messages":[]}',
                                    cast_to=httpx2.Response, options={"headers": JSON})
                except openai.APIStatusError as exc:
                    assert exc.status_code == status
                else:
                    return
            raise AssertionError("the fault was never raised")
        finally:
            await lean.close()

    asyncio.run(go())
