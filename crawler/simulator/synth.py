"""Deterministic synthetic catalogue holding the real ids of ALLEN_API.md §2.

Everything comes from one seeded RNG in a fixed order, so the same arguments always give the
same records; `image_scale` shrinks every pixel dimension so tests can render whole data sets.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from crawler.simulator import ontology
from crawler.simulator.alignments import alignment3d
from crawler.simulator.catalogue import Catalogue, tier_count
from crawler.simulator.schema import Record
from crawler.simulator.specimens import (
    Subject,
    insert_reference_tables,
    insert_subject,
    link_gene,
)

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
# Structures every connectivity experiment has ProjectionStructureUnionize rows for.
UNIONIZE_STRUCTURES: tuple[str, ...] = (
    "root",
    "grey",
    "Isocortex",
    "VISp",
    "VISl",
    "MOs",
    "MOp",
    "SSp",
    "TH",
)
UNIONIZE_STRUCTURES += ("HY", "CP", "HPF")
# The extra connectivity experiments cycle through these Cre lines (None: wild type) and sites.
EXTRA_LINES: tuple[str | None, ...] = (None, "Sst-IRES-Cre", "Cux2-IRES-Cre", "Rbp4-Cre_KL100")
EXTRA_LINES += ("Emx1-IRES-Cre", "Pvalb-IRES-Cre", "Vip-IRES-Cre")
EXTRA_SITES = ("VISp", "MOp", "SSp-bfd", "VISl", "CP", "LGd", "ACAd", "MOs")
EXTRA_GENES = ("Pvalb", "Calb1", "Gad1", "Penk")
DUPLICATE_JOIN_EVERY = 25
FAILED_FACET = {False: 734881840, True: 734881841}  # false's is the live value; true's is ours


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
    subject: Subject = field(default_factory=Subject)
    gene: str | None = None  # the probe of an ISH experiment
    real_image: int | None = None  # this real id sits in the middle of the series
    descending_ids: bool = False  # ids fall while section numbers rise
    failed_section: int | None = None  # index of a failed section
    equalization: tuple[int, int, int, int, int, int] | None = None


class _Builder:
    def __init__(self, seed: int, image_scale: float) -> None:
        self.rng = random.Random(seed)
        self.scale = image_scale
        self.catalogue = Catalogue(image_scale=image_scale)

    def px(self, value: int) -> int:
        return max(1, round(value * self.scale))

    def data_set(self, plan: Plan) -> None:
        cat = self.catalogue
        specimen_id = insert_subject(cat, plan.data_set_id, plan.subject)
        storage = f"/external/{plan.shape.storage}/prod{plan.data_set_id % 37}/"
        storage += f"image_series_{plan.data_set_id}/"
        data_set = cat.insert(
            "SectionDataSet",
            {
                "id": plan.data_set_id,
                "name": None,
                "rnaseq_design_id": None,
                "failed": plan.failed,
                "failed_facet": FAILED_FACET[plan.failed],
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
            },
        )
        cat.link("data_set_products", plan.data_set_id, [plan.product_id])
        if plan.gene is not None:
            link_gene(cat, plan.data_set_id, plan.gene)
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
        cat.insert("Alignment3d", alignment3d(cat.allocate_id(), data_set, sections=plan.sections))
        for index, image_id in enumerate(self.image_ids(plan)):
            image = self.image(plan, index, image_id, storage, "SectionImage")
            if plan.data_set_id == CONNECTIVITY_DATA_SET and index % DUPLICATE_JOIN_EVERY == 0:
                cat.duplicated_join_rows.add(image_id)
            cat.insert("SectionImage", image)
            cat.insert("Alignment2d", cat.alignment2d_for(image, plan.plane))
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
            "axes": None,
            "expression": None,
            "isi_experiment_id": None,
            "ophys_experiment_id": None,
            "projection_function": None,
            "specimen_id": None,
            "structure_id": None,
        }

    def unionizes(self, data_set_id: int) -> None:
        rng = self.rng
        for acronym in UNIONIZE_STRUCTURES:
            structure = ontology.by_acronym(acronym)
            assert structure is not None
            structure_id = structure.id
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
            image = cat.insert(
                "AtlasImage", self.image(plan, index, image_id, storage, "AtlasImage")
            )
            cat.insert("Alignment2d", cat.alignment2d_for(image, plane))


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
    insert_reference_tables(cat)
    conn, ish = count(140), count(20)
    plans = [
        Plan(
            CONNECTIVITY_DATA_SET,
            CONNECTIVITY,
            5,
            conn,
            subject=Subject(injection="MOp"),
            real_image=CONNECTIVITY_IMAGE,
            failed_section=conn - 1 if conn - 1 != conn // 2 else None,
            equalization=(0, 923, 0, 987, 0, 4095),
        ),
        Plan(
            VISP_DATA_SET,
            CONNECTIVITY,
            5,
            conn,
            subject=Subject(injection="VISp"),
            real_image=VISP_IMAGE,
            equalization=(0, 1200, 0, 1100, 0, 4095),
        ),
        Plan(
            FAILED_DATA_SET,
            CONNECTIVITY,
            5,
            conn,
            failed=True,
            subject=Subject("Sst-IRES-Cre", "SSp-bfd"),
            equalization=(0, 800, 0, 900, 0, 4095),
        ),
        Plan(
            ISH_DATA_SET,
            ISH,
            1,
            ish,
            plane=2,
            gene="Pdyn",
            real_image=ISH_IMAGE,
            descending_ids=True,
            failed_section=0 if ish // 2 != 0 else None,
        ),
        Plan(DEVELOPING_DATA_SET, DEVELOPING, 3, ish, plane=2, gene="Sst"),
    ]
    rng = builder.rng
    for k in range(extra_connectivity_datasets):
        plans.append(
            Plan(
                cat.allocate_id(),
                CONNECTIVITY,
                5,
                conn,
                subject=Subject(
                    EXTRA_LINES[k % len(EXTRA_LINES)], EXTRA_SITES[k % len(EXTRA_SITES)]
                ),
                failed_section=1 if k == 0 and conn > 1 else None,
                equalization=(0, rng.randint(600, 1400), 0, rng.randint(600, 1400), 0, 4095),
            )
        )
    for k in range(extra_ish_datasets):
        gene = EXTRA_GENES[k % len(EXTRA_GENES)]
        plans.append(Plan(cat.allocate_id(), ISH, 1, ish, plane=1 + k % 2, gene=gene))
    for plan in plans:
        builder.data_set(plan)
    for atlas_id, name, plane, sections in ATLASES:
        builder.atlas(atlas_id, name, plane, count(sections))
    return cat
