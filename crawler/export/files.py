"""Output files that appear only whole: written under a temporary name, fsynced, renamed.

An interrupted export leaves at most ``.part`` files (removed by the next run), never a
truncated shard under its final name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO

from crawler.errors import UsageError

PART_SUFFIX = ".part"
BUFFER = 1 << 20


def part_path(final: Path) -> Path:
    """``DEST/.train-00000.tar.part``: hidden, so no loader globbing ``*.tar`` picks it up."""
    return final.with_name(f".{final.name}{PART_SUFFIX}")


def prepare_destination(dest: Path) -> None:
    """DEST exists and takes files; stale parts of an interrupted export are removed."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        probe = dest / f".probe{PART_SUFFIX}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to {dest}: {exc.strerror or exc}") from exc
    for stale in dest.rglob(f".*{PART_SUFFIX}"):
        remove(stale)


def remove(path: Path) -> None:
    """Remove a file or a directory tree (a stale shard or OME-Zarr image)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class AtomicFile:
    """A binary file written to its part name and renamed into place by ``commit``."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.part = part_path(final)
        self.file: BinaryIO = open(self.part, "wb", buffering=BUFFER)  # noqa: SIM115
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.bytes += len(data)

    def commit(self) -> None:
        """Flush to stable storage, then give the file its final name."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.part, self.final)

    def discard(self) -> None:
        self.file.close()
        self.part.unlink(missing_ok=True)


def commit_directory(part: Path, final: Path) -> None:
    """Give a finished directory (an OME-Zarr image) its final name, replacing an old one."""
    if final.exists():
        remove(final)
    os.replace(part, final)
