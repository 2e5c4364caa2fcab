"""A sample: one SectionImage at one tier, its images per kind, and what is known of it.

``sample_metadata`` is the one definition of a sample's metadata: the reader returns it, the
exporters write it as ``<key>.json`` and as the columns of ``index.parquet``. Its keys and
types are the same for every sample (absent things are null), so column stores and the
Hugging Face loaders infer one schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawler.plan import EXPRESSION, PROJECTION, SECTION
from crawler.reader.files import Member, Pixels
from crawler.reader.layout import tier_size
from crawler.reader.records import DataSetRecords

KINDS = (SECTION, PROJECTION, EXPRESSION)  # member order inside a sample, and in shards
# The member name after ``<key>.``: the section image is the sample's plain ``.jpg``.
EXTENSIONS = {SECTION: "jpg", PROJECTION: "projection.jpg", EXPRESSION: "expression.jpg"}


def extension(kind: str) -> str:
    return EXTENSIONS[kind]


def column(kind: str) -> str:
    """The binary column of a kind in Parquet shards: ``jpg``, ``projection_jpg``, ..."""
    return EXTENSIONS[kind].replace(".", "_")


@dataclass(frozen=True, slots=True)
class Sample:
    """One SectionImage at one tier; ``members`` maps kind -> image, in ``KINDS`` order."""

    key: str
    tier: int
    data_set: DataSetRecords
    image: Mapping[str, Any]
    members: Mapping[str, Member]
    out: Path

    @property
    def data_set_id(self) -> int:
        return self.data_set.id

    @property
    def image_id(self) -> int:
        return int(self.image["id"])

    @property
    def section_number(self) -> int:
        return int(self.image.get("section_number") or 0)

    @property
    def width(self) -> int:
        """Tier pixels across: ``ceil(width / 2^tier)`` of the full-resolution box."""
        return tier_size(int(self.image.get("width") or 0), self.tier)

    @property
    def height(self) -> int:
        return tier_size(int(self.image.get("height") or 0), self.tier)

    @property
    def um_per_pixel(self) -> float | None:
        """µm per tier pixel: the image's resolution (µm per full-resolution pixel) x 2^tier."""
        resolution = self.image.get("resolution")
        if not isinstance(resolution, int | float) or resolution <= 0:
            return None
        return float(resolution) * (1 << self.tier)

    @property
    def window(self) -> tuple[int, ...] | None:
        """The colour window of the images: the URL's ``range``, else the data set's
        Equalization (which the service applies when no range is sent), else None."""
        for member in self.members.values():
            if member.window is not None:
                return member.window
        return self.data_set.equalization

    def pixels(self, kind: str = SECTION) -> Pixels:
        """Height x width x 3 uint8 RGB of one member, checked against the manifest."""
        return self.members[kind].pixels()

    def read_bytes(self, kind: str = SECTION) -> bytes:
        """The JPEG bytes of one member (tiles stitched), checked against the manifest."""
        return self.members[kind].read_bytes()

    def metadata(
        self,
        sha256: Mapping[str, str | None] | None = None,
        kinds: tuple[str, ...] | None = None,
    ) -> dict[str, Any]:
        """This sample's metadata (see ``sample_metadata``)."""
        return sample_metadata(self, sha256, kinds)


def sample_metadata(
    sample: Sample,
    sha256: Mapping[str, str | None] | None = None,
    kinds: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Everything a training pipeline may want to know of a sample, in a fixed shape.

    ``sha256`` maps member names (``jpg``, ``projection.jpg``, ...) to the hash of the bytes
    exported for them; by default the mirrored files' (null for a stitched image). Its keys are
    those of ``kinds`` (default: the sample's own members), null where a sample lacks one, so
    every sample of an export has the same keys.
    """
    data_set, image = sample.data_set, sample.image
    hashes: dict[str, str | None] = {}
    for kind in KINDS:
        if kind in (kinds if kinds is not None else tuple(sample.members)):
            name = extension(kind)
            member = sample.members.get(kind)
            if member is None:
                hashes[name] = None
            else:
                hashes[name] = sha256.get(name) if sha256 is not None else member.sha256
    window = sample.window
    alignment2d = image.get("alignment2d")
    shared = data_set.fields
    resolution = image.get("resolution")
    return {
        "key": sample.key,
        "data_set_id": sample.data_set_id,
        "image_id": sample.image_id,
        "section_number": sample.section_number,
        "tier": sample.tier,
        "width": sample.width,
        "height": sample.height,
        "um_per_pixel": sample.um_per_pixel,
        "resolution_um": float(resolution) if isinstance(resolution, int | float) else None,
        "section_thickness_um": shared.get("section_thickness_um"),
        "plane_of_section": shared.get("plane_of_section"),
        "products": shared.get("products", []),
        "specimen": shared.get("specimen"),
        "transgenic_lines": shared.get("transgenic_lines", []),
        "injection_structures": shared.get("injection_structures", []),
        "genes": shared.get("genes", []),
        "colour_window": list(window) if window is not None else None,
        "members": [extension(kind) for kind in KINDS if kind in sample.members],
        "tiled": any(member.tiled for member in sample.members.values()),
        "alignment2d": alignment2d if isinstance(alignment2d, Mapping) else None,
        "alignment3d": shared.get("alignment3d"),
        "sha256": hashes,
    }
