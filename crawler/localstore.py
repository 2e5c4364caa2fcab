"""The local filesystem store: ``<file>.<token>.part``, flushed to stable storage, then renamed.

A part's bytes stay in memory until it is committed (bodies larger than ``SPILL_BYTES`` are
written while they arrive, from a thread). ``commit`` takes a batch of parts to one thread,
which writes them, flushes them and renames each into place: one thread hand-over per batch, not
per file. On Linux a batch on one filesystem is flushed with one ``syncfs(2)``: one journal
commit instead of one per file, which cut the mirror's system time by two thirds on ext4
(docs/BENCHMARKS.md); ``group_sync = false`` keeps one fsync per file for disks shared with
heavy writers (syncfs flushes everything dirty on the filesystem).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

from crawler.errors import DiskFullError, StorageError
from crawler.store import CommitResult, Part, StoredFile

PART_SUFFIX = ".part"
# This process's parts carry a token of their own, so the sweep of parts that killed runs left,
# which runs beside the downloads, can never take a part this process is writing.
RUN_TOKEN = f"{os.getpid():x}{secrets.token_hex(2)}"
OWN_SUFFIX = f".{RUN_TOKEN}{PART_SUFFIX}"
SPILL_BYTES = 4 * 1024 * 1024  # bodies larger than this are written while they arrive
FATAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def storage_error(exc: OSError, path: str | Path) -> StorageError:
    """One clear line for a disk problem; a full or read-only disk fails every file alike."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"disk full writing {path}")
    if exc.errno == errno.EROFS:
        return DiskFullError(f"cannot write {path}: read-only filesystem")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StorageError(f"cannot write {path}: permission denied")
    return StorageError(f"cannot write {path}: {exc.strerror or exc}")


def _load_syncfs() -> Callable[[int], None] | None:
    """Linux's syncfs(2) through ctypes (the os module lacks it); None where it is missing."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int

    def syncfs(fd: int) -> None:
        if function(fd) != 0:  # ctypes releases the GIL for the call
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))

    return syncfs


SYNCFS = _load_syncfs()


class LocalPart(Part):
    """A body on its way to ``root/path``; the blocking steps run in the store's thread.

    It is its own context manager (``LocalStore.part``): leaving the block with an error
    removes whatever it wrote.
    """

    def __init__(self, root: str, path: str) -> None:
        super().__init__(path)
        self.dest = os.path.join(root, path)
        self.part_name = self.dest + OWN_SUFFIX
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._fd: int | None = None
        self._created = False  # the part file exists on disk

    async def __aenter__(self) -> LocalPart:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            await remove_parts([self])

    async def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._account(chunk)
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= SPILL_BYTES:  # a large body never sits whole in memory
            try:
                await anyio.to_thread.run_sync(self.write_buffer)
            except OSError as exc:
                raise storage_error(exc, self.dest) from exc

    def write_buffer(self) -> None:
        """Blocking: append what is buffered to the part file (created on first use)."""
        if self._fd is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            try:
                self._fd = os.open(self.part_name, flags, 0o644)
            except FileNotFoundError:  # first file of its directory: one mkdir, not one per file
                os.makedirs(os.path.dirname(self.part_name), exist_ok=True)
                self._fd = os.open(self.part_name, flags, 0o644)
            self._created = True
        view = memoryview(b"".join(self._chunks))
        self._digest(view)  # here, in the store's thread: hashlib releases the GIL
        while view:
            view = view[os.write(self._fd, view) :]
        self._chunks.clear()
        self._buffered = 0

    @property
    def fd(self) -> int:
        assert self._fd is not None, "write_buffer() first"
        return self._fd

    def sync(self) -> None:
        """Blocking: flush this one file to stable storage."""
        os.fsync(self.fd)

    def finish(self) -> StoredFile:
        """Blocking: close and rename into place (after the flush)."""
        os.close(self.fd)
        self._fd = None
        os.replace(self.part_name, self.dest)
        return self.stored()

    def remove(self) -> None:
        """Blocking: close and delete the part file, if any (a stale one is swept next run)."""
        self._chunks.clear()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._created:
            with contextlib.suppress(OSError):
                os.unlink(self.part_name)


async def remove_parts(parts: Sequence[LocalPart]) -> None:
    """Remove parts that will not be committed, in the store's thread; shielded, so a cancelled
    run still takes its part files with it."""

    def remove_all() -> None:
        for part in parts:
            part.remove()

    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(remove_all)


def stat_sizes(root: str, paths: Sequence[str]) -> list[int | None]:
    """Each file's size, None when it is missing (or not reachable), in the order given.

    Every run stats every done file (the resume check: 100,000 of them for a whole product,
    on the interpreter that also seeds). A stat relative to its directory's descriptor
    resolves one path component instead of four: ~30% less time here than ``os.stat`` of the
    joined path. A data set's files come together in the manifest's id order, so a few
    directories are open at a time.
    """
    if os.stat not in os.supports_dir_fd:
        return [_size(os.path.join(root, path)) for path in paths]
    found: list[int | None] = []
    stat = os.stat
    folders: dict[str, int] = {}  # directory -> descriptor (-1: cannot be opened)
    try:
        for path in paths:
            parent, _, name = path.rpartition("/")
            descriptor = folders.get(parent)
            if descriptor is None:
                if len(folders) >= _OPEN_FOLDERS:
                    _close(folders)
                descriptor = folders[parent] = _open_folder(os.path.join(root, parent))
            if descriptor < 0:
                found.append(None)
                continue
            try:
                found.append(stat(name, dir_fd=descriptor).st_size)
            except OSError:
                found.append(None)
    finally:
        _close(folders)
    return found


_OPEN_FOLDERS = 64


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _open_folder(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return -1


def _close(folders: dict[str, int]) -> None:
    for descriptor in folders.values():
        if descriptor >= 0:
            os.close(descriptor)
    folders.clear()


class LocalStore:
    """A mirror directory on a local or network filesystem."""

    def __init__(self, root: Path, *, fsync: bool = True, group_sync: bool = True) -> None:
        self.root = root
        self._root = os.fspath(root)
        self._fsync = fsync
        self._syncfs = SYNCFS if group_sync else None

    def part(self, path: str) -> LocalPart:
        return LocalPart(self._root, path)

    async def commit(self, parts: Sequence[Part]) -> list[CommitResult]:
        if not parts:
            return []
        local = [_local(part) for part in parts]
        return await anyio.to_thread.run_sync(self._commit, local)

    async def discard(self, parts: Sequence[Part]) -> None:
        await remove_parts([_local(part) for part in parts])

    def _commit(self, parts: list[LocalPart]) -> list[CommitResult]:
        """Blocking: write, flush, rename; each part's result, in order."""
        errors: dict[int, StorageError] = {}

        def attempt(index: int, step: Callable[[], object]) -> None:
            try:
                step()
            except OSError as exc:
                parts[index].remove()
                errors[index] = storage_error(exc, parts[index].dest)

        for index, part in enumerate(parts):
            attempt(index, part.write_buffer)
        if self._fsync:
            self._flush(parts, errors, attempt)
        results: list[CommitResult] = []
        for index, part in enumerate(parts):
            if index not in errors:
                try:
                    results.append(part.finish())
                    continue
                except OSError as exc:
                    part.remove()
                    errors[index] = storage_error(exc, part.dest)
            results.append(errors[index])
        fatal = next((e for e in errors.values() if isinstance(e, DiskFullError)), None)
        if fatal is not None:
            raise fatal
        return results

    def _flush(
        self,
        parts: list[LocalPart],
        errors: dict[int, StorageError],
        attempt: Callable[[int, Callable[[], object]], None],
    ) -> None:
        """Flush every written part: one syncfs per filesystem where several share one, else
        (or when syncfs fails) one fsync per file, so each file still gets its own verdict."""
        written = [i for i in range(len(parts)) if i not in errors]
        groups: dict[int, list[int]] = {}
        for index in written:
            try:
                device = os.fstat(parts[index].fd).st_dev
            except OSError:
                device = -1 - index  # cannot tell: a group of its own
            groups.setdefault(device, []).append(index)
        for members in groups.values():
            if self._syncfs is not None and len(members) > 1:
                try:
                    self._syncfs(parts[members[0]].fd)
                    continue
                except OSError:
                    pass
            for index in members:
                attempt(index, parts[index].sync)

    async def put(self, path: str, data: bytes) -> None:
        dest = self.root / path
        await anyio.to_thread.run_sync(lambda: write_atomic(dest, data, fsync=self._fsync))

    async def put_many(self, files: Sequence[tuple[str, bytes]]) -> list[StorageError | None]:
        """Through parts, as downloads go: written, flushed together (one syncfs), renamed."""
        parts = [LocalPart(self._root, path) for path, _ in files]
        try:
            for part, (_, data) in zip(parts, files, strict=True):
                await part.write(data)
        except BaseException:
            await self.discard(parts)
            raise
        results = await self.commit(parts)
        return [None if isinstance(result, StoredFile) else result for result in results]

    async def heads(self, paths: Sequence[str], size: int) -> list[bytes | None]:
        def read_all() -> list[bytes | None]:
            found: list[bytes | None] = []
            for path in paths:
                try:
                    with open(os.path.join(self._root, path), "rb") as handle:
                        found.append(handle.read(size))
                except OSError:
                    found.append(None)
            return found

        return await anyio.to_thread.run_sync(read_all)

    async def sizes(self, paths: Sequence[str]) -> list[int | None]:
        return await anyio.to_thread.run_sync(stat_sizes, self._root, paths)

    async def delete(self, paths: Sequence[str]) -> int:
        def delete_all() -> int:
            count = 0
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self._root, path))
                    count += 1
            return count

        return await anyio.to_thread.run_sync(delete_all)

    async def clock(self) -> float:
        return await anyio.to_thread.run_sync(filesystem_now, self.root)

    async def sweep(self, older_than: float) -> int:
        return await anyio.to_thread.run_sync(sweep_parts, self.root, older_than)


def _local(part: Part) -> LocalPart:
    if not isinstance(part, LocalPart):
        raise TypeError(f"a LocalStore commits its own parts, not {type(part).__name__}")
    return part


def write_atomic(dest: Path, data: bytes, *, fsync: bool = True) -> None:
    """Blocking atomic write of a small file (metadata such as dataset.json)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + OWN_SUFFIX)
    try:
        with part.open("wb") as handle:
            handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(part, dest)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise storage_error(exc, dest) from exc


def filesystem_now(root: Path) -> float:
    """The current time by the clock that stamps files under ``root``: the mtime of a marker file
    created and removed at once (an NFS server stamps files, not this host)."""
    marker = root / f".allen-mirror-clock{OWN_SUFFIX}"
    root.mkdir(parents=True, exist_ok=True)
    try:
        marker.touch()
        return marker.stat().st_mtime
    finally:
        marker.unlink(missing_ok=True)


def sweep_parts(root: Path, older_than: float) -> int:
    """Remove ``.part`` files other processes left, modified before ``older_than``.

    Callers pass a moment after which no other live process can have started one: this run's
    start (a mirror alone on its manifest), or the moment a shared manifest was seen drained.
    This process's own parts are never touched, whatever their age.
    """
    removed = 0
    if not root.is_dir():
        return 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(PART_SUFFIX) and not name.endswith(OWN_SUFFIX):
                path = Path(directory, name)
                try:
                    if path.stat().st_mtime < older_than:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
    return removed
