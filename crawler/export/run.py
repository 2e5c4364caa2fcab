"""One export: the reader's samples -> splits -> shards (or OME-Zarr images), index, stats.

Streams: one sample's bytes at a time, one open shard per split, the index written a row group
at a time. Every output file appears under its final name only complete (written to a hidden
``.part`` name, fsynced, renamed); a rerun rewrites the same bytes and removes shards a
previous, larger export left behind. A member whose bytes no longer match the manifest stops
the export (``CorruptFileError``, exit 1) with the open shards discarded.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.errors import NoAlignmentError
from crawler.export.deps import require
from crawler.export.files import AtomicFile, prepare_destination, remove
from crawler.export.plan import SPLITS, ExportOptions, is_shard_name, shard_name, shard_of
from crawler.export.shards import Exported, ParquetShard, ShardWriter, TarShard
from crawler.export.table import index_schema, metadata_row
from crawler.progress import RunProgress
from crawler.reader.mirror import Mirror, ReaderStats
from crawler.reader.samples import Sample, extension

if TYPE_CHECKING:
    import pyarrow.parquet as pq

    from crawler.export.labels import LabelSource

INDEX_ROW_GROUP = 10_000


@dataclass
class SplitShards:
    """The shards of one split: samples counted, the open shard, what was written."""

    split: str
    samples: int = 0
    nbytes: int = 0
    data_sets: set[int] = field(default_factory=set)
    open: ShardWriter | None = None
    shard: int = -1
    written: list[str] = field(default_factory=list)


@dataclass
class ExportReport:
    """What an export wrote and left out; ``_stats.json`` is its ``as_dict``."""

    options: ExportOptions
    splits: dict[str, SplitShards]
    reader: ReaderStats
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.splits.values())

    def as_dict(self) -> dict[str, Any]:
        splits = self.splits.values()
        reader = self.reader.as_dict()
        return {
            "format": self.options.fmt,
            "kinds": list(self.options.kinds),
            "labels": self.options.labels,
            "seed": self.options.seed,
            "val_fraction": self.options.val_fraction,
            "test_fraction": self.options.test_fraction,
            "shard_size": self.options.shard_size,
            "samples": {s.split: s.samples for s in splits},
            "data_sets": {s.split: len(s.data_sets) for s in splits},
            "shards": {s.split: len(s.written) for s in splits},
            "bytes": {s.split: s.nbytes for s in splits},
            "skipped": {
                "items_not_done": reader["items_not_done"],
                "samples": dict(sorted((reader["samples_skipped"] | self.skipped).items())),
            },
        }


class IndexWriter:
    """``index.parquet``: one row per sample (key, split, shard, metadata), atomically."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self._file = AtomicFile(path)
        self._schema = index_schema()
        self._writer: pq.ParquetWriter = pq.ParquetWriter(self._file.file, self._schema)
        self._rows: list[dict[str, Any]] = []

    def add(self, metadata: dict[str, Any], split: str, shard: int | None) -> None:
        self._rows.append(metadata_row(metadata) | {"split": split, "shard": shard})
        if len(self._rows) >= INDEX_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
            self._rows = []

    def commit(self) -> None:
        self._flush()
        self._writer.close()
        self._file.commit()

    def discard(self) -> None:
        self._writer.close()
        self._file.discard()


def exported(sample: Sample, options: ExportOptions, labels: LabelSource | None) -> Exported:
    """A sample's checked bytes per kind, its metadata (with the hash of every exported
    member) and, with ``--labels``, its structure ids per pixel."""
    images: dict[str, bytes] = {}
    hashes: dict[str, str | None] = {}
    for kind, member in sample.members.items():
        data = member.read_bytes()  # checked against the manifest's sha256
        images[kind] = data
        hashes[extension(kind)] = member.sha256 or hashlib.sha256(data).hexdigest()
    structures = labels.sample_labels(sample) if labels is not None else None
    return Exported(sample.key, sample.metadata(hashes, options.kinds), images, structures)


def run_export(
    mirror: Mirror, dest: Path, options: ExportOptions, *, progress: bool = False
) -> ExportReport:
    """Export the mirror's samples into ``dest`` in ``options.fmt``; returns what it did."""
    require("pyarrow")
    if options.fmt == "ome-zarr":
        require("zarr")
    prepare_destination(dest)
    labels = None
    if options.labels:
        from crawler.export.labels import find_label_source

        labels = find_label_source(mirror.out)
        structures = AtomicFile(dest / "structures.json")
        structures.write(json.dumps(labels.structures_document(), indent=1).encode() + b"\n")
        structures.commit()
    report = ExportReport(options, {s: SplitShards(s) for s in SPLITS}, ReaderStats())
    with ExitStack() as stack:
        index = IndexWriter(dest / "index.parquet")
        stack.callback(_discard_open, report, index)
        bar = stack.enter_context(RunProgress(progress, "export"))
        samples = mirror.samples(
            kinds=options.kinds,
            data_sets=options.data_sets,
            sections=options.sections,
            tiers=options.tiers,
            one_tier=True,
            stats=report.reader,
        )
        for sample in samples:
            split = options.split(sample.data_set_id)
            shards = report.splits[split]
            try:
                written, shard, metadata = _write(sample, split, shards, dest, options, labels)
            except NoAlignmentError:
                report.skipped["no_alignment_for_labels"] += 1
                continue
            shards.samples += 1
            shards.nbytes += written
            shards.data_sets.add(sample.data_set_id)
            index.add(metadata, split, shard)
            bar.advance(1, written)
        for shards in report.splits.values():
            _close(shards)
        index.commit()
        stack.pop_all()
    _remove_stale(dest, report)
    stats = AtomicFile(dest / "_stats.json")
    stats.write(json.dumps(report.as_dict(), indent=1).encode() + b"\n")
    stats.commit()
    return report


def _write(
    sample: Sample,
    split: str,
    shards: SplitShards,
    dest: Path,
    options: ExportOptions,
    labels: LabelSource | None,
) -> tuple[int, int | None, dict[str, Any]]:
    """Write one sample; returns (bytes written, shard number or None, its metadata)."""
    if options.fmt == "ome-zarr":
        from crawler.export.omezarr import write_image

        metadata = sample.metadata(kinds=options.kinds)
        size = write_image(sample, dest / split, metadata, labels)
        shards.written.append(f"{split}/{sample.key}.ome.zarr")
        return size, None, metadata
    shard = shard_of(shards.samples, options.shard_size)
    if shard != shards.shard:
        _close(shards)
        name = shard_name(split, shard, options.fmt)
        if options.fmt == "webdataset":
            shards.open = TarShard(dest / name)
        else:
            shards.open = ParquetShard(dest / name, options.kinds, options.labels)
        shards.shard = shard
        shards.written.append(name)
    assert shards.open is not None
    before = shards.open.nbytes
    record = exported(sample, options, labels)
    shards.open.add(record)
    return shards.open.nbytes - before, shard, record.metadata


def _close(shards: SplitShards) -> None:
    if shards.open is not None:
        before = shards.open.nbytes
        shards.open.commit()
        shards.nbytes += shards.open.nbytes - before
        shards.open = None


def _discard_open(report: ExportReport, index: IndexWriter) -> None:
    """An export that stops leaves no part behind (and no shard under a final name half-done)."""
    for shards in report.splits.values():
        if shards.open is not None:
            shards.open.discard()
            shards.open = None
    index.discard()


def _remove_stale(dest: Path, report: ExportReport) -> None:
    """Shards and images a previous export wrote that this one did not: a rerun leaves DEST as
    if exported once (only names an export writes are touched)."""
    written = {name for s in report.splits.values() for name in s.written}
    for path in dest.iterdir():
        if path.is_file() and is_shard_name(path.name) and path.name not in written:
            remove(path)
    for split in SPLITS:
        folder = dest / split
        if folder.is_dir():
            for image in folder.glob("*.ome.zarr"):
                if f"{split}/{image.name}" not in written:
                    remove(image)
