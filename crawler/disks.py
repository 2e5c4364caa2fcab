"""Whether a directory lies on a local disk, where creating or renaming a small file is cheap.

On a local filesystem those calls take microseconds, so small files are written and renamed on
the event loop (a thread hop per file costs more than the file). On a network filesystem (NFS,
SMB, Lustre, FUSE mounts...) each of them is a round trip to a server, so they must stay off the
loop. Linux only: elsewhere, and for any type not listed, the answer is "not local".
"""

from __future__ import annotations

import os
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")

# Filesystems whose metadata operations never leave the machine.
LOCAL_TYPES = frozenset(
    {
        "bcachefs",
        "btrfs",
        "ext2",
        "ext3",
        "ext4",
        "f2fs",
        "jfs",
        "nilfs2",
        "overlay",
        "ramfs",
        "reiserfs",
        "tmpfs",
        "xfs",
        "zfs",
    }
)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mounts(text: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every line of a mountinfo text, in order."""
    found = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            separator = fields.index("-", 6)
            found.append((_unescape(fields[4]), fields[separator + 1]))
        except (ValueError, IndexError):
            continue  # not a line we understand: ignore it rather than guess
    return found


def filesystem_type(path: Path, mountinfo: str | None = None) -> str | None:
    """The type of the filesystem ``path`` is (or would be created) on; None when unknown."""
    if mountinfo is None:
        try:
            mountinfo = MOUNTINFO.read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for point, kind in mounts(mountinfo):
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):  # a later mount on top wins
            best = (len(point), kind)
    return best[1] if best else None


def is_local_disk(path: Path, mountinfo: str | None = None) -> bool:
    """Whether small file operations under ``path`` are cheap enough for the event loop."""
    return filesystem_type(path, mountinfo) in LOCAL_TYPES
