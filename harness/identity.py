"""What a model *is*, by content: the identity that enters run fingerprints and response-cache keys.

* A local model directory (full weights, or a LoRA adapter together with its base) is identified by the
  sha256 of its weight, config, tokenizer and chat-template files (top level only: checkpoints, optimizer
  state and our own records do not count). Retraining other weights into the same folder changes it.
* A hub id is identified by its resolved revision: the ``revision=`` given, or the commit the local hub
  cache resolves it to; ``unresolved`` when neither is known.
* An API model is identified by endpoint + model name, plus ``revision=`` when the user gives one (the
  only way to tell two models served under one name apart).
* ``--model mock`` (the scripted offline backend) is ``mock:scripted``.

File hashes are memoised by (resolved path, size, mtime, inode) in ``<user cache dir>/identity-memo.json``,
so a large checkpoint is read once, not per command.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.jsonl import atomic_write_json, file_sha256

LOCAL_BACKENDS = frozenset({"hf", "hf-auto", "huggingface", "vllm"})
OPENAI_DEFAULT = "https://api.openai.com/v1"
MEMO_NAME = "identity-memo.json"
MEMO_MAX_ENTRIES = 20_000

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".index.json")
_NAMED = frozenset({
    "config.json", "generation_config.json", "adapter_config.json", "preprocessor_config.json",
    "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt",
})
_NOT_MODEL = frozenset({"training_args.bin", "optimizer.pt", "scheduler.pt", "trainer_state.json"})


def is_identity_file(name: str) -> bool:
    """True for the files whose bytes define a model: weights, configs, tokenizer, chat template."""
    if name in _NOT_MODEL or name.startswith("."):
        return False
    if name in _NAMED or name.endswith(_WEIGHT_SUFFIXES):
        return True
    lower = name.lower()
    return lower.startswith(("tokenizer", "chat_template")) or lower.endswith(
        (".jinja", ".model", ".tiktoken")
    )


class HashMemo:
    """sha256 of files keyed by (path, size, mtime_ns, inode), kept in a small JSON file.

    Concurrent writers may drop each other's new entries (last writer wins); that only costs a re-hash.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, str] | None = None
        self._dirty = False
        self.hashed_bytes = 0  # bytes actually read by this memo (0 on a fully memoised call)

    def _load(self) -> dict[str, str]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None and self.path.is_file():
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                    if isinstance(data, dict) and isinstance(data.get("files"), dict):
                        self._entries = {str(k): str(v) for k, v in data["files"].items()}
                except (OSError, ValueError):
                    self._entries = {}  # a damaged memo is only a cache: start again
        return self._entries

    def sha256(self, path: Path) -> str:
        path = path.resolve()
        st = path.stat()
        key = f"{path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
        entries = self._load()
        hit = entries.get(key)
        if hit is not None:
            return hit
        digest = file_sha256(path)
        self.hashed_bytes += st.st_size
        entries[key] = digest
        self._dirty = True
        return digest

    def save(self) -> None:
        if not self._dirty or self.path is None or self._entries is None:
            return
        items = list(self._entries.items())[-MEMO_MAX_ENTRIES:]
        try:
            atomic_write_json(self.path, {"version": 1, "files": dict(items)})
        except OSError:
            pass  # an unwritable cache dir only means hashing again next time
        self._dirty = False


def default_memo() -> HashMemo:
    """The memo in the user cache dir (``$DITTO_BENCH_CACHE_DIR`` etc., see harness.datafetch)."""
    from harness.datafetch import default_cache_dir

    return HashMemo(default_cache_dir() / MEMO_NAME)


def _digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def directory_identity(path: Path, memo: HashMemo | None = None) -> dict[str, Any]:
    """Content identity of a local model (or adapter) directory: each identity file's sha256."""
    own = memo is None
    memo = memo or default_memo()
    path = Path(path)
    files: dict[str, str] = {}
    for p in sorted(path.iterdir(), key=lambda q: q.name):
        if p.is_file() and is_identity_file(p.name):
            try:
                files[p.name] = memo.sha256(p)
            except OSError as exc:
                raise ConfigError(
                    f"{p}: cannot read it to identify the model ({exc.strerror or exc})"
                ) from None
    if own:
        memo.save()
    return {
        "kind": "local",
        "path": str(path.resolve()),
        "files": files,
        "id": "sha256:" + _digest(files),
    }


def hub_identity(repo: str, revision: str | None) -> dict[str, Any]:
    """A hub id with its revision: the one given, else the commit the local hub cache resolves ``main`` to."""
    commit = _cached_commit(repo, revision or "main")
    resolved = commit or revision
    return {
        "kind": "hub",
        "repo": repo,
        "revision": revision,
        "commit": commit,
        "id": f"hub:{repo}@{resolved or 'unresolved'}",
    }


def _cached_commit(repo: str, revision: str) -> str | None:
    """The commit sha a revision points to in the local Hugging Face cache, if it is there."""
    if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return None
    ref = Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "refs" / revision
    try:
        return ref.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def path_identity(value: str, revision: str | None, memo: HashMemo) -> dict[str, Any]:
    """A ``pretrained=``/``peft=``/``tokenizer=`` value: a local directory by content, else a hub id."""
    local = Path(value).expanduser()
    if local.is_dir():
        return directory_identity(local, memo)
    return hub_identity(value, revision)


def model_identity(
    model: str, model_args: Mapping[str, Any], *, memo: HashMemo | None = None
) -> dict[str, Any]:
    """The identity of ``--model``/``--model_args`` (the same for ``--supervisor``/``--supervisor_args``).

    Returns a JSON-able dict with a stable ``id`` string; local backends also list their parts
    (``pretrained``, and ``peft``/``tokenizer`` when given).
    """
    own = memo is None
    memo = memo or default_memo()
    revision = model_args.get("revision")
    revision = None if revision in (None, "") else str(revision)
    try:
        if model == "mock":  # the scripted offline backend (harness.backends.mock): no weights, no endpoint
            return {"kind": "mock", "backend": model, "id": "mock:scripted"}
        if model in LOCAL_BACKENDS:
            return _local_identity(model, model_args, revision, memo)
        default = OPENAI_DEFAULT if model == "openai-chat-completions" else ""
        endpoint = str(model_args.get("base_url") or default)
        endpoint = endpoint.rstrip("/").removesuffix("/chat/completions").rstrip("/")
        name = str(model_args.get("model", ""))
        ident = f"api:{endpoint}|{name}" + (f"@{revision}" if revision else "")
        return {"kind": "api", "backend": model, "endpoint": endpoint, "model": name, "revision": revision,
                "id": ident}
    finally:
        if own:
            memo.save()


def _local_identity(
    model: str, args: Mapping[str, Any], revision: str | None, memo: HashMemo
) -> dict[str, Any]:
    pretrained = args.get("pretrained") or args.get("model")
    if not pretrained:
        return {"kind": "local", "backend": model, "id": f"{model}:unspecified"}
    parts: dict[str, Any] = {"pretrained": path_identity(str(pretrained), revision, memo)}
    for key in ("peft", "tokenizer", "delta"):
        value = args.get(key)
        if value and str(value) != str(pretrained):
            parts[key] = path_identity(str(value), None, memo)
    ids = {k: v["id"] for k, v in parts.items()}
    return {"kind": "local", "backend": model, "parts": parts, "id": "model:" + _digest(ids)}


def identity_id(model: str, model_args: Mapping[str, Any]) -> str:
    """Just the ``id`` of :func:`model_identity` (what cache keys take)."""
    return str(model_identity(model, model_args)["id"])


def file_identity(path: Path, memo: HashMemo | None = None) -> dict[str, Any]:
    """A data file's identity: its resolved path and sha256 (memoised like model files)."""
    own = memo is None
    memo = memo or default_memo()
    path = Path(path)
    try:
        digest = memo.sha256(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    out = {"kind": "file", "path": str(path.resolve()), "sha256": digest}
    out["id"] = "sha256:" + out["sha256"]
    if own:
        memo.save()
    return out


__all__ = [
    "HashMemo", "default_memo", "directory_identity", "file_identity", "hub_identity", "identity_id",
    "is_identity_file", "model_identity",
]
