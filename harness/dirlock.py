"""One writer per output directory: an exclusive advisory lock that the OS releases when its process dies.

:class:`DirLock` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<dir>/.ditto-bench.lock`` and writes the
holder's pid and command into it. A second process that tries the same directory gets a
:class:`~harness.errors.ConfigError` (exit 2) naming the directory, the holder's pid and its command. The
lock file itself stays (removing it would let two processes lock two different inodes); on release its
content is cleared, so the file reads empty whenever nobody holds the directory.

A command whose output is a single file (``knowledge --out kb.jsonl``) locks that file with
:meth:`DirLock.for_file`, on ``<parent>/.<name>.ditto-bench.lock``.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from types import TracebackType

from harness.errors import ConfigError

LOCK_NAME = ".ditto-bench.lock"


def lock_file_for(target: Path) -> Path:
    """The lock file guarding a single output file ``target``."""
    return target.parent / f".{target.name}{LOCK_NAME}"


class DirLock:
    """Exclusive advisory lock on a directory a command writes (context manager; re-entrant use is an error).

    ``path`` is the directory (created if missing). ``command`` names the holder in the refusal message.
    """

    def __init__(self, path: Path, command: str, *, lock_path: Path | None = None) -> None:
        self.path = Path(path)
        self.command = command
        self.lock_path = lock_path or self.path / LOCK_NAME
        self._fd: int | None = None

    @classmethod
    def for_file(cls, target: Path, command: str) -> DirLock:
        """A lock guarding one output file (its lock file sits beside it)."""
        return cls(Path(target).parent, command, lock_path=lock_file_for(Path(target)))

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> DirLock:
        """Take the lock or raise :class:`ConfigError` naming the holder; returns ``self``."""
        if self._fd is not None:
            raise RuntimeError(f"{self.lock_path} is already held by this DirLock")
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError(f"{self.path}: cannot be used as an output directory ({reason})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise ConfigError(
                f"{self.path} is in use by another ditto-bench process ({holder}); "
                "wait for it to finish or use another directory"
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid={os.getpid()} command={self.command}\n".encode(), 0)
        self._fd = fd
        return self

    def check_free(self) -> None:
        """Raise the refusal :meth:`acquire` would raise if another process holds the lock; take nothing and
        create nothing (for checks before a command commits to a directory)."""
        if self._fd is not None or not self.lock_path.exists():
            return
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            raise ConfigError(
                f"{self.path} is in use by another ditto-bench process ({holder}); "
                "wait for it to finish or use another directory"
            ) from None
        finally:
            os.close(fd)

    def release(self) -> None:
        """Clear the holder line and drop the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    """``pid N, command C`` from the lock file, or a placeholder while the holder is still writing it."""
    try:
        raw = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        raw = ""
    m = re.match(r"pid=(\d+)(?: command=(.*))?$", raw)
    if m is None:
        return "pid unknown"
    return f"pid {m.group(1)}, ditto-bench {m.group(2)}" if m.group(2) else f"pid {m.group(1)}"
