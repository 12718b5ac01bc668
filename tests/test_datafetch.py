"""Tests for harness/datafetch.py against a loopback HTTP server (never the real URLs)."""

from __future__ import annotations

import hashlib
import io
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import harness.datafetch as datafetch
import tasks.wikiroleeval.data as wre_data
from harness.datafetch import RemoteFile, Source, cached_path, default_cache_dir, fetch
from harness.errors import ConfigError, DataError

NAME = "wiki_roleplay_multilingual_test_input_w_evidence.jsonl"
CONTENT = ('{"system": "You are Alice", "prompts": ["Who are you?"]}\n' * 300).encode()
SHA = hashlib.sha256(CONTENT).hexdigest()
WRONG_SAME_SIZE = CONTENT[:-2] + b"!\n"
LFS_POINTER = f"version https://git-lfs.github.com/spec/v1\noid sha256:{SHA}\nsize {len(CONTENT)}\n".encode()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    declared_length: int | None = None  # a Content-Length larger than the body simulates a cut connection


@dataclass
class FakeServer:
    """Serves scripted replies per path; each path's list is consumed in order, its last reply repeats."""

    base: str = ""
    routes: dict[str, list[Reply]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path


def _handler_for(state: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
            state.requests.append(self.path)
            replies = state.routes.get(self.path)
            if not replies:
                reply = Reply(404, b"not found")
            else:
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
            if reply.delay:
                time.sleep(reply.delay)
            try:
                self.send_response(reply.status)
                length = reply.declared_length if reply.declared_length is not None else len(reply.body)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


@pytest.fixture(autouse=True)
def _no_proxy_no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(datafetch, "RETRY_BACKOFF_S", 0.0)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    state = FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    state.routes.update(
        {
            "/good": [Reply(body=CONTENT)],
            "/wrong": [Reply(body=WRONG_SAME_SIZE)],
            "/toolong": [Reply(body=CONTENT + b"extra bytes")],
            "/lfs": [Reply(body=LFS_POINTER)],
            "/flaky": [Reply(500, b"oops"), Reply(body=CONTENT)],
            "/always500": [Reply(503, b"busy")],
            "/short": [Reply(body=CONTENT[:1000], declared_length=len(CONTENT))],
            "/slow": [Reply(body=CONTENT, delay=1.0)],
            "/data.zip": [
                Reply(body=_zip({f"ditto_data/data/{NAME}": CONTENT, "ditto_data/README.md": b"hi"}))
            ],
            "/badmember.zip": [Reply(body=_zip({f"ditto_data/data/{NAME}": WRONG_SAME_SIZE}))],
            "/nomember.zip": [Reply(body=_zip({"ditto_data/data/other.jsonl": CONTENT}))],
            "/notzip.zip": [Reply(body=b"this is not a zip archive")],
        }
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _remote(*sources: Source, size: int | None = len(CONTENT)) -> RemoteFile:
    return RemoteFile(name=NAME, sha256=SHA, size=size, sources=sources)


def _data_dir_entries(cache: Path) -> list[str]:
    data = cache / "data"
    return sorted(p.name for p in data.iterdir()) if data.exists() else []


def _fetch(remote: RemoteFile, cache: Path, **kwargs: object) -> Path:
    options: dict[str, object] = {"timeout": 5.0, "retries": 2, "show_progress": False}
    options.update(kwargs)
    return fetch(remote, cache, **options)  # type: ignore[arg-type]


def test_raw_download_then_cache_reuse_without_requests(server: FakeServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = _fetch(_remote(Source(server.url("/good"))), cache)
    assert path == cache / "data" / f"{SHA[:12]}-{NAME}"
    assert path.read_bytes() == CONTENT
    assert server.requests == ["/good"]
    assert _data_dir_entries(cache) == [path.name]

    # Reused: no request at all, even when the listed source would now fail.
    assert _fetch(_remote(Source(server.url("/good"))), cache) == path
    assert _fetch(_remote(Source(server.url("/missing"))), cache) == path
    assert _fetch(_remote(), cache) == path
    assert server.requests == ["/good"]


def test_corrupted_cache_is_fetched_again(server: FakeServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    target = cached_path(_remote(), cache)
    target.parent.mkdir(parents=True)
    target.write_bytes(WRONG_SAME_SIZE)
    assert _fetch(_remote(Source(server.url("/good"))), cache).read_bytes() == CONTENT
    assert server.requests == ["/good"]


def test_sources_tried_in_order_until_one_verifies(server: FakeServer, tmp_path: Path) -> None:
    remote = _remote(*(Source(server.url(p)) for p in ("/wrong", "/lfs", "/missing", "/good", "/flaky")))
    path = _fetch(remote, tmp_path)
    assert path.read_bytes() == CONTENT
    assert server.requests == ["/wrong", "/lfs", "/missing", "/good"]
    assert _data_dir_entries(tmp_path) == [path.name]


def test_all_sources_fail_reports_each_and_leaves_nothing(server: FakeServer, tmp_path: Path) -> None:
    paths = ("/wrong", "/toolong", "/lfs", "/missing", "/nomember.zip", "/badmember.zip", "/notzip.zip")
    sources = [
        Source(server.url(p), kind="zip", member=NAME) if p.endswith(".zip") else Source(server.url(p))
        for p in paths
    ]
    with pytest.raises(DataError) as info:
        _fetch(_remote(*sources), tmp_path)
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"could not download {NAME}")
    assert "7 source(s)" in lines[0]
    assert len(lines) == 1 + len(paths)
    for line, path in zip(lines[1:], paths, strict=True):
        assert line.startswith(f"  - {server.url(path)}: ")
    assert "sha256 mismatch" in lines[1]
    assert "size mismatch: served more than the expected" in lines[2]
    assert "Git LFS pointer" in lines[3] and f"oid sha256:{SHA[:16]}" in lines[3]
    assert "HTTP 404" in lines[4]
    assert "no member ending in" in lines[5]
    assert "zip member checksum mismatch" in lines[6]
    assert "not a valid zip archive" in lines[7]
    assert _data_dir_entries(tmp_path) == []
    assert info.value.exit_code == 2
    # Permanent failures are not retried.
    assert sorted(server.requests) == sorted(paths)


def test_transient_error_is_retried(server: FakeServer, tmp_path: Path) -> None:
    assert _fetch(_remote(Source(server.url("/flaky"))), tmp_path, retries=1).read_bytes() == CONTENT
    assert server.requests == ["/flaky", "/flaky"]


def test_retries_are_bounded(server: FakeServer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"HTTP 503 .*gave up after 3 attempts"):
        _fetch(_remote(Source(server.url("/always500"))), tmp_path, retries=2)
    assert server.requests == ["/always500"] * 3
    assert _data_dir_entries(tmp_path) == []


def test_no_retry_means_one_attempt(server: FakeServer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"HTTP 500"):
        _fetch(_remote(Source(server.url("/flaky"))), tmp_path, retries=0)
    assert server.requests == ["/flaky"]


def test_cut_connection_is_retried_then_reported(server: FakeServer, tmp_path: Path) -> None:
    expected = r"download cut short: 1000 of \d+ bytes \(gave up after 2 attempts\)"
    with pytest.raises(DataError, match=expected):
        _fetch(_remote(Source(server.url("/short"))), tmp_path, retries=1)
    assert server.requests == ["/short", "/short"]
    assert _data_dir_entries(tmp_path) == []


def test_timeout(server: FakeServer, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(DataError, match=r"timed out after 0.2 s"):
        _fetch(_remote(Source(server.url("/slow")), Source(server.url("/wrong"))), tmp_path, timeout=0.2,
               retries=0)
    assert time.monotonic() - started < 5
    assert server.requests == ["/slow", "/wrong"]
    assert _data_dir_entries(tmp_path) == []


def test_connection_refused(tmp_path: Path) -> None:
    # Bind and close a socket to get a port with nobody listening.
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = httpd.server_address[1]
    httpd.server_close()
    with pytest.raises(DataError, match=r"cannot connect"):
        _fetch(_remote(Source(f"http://127.0.0.1:{port}/x")), tmp_path, retries=0)


def test_zip_source_extracts_member(server: FakeServer, tmp_path: Path) -> None:
    remote = _remote(
        Source(server.url("/nomember.zip"), kind="zip", member=NAME),
        Source(server.url("/data.zip"), kind="zip", member=f"data/{NAME}"),
    )
    path = _fetch(remote, tmp_path)
    assert path.read_bytes() == CONTENT
    assert server.requests == ["/nomember.zip", "/data.zip"]
    assert _data_dir_entries(tmp_path) == [path.name]


def test_zip_member_suffix_matches_whole_path_components(server: FakeServer, tmp_path: Path) -> None:
    # "_evidence.jsonl" is a suffix of the member's name but not a path component of it.
    remote = _remote(Source(server.url("/data.zip"), kind="zip", member="_evidence.jsonl"))
    with pytest.raises(DataError, match="no member ending in"):
        _fetch(remote, tmp_path)


def test_unknown_size_still_checks_sha(server: FakeServer, tmp_path: Path) -> None:
    assert _fetch(_remote(Source(server.url("/good")), size=None), tmp_path).read_bytes() == CONTENT
    with pytest.raises(DataError, match="sha256 mismatch"):
        _fetch(_remote(Source(server.url("/wrong")), size=None), tmp_path / "other")


def test_progress_bar_does_not_break_download(server: FakeServer, tmp_path: Path) -> None:
    assert _fetch(_remote(Source(server.url("/good"))), tmp_path, show_progress=True).read_bytes() == CONTENT


def test_no_sources_and_not_cached(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no download source"):
        _fetch(_remote(), tmp_path)


def test_remote_file_and_source_validation() -> None:
    with pytest.raises(ValueError):
        RemoteFile(name=NAME, sha256="ABC", size=1, sources=())
    with pytest.raises(ValueError):
        RemoteFile(name="a/b.jsonl", sha256=SHA, size=1, sources=())
    with pytest.raises(ValueError):
        Source("http://127.0.0.1/x.zip", kind="zip")
    with pytest.raises(ValueError):
        Source("http://127.0.0.1/x", member=NAME)


def test_default_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DITTO_BENCH_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("DITTO_BENCH_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "ditto-bench"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert default_cache_dir() == Path.home() / ".cache" / "ditto-bench"


def test_fetch_uses_default_cache_dir(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DITTO_BENCH_CACHE_DIR", str(tmp_path / "c"))
    path = fetch(_remote(Source(server.url("/good"))), timeout=5.0, show_progress=False)
    assert path.parent == tmp_path / "c" / "data"


# --- the WikiRoleEval official file and its env-var mirrors ---


def test_official_sources_env_mirrors_come_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(wre_data.MIRRORS_ENV, raising=False)
    assert wre_data.official_sources() == wre_data.OFFICIAL_TEST_FILE.sources
    assert wre_data.OFFICIAL_TEST_FILE.sources[0].url.startswith("https://media.githubusercontent.com/")

    monkeypatch.setenv(
        wre_data.MIRRORS_ENV, " http://127.0.0.1:9/mirror/ditto_data.ZIP?x=1\n\thttp://127.0.0.1:9/raw.jsonl "
    )
    sources = wre_data.official_sources()
    assert sources[0] == Source("http://127.0.0.1:9/mirror/ditto_data.ZIP?x=1", kind="zip", member=NAME)
    assert sources[1] == Source("http://127.0.0.1:9/raw.jsonl")
    assert sources[2:] == wre_data.OFFICIAL_TEST_FILE.sources

    monkeypatch.setenv(wre_data.MIRRORS_ENV, "ftp://example.invalid/x.zip")
    with pytest.raises(ConfigError, match=wre_data.MIRRORS_ENV):
        wre_data.official_sources()


def test_resolve_data_path_fetches_from_env_mirror(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A synthetic stand-in for the official file, with no built-in source, so only loopback is ever contacted.
    synthetic = replace(wre_data.OFFICIAL_TEST_FILE, sha256=SHA, size=len(CONTENT), sources=())
    monkeypatch.setattr(wre_data, "OFFICIAL_TEST_FILE", synthetic)
    monkeypatch.setenv(wre_data.MIRRORS_ENV, f"{server.url('/lfs')} {server.url('/data.zip')}")
    cache = tmp_path / "cache"
    path = wre_data.resolve_data_path(None, cache)
    assert path == cache / "data" / f"{SHA[:12]}-{NAME}"
    assert path.read_bytes() == CONTENT
    assert server.requests == ["/lfs", "/data.zip"]
    assert wre_data.resolve_data_path(None, cache) == path
    assert server.requests == ["/lfs", "/data.zip"]


def test_resolve_data_path_reports_failed_mirrors(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    synthetic = replace(wre_data.OFFICIAL_TEST_FILE, sha256=SHA, size=len(CONTENT), sources=())
    monkeypatch.setattr(wre_data, "OFFICIAL_TEST_FILE", synthetic)
    monkeypatch.setenv(wre_data.MIRRORS_ENV, server.url("/lfs"))
    with pytest.raises(DataError, match="Git LFS pointer"):
        wre_data.resolve_data_path(None, tmp_path)
    assert _data_dir_entries(tmp_path) == []
