"""Failure isolation of the lm-eval chat backend: one bad request fails alone, as its own error state.

The backend sends requests to ``generate_until`` in chunks; when a chunk raises, each of its requests is
run on its own (seeded ``seed + k``), so the others still succeed and the bad one is recorded, never
dropped. The fakes below stand in for lm-eval ``LM`` objects, so these tests load no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import harness.backends.lmeval as lmeval
from harness.backends.base import GenerationResult
from harness.backends.lmeval import LmEvalChatBackend
from harness.cache import ResponseCache
from harness.journal import Journal
from harness.rollout import rollout
from harness.task import Session
from harness.types import ChatMessage

BAD = "BAD"  # a request whose context contains this makes the fake's generate_until raise
GK: dict[str, Any] = {"max_gen_toks": 8}


def _render(messages: Sequence[ChatMessage]) -> str:
    return " ".join(f"<{m['role']}> {m['content']}" for m in messages) + " <assistant>"


class FakeLM:
    """An lm-eval ``LM`` stand-in: replies ``re: <last word of context>``; raises on a chunk holding BAD.

    ``fail_first`` makes the first ``generate_until`` call raise whatever it holds (a flaky transport).
    """

    tokenizer: Any = None
    base_url = "http://127.0.0.1:1/v1/chat/completions"
    model = "fake-model"

    def __init__(self, *, fail_first: bool = False, reply: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_first = fail_first
        self.reply = reply
        self.healed = False

    def apply_chat_template(self, messages: list[ChatMessage]) -> str:
        return _render(messages)

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        contexts = [str(r.args[0]) for r in requests]
        self.calls.append(contexts)
        if self.fail_first and len(self.calls) == 1:
            raise ConnectionError("transient")
        if not self.healed and any(BAD in c for c in contexts):
            raise RuntimeError("backend choked on a bad request")
        if self.reply is not None:
            return [self.reply for _ in contexts]
        return [f"re: {c.split()[-2]}" for c in contexts]


class FakeTokenizer:
    """Whitespace 'tokenizer' with a chat template that rejects the system role (like Gemma's)."""

    def apply_chat_template(
        self, messages: list[ChatMessage], *, tokenize: bool, add_generation_prompt: bool
    ) -> str:
        if any(m["role"] == "system" for m in messages):
            raise ValueError("System role not supported")
        return _render(messages)

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[str]]:
        return {"input_ids": text.split()}


class FakeLocalLM(FakeLM):
    """A local (tokenizer-owning) model with a short context window."""

    def __init__(self, max_length: int) -> None:
        super().__init__()
        self.tokenizer = FakeTokenizer()
        self.max_length = max_length


def _backend(
    lm: FakeLM, name: str, cache: ResponseCache | None = None
) -> tuple[LmEvalChatBackend, list[int]]:
    backend = LmEvalChatBackend(name, lm, {}, cache)
    seeds: list[int] = []
    # Record the seeds instead of seeding torch.
    backend._seed = seeds.append  # type: ignore[method-assign,assignment]
    return backend, seeds


def _conv(word: str) -> list[ChatMessage]:
    return [{"role": "system", "content": "Be Ada."}, {"role": "user", "content": word}]


def _generate(
    backend: LmEvalChatBackend, convs: list[list[ChatMessage]], seed: int
) -> list[GenerationResult]:
    progress: list[int] = []
    results = backend.generate(convs, [GK] * len(convs), seed=seed, on_progress=progress.append)
    assert sum(progress) == len(convs)  # every request is counted once, failed or not
    return results


def test_one_bad_request_fails_alone_and_is_not_cached(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    lm = FakeLM()
    backend, seeds = _backend(lm, "local-chat-completions", cache)
    convs = [_conv("one"), _conv(BAD), _conv("three")]
    results = _generate(backend, convs, seed=100)

    assert [r.text for r in results] == ["re: one", None, "re: three"]
    bad = results[1]
    assert not bad.ok and bad.error == "RuntimeError: backend choked on a bad request"
    assert bad.sent_messages == convs[1] and not bad.cached
    # One chunk call, then each request on its own with its own seed; nothing raised past the chunk.
    assert [len(c) for c in lm.calls] == [3, 1, 1, 1]
    assert seeds == [100, 100, 101, 102]
    assert len(cache) == 2  # errors are never cached

    # A second pass over the same requests: the two good ones come from the cache, only the bad one is sent.
    lm.calls.clear()
    again = _generate(backend, convs, seed=100)
    assert [r.cached for r in again] == [True, False, True]
    assert all(BAD in c for call in lm.calls for c in call)
    assert again[1].error == bad.error
    cache.close()


def test_a_failing_chunk_does_not_touch_the_other_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lmeval, "CHUNK", 2)
    lm = FakeLM()
    backend, seeds = _backend(lm, "local-chat-completions")
    words = ["w0", "w1", "w2", BAD, "w4"]
    results = _generate(backend, [_conv(w) for w in words], seed=10)

    assert [r.ok for r in results] == [True, True, True, False, True]
    assert results[2].text == "re: w2"
    assert [len(c) for c in lm.calls] == [2, 2, 1, 1, 1]  # only chunk [w2, BAD] was split
    assert seeds == [10, 12, 12, 13, 14]  # chunk seed = seed + start; a split request: chunk seed + k


@pytest.mark.parametrize("fail_first", [True, False])
def test_a_single_request_chunk_is_retried_once_on_its_own(fail_first: bool) -> None:
    lm = FakeLM(fail_first=fail_first)
    backend, seeds = _backend(lm, "local-chat-completions")
    word = "solo" if fail_first else BAD
    [res] = _generate(backend, [_conv(word)], seed=7)
    assert len(lm.calls) == 2 and seeds == [7, 7]
    if fail_first:  # a transient failure: the retry on its own succeeds
        assert res.ok and res.text == "re: solo"
    else:
        assert not res.ok and res.text is None and str(res.error).startswith("RuntimeError")


def test_null_and_non_text_outputs_are_error_states(tmp_path: Path) -> None:
    from lm_eval.models.api_models import LMEVAL_MODEL_NONE_ANSWER_PLACEHOLDER

    cache = ResponseCache(tmp_path / "cache.sqlite")
    backend, _ = _backend(FakeLM(reply=LMEVAL_MODEL_NONE_ANSWER_PLACEHOLDER), "local-chat-completions", cache)
    [res] = _generate(backend, [_conv("x")], seed=0)
    assert res.error == "API returned null content" and res.text is None and len(cache) == 0
    backend, _ = _backend(FakeLM(reply=None), "local-chat-completions")
    backend.lm.generate_until = lambda reqs, disable_tqdm=False: [None for _ in reqs]
    [res] = _generate(backend, [_conv("x")], seed=0)
    assert res.error == "backend returned NoneType, not text"
    cache.close()


def test_local_error_state_keeps_the_prompt_handling_records(tmp_path: Path) -> None:
    # The whole history renders to 17 words, without its oldest pair to 11; 20 - 8 (max_gen_toks) = 12 fit.
    lm = FakeLocalLM(max_length=20)
    backend, _ = _backend(lm, "hf", ResponseCache(tmp_path / "unused.sqlite"))
    assert backend.cache is None  # local models are never cached

    def history(last: str) -> list[ChatMessage]:
        return [
            {"role": "system", "content": "Be Ada."},
            {"role": "user", "content": "u1 u1"},
            {"role": "assistant", "content": "a1 a1"},
            {"role": "user", "content": "u2 u2"},
            {"role": "assistant", "content": "a2 a2"},
            {"role": "user", "content": last},
        ]

    good, bad = _generate(backend, [history("fine"), history(BAD)], seed=0)
    # The system text survives trimming: it is merged into the oldest user turn that is kept.
    for res, last in ((good, "fine"), (bad, BAD)):
        assert res.system_merged is True and res.trimmed_turns == 1 and res.truncated is False
        assert res.sent_messages == [
            {"role": "user", "content": "Be Ada.\n\nu2 u2"},
            {"role": "assistant", "content": "a2 a2"},
            {"role": "user", "content": last},
        ]
    assert good.ok and good.text == "re: fine"
    assert not bad.ok and bad.error is not None and bad.error.startswith("RuntimeError")


def test_rerun_retries_only_the_failed_turn(tmp_path: Path) -> None:
    sessions = [
        Session(task="t", session_id=sid, index=i, system="Be Ada.", prompts=[first, f"{sid}-second"])
        for i, (sid, first) in enumerate([("a", "a-first"), ("b", BAD), ("c", "c-first")])
    ]
    lm = FakeLM()
    backend, _ = _backend(lm, "local-chat-completions")

    def run() -> dict[str, int]:
        return rollout(
            sessions, Journal(tmp_path / "journal.jsonl"), lambda: backend, lambda s: dict(GK), seed=0,
            is_local=lambda b: not getattr(b, "is_api", True),
        )

    assert run() == {"generated": 4, "failed": 1, "pending": 2}  # b stops at its failed first turn
    journal = Journal(tmp_path / "journal.jsonl")
    entry = journal.gens[("t", "b", 0)]
    assert entry["status"] == "error" and entry["text"] is None and "backend choked" in entry["error"]
    assert ("t", "b", 1) not in journal.gens
    assert all(journal.gens[("t", s, t)]["status"] == "ok" for s in "ac" for t in (0, 1))
    journal.close()

    lm.healed, lm.calls = True, []
    assert run() == {"generated": 2, "failed": 0, "pending": 0}
    assert [[c.split()[-2] for c in call] for call in lm.calls] == [[BAD], ["b-second"]]


class ShortLM(FakeLM):
    """Answers one request fewer than it was given whenever a call holds more than one request."""

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        outs = super().generate_until(requests, disable_tqdm)
        return outs[:-1] if len(outs) > 1 else outs


def test_a_chunk_with_too_few_answers_is_split_not_mismatched() -> None:
    lm = ShortLM()
    backend, _ = _backend(lm, "local-chat-completions")
    results = _generate(backend, [_conv("a"), _conv("b"), _conv("c")], seed=0)
    assert [r.text for r in results] == ["re: a", "re: b", "re: c"]  # answers stay with their requests
    assert [len(c) for c in lm.calls] == [3, 1, 1, 1]
