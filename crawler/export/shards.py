"""Shard writers: WebDataset tars and Parquet files, each one atomic (``crawler/export/files``).

The tar is written by hand in POSIX ustar format, as ``tarfile`` would, with fixed metadata
(mtime 0, uid/gid 0, no owner names, mode 0644) so the same mirror exports byte-identical
shards; a sample's members are adjacent, in a fixed order, as WebDataset readers require.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from crawler.export.files import AtomicFile
from crawler.export.table import metadata_row, shard_schema
from crawler.reader.samples import KINDS, column, extension

if TYPE_CHECKING:
    import pyarrow.parquet as pq

BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240: tar pads the archive to whole records
PARQUET_ROW_GROUP_BYTES = 64 << 20  # image bytes buffered before a row group is written
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True)
class Exported:
    """One sample ready to write: its key, metadata, image bytes per kind, optional labels."""

    key: str
    metadata: dict[str, Any]
    images: dict[str, bytes]
    labels: NDArray[np.uint32] | None = None

    def json_bytes(self) -> bytes:
        return _JSON.encode(self.metadata).encode()

    def labels_bytes(self) -> bytes | None:
        if self.labels is None:
            return None
        buffer = io.BytesIO()
        np.save(buffer, self.labels, allow_pickle=False)
        return buffer.getvalue()


class ShardWriter(Protocol):
    """One shard being written; ``commit`` gives it its final name."""

    @property
    def nbytes(self) -> int: ...

    def add(self, sample: Exported) -> None: ...

    def commit(self) -> None: ...

    def discard(self) -> None: ...


# The fixed fields of every header: mode 0644, uid and gid 0 (before the size); mtime 0 (after
# it); then, after the checksum, type "regular file", no link, "ustar\0" "00", empty owner
# names, no device numbers, no prefix, padded to a block.
_BEFORE_SIZE = b"0000644\0" + b"0000000\0" * 2
_AFTER_SIZE = b"00000000000\0"
_AFTER_CHECKSUM = (b"0" + b"\0" * 100 + b"ustar\x0000").ljust(BLOCK - 156, b"\0")


def tar_header(name: str, size: int) -> bytes:
    """A ustar header with the fixed metadata that makes shards reproducible: mode 0644,
    uid/gid 0, no owner names, mtime 0. Byte for byte what ``tarfile`` writes for the same
    TarInfo (a test compares them), built directly: tarfile's generic encoder cost more than
    everything else of writing a small sample. Long names go through tarfile."""
    encoded = name.encode()
    if len(encoded) > 100 or size >= 8**11:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid = size, 0, 0o644, 0, 0
        info.uname = info.gname = ""
        return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    head = encoded.ljust(100, b"\0") + _BEFORE_SIZE + b"%011o\0" % size + _AFTER_SIZE
    checksum = sum(head) + 8 * ord(" ") + sum(_AFTER_CHECKSUM)
    return head + b"%06o\0 " % checksum + _AFTER_CHECKSUM


class TarShard:
    """``{split}-{shard:05d}.tar``: per sample ``<key>.jpg``, ``<key>.projection.jpg``,
    ``<key>.expression.jpg``, ``<key>.json``, ``<key>.labels.npy``, adjacent, in that order."""

    def __init__(self, final: Path) -> None:
        self._file = AtomicFile(final)

    @property
    def nbytes(self) -> int:
        return self._file.bytes

    def _member(self, name: str, data: bytes) -> None:
        self._file.write(tar_header(name, len(data)))
        self._file.write(data)
        if len(data) % BLOCK:
            self._file.write(b"\0" * (BLOCK - len(data) % BLOCK))

    def add(self, sample: Exported) -> None:
        for kind in KINDS:
            if kind in sample.images:
                self._member(f"{sample.key}.{extension(kind)}", sample.images[kind])
        self._member(f"{sample.key}.json", sample.json_bytes())
        labels = sample.labels_bytes()
        if labels is not None:
            self._member(f"{sample.key}.labels.npy", labels)

    def commit(self) -> None:
        end = 2 * BLOCK  # the end-of-archive marker, then padding to a whole record
        total = self._file.bytes + end
        self._file.write(b"\0" * (end + (-total) % RECORD))
        self._file.commit()

    def discard(self) -> None:
        self._file.discard()


class ParquetShard:
    """``{split}-{shard:05d}.parquet``: one row per sample, written a row group at a time so a
    shard of large images never sits in memory whole."""

    def __init__(self, final: Path, kinds: tuple[str, ...], labels: bool) -> None:
        import pyarrow.parquet as pq

        self._file = AtomicFile(final)
        self._schema = shard_schema(kinds, labels)
        self._kinds = kinds
        self._labels = labels
        self._writer: pq.ParquetWriter = pq.ParquetWriter(
            self._file.file, self._schema, compression="none", write_statistics=False
        )
        self._rows: list[dict[str, Any]] = []
        self._buffered = 0

    @property
    def nbytes(self) -> int:
        return self._file.bytes

    def add(self, sample: Exported) -> None:
        row = metadata_row(sample.metadata)
        for kind in self._kinds:
            row[column(kind)] = sample.images.get(kind)
        if self._labels:
            row["labels_npy"] = sample.labels_bytes()
        self._rows.append(row)
        self._buffered += sum(len(b) for b in sample.images.values())
        if self._buffered >= PARQUET_ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
        self._rows, self._buffered = [], 0

    def commit(self) -> None:
        self._flush()
        self._writer.close()
        self._file.bytes = self._file.file.tell()
        self._file.commit()

    def discard(self) -> None:
        self._writer.close()
        self._file.discard()
