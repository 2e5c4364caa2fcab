"""The RMA models the simulator serves: field names with their types, and associations.

One static table, so that query validation (unknown model, field or association) does not
depend on which records happen to exist in a catalogue. Field and association names are the
live service's (ALLEN_API.md §2, §7): a name it does not know must not work here either.
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


# Live SectionImage fields (ALLEN_API.md §7); AtlasImage records carry the same ones.
_IMAGE_FIELDS: dict[str, FieldType] = {
    **_fields(
        "id data_set_id section_number x y width height image_width image_height tier_count "
        "lims1_id bits_per_component number_of_components isi_experiment_id "
        "ophys_experiment_id specimen_id structure_id",
        "int",
    ),
    "resolution": "float",
    **_fields("path expression_path image_type axes projection_function", "str"),
    **_fields("annotated failed expression", "bool"),
}

MODEL_FIELDS: dict[str, dict[str, FieldType]] = {
    # Exactly the fields of a live SectionDataSet record (ALLEN_API.md §7).
    "SectionDataSet": {
        **_fields(
            "id plane_of_section_id specimen_id reference_space_id sphinx_id weight "
            "failed_facet rnaseq_design_id",
            "int",
        ),
        "section_thickness": "float",
        **_fields("name storage_directory red_channel green_channel blue_channel qc_date", "str"),
        **_fields("failed delegate expression", "bool"),
    },
    "Equalization": _fields(
        "id section_data_set_id red_lower red_upper green_lower green_upper blue_lower blue_upper",
        "int",
    ),
    "SectionImage": _IMAGE_FIELDS,
    "AtlasImage": _IMAGE_FIELDS,
    "Product": {"id": "int", **_fields("name abbreviation description", "str")},
    "PlaneOfSection": {"id": "int", "name": "str"},
    "Atlas": {**_fields("id structure_graph_id", "int"), **_fields("name description", "str")},
    "AtlasDataSet": {**_fields("id atlas_id plane_of_section_id", "int"), "name": "str"},
    "Specimen": {
        **_fields("id donor_id parent_id structure_id", "int"),
        **_fields("name hemisphere specimen_id_path external_specimen_name", "str"),
    },
    "Donor": {
        **_fields("id age_id organism_id transgenic_mouse_id", "int"),
        **_fields("name strain sex sex_full_name external_donor_name tags", "str"),
    },
    "TransgenicLine": {
        **_fields("id sub_image_annotation_id", "int"),
        **_fields(
            "name stock_number transgenic_line_type_name transgenic_line_type_code "
            "transgenic_line_source_name originating_lab url_prefix url_suffix description",
            "str",
        ),
    },
    "Injection": {
        **_fields(
            "id specimen_id days_post_injection targeted_injection_structure_id angle "
            "primary_injection_structure_id structure_id age_id",
            "int",
        ),
        **_fields(
            "injection_quality injection_method coordinates_ap coordinates_ml coordinates_dv "
            "injection_materials fluor_colors",
            "str",
        ),
    },
    "Structure": {
        **_fields(
            "id atlas_id depth graph_id graph_order hemisphere_id ontology_id "
            "parent_structure_id st_level weight",
            "int",
        ),
        **_fields("acronym name safe_name color_hex_triplet structure_id_path", "str"),
        "failed": "bool",
    },
    "StructureGraph": {"id": "int", "ontology_id": "int", **_fields("name description", "str")},
    "Gene": {
        **_fields("id entrez_id organism_id chromosome_id homologene_id sphinx_id", "int"),
        **_fields("acronym name original_symbol original_name ensembl_id", "str"),
    },
    "Alignment2d": {
        **_fields("id section_image_id", "int"),
        **_fields(" ".join(f"tsv_{i:02d} tvs_{i:02d}" for i in range(6)), "float"),
    },
    "Alignment3d": {
        **_fields("id aligned_id", "int"),
        "aligned_type": "str",
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


def _belongs_to(target: str, key: str) -> Association:
    return Association(target, local_key=key, many=False)


_ALIGNMENT2D = Association("Alignment2d", remote_key="section_image_id", many=False)
_DATA_SET = _belongs_to("SectionDataSet", "data_set_id")

# Association names as the live service spells them; links name many-to-many tables.
ASSOCIATIONS: dict[str, dict[str, Association]] = {
    "SectionDataSet": {
        "section_images": Association("SectionImage", remote_key="data_set_id"),
        "sub_images": Association("SectionImage", remote_key="data_set_id"),  # AllenSDK's name
        "equalization": Association("Equalization", remote_key="section_data_set_id", many=False),
        "products": Association("Product", link="data_set_products"),
        "specimen": _belongs_to("Specimen", "specimen_id"),
        "genes": Association("Gene", link="data_set_genes"),
        "plane_of_section": _belongs_to("PlaneOfSection", "plane_of_section_id"),
        "alignment3d": Association("Alignment3d", remote_key="aligned_id", many=False),
        "projection_structure_unionizes": Association(
            "ProjectionStructureUnionize", remote_key="section_data_set_id"
        ),
    },
    "SectionImage": {
        "section_data_set": _DATA_SET,
        "data_set": _DATA_SET,
        "alignment2d": _ALIGNMENT2D,
    },
    "AtlasImage": {
        "atlas_data_set": _belongs_to("AtlasDataSet", "data_set_id"),
        "data_set": _belongs_to("AtlasDataSet", "data_set_id"),
        "alignment2d": _ALIGNMENT2D,
    },
    "Equalization": {"section_data_set": _belongs_to("SectionDataSet", "section_data_set_id")},
    "Product": {
        "section_data_sets": Association(
            "SectionDataSet", link="data_set_products", link_reverse=True
        ),
    },
    "PlaneOfSection": {
        "section_data_sets": Association("SectionDataSet", remote_key="plane_of_section_id")
    },
    "Atlas": {"atlas_data_sets": Association("AtlasDataSet", remote_key="atlas_id")},
    "AtlasDataSet": {
        "atlases": Association("Atlas", local_key="atlas_id"),
        "atlas_images": Association("AtlasImage", remote_key="data_set_id"),
    },
    "Specimen": {
        "donor": _belongs_to("Donor", "donor_id"),
        "stereotaxic_injections": Association("Injection", remote_key="specimen_id"),
        "section_data_sets": Association("SectionDataSet", remote_key="specimen_id"),
        "structure": _belongs_to("Structure", "structure_id"),
    },
    "Donor": {
        "specimens": Association("Specimen", remote_key="donor_id"),
        "transgenic_lines": Association("TransgenicLine", link="donor_transgenic_lines"),
    },
    "TransgenicLine": {
        "donors": Association("Donor", link="donor_transgenic_lines", link_reverse=True)
    },
    "Injection": {
        "specimen": _belongs_to("Specimen", "specimen_id"),
        "structure": _belongs_to("Structure", "structure_id"),
        "primary_injection_structure": _belongs_to("Structure", "primary_injection_structure_id"),
        "targeted_injection_structure": _belongs_to("Structure", "targeted_injection_structure_id"),
        "structures": Association("Structure", link="injection_structures"),
    },
    "Structure": {
        "parent_structure": _belongs_to("Structure", "parent_structure_id"),
        "structure_graph": _belongs_to("StructureGraph", "graph_id"),
    },
    "StructureGraph": {"structures": Association("Structure", remote_key="graph_id")},
    "Gene": {"data_sets": Association("SectionDataSet", link="data_set_genes", link_reverse=True)},
    "Alignment2d": {"section_image": _belongs_to("SectionImage", "section_image_id")},
    "Alignment3d": {"section_data_set": _belongs_to("SectionDataSet", "aligned_id")},
    "ProjectionStructureUnionize": {
        "section_data_set": _belongs_to("SectionDataSet", "section_data_set_id"),
        "structure": _belongs_to("Structure", "structure_id"),
    },
}
