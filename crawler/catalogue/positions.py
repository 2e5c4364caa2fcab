"""Where each section sits in the CCF: its centre's reference point and the structure there.

The centre is the middle of the image's box (``x + width/2, y + height/2`` in full-resolution
pixels of the whole image), mapped with the image's Alignment2d and the data set's Alignment3d
exactly as ``locate`` maps a pixel. The structures of all sections of a build are read in one
streaming pass over the annotation NRRD (``crawler.atlas.annotation.values_at``), so a catalogue
of many data sets never loads the volume (300 MB at 25 µm) nor reads it once per section.
"""

from __future__ import annotations

import math

from crawler.atlas import Alignment2d, Alignment3d, image_to_reference
from crawler.catalogue.records import Described, ImageRecord
from crawler.errors import AllenMirrorError

Point = tuple[float, float, float]


def section_centre(described: Described, image: ImageRecord) -> Point | None:
    """The reference point (µm) of the image's centre; None without alignments or a box."""
    record3d = described.alignment3d
    if image.alignment2d is None or record3d is None or image.box is None:
        return None
    if described.thickness is None:
        return None
    try:
        alignment2d = Alignment2d.from_record(image.alignment2d)
        alignment3d = Alignment3d.from_record(record3d)
    except AllenMirrorError:
        return None
    x, y, width, height = image.box
    point = image_to_reference(
        alignment2d,
        alignment3d,
        image.number,
        described.thickness,
        x + width / 2,
        y + height / 2,
    )
    values = (float(point.x), float(point.y), float(point.z))
    return values if all(math.isfinite(v) for v in values) else None
