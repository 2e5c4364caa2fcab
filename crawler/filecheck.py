"""Checking mirrored files against their manifest rows, in whichever process hashes them.

``verify`` hashes a large mirror in worker processes (a 1 kB file hashes with the GIL held, so
threads do not run in parallel); a worker imports this module alone, so it imports nothing
heavier than hashlib (Pillow only for ``--decode``).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from typing import BinaryIO

WHOLE = 1 << 20  # files up to this size are read in one call (no per-file read buffer)

Row = tuple[int, str, int, str | None, str]  # id, path, size, sha256, kind (a manifest row)


def file_state(path: str, size: int, sha256: str | None, *, decode: bool = False) -> str | None:
    """None when the file matches (and, with ``decode``, decodes as an image); 'missing' or
    'corrupt' otherwise (blocking).

    Small files go through a plain descriptor and one read of a byte more than the manifest's
    size (a longer file shows without an fstat): a Python file object and
    ``hashlib.file_digest``'s 256 kB buffer cost more than hashing a 1 kB image.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return "missing"
    try:
        if size <= WHOLE and not decode:
            data = os.read(fd, size + 1)
            while len(data) <= size and (more := os.read(fd, size + 1 - len(data))):
                data += more
            if len(data) != size:
                return "corrupt"
            return None if hashlib.sha256(data).hexdigest() == sha256 else "corrupt"
        if os.fstat(fd).st_size != size:
            return "corrupt"
        with os.fdopen(os.dup(fd), "rb") as handle:
            if hashlib.file_digest(handle, "sha256").hexdigest() != sha256:
                return "corrupt"
            if decode:
                handle.seek(0)
                return None if decodes(handle) else "corrupt"
    except OSError:
        return "missing"
    finally:
        os.close(fd)
    return None


def decodes(handle: BinaryIO) -> bool:
    """Whether the image decodes completely (every pixel, not just the header)."""
    from PIL import Image, UnidentifiedImageError  # only --decode pays for Pillow

    try:
        with Image.open(handle) as image:
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False
    return True


def check_files(
    root: str, rows: Sequence[Row], decoded: frozenset[str] = frozenset()
) -> list[tuple[int, str]]:
    """(position, problem) of the bad files among ``rows``, those of a kind in ``decoded``
    also decoded as images: the good ones cost no result."""
    problems = []
    for position, (_, path, size, sha256, kind) in enumerate(rows):
        state = file_state(f"{root}/{path}", size, sha256, decode=kind in decoded)
        if state is not None:
            problems.append((position, state))
    return problems


def start_worker() -> None:
    """A worker process's start. Ctrl-C reaches the whole process group and the parent alone
    answers it (it cancels the run and prints one line), so a worker finishes its group
    quietly. A worker whose parent is killed (kill -9) leaves too: it would wait forever on a
    queue nobody writes to."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_leave_with, args=(parent,), daemon=True).start()


def _leave_with(parent: BaseProcess) -> None:
    parent.join()  # returns when the parent process is gone
    os._exit(1)
