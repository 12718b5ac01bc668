"""Checksummed downloads into the local ditto-bench cache.

A :class:`RemoteFile` names one data file by its sha256 and lists where it can be downloaded from.
:func:`fetch` tries the sources in order, verifies size and sha256, and only then moves the file into
``<cache_dir>/data/<sha256[:12]>-<name>``. A cached file is re-verified and reused without any network call.

Sources are either the file itself (``kind="raw"``) or a zip archive holding it (``kind="zip"``; ``member``
is the path suffix of the file inside the archive, matched at a ``/`` boundary). Failures are reported per
source; a Git LFS *pointer* served in place of the content (what GitHub's raw URLs return for LFS files) is
recognised and named as such. Nothing partial is ever left in the cache: downloads go to a temporary file in
the same folder and are moved with ``os.replace`` once verified.

Only the standard library (urllib) does the networking; rich draws the progress bar.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from harness import __version__
from harness.errors import ConfigError, DataError

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
"""First bytes of a Git LFS pointer file."""

RETRY_BACKOFF_S = 1.0
"""Base of the exponential back-off between retries of one source (tests set it to 0)."""

_CHUNK = 1 << 16
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# Statuses worth retrying on the same source; any other HTTP error moves on to the next source.
_TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Source:
    """One place a file can be downloaded from."""

    url: str
    kind: Literal["raw", "zip"] = "raw"
    member: str | None = None
    """Path suffix of the file inside the zip archive (``kind="zip"`` only)."""

    def __post_init__(self) -> None:
        if self.kind not in ("raw", "zip"):
            raise ValueError(f"Source.kind must be 'raw' or 'zip', got {self.kind!r}")
        if self.kind == "zip" and not self.member:
            raise ValueError(f"zip source {self.url} needs `member` (the file's path suffix in the archive)")
        if self.kind == "raw" and self.member is not None:
            raise ValueError(f"raw source {self.url} cannot have a `member`")


@dataclass(frozen=True)
class RemoteFile:
    """A data file identified by its checksum, with the sources it can be fetched from."""

    name: str
    sha256: str
    size: int | None
    sources: tuple[Source, ...]

    def __post_init__(self) -> None:
        if not _SHA256_RE.fullmatch(self.sha256):
            raise ValueError(f"RemoteFile {self.name!r}: sha256 must be 64 lowercase hex digits")
        if not self.name or "/" in self.name or "\\" in self.name or self.name in (".", ".."):
            raise ValueError(f"RemoteFile name must be a plain file name, got {self.name!r}")
        if self.size is not None and self.size < 0:
            raise ValueError(f"RemoteFile {self.name!r}: size must be >= 0")

    @property
    def cache_name(self) -> str:
        """File name inside ``<cache_dir>/data``; the hash prefix keeps different versions apart."""
        return f"{self.sha256[:12]}-{self.name}"


class _SourceFailed(Exception):
    """One attempt on one source failed; ``transient`` failures are retried on the same source."""

    def __init__(self, reason: str, *, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


def mirror_urls(env_var: str) -> list[str]:
    """The whitespace-separated mirror URLs in ``env_var`` (none when unset); http, https or file only."""
    urls = os.environ.get(env_var, "").split()
    for url in urls:
        if urlsplit(url).scheme not in ("http", "https", "file"):
            raise ConfigError(f"{env_var}: unsupported URL {url!r} (expected http, https or file)")
    return urls


def default_cache_dir() -> Path:
    """Return the cache root.

    ``$DITTO_BENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/ditto-bench``, else ``~/.cache/ditto-bench``.
    """
    explicit = os.environ.get("DITTO_BENCH_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "ditto-bench"
    return Path.home() / ".cache" / "ditto-bench"


def cached_path(remote: RemoteFile, cache_dir: Path | None = None) -> Path:
    """Return where :func:`fetch` keeps ``remote`` (the file may not exist yet)."""
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return base / "data" / remote.cache_name


def fetch(
    remote: RemoteFile,
    cache_dir: Path | None = None,
    *,
    timeout: float = 60.0,
    retries: int = 2,
    show_progress: bool = True,
) -> Path:
    """Return the path of a verified local copy of ``remote``, downloading it if needed.

    Args:
        remote: The file to fetch, with its expected sha256 and size.
        cache_dir: Cache root; defaults to :func:`default_cache_dir`.
        timeout: Socket timeout in seconds for each connection and read.
        retries: Extra attempts per source after a transient failure (timeout, connection error,
            HTTP 5xx/429).
        show_progress: Draw a rich progress bar on stderr while downloading.

    Raises:
        DataError: No source produced a file with the expected checksum. The first line summarises; each
            following line names one source and why it failed.
    """
    if retries < 0:
        raise ValueError("retries must be >= 0")
    target = cached_path(remote, cache_dir)
    if target.is_file():
        if _verify_file(target, remote) is None:
            return target
        # A corrupted cache entry can never become valid again; drop it and download afresh.
        target.unlink(missing_ok=True)
    if not remote.sources:
        raise DataError(
            f"no download source configured for {remote.name} and it is not in the cache ({target})"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for source in remote.sources:
        try:
            _fetch_with_retries(source, remote, target, timeout=timeout, retries=retries, show=show_progress)
        except _SourceFailed as exc:
            failures.append(f"{source.url}: {exc.reason}")
            continue
        return target
    summary = (
        f"could not download {remote.name} (sha256 {remote.sha256[:16]}…) from any of its "
        f"{len(remote.sources)} source(s):"
    )
    raise DataError("\n".join([summary, *(f"  - {line}" for line in failures)]))


def _fetch_with_retries(
    source: Source, remote: RemoteFile, target: Path, *, timeout: float, retries: int, show: bool
) -> None:
    for attempt in range(retries + 1):
        try:
            _fetch_once(source, remote, target, timeout=timeout, show=show)
            return
        except _SourceFailed as exc:
            if not exc.transient:
                raise
            if attempt == retries:
                raise _SourceFailed(f"{exc.reason} (gave up after {retries + 1} attempts)") from None
        time.sleep(RETRY_BACKOFF_S * 2**attempt)


def _fetch_once(source: Source, remote: RemoteFile, target: Path, *, timeout: float, show: bool) -> None:
    with _temp_path(target.parent, remote.name) as download:
        # A raw download must match the expected size, so a server sending more can be cut off early.
        limit = remote.size if source.kind == "raw" else None
        _download(source.url, download, timeout=timeout, limit=limit, label=remote.name, show=show)
        _reject_lfs_pointer(download)
        if source.kind == "raw":
            reason = _verify_file(download, remote)
            if reason is not None:
                raise _SourceFailed(reason)
            os.replace(download, target)
            return
        assert source.member is not None  # guaranteed by Source.__post_init__
        with _temp_path(target.parent, remote.name) as extracted:
            _extract_member(download, source.member, remote, extracted)
            os.replace(extracted, target)


@contextmanager
def _temp_path(folder: Path, name: str) -> Iterator[Path]:
    """Yield a fresh temporary path in ``folder``; whatever is left there at the end is removed."""
    fd, raw = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    os.close(fd)
    path = Path(raw)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _download(url: str, dest: Path, *, timeout: float, limit: int | None, label: str, show: bool) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": f"ditto-bench/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, dest.open("wb") as out:
            declared = _content_length(response.headers.get("Content-Length"))
            received = 0
            with _progress(show, label, declared if declared is not None else limit) as advance:
                while chunk := response.read(_CHUNK):
                    received += len(chunk)
                    if limit is not None and received > limit:
                        raise _SourceFailed(f"size mismatch: served more than the expected {limit} bytes")
                    out.write(chunk)
                    advance(len(chunk))
            if declared is not None and received < declared:
                raise _SourceFailed(f"download cut short: {received} of {declared} bytes", transient=True)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _SourceFailed(f"HTTP {exc.code} {exc.reason}", transient=exc.code in _TRANSIENT_HTTP) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _SourceFailed(f"timed out after {timeout:g} s", transient=True) from None
        raise _SourceFailed(f"cannot connect: {exc.reason}", transient=True) from None
    except TimeoutError:
        raise _SourceFailed(f"timed out after {timeout:g} s", transient=True) from None
    except (http.client.HTTPException, ConnectionError) as exc:
        raise _SourceFailed(f"connection error: {type(exc).__name__}: {exc}", transient=True) from None
    except OSError as exc:
        # Local I/O trouble (disk full, permissions); retrying the same source will not help.
        raise _SourceFailed(f"I/O error: {exc}") from None


def _content_length(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


@contextmanager
def _progress(enabled: bool, label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Yield a function that advances a download bar (a no-op when disabled)."""
    if not enabled:
        yield lambda _n: None
        return
    # Imported here so that importing this module stays cheap.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task_id = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task_id, n)


def _reject_lfs_pointer(path: Path) -> None:
    with path.open("rb") as fh:
        head = fh.read(1024)
    if not head.startswith(LFS_POINTER_PREFIX):
        return
    text = head.decode("utf-8", errors="replace")
    oid = re.search(r"oid sha256:([0-9a-f]{64})", text)
    size = re.search(r"size (\d+)", text)
    described = ", ".join(
        part
        for part in (
            f"oid sha256:{oid.group(1)[:16]}…" if oid else "",
            f"size {size.group(1)}" if size else "",
        )
        if part
    )
    raise _SourceFailed(
        f"served a Git LFS pointer file ({described or 'unparsed'}) instead of the content; "
        "this URL does not resolve LFS objects"
    )


def _extract_member(archive: Path, suffix: str, remote: RemoteFile, dest: Path) -> None:
    """Stream the member ending in ``suffix`` into ``dest``, keeping the first one whose checksum matches."""
    try:
        with zipfile.ZipFile(archive) as zf:
            candidates = [
                info
                for info in zf.infolist()
                if not info.is_dir() and (info.filename == suffix or info.filename.endswith("/" + suffix))
            ]
            if not candidates:
                raise _SourceFailed(f"zip archive has no member ending in {suffix!r}")
            reasons: list[str] = []
            for info in candidates:
                if remote.size is not None and info.file_size != remote.size:
                    reasons.append(f"{info.filename}: size {info.file_size}, expected {remote.size}")
                    continue
                digest = hashlib.sha256()
                with zf.open(info) as src, dest.open("wb") as out:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() == remote.sha256:
                    return
                reasons.append(
                    f"{info.filename}: sha256 {digest.hexdigest()[:16]}…, expected {remote.sha256[:16]}…"
                )
            raise _SourceFailed("zip member checksum mismatch: " + "; ".join(reasons))
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise _SourceFailed(f"not a valid zip archive: {exc}") from None
    except (NotImplementedError, RuntimeError) as exc:
        # Unsupported compression method or an encrypted member.
        raise _SourceFailed(f"cannot extract from zip archive: {exc}") from None


def _sha256_and_size(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _verify_file(path: Path, remote: RemoteFile) -> str | None:
    """Return why ``path`` is not ``remote`` (size first, it is cheap), or None when it matches."""
    if remote.size is not None:
        size = path.stat().st_size
        if size != remote.size:
            return f"size mismatch: got {size} bytes, expected {remote.size}"
    digest, _ = _sha256_and_size(path)
    if digest != remote.sha256:
        return f"sha256 mismatch: got {digest[:16]}…, expected {remote.sha256[:16]}…"
    return None
