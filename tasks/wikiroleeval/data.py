"""WikiRoleEval test data: loading, validation and the official file.

Layouts. The OFA-Sys/Ditto README documents the scoring fields at the top level of each line
(``role_consist_cands``, ``evidence``, ``"rejection labels"`` with a space), while the released evaluation
code reads them from ``meta`` (``meta.role_consist_cands``, ``meta.evidence``, ``meta.rejection_labels``,
``meta.label``, ``meta.summary``, ``meta.lang``). Both layouts and both spellings are accepted; a field
present in both places with different values is an error. Every line is validated before anything is
returned, and the first problem is reported as one line ``{path}:{line}: field '{name}': {problem}``, the
field named as it is spelled in the file.

Official file. The test file lives in Git LFS in OFA-Sys/Ditto; its sha256 and size are those of the LFS
pointer in the repository. :func:`official_sources` lists where it is fetched from: first any mirrors given in
the environment variable ``DITTO_BENCH_WIKIROLEEVAL_MIRRORS`` (whitespace-separated URLs; a URL whose path
ends in ``.zip`` is read as a zip archive containing the file, matched by its file name), then GitHub's LFS
media URL. The README also mentions a ``ditto_data.zip`` on Aliyun OSS, but its URL could not be confirmed,
so it is not built in; put it in the environment variable if you have it. Every source is checked against
the same sha256.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from harness.datafetch import RemoteFile, Source, fetch, mirror_urls
from harness.errors import ConfigError, DataError
from harness.jsonl import LineRef, iter_jsonl_refs, json_type
from harness.jsonl import file_sha256 as file_sha256  # part of this module's API
from judges.names import normalize_name
from tasks.duplicates import check_duplicates

MIRRORS_ENV = "DITTO_BENCH_WIKIROLEEVAL_MIRRORS"

OFFICIAL_TEST_FILE = RemoteFile(
    name="wiki_roleplay_multilingual_test_input_w_evidence.jsonl",
    sha256="cc6de6586c3f421d82e44fd81aa77cc06b095a4dc912d90f8d499adf20eaa7bf",
    size=3607668,
    sources=(
        Source(
            "https://media.githubusercontent.com/media/OFA-Sys/Ditto/main/data/"
            "wiki_roleplay_multilingual_test_input_w_evidence.jsonl"
        ),
    ),
)

# Accepted spellings of each scoring field; each is looked up under `meta` and at the top level.
_SPELLINGS: dict[str, tuple[str, ...]] = {
    "candidates": ("role_consist_cands",),
    "evidence": ("evidence",),
    "rejection_labels": ("rejection_labels", "rejection labels"),
    "label": ("label",),
    "summary": ("summary",),
    "lang": ("lang",),
}


@dataclass(frozen=True, slots=True)
class WikiItem:
    """One WikiRoleEval session (one character), validated."""

    line: int
    """1-based line number in the file."""
    session_id: str
    """``wre-{line:04d}``."""
    system: str
    prompts: list[str]
    lang: Literal["en", "zh"]
    label: str
    summary: str
    candidates: list[str]
    """``role_consist_cands``, verbatim."""
    evidence: list[str]
    """One markdown bullet list per turn."""
    rejection_labels: list[int]
    """Per turn: 1 = outside the character's knowledge (should refuse), 0 = should answer."""
    source: LineRef
    """Where the item's line is in its file: the original object is read back from there, not held."""
    replies: StoredReplies | None = None
    """The model's replies (the assistant turns of ``messages``, read back from the file when used); only set
    with ``require_messages=True``."""

    @property
    def raw(self) -> dict[str, Any]:
        """The original JSON object, untouched (read back from the file: a file changed since it was loaded
        is a DataError)."""
        return self.source.read()

    @property
    def messages(self) -> list[dict[str, str]] | None:
        """The model's conversation, validated (read back from the file); only with ``require_messages``."""
        if self.replies is None:
            return None
        try:
            return _check_messages(self.raw, self.prompts)
        except _FieldError as exc:  # only if the file changed in a way its digest did not show
            raise DataError(f"{self.source.path}:{self.line}: {exc}") from None


class StoredReplies(Sequence[str]):
    """The assistant turns of an item's ``messages``, validated on loading and read back from the item's line
    when used instead of being held (a judge run over thousands of sessions would otherwise keep every reply
    in memory). A file changed since it was loaded is a one-line DataError, as for :attr:`WikiItem.raw`."""

    __slots__ = ("_source", "_prompts", "_count")

    def __init__(self, source: LineRef, prompts: list[str], count: int) -> None:
        self._source, self._prompts, self._count = source, prompts, count

    def _load(self) -> list[str]:
        try:
            messages = _check_messages(self._source.read(), self._prompts)
        except _FieldError as exc:  # only if the file changed in a way its digest did not show
            raise DataError(f"{self._source.path}:{self._source.line}: {exc}") from None
        replies = [m["content"] for m in messages if m["role"] == "assistant"]
        if len(replies) != self._count:
            raise DataError(
                f"{self._source.path}:{self._source.line}: the file changed while it was in use; "
                "run again on it as it is now"
            )
        return replies

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: Any) -> Any:
        return self._load()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())  # one read for the whole sequence, not one per element

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (str, bytes)) or not isinstance(other, Sequence):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StoredReplies({self._source.path}:{self._source.line}, {self._count} replies)"


class _FieldError(Exception):
    """A problem with one field of one item; the loader adds ``path:line``."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field '{field}': {problem}")


def is_gold_candidate(candidate: str, label: str) -> bool:
    """Tell whether a consistency candidate names ``label``.

    Both sides are first normalised with :func:`judges.names.normalize_name` (the rule scoring uses).
    Candidates are either the bare name or, as in Fig. 3 of the paper, ``"[Name] summary…"``. A candidate that
    starts with the label followed by whitespace or punctuation (``"Name, king of…"``) also counts.
    """
    cand, gold = normalize_name(candidate), normalize_name(label)
    if not gold:
        return False
    if cand == gold or cand.startswith(f"[{gold}]"):
        return True
    if len(cand) > len(gold) and cand.startswith(gold):
        follower = cand[len(gold)]
        return follower.isspace() or unicodedata.category(follower).startswith("P")
    return False


def load_wikiroleeval(
    path: Path, *, require_messages: bool = False, limit: int | None = None, allow_duplicates: bool = False
) -> list[WikiItem]:
    """Load and validate a WikiRoleEval JSONL file.

    Args:
        path: The test file, or a response file (test items plus ``messages``).
        require_messages: Also require and validate a ``messages`` conversation per item
            (the ``ditto-bench judge`` input).
        limit: Keep only the first ``limit`` items; every line is validated regardless.
        allow_duplicates: Keep sessions with the same system text and prompts as an earlier line (each
            is still warned about); by default such a file is refused (:mod:`tasks.duplicates`).

    Raises:
        DataError: One line naming ``path:line`` and the field at fault (the first bad line), or a
            duplicate session naming both lines.
        ConfigError: ``limit`` is below 1.
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1 (or None for all items), got {limit}")
    path = Path(path)
    items: list[WikiItem] = []
    for ref, obj in iter_jsonl_refs(path):  # one line at a time; only the validated fields are kept
        try:
            items.append(_parse_item(obj, ref, require_messages))
        except _FieldError as exc:
            raise DataError(f"{path}:{ref.line}: {exc}") from None
    if not items:
        raise DataError(f"{path}: empty file (no items)")
    check_duplicates(
        (((i.system, tuple(i.prompts)), i.line) for i in items), path, allow=allow_duplicates
    )
    return items if limit is None else items[:limit]


def official_sources() -> tuple[Source, ...]:
    """Return the official test file's sources: env-var mirrors first, then the LFS media URL."""
    return (*(_mirror_source(url) for url in mirror_urls(MIRRORS_ENV)), *OFFICIAL_TEST_FILE.sources)


def resolve_data_path(data_path: Path | None, cache_dir: Path | None) -> Path:
    """Return the test file to use: ``data_path`` if given (it must exist), else the fetched official file."""
    if data_path is not None:
        path = Path(data_path).expanduser()
        if not path.is_file():
            raise DataError(f"{path}: data file not found (--data_path)")
        return path
    return fetch(replace(OFFICIAL_TEST_FILE, sources=official_sources()), cache_dir)


def _mirror_source(url: str) -> Source:
    if urlsplit(url).path.lower().endswith(".zip"):
        return Source(url, kind="zip", member=OFFICIAL_TEST_FILE.name)
    return Source(url)


def _parse_item(obj: dict[str, Any], ref: LineRef, require_messages: bool) -> WikiItem:
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise _FieldError("meta", f"expected an object, got {json_type(meta)}")

    system = _require(obj, "system")
    if not isinstance(system, str):
        raise _FieldError("system", f"expected a string, got {json_type(system)}")
    prompts = _require(obj, "prompts")
    if not isinstance(prompts, list) or not prompts:
        raise _FieldError("prompts", "must be a non-empty list of strings")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise _FieldError(f"prompts[{i}]", "must be a non-empty string")
    n_turns = len(prompts)

    name, label = _scoring_field(obj, meta, "label")
    if not isinstance(label, str) or not normalize_name(label):
        raise _FieldError(name, "must be a non-empty string")
    name, summary = _scoring_field(obj, meta, "summary")
    if not isinstance(summary, str):
        raise _FieldError(name, f"expected a string, got {json_type(summary)}")
    name, lang = _scoring_field(obj, meta, "lang")
    if lang not in ("en", "zh"):
        raise _FieldError(name, f'expected "en" or "zh", got {_show(lang)}')

    name, evidence = _scoring_field(obj, meta, "evidence")
    _check_str_list(name, evidence)
    if len(evidence) != n_turns:
        raise _FieldError(name, f"has {len(evidence)} entries but 'prompts' has {n_turns}")

    name, labels = _scoring_field(obj, meta, "rejection_labels")
    if not isinstance(labels, list):
        raise _FieldError(name, f"expected a list of 0/1, got {json_type(labels)}")
    for i, value in enumerate(labels):
        # `type(...) is int` on purpose: booleans and "0"/"1" strings are not accepted as labels.
        if type(value) is not int or value not in (0, 1):
            raise _FieldError(f"{name}[{i}]", f"expected 0 or 1, got {_show(value)}")
    if len(labels) != n_turns:
        raise _FieldError(name, f"has {len(labels)} entries but 'prompts' has {n_turns}")

    name, candidates = _scoring_field(obj, meta, "candidates")
    _check_str_list(name, candidates)
    if not candidates:
        raise _FieldError(name, "must be a non-empty list of strings")
    if not any(is_gold_candidate(cand, label) for cand in candidates):
        raise _FieldError(name, f"gold label {label!r} is not among the {len(candidates)} candidates")

    prompts = list(prompts)  # one list, shared by the item and its replies
    replies = None
    if require_messages:
        count = sum(1 for m in _check_messages(obj, prompts) if m["role"] == "assistant")
        replies = StoredReplies(ref, prompts, count)
    return WikiItem(
        line=ref.line,
        session_id=f"wre-{ref.line:04d}",
        system=system,
        prompts=prompts,
        lang=cast(Literal["en", "zh"], lang),
        label=label,
        summary=summary,
        candidates=list(candidates),
        evidence=list(evidence),
        rejection_labels=list(labels),
        source=ref,
        replies=replies,
    )


def _require(obj: dict[str, Any], key: str) -> Any:
    if key not in obj:
        raise _FieldError(key, "missing")
    return obj[key]


def _scoring_field(obj: dict[str, Any], meta: dict[str, Any], key: str) -> tuple[str, Any]:
    """Find a scoring field under ``meta`` or at the top level; return (name as spelled, value)."""
    found: list[tuple[str, Any]] = []
    for spelling in _SPELLINGS[key]:
        if spelling in meta:
            found.append((f"meta.{spelling}", meta[spelling]))
    for spelling in _SPELLINGS[key]:
        if spelling in obj:
            found.append((spelling, obj[spelling]))
    if not found:
        looked = ", ".join(f"'{p}{s}'" for p in ("meta.", "") for s in _SPELLINGS[key])
        raise _FieldError(_SPELLINGS[key][0], f"missing (looked for {looked})")
    first_name, first_value = found[0]
    for other_name, other_value in found[1:]:
        if other_value != first_value:
            raise _FieldError(other_name, f"differs from '{first_name}' (the field is given twice)")
    return first_name, first_value


def _check_str_list(name: str, value: Any) -> None:
    if not isinstance(value, list):
        raise _FieldError(name, f"expected a list of strings, got {json_type(value)}")
    for i, entry in enumerate(value):
        if not isinstance(entry, str):
            raise _FieldError(f"{name}[{i}]", f"expected a string, got {json_type(entry)}")


def _check_messages(obj: dict[str, Any], prompts: list[str]) -> list[dict[str, str]]:
    """Validate ``messages``: a system message, then user/assistant pairs matching ``prompts`` one to one."""
    messages = _require(obj, "messages")
    if not isinstance(messages, list):
        raise _FieldError("messages", f"expected a list of messages, got {json_type(messages)}")
    if not messages:
        raise _FieldError("messages", "is empty (expected a system message, then user/assistant pairs)")
    checked: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        if not (
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            raise _FieldError(f"messages[{i}]", "expected an object with string 'role' and 'content'")
        role, content = message["role"], message["content"]
        if i == 0:
            if role != "system":
                raise _FieldError("messages[0]", f"expected role 'system', got {role!r}")
        else:
            turn = (i + 1) // 2  # 1-based: messages[1] and [2] are turn 1
            expected = "user" if i % 2 == 1 else "assistant"
            if role != expected:
                raise _FieldError(f"messages[{i}]", f"turn {turn}: expected role {expected!r}, got {role!r}")
            if role == "user":
                if turn > len(prompts):
                    raise _FieldError(
                        f"messages[{i}]", f"turn {turn}: extra turn, 'prompts' has {len(prompts)}"
                    )
                if content != prompts[turn - 1]:
                    raise _FieldError(
                        f"messages[{i}]", f"turn {turn}: user content differs from 'prompts[{turn - 1}]'"
                    )
        checked.append({"role": role, "content": content})
    n_assistant = (len(messages) - 1) // 2
    if len(messages) % 2 == 0:
        raise _FieldError("messages", f"turn {len(messages) // 2}: user message has no assistant reply")
    if n_assistant != len(prompts):
        raise _FieldError(
            "messages",
            f"has {n_assistant} assistant turns but 'prompts' has {len(prompts)} "
            f"(turn {n_assistant + 1} missing)",
        )
    return checked


def _show(value: Any) -> str:
    """Short JSON rendering of a bad value for an error message."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."
