"""Tests of the fake OpenAI server through the real `openai` client, raw aiohttp and lm-eval."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI, DefaultAioHttpClient, OpenAI

from tests.support.fake_openai import FakeOpenAI, Fault, run_fake_openai_process

SECRET = "sk-test-not-a-real-key-1234567890"
HELLO = [{"role": "user", "content": "Hello there, who are you today?"}]


def sync_client(srv: FakeOpenAI, timeout: float = 10.0) -> OpenAI:
    return OpenAI(base_url=srv.base_url, api_key=SECRET, max_retries=0, timeout=timeout)


def ask(client: OpenAI, messages: list[dict[str, Any]] | None = None, **kw: Any) -> Any:
    return client.chat.completions.create(model="judge-x", messages=messages or HELLO, **kw)  # type: ignore[arg-type]


def test_n_choices_usage_and_model_echo(judge_server: FakeOpenAI) -> None:
    msgs = [
        {"role": "system", "content": "You are Edward III."},
        {"role": "user", "content": "你好，国王陛下！"},
    ]
    r = ask(sync_client(judge_server), msgs, n=3, temperature=0.7)
    assert r.object == "chat.completion" and r.model == "judge-x"
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.message.role == "assistant" and c.finish_reason == "stop" for c in r.choices)
    assert {c.message.content for c in r.choices} == {"reply to: 你好，国王陛下！"}
    prompt_chars = len("You are Edward III.") + len("你好，国王陛下！")
    assert r.usage is not None
    assert r.usage.prompt_tokens == max(1, prompt_chars // 4)
    assert r.usage.completion_tokens == max(1, 3 * len("reply to: 你好，国王陛下！") // 4)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_async_client_responder_list_is_cycled(judge_server: FakeOpenAI) -> None:
    judge_server.set_responder(lambda body: ["A", "B"])

    async def go() -> list[str | None]:
        async with AsyncOpenAI(base_url=judge_server.base_url, api_key=SECRET, max_retries=0) as client:
            r = await client.chat.completions.create(model="m", messages=HELLO, n=5)  # type: ignore[arg-type]
            return [c.message.content for c in r.choices]

    assert asyncio.run(go()) == ["A", "B", "A", "B", "A"]


def test_responder_sees_body_and_reset_restores_defaults(judge_server: FakeOpenAI) -> None:
    judge_server.set_responder(lambda body: f"{len(body['messages'])} msgs, t={body.get('temperature')}")
    judge_server.latency = 0.2
    client = sync_client(judge_server)
    assert ask(client, temperature=0.2).choices[0].message.content == "1 msgs, t=0.2"
    judge_server.add_fault(Fault("status", status=500))
    judge_server.reset()
    assert judge_server.latency == 0.0 and judge_server.count() == 0 and judge_server.pending_faults == 0
    t0 = time.perf_counter()
    assert ask(client).choices[0].message.content == "reply to: Hello there, who are you today?"
    assert time.perf_counter() - t0 < 0.2


def test_429_carries_retry_after_and_error_body(judge_server: FakeOpenAI) -> None:
    judge_server.add_fault(Fault("status", status=429, retry_after=2))
    with pytest.raises(openai.RateLimitError) as info:
        ask(sync_client(judge_server))
    err = info.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "2"
    assert isinstance(err.body, dict) and err.body["code"] == "rate_limit_exceeded"
    # Consumed once: the next request succeeds.
    assert ask(sync_client(judge_server)).choices[0].message.content


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors(judge_server: FakeOpenAI, status: int) -> None:
    judge_server.add_fault(Fault("status", status=status))
    with pytest.raises(openai.InternalServerError) as info:
        ask(sync_client(judge_server))
    assert info.value.status_code == status
    assert "retry-after" not in info.value.response.headers


def test_client_retries_through_a_503(judge_server: FakeOpenAI) -> None:
    judge_server.add_fault(Fault("status", status=503, retry_after=0.05, times=2))
    client = OpenAI(base_url=judge_server.base_url, api_key=SECRET, max_retries=2, timeout=10)
    assert ask(client).choices[0].message.content
    assert [r["fault"] for r in judge_server.requests] == ["status", "status", None]


def test_timeout_fault_trips_client_timeout(judge_server: FakeOpenAI) -> None:
    judge_server.add_fault(Fault("timeout", delay=3.0))
    t0 = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        ask(sync_client(judge_server, timeout=0.3))
    assert time.perf_counter() - t0 < 2.0
    # A slow answer still comes back when the client waits long enough.
    judge_server.add_fault(Fault("timeout", delay=0.2))
    assert ask(sync_client(judge_server)).choices[0].message.content


def test_garbage_body(judge_server: FakeOpenAI) -> None:
    judge_server.add_fault(Fault("garbage"))
    # With a JSON content type the client's json() call fails: not an openai.APIError.
    with pytest.raises(json.JSONDecodeError):
        ask(sync_client(judge_server))
    judge_server.add_fault(Fault("garbage", content_type="text/html"))
    # With a non-JSON content type the (non-strict) client hands back the raw text.
    out = ask(sync_client(judge_server))
    assert isinstance(out, str) and "not json" in out


def test_garbage_body_strict_client(judge_server: FakeOpenAI) -> None:
    judge_server.add_fault(Fault("garbage", content_type="text/html"))
    client = OpenAI(
        base_url=judge_server.base_url, api_key=SECRET, max_retries=0, _strict_response_validation=True
    )
    with pytest.raises(openai.APIResponseValidationError):
        ask(client)


def _cause_chain(exc: BaseException) -> list[str]:
    names: list[str] = []
    cur: BaseException | None = exc
    while cur is not None and len(names) < 10:
        names.append(type(cur).__name__)
        cur = cur.__cause__ or cur.__context__
    return names


def test_disconnect_and_timeout_with_both_transports(judge_server: FakeOpenAI) -> None:
    async def go(aiohttp_transport: bool) -> tuple[BaseException, BaseException]:
        kw: dict[str, Any] = {"http_client": DefaultAioHttpClient()} if aiohttp_transport else {}
        async with AsyncOpenAI(
            base_url=judge_server.base_url, api_key=SECRET, max_retries=0, timeout=0.3, **kw
        ) as client:
            judge_server.add_fault(Fault("disconnect"))
            with pytest.raises(openai.APIConnectionError) as dropped:
                await client.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
            judge_server.add_fault(Fault("timeout", delay=2.0))
            with pytest.raises(openai.APITimeoutError) as slow:
                await client.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
            ok = await client.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
            assert ok.choices[0].message.content
            return dropped.value, slow.value

    # Default httpx2 transport: a dropped connection is a plain connection error, not a timeout.
    dropped, slow = asyncio.run(go(aiohttp_transport=False))
    assert not isinstance(dropped, openai.APITimeoutError)
    assert "RemoteProtocolError" in _cause_chain(dropped)
    # openai's vendored aiohttp transport maps every aiohttp.ClientConnectionError (ServerDisconnectedError
    # included) to httpx2.ConnectTimeout, so the same drop surfaces as APITimeoutError. Only the cause
    # chain tells the two apart; the server really did drop the connection.
    dropped, slow = asyncio.run(go(aiohttp_transport=True))
    assert isinstance(dropped, openai.APITimeoutError)
    assert "ServerDisconnectedError" in _cause_chain(dropped)
    assert "ServerDisconnectedError" not in _cause_chain(slow)
    assert judge_server.count(lambda r: r["fault"] == "disconnect") == 2


def test_empty_choices(judge_server: FakeOpenAI) -> None:
    judge_server.add_fault(Fault("empty_choices"))
    r = ask(sync_client(judge_server), n=3)
    assert r.choices == [] and r.usage is not None


def test_faults_with_match_fifo_and_times(judge_server: FakeOpenAI) -> None:
    def mentions_boom(body: dict[str, Any]) -> bool:
        return any("boom" in m["content"] for m in body["messages"])

    judge_server.add_fault(Fault("status", status=429, match=mentions_boom, times=2))
    judge_server.add_fault(Fault("status", status=500, match=mentions_boom))
    client = sync_client(judge_server)
    boom = [{"role": "user", "content": "boom now"}]
    assert ask(client).choices  # unmatched request passes untouched
    codes = []
    for _ in range(3):
        with pytest.raises(openai.APIStatusError) as info:
            ask(client, boom)
        codes.append(info.value.status_code)
    assert codes == [429, 429, 500]
    assert ask(client, boom).choices and judge_server.pending_faults == 0


def test_request_log_never_holds_the_key(judge_server: FakeOpenAI) -> None:
    ask(sync_client(judge_server), n=2)
    OpenAI(base_url=judge_server.base_url, api_key=SECRET, max_retries=0).models.list()
    urllib.request.urlopen(  # no Authorization header at all
        urllib.request.Request(
            judge_server.chat_url, data=json.dumps({"model": "m", "messages": HELLO}).encode(), method="POST"
        ),
        timeout=10,
    ).read()
    log = judge_server.requests
    assert [r["has_auth"] for r in log] == [True, False]  # GET /v1/models is not logged
    assert log[0]["path"] == "/v1/chat/completions" and log[0]["body"]["n"] == 2
    assert set(log[0]) == {"path", "body", "has_auth", "auth_sha256", "t", "fault"}
    assert SECRET not in repr(log)
    assert judge_server.count(lambda r: r["body"].get("n") == 2) == 1


def test_models_endpoint_short_path_and_bad_json(judge_server: FakeOpenAI) -> None:
    models = sync_client(judge_server).models.list()
    assert [m.id for m in models.data] == ["fake-model"]
    short = judge_server.base_url.removesuffix("/v1") + "/chat/completions"
    good = urllib.request.Request(short, data=json.dumps({"messages": HELLO}).encode(), method="POST")
    body = json.loads(urllib.request.urlopen(good, timeout=10).read())
    assert body["choices"][0]["message"]["content"].startswith("reply to:")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(urllib.request.Request(short, data=b"{nope", method="POST"), timeout=10)
    assert info.value.code == 400
    assert judge_server.requests[-1]["fault"] == "bad_request"


def test_high_concurrency_raw_aiohttp(judge_server: FakeOpenAI) -> None:
    import aiohttp

    judge_server.latency = 0.01
    payload = {"model": "m", "messages": HELLO, "n": 2}

    async def go() -> list[int]:
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as session:
            sem = asyncio.Semaphore(64)

            async def one() -> int:
                async with sem, session.post(judge_server.chat_url, json=payload) as resp:
                    data = await resp.json()
                    return len(data["choices"])

            return await asyncio.gather(*(one() for _ in range(600)))

    assert asyncio.run(go()) == [2] * 600
    assert judge_server.count() == 600


def test_lm_eval_local_chat_completions_sends_full_history(judge_server: FakeOpenAI) -> None:
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_model

    history = [
        {"role": "system", "content": "You are Li Bai, a poet of the Tang dynasty."},
        {"role": "user", "content": "What do you like to write about?"},
        {"role": "assistant", "content": "我喜欢写月亮和美酒。"},
        {"role": "user", "content": "Why the moon?"},
    ]
    lm = get_model("local-chat-completions").create_from_arg_string(
        f"model=tiny,base_url={judge_server.chat_url},num_concurrent=1,max_retries=1"
    )
    req = Instance(
        request_type="generate_until",
        doc={},
        arguments=(lm.apply_chat_template(history), {"max_gen_toks": 32, "until": []}),
        idx=0,
    )
    assert lm.generate_until([req], disable_tqdm=True) == ["reply to: Why the moon?"]
    (entry,) = judge_server.requests
    assert entry["body"]["messages"] == history
    assert entry["body"]["model"] == "tiny" and entry["body"]["max_tokens"] == 32


def test_standalone_process_server() -> None:
    with run_fake_openai_process(latency=0.0) as base_url:
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        client = OpenAI(base_url=base_url, api_key=SECRET, max_retries=0, timeout=10)
        r = client.chat.completions.create(model="m", messages=HELLO, n=2)  # type: ignore[arg-type]
        assert len(r.choices) == 2


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_standalone_server_with_realistic_judge_verdicts(lang: str) -> None:
    """The benchmark's responder answers every real judge prompt with completions our parsers read."""
    from judges.parsers import parse_consistency, parse_knowledge, parse_rejection
    from judges.render import render_judge_prompt

    label = "Ada Lovelace" if lang == "en" else "李白"
    common = {"query": "Who are you?", "reply": "I am who I am."}
    prompts = {
        "consistency": render_judge_prompt("consistency", lang, candidates=[label, "Other B"], **common),
        "rejection": render_judge_prompt("rejection", lang, label=label, **common),
        "knowledge": render_judge_prompt(
            "knowledge", lang, label=label, summary="A person.", evidence="- a fact", **common
        ),
    }
    parse = {
        "consistency": lambda t: parse_consistency(t, lang),
        "rejection": parse_rejection,
        "knowledge": parse_knowledge,
    }
    with run_fake_openai_process(responder="tests.wre_support:realistic_verdicts") as base_url:
        client = OpenAI(base_url=base_url, api_key=SECRET, max_retries=0, timeout=10)
        for metric, prompt in prompts.items():
            r = client.chat.completions.create(  # type: ignore[call-overload]
                model="judge", messages=[{"role": "user", "content": prompt}], n=3
            )
            results = [parse[metric](c.message.content) for c in r.choices]
            assert [p.status for p in results] == ["ok"] * 3, (metric, results)
            if metric == "consistency":
                assert {p.value for p in results} == {label}
