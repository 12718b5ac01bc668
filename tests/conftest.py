"""Shared pytest fixtures: offline environment, isolated cache, fake OpenAI server, tiny local models."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Set before any test module imports transformers / datasets / huggingface_hub, which read these once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Set for the whole session (module- and session-scoped fixtures included): the preflight request would add
# one request to every exact request count of the e2e tests, and many of them script judges whose verdicts
# deliberately do not parse. The preflight and the unscored gate have their own tests
# (tests/test_failfast_*.py), which put the real defaults back with monkeypatch.
os.environ["DITTO_BENCH_NO_PREFLIGHT"] = "1"
os.environ["DITTO_BENCH_MAX_UNSCORED"] = "1"

from tests.support.fake_openai import FakeOpenAI  # noqa: E402  (after the offline env is set)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding pyproject.toml)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir(repo_root: Path) -> Path:
    """The shared data folder next to the repository (../shared); skips the test when it is absent."""
    path = repo_root.parent / "shared"
    if not path.is_dir():
        pytest.skip(f"shared data folder not found at <repo>/../shared ({path.name} missing)")
    return path


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for a module, restored after it: the tiny model gains nothing from
    threads, and on a busy 2-core CI box they cost ~5x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Give every test its own empty cache dir and no real API credentials or endpoints."""
    monkeypatch.setenv("DITTO_BENCH_CACHE_DIR", str(tmp_path_factory.mktemp("ditto_cache")))
    # A real key or base URL in the developer's shell must never reach a test; tests that need a
    # key set a dummy one themselves.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    """One fake OpenAI-compatible server for the whole session (reset before each test using it)."""
    server = FakeOpenAI().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _reset_fake_openai(request: pytest.FixtureRequest) -> None:
    """Reset the session server before each test that uses it, so faults and logs never leak."""
    if "fake_openai" in request.fixturenames:
        server: FakeOpenAI = request.getfixturevalue("fake_openai")
        server.reset()


@pytest.fixture
def judge_server(fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The session fake server, freshly reset (no faults, default responder, empty log)."""
    fake_openai.reset()
    return fake_openai


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 chat model with ChatML template, built once per session."""
    from tests.support.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), seed=0)


@pytest.fixture(scope="session")
def tiny_model_nosys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like tiny_model_dir, but its chat template raises on a system message."""
    from tests.support.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model_nosys"), seed=0, system_role_supported=False)
