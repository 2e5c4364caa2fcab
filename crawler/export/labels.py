"""``--labels``: the CCF structure id under every pixel of a sample, through its alignment.

Pixel-centre convention: pixel (i, j) of a tier-N image (column i, row j, origin at the
image's top-left corner, as the download service returns it) is the full-resolution point
``((i + 0.5) * 2^N, (j + 0.5) * 2^N)``, the centre of the 2^N x 2^N block it stands for. That
point goes through ``image_to_reference`` (Alignment2d, Alignment3d, section number x section
thickness, as the image synchronization service computes) and ``structure_at`` reads the
annotation voxel holding it (0 outside the brain or the volume).

The annotation is the finest ``OUT/ccf/annotation_<R>.nrrd`` mirrored (``--with annotation``)
and is held in memory while exporting (25 µm: 300 MB); rows are labelled in strips so the
coordinate arrays stay small.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from crawler.atlas import (
    Alignment2d,
    Alignment3d,
    Ontology,
    Volume,
    image_to_reference,
    read_ontology,
    read_volume,
    structure_at,
)
from crawler.errors import AllenMirrorError, NoAlignmentError, UsageError
from crawler.reader.samples import Sample

CCF_DIRECTORY = "ccf"
ONTOLOGY_FILE = "structure_graph_1.json"
_ANNOTATION = re.compile(r"^annotation_(\d+)\.nrrd$")
STRIP_ROWS = 256
Labels = NDArray[np.uint32]


def pixel_centres(tier: int, count: int, start: int = 0) -> NDArray[np.float64]:
    """Full-resolution coordinates of the centres of tier pixels ``start .. start+count-1``."""
    return (np.arange(start, start + count, dtype=np.float64) + 0.5) * float(1 << tier)


def finest_annotation(directory: Path) -> Path | None:
    """The ``annotation_<R>.nrrd`` with the smallest R in ``directory``, if any."""
    found = []
    if directory.is_dir():
        for path in directory.iterdir():
            match = _ANNOTATION.match(path.name)
            if match is not None:
                found.append((int(match[1]), path))
    return min(found)[1] if found else None


@dataclass(frozen=True, eq=False)
class LabelSource:
    """The annotation volume and ontology a mirror holds, ready to label samples."""

    volume: Volume
    ontology: Ontology
    annotation: Path

    def rows(self, sample: Sample, start: int, stop: int) -> Labels:
        """Structure ids of rows ``start .. stop-1`` of the sample (stop - start) x width.

        Raises NoAlignmentError when the image or its data set has no alignment.
        """
        owner = f"image {sample.image_id}"
        alignment2d = Alignment2d.from_record(sample.image.get("alignment2d"), owner=owner)
        alignment3d = Alignment3d.from_record(
            sample.data_set.alignment3d, owner=f"data set {sample.data_set_id}"
        )
        thickness = sample.data_set.section_thickness
        if thickness is None:
            raise NoAlignmentError(f"data set {sample.data_set_id} has no section_thickness")
        x = pixel_centres(sample.tier, sample.width)
        y = pixel_centres(sample.tier, stop - start, start)
        xs, ys = np.meshgrid(x, y)
        point = image_to_reference(
            alignment2d, alignment3d, sample.section_number, thickness, xs, ys
        )
        ids = structure_at(self.volume.data, self.volume.resolution_um, point.x, point.y, point.z)
        return ids.astype(np.uint32)

    def sample_labels(self, sample: Sample) -> Labels:
        """Height x width structure ids of a whole sample, computed a strip at a time."""
        labels = np.zeros((sample.height, sample.width), dtype=np.uint32)
        for start in range(0, sample.height, STRIP_ROWS):
            stop = min(sample.height, start + STRIP_ROWS)
            labels[start:stop] = self.rows(sample, start, stop)
        return labels

    def structures_document(self) -> list[dict[str, object]]:
        """Every structure id the labels can hold, with its acronym, name and parent."""
        return [
            {
                "id": s.id,
                "acronym": s.acronym,
                "name": s.name,
                "parent_structure_id": s.parent_structure_id,
            }
            for s in sorted(self.ontology.by_id.values(), key=lambda s: s.id)
        ]


def find_label_source(out: Path) -> LabelSource:
    """The mirror's annotation and ontology, or one line saying how to mirror them."""
    directory = out / CCF_DIRECTORY
    annotation = finest_annotation(directory)
    ontology_path = directory / ONTOLOGY_FILE
    missing = [
        name
        for name, present in (
            ("annotation_<R>.nrrd", annotation is not None),
            (ONTOLOGY_FILE, ontology_path.is_file()),
        )
        if not present
    ]
    if missing or annotation is None:
        raise UsageError(
            f"--labels needs the CCF annotation and structure graph, but {directory} lacks "
            f"{' and '.join(missing)}: mirror it with: allen-mirror mirror --out {out} "
            "--dataset ID --with annotation,ontology"
        )
    try:
        return LabelSource(read_volume(annotation), read_ontology(ontology_path), annotation)
    except AllenMirrorError as exc:
        raise UsageError(f"--labels: {exc}") from exc
