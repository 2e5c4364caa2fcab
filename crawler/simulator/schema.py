"""The RMA models the simulator serves: field names with their types, and associations.

One static table, so that query validation (unknown model, field or association) does not
depend on which records happen to exist in a catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldType = Literal["int", "float", "str", "bool"]
Value = bool | int | float | str | None
Record = dict[str, Value]


@dataclass(frozen=True)
class Association:
    """How one model reaches another, so includes and association filters share one walk."""

    target: str
    local_key: str = "id"
    remote_key: str = "id"
    many: bool = True
    link: str | None = None  # name of a many-to-many link table in the catalogue
    link_reverse: bool = False


def _fields(spec: str, kind: FieldType) -> dict[str, FieldType]:
    return dict.fromkeys(spec.split(), kind)


_IMAGE_FIELDS: dict[str, FieldType] = {
    **_fields(
        "id data_set_id section_number x y width height image_width image_height tier_count "
        "lims1_id bits_per_component number_of_components",
        "int",
    ),
    "resolution": "float",
    **_fields("path expression_path image_type", "str"),
    **_fields("annotated failed", "bool"),
}

MODEL_FIELDS: dict[str, dict[str, FieldType]] = {
    "SectionDataSet": {
        **_fields("id plane_of_section_id specimen_id reference_space_id sphinx_id weight", "int"),
        "section_thickness": "float",
        **_fields(
            "storage_directory red_channel green_channel blue_channel qc_date "
            "transgenic_line injection_structure",
            "str",
        ),
        **_fields("failed failed_facet delegate expression", "bool"),
    },
    "Equalization": _fields(
        "id section_data_set_id red_lower red_upper green_lower green_upper blue_lower blue_upper",
        "int",
    ),
    "SectionImage": _IMAGE_FIELDS,
    "AtlasImage": _IMAGE_FIELDS,
    "Product": {"id": "int", **_fields("name abbreviation description", "str")},
    "Atlas": {**_fields("id structure_graph_id", "int"), **_fields("name description", "str")},
    "AtlasDataSet": {**_fields("id atlas_id plane_of_section_id", "int"), "name": "str"},
    "Specimen": {**_fields("id donor_id", "int"), "name": "str"},
    "Structure": {
        **_fields("id parent_structure_id graph_id", "int"),
        **_fields("acronym name", "str"),
    },
    "Alignment2d": {
        **_fields("id section_image_id", "int"),
        **_fields(" ".join(f"tsv_{i:02d} tvs_{i:02d}" for i in range(6)), "float"),
    },
    "Alignment3d": {
        **_fields("id section_data_set_id", "int"),
        **_fields(" ".join(f"trv_{i:02d} tvr_{i:02d}" for i in range(12)), "float"),
    },
    "ProjectionStructureUnionize": {
        **_fields(
            "id section_data_set_id structure_id hemisphere_id sum_pixels "
            "sum_projection_pixels max_voxel_x max_voxel_y max_voxel_z",
            "int",
        ),
        "is_injection": "bool",
        **_fields(
            "projection_volume projection_density projection_energy projection_intensity "
            "normalized_projection_volume volume sum_projection_pixel_intensity "
            "max_voxel_density",
            "float",
        ),
    },
}

_ALIGNMENT2D = Association("Alignment2d", remote_key="section_image_id", many=False)

ASSOCIATIONS: dict[str, dict[str, Association]] = {
    "SectionDataSet": {
        "section_images": Association("SectionImage", remote_key="data_set_id"),
        "equalization": Association("Equalization", remote_key="section_data_set_id", many=False),
        "products": Association("Product", link="data_set_products"),
        "specimen": Association("Specimen", local_key="specimen_id", many=False),
        "alignment3d": Association("Alignment3d", remote_key="section_data_set_id", many=False),
        "projection_structure_unionizes": Association(
            "ProjectionStructureUnionize", remote_key="section_data_set_id"
        ),
    },
    "SectionImage": {
        "section_data_set": Association("SectionDataSet", local_key="data_set_id", many=False),
        "data_set": Association("SectionDataSet", local_key="data_set_id", many=False),
        "alignment2d": _ALIGNMENT2D,
    },
    "AtlasImage": {
        "atlas_data_set": Association("AtlasDataSet", local_key="data_set_id", many=False),
        "data_set": Association("AtlasDataSet", local_key="data_set_id", many=False),
        "alignment2d": _ALIGNMENT2D,
    },
    "Equalization": {
        "section_data_set": Association(
            "SectionDataSet", local_key="section_data_set_id", many=False
        ),
    },
    "Product": {
        "section_data_sets": Association(
            "SectionDataSet", link="data_set_products", link_reverse=True
        ),
    },
    "Atlas": {"atlas_data_sets": Association("AtlasDataSet", remote_key="atlas_id")},
    "AtlasDataSet": {
        "atlases": Association("Atlas", local_key="atlas_id"),
        "atlas_images": Association("AtlasImage", remote_key="data_set_id"),
    },
    "Specimen": {"section_data_sets": Association("SectionDataSet", remote_key="specimen_id")},
    "Structure": {
        "parent_structure": Association("Structure", local_key="parent_structure_id", many=False)
    },
    "Alignment2d": {
        "section_image": Association("SectionImage", local_key="section_image_id", many=False)
    },
    "Alignment3d": {
        "section_data_set": Association(
            "SectionDataSet", local_key="section_data_set_id", many=False
        )
    },
    "ProjectionStructureUnionize": {
        "section_data_set": Association(
            "SectionDataSet", local_key="section_data_set_id", many=False
        ),
        "structure": Association("Structure", local_key="structure_id", many=False),
    },
}
