"""The export's decisions, in plain functions: splits, shards, names, and the option checks.

Splits go by data set, never by section, so no experiment straddles train and val: a data set's
split is a pure function of its id and the seed (a hash mapped to [0, 1)), independent of
which other data sets the mirror holds, so adding experiments never moves the old ones.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from crawler.errors import UsageError
from crawler.reader.samples import KINDS

SPLITS = ("train", "val", "test")
FORMATS = ("webdataset", "parquet", "ome-zarr")
EXTENSIONS = {"webdataset": "tar", "parquet": "parquet"}
_SHARD = re.compile(r"^(train|val|test)-\d{5}\.(tar|parquet)$")


def split_of(data_set_id: int, seed: int, val_fraction: float, test_fraction: float) -> str:
    """``train``, ``val`` or ``test`` for a data set: the first 8 bytes of
    sha256("<seed>:<data_set_id>") as a fraction u in [0, 1); test below ``test_fraction``,
    val below ``test_fraction + val_fraction``, train above."""
    digest = hashlib.sha256(f"{int(seed)}:{int(data_set_id)}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def shard_of(position: int, shard_size: int) -> int:
    """The shard of the ``position``-th sample (from 0) of a split."""
    return position // shard_size


def shard_name(split: str, shard: int, fmt: str) -> str:
    """``{split}-{shard:05d}.tar`` (or ``.parquet``)."""
    return f"{split}-{shard:05d}.{EXTENSIONS[fmt]}"


def is_shard_name(name: str) -> bool:
    """A file name an export writes (and may replace or remove on a rerun)."""
    return _SHARD.match(name) is not None


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What the user asked of an export, checked."""

    fmt: str = "webdataset"
    kinds: tuple[str, ...] = KINDS
    shard_size: int = 1000
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    seed: int = 0
    labels: bool = False
    data_sets: tuple[int, ...] | None = None
    sections: tuple[int, int] | None = None
    tiers: tuple[int, ...] | None = None  # None: each image's coarsest mirrored tier

    def split(self, data_set_id: int) -> str:
        return split_of(data_set_id, self.seed, self.val_fraction, self.test_fraction)


def parse_kinds(text: str | None) -> tuple[str, ...]:
    """``--kinds section,projection``: known kinds, in member order."""
    if text is None:
        return KINDS
    words = [w.strip().lower() for w in text.replace(" ", ",").split(",") if w.strip()]
    unknown = [w for w in words if w not in KINDS]
    if unknown or not words:
        raise UsageError(
            f"unknown kind {unknown[0] if unknown else text!r}: expected {', '.join(KINDS)}"
        )
    return tuple(k for k in KINDS if k in words)


def parse_format(text: str) -> str:
    fmt = text.strip().lower()
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {text!r}: expected {' | '.join(FORMATS)}")
    return fmt


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Each in [0, 1], together at most 1 (what is left is train)."""
    for name, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"invalid {name} {value}: expected a fraction between 0 and 1")
    if val_fraction + test_fraction > 1.0:
        raise UsageError(
            f"--val-fraction {val_fraction} and --test-fraction {test_fraction} add up to more "
            "than 1"
        )


def check_shard_size(shard_size: int) -> None:
    if shard_size < 1:
        raise UsageError(f"invalid --shard-size {shard_size}: expected a positive number")
