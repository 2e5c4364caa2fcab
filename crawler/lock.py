"""The output lock: one run at a time per OUT, and the refusal names who holds it.

It is a file in OUT, or beside the SQLite manifest when OUT is a bucket (crawler/output.py).

An OS lock (flock) is released by the kernel when its process dies, even by SIGKILL, so a
crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from crawler.errors import LockedError, UsageError
from crawler.localstore import storage_error

LOCK_NAME = ".allen-mirror.lock"


class OutputLock:
    """Exclusive lock on ``OUT/.allen-mirror.lock`` (or ``name`` in ``out``) for a run's life;
    ``what`` is how refusals name the mirror."""

    def __init__(
        self, out: Path, command: str, *, name: str = LOCK_NAME, what: str | None = None
    ) -> None:
        self.path = out / name
        self.what = what or str(out)
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(
                f"cannot use output directory {self.path.parent}: {exc.strerror}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(fd)
            os.close(fd)
            raise LockedError(
                f"{self.what} is in use by another allen-mirror run ({holder}); "
                "wait for it to finish or stop it"
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError as exc:  # a full or read-only disk: say where, in one line
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise storage_error(exc, self.path) from exc
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _describe(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    command, pid, host = info.get("command", "run"), info.get("pid"), info.get("host")
    return f"{command} pid {pid} on {host} since {info.get('since')}"
