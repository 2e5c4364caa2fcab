"""Atlas coordinates offline: the image synchronization service, the ontology, the CCF volumes.

Pure and vectorised (numpy): every function takes scalars or arrays of coordinates; the only
I/O is reading a mirrored structure graph or NRRD volume. Reference coordinates are µm on the
service's axes x, y, z (posterior, inferior, right); image coordinates are full-resolution
pixels of the image, as the live service takes and gives them.

Example, with records as ``dataset.json`` keeps them (the API's field names)::

    from pathlib import Path
    from crawler.atlas import (
        Alignment2d, Alignment3d, image_to_reference, reference_to_image,
        series_from_records, full_resolution, read_ontology, read_volume, structure_at,
    )

    image = {"id": 102146167, "section_number": 70, "alignment2d": {"tsv_00": ..., ...}}
    data_set = {"id": 100141599, "section_thickness": 100.0, "alignment3d": {"tvr_00": ..., ...}}

    # image_to_reference: a pixel of tier 4 (--downsample 4) -> CCF µm
    x, y = full_resolution(1200, 4), full_resolution(800, 4)
    point = image_to_reference(
        Alignment2d.from_record(image["alignment2d"]),
        Alignment3d.from_record(data_set["alignment3d"]),
        image["section_number"], data_set["section_thickness"], x, y,
    )
    print(float(point.x), float(point.y), float(point.z))   # arrays in, arrays out

    # reference_to_image: a CCF point -> nearest section image and its pixel
    series = series_from_records(data_set, [image, ...])    # every image of the data set
    hit = reference_to_image(series, 7000.0, 4000.0, 5000.0)
    print(hit.section_data_set_id, int(hit.section_image_id), int(hit.section_number),
          float(hit.x), float(hit.y))

    # the structure at that point (CCF 2017 annotation at 25 µm)
    ontology = read_ontology(Path("OUT/ccf/structure_graph_1.json"))
    volume = read_volume(Path("OUT/ccf/annotation_25.nrrd"))
    sid = int(structure_at(volume.data, volume.resolution_um, point.x, point.y, point.z))
    name = ontology.by_id[sid].name if sid else None        # 0: outside the brain
    ids_in_isocortex = ontology.descendants("Isocortex")

A missing alignment raises ``crawler.errors.NoAlignmentError``; numbers are never invented.
"""

from crawler.atlas.annotation import Volume, read_volume, structure_at
from crawler.atlas.imagesync import (
    ImagePoint,
    ReferencePoint,
    Section,
    SectionSeries,
    full_resolution,
    image_to_reference,
    nearest_section,
    reference_to_image,
    series_from_records,
    tier_pixel,
)
from crawler.atlas.ontology import Ontology, Structure, ontology_from_document, read_ontology
from crawler.atlas.transforms import Alignment2d, Alignment3d, affine_from_record

__all__ = [
    "Alignment2d",
    "Alignment3d",
    "ImagePoint",
    "Ontology",
    "ReferencePoint",
    "Section",
    "SectionSeries",
    "Structure",
    "Volume",
    "affine_from_record",
    "full_resolution",
    "image_to_reference",
    "nearest_section",
    "ontology_from_document",
    "read_ontology",
    "read_volume",
    "reference_to_image",
    "series_from_records",
    "structure_at",
    "tier_pixel",
]
