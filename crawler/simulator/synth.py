"""Deterministic synthetic catalogue holding the real ids of ALLEN_API.md §2.

Everything comes from one seeded RNG in a fixed order, so the same arguments always give the
same records; `image_scale` shrinks every pixel dimension so tests can render whole data sets.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from crawler.simulator.catalogue import Catalogue, alignment2d_record, tier_count
from crawler.simulator.schema import Record

CONNECTIVITY_DATA_SET = 100141599
CONNECTIVITY_IMAGE = 102146167
VISP_DATA_SET = 126862385
VISP_IMAGE = 126862583
ISH_DATA_SET = 69782969
ISH_IMAGE = 69750516
ATLAS_IMAGE = 100883869
FAILED_DATA_SET = 500000001
DEVELOPING_DATA_SET = 500000002
ATLAS_DATA_SETS = {1: 500000101, 2: 500000102, 602630314: 500000103}

PRODUCTS = [
    (1, "Mouse Brain", "Mouse"),
    (3, "Developing Mouse Brain", "DevMouse"),
    (5, "Mouse Connectivity Projection", "MouseConn"),
]
ATLASES = [
    (1, "Mouse, P56, Coronal", 1, 132),
    (2, "Mouse, P56, Sagittal", 2, 21),
    (602630314, "Mouse, Adult, 3D Coronal", 1, 132),
]
STRUCTURES = [
    (997, "root", "root", None),
    (8, "grey", "Basic cell groups and regions", 997),
    (315, "Isocortex", "Isocortex", 8),
    (385, "VISp", "Primary visual area", 315),
    (409, "VISl", "Lateral visual area", 315),
    (993, "MOs", "Secondary motor area", 315),
    (985, "MOp", "Primary motor area", 315),
    (322, "SSp", "Primary somatosensory area", 315),
    (549, "TH", "Thalamus", 8),
    (1097, "HY", "Hypothalamus", 8),
    (672, "CP", "Caudoputamen", 8),
    (1089, "HPF", "Hippocampal formation", 8),
]
TRANSGENIC_LINES = ["", "Sst-IRES-Cre", "Cux2-IRES-Cre", "Rbp4-Cre_KL100", "Emx1-IRES-Cre"]
INJECTION_STRUCTURES = ["VISp", "MOp", "SSp", "VISl", "CP", "TH"]
DUPLICATE_JOIN_EVERY = 25


@dataclass(frozen=True)
class Shape:
    """Per-kind image geometry ranges at full resolution (§2, §3 sizes)."""

    widths: tuple[int, int]
    heights: tuple[int, int]
    resolution: float
    thickness: float
    storage: str


CONNECTIVITY = Shape((25000, 30000), (16000, 21000), 0.35, 50.0, "mouseconn")
ISH = Shape((12000, 16000), (6500, 8500), 1.049, 25.0, "aibsdata")
DEVELOPING = Shape((8000, 11000), (5000, 7000), 1.63, 20.0, "devmouse")
ATLAS = Shape((10000, 12000), (7500, 8500), 1.047, 100.0, "atlas")


@dataclass(frozen=True)
class Plan:
    """What one data set should contain, before ids and geometry are drawn."""

    data_set_id: int
    shape: Shape
    product_id: int
    sections: int
    plane: int = 1
    failed: bool = False
    transgenic_line: str = ""
    injection_structure: str = ""
    real_image: int | None = None  # this real id sits in the middle of the series
    descending_ids: bool = False  # ids fall while section numbers rise
    failed_section: int | None = None  # index of a failed section
    equalization: tuple[int, int, int, int, int, int] | None = None


class _Builder:
    def __init__(self, seed: int, image_scale: float) -> None:
        self.rng = random.Random(seed)
        self.scale = image_scale
        self.catalogue = Catalogue()

    def px(self, value: int) -> int:
        return max(1, round(value * self.scale))

    def data_set(self, plan: Plan) -> None:
        cat, rng = self.catalogue, self.rng
        specimen_id = cat.allocate_id()
        cat.insert("Specimen", {"id": specimen_id, "donor_id": specimen_id + 1, "name": "S"})
        storage = f"/external/{plan.shape.storage}/prod{plan.data_set_id % 37}/"
        storage += f"image_series_{plan.data_set_id}/"
        cat.insert(
            "SectionDataSet",
            {
                "id": plan.data_set_id,
                "failed": plan.failed,
                "failed_facet": plan.failed,
                "plane_of_section_id": plan.plane,
                "section_thickness": plan.shape.thickness,
                "specimen_id": specimen_id,
                "reference_space_id": 9 if plan.plane == 1 else 10,
                "storage_directory": storage,
                "red_channel": "rAAV" if plan.product_id == 5 else "",
                "green_channel": "",
                "blue_channel": "DAPI" if plan.product_id == 5 else "",
                "delegate": False,
                "expression": plan.product_id != 5,
                "qc_date": f"2011-{1 + plan.data_set_id % 12:02d}-15T00:00:00Z",
                "sphinx_id": plan.data_set_id % 100000,
                "weight": 5000,
                "transgenic_line": plan.transgenic_line,
                "injection_structure": plan.injection_structure,
            },
        )
        cat.link("data_set_products", plan.data_set_id, [plan.product_id])
        if plan.equalization is not None:
            rl, ru, gl, gu, bl, bu = plan.equalization
            cat.insert(
                "Equalization",
                {
                    "id": cat.allocate_id(),
                    "section_data_set_id": plan.data_set_id,
                    "red_lower": rl,
                    "red_upper": ru,
                    "green_lower": gl,
                    "green_upper": gu,
                    "blue_lower": bl,
                    "blue_upper": bu,
                },
            )
        alignment: Record = {"id": cat.allocate_id(), "section_data_set_id": plan.data_set_id}
        for i in range(12):
            alignment[f"trv_{i:02d}"] = round(rng.uniform(-1, 1), 6)
            alignment[f"tvr_{i:02d}"] = round(rng.uniform(-1, 1), 6)
        cat.insert("Alignment3d", alignment)
        for index, image_id in enumerate(self.image_ids(plan)):
            image = self.image(plan, index, image_id, storage, "SectionImage")
            if plan.data_set_id == CONNECTIVITY_DATA_SET and index % DUPLICATE_JOIN_EVERY == 0:
                cat.duplicated_join_rows.add(image_id)
            cat.insert("SectionImage", image)
            cat.insert("Alignment2d", alignment2d_record(cat.allocate_id(), image_id))
        if plan.product_id == 5:
            self.unionizes(plan.data_set_id)

    def image_ids(self, plan: Plan) -> list[int]:
        if plan.real_image is None:
            return [self.catalogue.allocate_id() for _ in range(plan.sections)]
        middle = plan.sections // 2
        step = -1 if plan.descending_ids else 1
        return [plan.real_image + step * (i - middle) for i in range(plan.sections)]

    def image(self, plan: Plan, index: int, image_id: int, storage: str, model: str) -> Record:
        rng, shape = self.rng, plan.shape
        if image_id == ISH_IMAGE:
            width, height = self.px(14065), self.px(7297)
        else:
            width, height = (
                self.px(rng.randint(*shape.widths)),
                self.px(rng.randint(*shape.heights)),
            )
        x, y = self.px(rng.randint(200, 1500)), self.px(rng.randint(200, 1500))
        is_ish = shape in (ISH, DEVELOPING)
        return {
            "id": image_id,
            "data_set_id": plan.data_set_id,
            "section_number": index + 1,
            "x": x,
            "y": y,
            "width": width,
            "height": height,
            "image_width": x + width + self.px(rng.randint(200, 1500)),
            "image_height": y + height + self.px(rng.randint(200, 1500)),
            "resolution": shape.resolution,
            "tier_count": tier_count(width, height),
            "path": f"{storage}{plan.data_set_id}_{image_id}.aff",
            "expression_path": f"{storage}{plan.data_set_id}_{image_id}_expression.aff"
            if is_ish
            else None,
            "image_type": "Atlas" if model == "AtlasImage" else "Primary",
            "annotated": model == "AtlasImage",
            "failed": index == plan.failed_section,
            "lims1_id": image_id,
            "bits_per_component": 8,
            "number_of_components": 3,
        }

    def unionizes(self, data_set_id: int) -> None:
        rng = self.rng
        for structure_id, *_ in STRUCTURES:
            for hemisphere_id in (1, 2, 3):
                for is_injection in (False, True):
                    volume = round(rng.uniform(0.01, 2.0), 6)
                    density = round(rng.uniform(0.0, 0.3), 6)
                    pixels = rng.randint(10_000, 5_000_000)
                    self.catalogue.insert(
                        "ProjectionStructureUnionize",
                        {
                            "id": self.catalogue.allocate_id(),
                            "section_data_set_id": data_set_id,
                            "structure_id": structure_id,
                            "hemisphere_id": hemisphere_id,
                            "is_injection": is_injection,
                            "projection_volume": round(volume * density, 6),
                            "projection_density": density,
                            "projection_energy": round(density * rng.uniform(50, 500), 6),
                            "projection_intensity": round(rng.uniform(50, 500), 6),
                            "normalized_projection_volume": round(rng.uniform(0, 1), 6),
                            "volume": volume,
                            "sum_pixels": pixels,
                            "sum_projection_pixels": int(pixels * density),
                            "sum_projection_pixel_intensity": round(pixels * density * 200, 1),
                            "max_voxel_density": round(rng.uniform(0, 1), 6),
                            "max_voxel_x": rng.randint(0, 13200),
                            "max_voxel_y": rng.randint(0, 8000),
                            "max_voxel_z": rng.randint(0, 11400),
                        },
                    )

    def atlas(self, atlas_id: int, name: str, plane: int, sections: int) -> None:
        cat = self.catalogue
        cat.insert(
            "Atlas", {"id": atlas_id, "name": name, "description": name, "structure_graph_id": 1}
        )
        data_set_id = ATLAS_DATA_SETS[atlas_id]
        cat.insert(
            "AtlasDataSet",
            {"id": data_set_id, "atlas_id": atlas_id, "plane_of_section_id": plane, "name": name},
        )
        plan = Plan(data_set_id, ATLAS, 0, sections, plane=plane)
        if atlas_id == 1:
            plan = Plan(data_set_id, ATLAS, 0, sections, plane=plane, real_image=ATLAS_IMAGE)
        storage = f"/external/atlas/prod{atlas_id % 37}/atlas_{atlas_id}/"
        for index, image_id in enumerate(self.image_ids(plan)):
            cat.insert("AtlasImage", self.image(plan, index, image_id, storage, "AtlasImage"))
            cat.insert("Alignment2d", alignment2d_record(cat.allocate_id(), image_id))


def build_catalogue(
    seed: int = 0,
    sections_per_dataset: int | None = None,
    extra_connectivity_datasets: int = 6,
    extra_ish_datasets: int = 2,
    image_scale: float = 1.0,
) -> Catalogue:
    """Build the catalogue; `sections_per_dataset` overrides every series length (≥ 1)."""
    if sections_per_dataset is not None and sections_per_dataset < 1:
        raise ValueError("sections_per_dataset must be at least 1")
    if image_scale <= 0:
        raise ValueError("image_scale must be positive")

    def count(default: int) -> int:
        return default if sections_per_dataset is None else sections_per_dataset

    builder = _Builder(seed, image_scale)
    cat = builder.catalogue
    for product_id, name, abbreviation in PRODUCTS:
        cat.insert(
            "Product",
            {"id": product_id, "name": name, "abbreviation": abbreviation, "description": name},
        )
    for structure_id, acronym, name, parent in STRUCTURES:
        cat.insert(
            "Structure",
            {
                "id": structure_id,
                "acronym": acronym,
                "name": name,
                "parent_structure_id": parent,
                "graph_id": 1,
            },
        )
    conn, ish = count(140), count(20)
    plans = [
        Plan(
            CONNECTIVITY_DATA_SET,
            CONNECTIVITY,
            5,
            conn,
            injection_structure="MOp",
            real_image=CONNECTIVITY_IMAGE,
            failed_section=conn - 1 if conn - 1 != conn // 2 else None,
            equalization=(0, 923, 0, 987, 0, 4095),
        ),
        Plan(
            VISP_DATA_SET,
            CONNECTIVITY,
            5,
            conn,
            injection_structure="VISp",
            real_image=VISP_IMAGE,
            equalization=(0, 1200, 0, 1100, 0, 4095),
        ),
        Plan(
            FAILED_DATA_SET,
            CONNECTIVITY,
            5,
            conn,
            failed=True,
            transgenic_line="Sst-IRES-Cre",
            injection_structure="SSp",
            equalization=(0, 800, 0, 900, 0, 4095),
        ),
        Plan(
            ISH_DATA_SET,
            ISH,
            1,
            ish,
            plane=2,
            real_image=ISH_IMAGE,
            descending_ids=True,
            failed_section=0 if ish // 2 != 0 else None,
        ),
        Plan(DEVELOPING_DATA_SET, DEVELOPING, 3, ish, plane=2),
    ]
    rng = builder.rng
    for k in range(extra_connectivity_datasets):
        plans.append(
            Plan(
                cat.allocate_id(),
                CONNECTIVITY,
                5,
                conn,
                transgenic_line=TRANSGENIC_LINES[k % len(TRANSGENIC_LINES)],
                injection_structure=INJECTION_STRUCTURES[k % len(INJECTION_STRUCTURES)],
                failed_section=1 if k == 0 and conn > 1 else None,
                equalization=(0, rng.randint(600, 1400), 0, rng.randint(600, 1400), 0, 4095),
            )
        )
    for k in range(extra_ish_datasets):
        plans.append(Plan(cat.allocate_id(), ISH, 1, ish, plane=1 + k % 2))
    for plan in plans:
        builder.data_set(plan)
    for atlas_id, name, plane, sections in ATLASES:
        builder.atlas(atlas_id, name, plane, count(sections))
    return cat
