"""JSON Lines files: reading, hashing and atomic writing, shared by the harness, tasks and Ditto generator.

Two readers for two kinds of file:

* :func:`iter_jsonl` reads an *input* someone hands us (benchmark data, a response file, a run's
  ``samples.jsonl``). It is strict: the first problem is a :class:`~harness.errors.DataError` of one line,
  ``path:line: problem``, with 1-based line numbers that count blank lines, as an editor does.
* :func:`iter_complete_lines` reads an *append-only output* we write ourselves and that a killed process may
  have left with a torn last line. It is tolerant: the torn tail ends the file, unparseable lines are skipped.

Two writers: :class:`JsonlAppender` (one flushed line per record, for outputs that must survive ``kill -9``
and resume) and :func:`atomic_open` with its ``atomic_write_*`` wrappers (temp file in the same folder,
fsync, ``os.replace``), so a reader never sees a half-written file.

:func:`file_sha256` hashes a data file as read, for the run record.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from harness.errors import DataError

# --------------------------------------------------------------------------------------------- strict reading


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (``object``, ``list``, ``string``, ...), for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def decode_line(raw: bytes, where: str) -> str:
    """Decode one line as UTF-8; ``DataError("{where}: not valid UTF-8 (byte N)")`` otherwise."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not valid UTF-8 (byte {exc.start})") from None


def parse_object(text: str, where: str) -> dict[str, Any]:
    """Parse one line that must hold a JSON object; ``where`` (``file:line``) prefixes the one-line error."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {json_type(obj)}")
    return obj


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for every non-blank line of a JSONL input file.

    Line numbers are 1-based and count blank (whitespace-only) lines, which are skipped. A UTF-8 byte order
    mark at the start of the file is ignored. An empty file yields nothing: callers decide whether that is
    an error. Lines are checked as they are yielded, so a caller validating each object reports the first
    bad line of either kind.

    Raises:
        DataError: ``{path}: no such file`` / ``{path}: cannot read: ...``, or ``{path}:{line}: ...`` for
            a line that is not UTF-8, not JSON, or not a JSON object.
    """
    try:
        content = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    for line_no, raw in enumerate(content.split(b"\n"), start=1):
        where = f"{path}:{line_no}"
        text = decode_line(raw, where)
        if line_no == 1:
            text = text.removeprefix("\ufeff")
        if text.strip():
            yield line_no, parse_object(text, where)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All objects of a JSONL input file, in order (strict, as :func:`iter_jsonl`)."""
    return [obj for _, obj in iter_jsonl(path)]


# ------------------------------------------------------------------------------------- append-only outputs


def iter_complete_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(byte offset, object)`` for each complete, parseable line of ``path`` (if it exists).

    A line without its newline can only be the tail torn by a killed writer: reading stops there. A line
    that is not a JSON object can only come from an outside edit; it is skipped, and the writer truncates
    only a torn *tail*, so such a line is never silently rewritten.
    """
    if not path.exists():
        return
    with path.open("rb") as fh:
        offset = 0
        for raw in fh:
            start, offset = offset, offset + len(raw)
            if not raw.endswith(b"\n"):
                return
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(obj, dict):
                yield start, obj


def scan_keys(path: Path, key: Callable[[dict[str, Any]], Any]) -> set[Any]:
    """The set of ``key(obj)`` over the complete lines of ``path``."""
    return {key(obj) for _, obj in iter_complete_lines(path)}


def cut_torn_tail(path: Path) -> int:
    """Truncate ``path`` after its last newline; return the number of bytes removed."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as fh:
        # Look back in blocks for the last newline instead of reading a large file whole.
        pos, block = size, 1 << 16
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                cut = start + nl + 1
                break
            pos = start
        else:
            cut = 0
        if cut != size:
            fh.truncate(cut)
        return size - cut


class JsonlAppender:
    """Appends one JSON object per line, each written with one ``write`` and flushed.

    Whatever the OS has accepted survives ``kill -9``. The file is opened lazily; on opening, a torn last
    line is cut off (its size is kept in ``torn_bytes``) so the next record starts on a clean line.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.torn_bytes = 0
        self._fh: TextIO | None = None

    def _handle(self) -> TextIO:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.torn_bytes = cut_torn_tail(self.path)
            self._fh = self.path.open("a", encoding="utf-8")
        return self._fh

    def write(self, obj: Mapping[str, Any]) -> None:
        """Write ``obj`` as one line and flush it to the OS."""
        self.write_line(json.dumps(obj, ensure_ascii=False))

    def write_line(self, line: str) -> None:
        """Write an already serialised JSON line (without newline) and flush it."""
        fh = self._handle()
        fh.write(line + "\n")
        fh.flush()

    def close(self) -> None:
        """Flush, fsync and close (a clean end also survives a power cut). Writing again reopens."""
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------- atomic writing


def _current_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; restored at once
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Open a temp file beside ``path`` for binary writing; on a clean exit it replaces ``path``.

    The temp file is fsynced before ``os.replace``, so ``path`` holds either the old or the whole new
    content, never part of it. On any exception the temp file is removed and ``path`` is left untouched.
    The file gets the permissions a plain ``open`` would give it (``mkstemp`` makes it owner-only).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as fh:
        fh.write(text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (non-ASCII kept, NaN refused) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, allow_nan=False) + "\n")


def atomic_write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``rows`` one JSON object per line to ``path`` atomically, one line at a time (``rows`` may be a
    generator: nothing holds the whole file)."""
    with atomic_open(path) as fh:
        buf: list[bytes] = []
        size = 0
        for r in rows:
            line = (json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8")
            buf.append(line)
            size += len(line)
            if size >= 1 << 20:
                fh.write(b"".join(buf))
                buf, size = [], 0
        fh.write(b"".join(buf))
