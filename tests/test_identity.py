"""Model identity by content (harness.identity): what changes it, what does not, and the hash memo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.identity import HashMemo, hub_identity, is_identity_file, model_identity


def _model(folder: Path, weights: bytes = b"w" * 1000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "tokenizer.json").write_text("{}")
    (folder / "chat_template.jinja").write_text("{{ x }}")
    return folder


def test_local_identity_follows_the_weights_not_the_path(tmp_path: Path) -> None:
    memo = HashMemo(tmp_path / "memo.json")
    a = _model(tmp_path / "a")
    first = model_identity("hf", {"pretrained": str(a), "batch_size": 4}, memo=memo)
    assert first["kind"] == "local" and set(first["parts"]["pretrained"]["files"]) == {
        "model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja",
    }
    # a copy elsewhere is the same model; run-time args do not matter
    b = _model(tmp_path / "b")
    assert model_identity("vllm", {"pretrained": str(b)}, memo=memo)["id"] == first["id"]
    # records, trainer state and checkpoints do not count
    (a / "training_record.json").write_text("{}")
    (a / "training_args.bin").write_bytes(b"x")
    (a / "checkpoint-1").mkdir()
    assert model_identity("hf", {"pretrained": str(a)}, memo=memo)["id"] == first["id"]
    # other weights of the same size in the same folder: another model
    (a / "model.safetensors").write_bytes(b"v" * 1000)
    assert model_identity("hf", {"pretrained": str(a)}, memo=memo)["id"] != first["id"]
    # and another chat template too
    (b / "chat_template.jinja").write_text("{{ y }}")
    assert model_identity("hf", {"pretrained": str(b)}, memo=memo)["id"] != first["id"]


def test_adapter_is_identified_with_its_base(tmp_path: Path) -> None:
    memo = HashMemo(None)
    base = _model(tmp_path / "base")
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"lora-1")
    (adapter / "adapter_config.json").write_text("{}")
    args = {"pretrained": str(base), "peft": str(adapter), "tokenizer": str(adapter)}
    one = model_identity("hf", args, memo=memo)
    assert set(one["parts"]) == {"pretrained", "peft", "tokenizer"}
    (adapter / "adapter_model.safetensors").write_bytes(b"lora-2")
    assert model_identity("hf", args, memo=memo)["id"] != one["id"]
    (base / "model.safetensors").write_bytes(b"other base")
    assert model_identity("hf", {**args}, memo=memo)["id"] != one["id"]


def test_memo_hashes_a_file_once(tmp_path: Path) -> None:
    a = _model(tmp_path / "a", weights=os.urandom(1 << 16))
    memo = HashMemo(tmp_path / "memo.json")
    first = model_identity("hf", {"pretrained": str(a)}, memo=memo)
    memo.save()
    assert memo.hashed_bytes > 1 << 16
    again = HashMemo(tmp_path / "memo.json")  # the next command reads the memo from disk
    assert model_identity("hf", {"pretrained": str(a)}, memo=again)["id"] == first["id"]
    assert again.hashed_bytes == 0
    (a / "model.safetensors").write_bytes(os.urandom(1 << 16))  # new mtime: hashed again
    model_identity("hf", {"pretrained": str(a)}, memo=again)
    assert again.hashed_bytes == 1 << 16
    (tmp_path / "memo.json").write_text("garbage")  # a damaged memo is only a cache
    assert model_identity("hf", {"pretrained": str(a)}, memo=HashMemo(tmp_path / "memo.json"))["id"]


def test_api_and_hub_identities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = model_identity(
        "local-chat-completions", {"model": "m", "base_url": "http://h:1/v1/chat/completions"}
    )
    assert api["id"] == "api:http://h:1/v1|m"
    rev = model_identity(
        "local-chat-completions", {"model": "m", "base_url": "http://h:1/v1", "revision": "r2"}
    )
    assert rev["id"] == "api:http://h:1/v1|m@r2"
    openai = model_identity("openai-chat-completions", {"model": "gpt-4"})
    assert openai["id"] == "api:https://api.openai.com/v1|gpt-4"
    # a hub id resolves through the local hub cache's refs when it is there
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert hub_identity("org/name", None)["id"] == "hub:org/name@unresolved"
    ref = tmp_path / "hub" / "models--org--name" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("a" * 40)
    assert hub_identity("org/name", None)["id"] == f"hub:org/name@{'a' * 40}"
    assert model_identity("hf", {"pretrained": "org/name", "revision": "v1.0"})["id"].startswith("model:")


@pytest.mark.parametrize(
    ("name", "counts"),
    [("model-00001-of-00002.safetensors", True), ("pytorch_model.bin", True), ("tokenizer.model", True),
     ("merges.txt", True), ("training_args.bin", False), ("training_record.json", False),
     ("stage.json", False), ("README.md", False), (".model.safetensors.abc12345", False)],
)
def test_identity_files(name: str, counts: bool) -> None:
    assert is_identity_file(name) is counts


def test_mock_model_is_named_as_the_mock() -> None:
    """``--model mock`` is neither an API model nor a local one: its identity says what it is."""
    ident = model_identity("mock", {})
    assert ident["kind"] == "mock" and ident["id"] == "mock:scripted"
