"""Who and what each synthetic experiment is about: specimens, donors, Cre lines, injections, genes.

The reference tables hold real names: Cre driver lines as the connectivity atlas lists them,
genes with their real symbols, names and Entrez ids, injection sites at real CCF structures
with plausible stereotaxic coordinates (mm from bregma). Their database ids are ours. Each
experiment's records are drawn from an RNG seeded by its data set id, so adding an experiment
never changes another.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from crawler.simulator import ontology
from crawler.simulator.catalogue import Catalogue
from crawler.simulator.schema import Record

# (name, stock number, originating lab): Cre drivers used by the connectivity atlas.
TRANSGENIC_LINES: tuple[tuple[str, str | None, str], ...] = (
    ("Sst-IRES-Cre", "013044", "Z. Josh Huang"),
    ("Cux2-IRES-Cre", None, "Ulrich Mueller"),
    ("Rbp4-Cre_KL100", None, "GENSAT"),
    ("Emx1-IRES-Cre", "005628", "Kevin Jones"),
    ("Pvalb-IRES-Cre", "008069", "Silvia Arber"),
    ("Vip-IRES-Cre", "010908", "Z. Josh Huang"),
    ("Ntsr1-Cre_GN220", None, "GENSAT"),
    ("Scnn1a-Tg3-Cre", "009613", "Hongkui Zeng"),
    ("Gad2-IRES-Cre", "010802", "Z. Josh Huang"),
)
# (symbol, name, Entrez id, chromosome): genes of the synthetic ISH experiments.
GENES: tuple[tuple[str, str, int, int], ...] = (
    ("Pdyn", "prodynorphin", 18610, 2),
    ("Sst", "somatostatin", 20604, 16),
    ("Pvalb", "parvalbumin", 19293, 15),
    ("Calb1", "calbindin 1", 12307, 4),
    ("Gad1", "glutamate decarboxylase 1", 14415, 2),
    ("Penk", "preproenkephalin", 18619, 4),
)
# Injection sites: acronym -> (AP, ML, DV) in mm from bregma.
INJECTION_SITES: dict[str, tuple[float, float, float]] = {
    "VISp": (-3.8, 2.5, 0.6),
    "MOp": (1.0, 1.5, 0.8),
    "SSp-bfd": (-1.6, 3.1, 0.8),
    "VISl": (-3.9, 3.8, 0.7),
    "CP": (0.5, 2.0, 3.0),
    "LGd": (-2.3, 2.3, 2.7),
    "ACAd": (1.0, 0.3, 1.0),
    "MOs": (2.0, 1.0, 0.8),
}
PLANES = ((1, "coronal"), (2, "sagittal"))
MOUSE = 2  # Organism id of Mus musculus
WILD_TYPE_VIRUS = "AAV2/1.pSynI.EGFP.WPRE.bGH"
CRE_VIRUS = "AAV2/1.pCAG.FLEX.EGFP.WPRE.bGH"


@dataclass(frozen=True)
class Subject:
    """What one data set's specimen is: its Cre line (None: wild type) and injection site."""

    line: str | None = None
    injection: str | None = None


def insert_reference_tables(cat: Catalogue) -> None:
    """Planes, the ontology subset, Cre lines and genes: the tables experiments point into."""
    for plane_id, name in PLANES:
        cat.insert("PlaneOfSection", {"id": plane_id, "name": name})
    cat.insert("StructureGraph", ontology.graph_record())
    for structure in ontology.STRUCTURES:
        cat.insert("Structure", ontology.record(structure))
    for name, stock, lab in TRANSGENIC_LINES:
        cat.insert(
            "TransgenicLine",
            {
                "id": cat.allocate_id(),
                "name": name,
                "stock_number": stock,
                "transgenic_line_type_name": "driver",
                "transgenic_line_type_code": "D",
                "transgenic_line_source_name": "JAX" if stock else "MMRRC",
                "originating_lab": lab,
                "url_prefix": "http://jaxmice.jax.org/strain/" if stock else None,
                "url_suffix": ".html" if stock else None,
                "description": f"{name} (Cre recombinase driver)",
                "sub_image_annotation_id": None,
            },
        )
    for symbol, name, entrez, chromosome in GENES:
        cat.insert(
            "Gene",
            {
                "id": cat.allocate_id(),
                "acronym": symbol,
                "name": name,
                "original_symbol": symbol,
                "original_name": name,
                "entrez_id": entrez,
                "organism_id": MOUSE,
                "chromosome_id": chromosome,
                "homologene_id": None,
                "ensembl_id": None,
                "sphinx_id": entrez % 100000,
            },
        )


def _one(cat: Catalogue, model: str, field: str, value: str) -> Record:
    found = cat.lookup(model, field, value)
    if not found:
        raise ValueError(f"no {model} with {field} {value!r} in the reference tables")
    return found[0]


def insert_subject(cat: Catalogue, data_set_id: int, subject: Subject) -> int:
    """Donor, specimen, Cre line link and injection of one experiment; returns the specimen id."""
    rng = random.Random(f"specimen:{data_set_id}")
    donor_id, specimen_id = cat.allocate_id(), cat.allocate_id()
    label = f"{subject.line or 'C57BL/6J'}-{rng.randint(100000, 399999)}"
    sex = rng.choice(("M", "F"))
    cat.insert(
        "Donor",
        {
            "id": donor_id,
            "name": label,
            "age_id": 15,  # P56
            "organism_id": MOUSE,
            "strain": "C57BL/6J",
            "sex": sex,
            "sex_full_name": "Male" if sex == "M" else "Female",
            "transgenic_mouse_id": None,
            "external_donor_name": label.rsplit("-", 1)[1],
            "tags": None,
        },
    )
    if subject.line is not None:
        line_id = _one(cat, "TransgenicLine", "name", subject.line)["id"]
        assert isinstance(line_id, int)
        cat.link("donor_transgenic_lines", donor_id, [line_id])
    cat.insert(
        "Specimen",
        {
            "id": specimen_id,
            "name": label,
            "donor_id": donor_id,
            "parent_id": None,
            "structure_id": None,
            "hemisphere": None,
            "specimen_id_path": f"/{specimen_id}/",
            "external_specimen_name": label.rsplit("-", 1)[1],
        },
    )
    if subject.injection is not None:
        _insert_injection(cat, rng, specimen_id, subject)
    return specimen_id


def _insert_injection(
    cat: Catalogue, rng: random.Random, specimen_id: int, subject: Subject
) -> None:
    assert subject.injection is not None
    site = ontology.by_acronym(subject.injection)
    if site is None or subject.injection not in INJECTION_SITES:
        raise ValueError(f"no injection site {subject.injection!r}")
    ap, ml, dv = INJECTION_SITES[subject.injection]
    injection_id = cat.allocate_id()
    cat.insert(
        "Injection",
        {
            "id": injection_id,
            "specimen_id": specimen_id,
            "injection_quality": None,
            "days_post_injection": 21,
            "targeted_injection_structure_id": site.id,
            "injection_method": "iontophoresis",
            "angle": 0,
            "coordinates_ap": f"{ap + rng.uniform(-0.1, 0.1):.2f}",
            "coordinates_ml": f"{ml + rng.uniform(-0.1, 0.1):.2f}",
            "coordinates_dv": f"{dv + rng.uniform(-0.05, 0.05):.2f}",
            "primary_injection_structure_id": site.id,
            "injection_materials": CRE_VIRUS if subject.line else WILD_TYPE_VIRUS,
            "fluor_colors": "green",
            "structure_id": site.id,
            "age_id": 15,
        },
    )
    # The structures the injection covered: its site and two of the site's layers or parts.
    covered = [site.id, *(s.id for s in ontology.children(site.id)[1:3])]
    cat.link("injection_structures", injection_id, covered)


def link_gene(cat: Catalogue, data_set_id: int, symbol: str) -> None:
    """The gene an ISH data set probes."""
    gene_id = _one(cat, "Gene", "acronym", symbol)["id"]
    assert isinstance(gene_id, int)
    cat.link("data_set_genes", data_set_id, [gene_id])
