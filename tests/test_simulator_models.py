"""The simulator's models match the live ones: fields, associations, ontology and alignments."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from crawler.simulator import Catalogue, Simulator, ontology
from crawler.simulator.alignments import apply2, apply3, read2, read3
from crawler.simulator.schema import MODEL_FIELDS


# Recorded from the live service by public code (ALLEN_API.md §7).
def _names(text: str) -> set[str]:
    return set(text.split())


LIVE_DATA_SET_FIELDS = _names(
    "blue_channel delegate expression failed failed_facet green_channel id name "
    "plane_of_section_id qc_date red_channel reference_space_id rnaseq_design_id "
    "section_thickness specimen_id sphinx_id storage_directory weight"
)
LIVE_IMAGE_FIELDS = _names(
    "annotated axes bits_per_component data_set_id expression expression_path failed height id "
    "image_height image_type image_width isi_experiment_id lims1_id number_of_components "
    "ophys_experiment_id path projection_function resolution section_number specimen_id "
    "structure_id tier_count width x y"
)
SECTIONS = 3


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.build(sections_per_dataset=SECTIONS, extra_connectivity_datasets=6)


async def query(served: Simulator, stages: str, status: int = 200) -> Any:
    async with aiohttp.ClientSession() as http:
        url = f"{served.base_url}/api/v2/data/query.json"
        async with http.get(url, params={"criteria": stages}) as response:
            assert response.status == status, await response.text()
            return json.loads(await response.read())


def ids(envelope: dict[str, Any]) -> set[int]:
    return {row["id"] for row in envelope["msg"]}


def test_data_set_and_image_fields_are_exactly_the_live_ones(catalogue: Catalogue) -> None:
    assert set(MODEL_FIELDS["SectionDataSet"]) == LIVE_DATA_SET_FIELDS
    assert set(MODEL_FIELDS["SectionImage"]) == LIVE_IMAGE_FIELDS
    for record in catalogue.records("SectionDataSet"):
        assert set(record) == LIVE_DATA_SET_FIELDS


async def test_includes_nest_specimen_donor_lines_injections_genes_and_plane(
    served: Simulator,
) -> None:
    envelope = await query(
        served,
        "model::SectionDataSet,rma::criteria,[id$in500000001,69782969],"
        "rma::include,specimen(donor(transgenic_lines)),"
        "specimen(stereotaxic_injections(primary_injection_structure,structures)),"
        "genes,plane_of_section,rma::options[order$eq'id']",
    )
    ish, sst = envelope["msg"]
    donor = sst["specimen"]["donor"]
    assert [line["name"] for line in donor["transgenic_lines"]] == ["Sst-IRES-Cre"]
    (injection,) = sst["specimen"]["stereotaxic_injections"]  # both includes merged
    assert injection["primary_injection_structure"]["acronym"] == "SSp-bfd"
    assert injection["primary_injection_structure"]["id"] == 329
    covered = [s["id"] for s in injection["structures"]]
    assert 329 in covered and len(covered) == 3
    assert all("/329/" in s["structure_id_path"] for s in injection["structures"])
    assert sst["plane_of_section"] == {"id": 1, "name": "coronal"} and sst["genes"] == []
    assert [g["acronym"] for g in ish["genes"]] == ["Pdyn"]
    assert ish["plane_of_section"]["name"] == "sagittal"
    assert ish["specimen"]["stereotaxic_injections"] == []
    assert ish["specimen"]["donor"]["transgenic_lines"] == []


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("specimen(donor(transgenic_lines[name$eq'Sst-IRES-Cre']))", "line:Sst-IRES-Cre"),
        (
            "specimen(stereotaxic_injections(primary_injection_structure[acronym$eq'VISp']))",
            "site:VISp",
        ),
        ("genes[acronym$eq'Pdyn']", "gene:Pdyn"),
        ("plane_of_section[name$eq'sagittal']", "plane:2"),
    ],
)
async def test_association_criteria_as_clients_send_them(
    served: Simulator, catalogue: Catalogue, criteria: str, expected: str
) -> None:
    found = ids(await query(served, f"model::SectionDataSet,rma::criteria,{criteria}"))
    kind, value = expected.split(":")
    wanted = set()
    for record in catalogue.records("SectionDataSet"):
        (specimen,) = catalogue.related_by_name("SectionDataSet", "specimen", record)
        (donor,) = catalogue.related_by_name("Specimen", "donor", specimen)
        lines = catalogue.related_by_name("Donor", "transgenic_lines", donor)
        injections = catalogue.related_by_name("Specimen", "stereotaxic_injections", specimen)
        sites = [
            catalogue.get("Structure", int(str(i["primary_injection_structure_id"])))
            for i in injections
        ]
        genes = catalogue.related_by_name("SectionDataSet", "genes", record)
        matches = {
            "line": any(line["name"] == value for line in lines),
            "site": any(s is not None and s["acronym"] == value for s in sites),
            "gene": any(g["acronym"] == value for g in genes),
            "plane": str(record["plane_of_section_id"]) == value,
        }[kind]
        if matches:
            wanted.add(record["id"])
    assert wanted and found == wanted


async def test_unknown_attribute_and_association_are_refused_as_live(served: Simulator) -> None:
    for stages, message in [
        (
            "model::SectionDataSet,rma::criteria,[transgenic_line$eq'Sst-IRES-Cre']",
            "Data Access error in query: unknown attribute 'transgenic_line' for model "
            "SectionDataSet",
        ),
        (
            "model::SectionDataSet,rma::include,specimen(donor(transgenic_line))",
            "Data Access error in query: unknown association 'transgenic_line' for model Donor",
        ),
    ]:
        envelope = await query(served, stages, status=500)
        assert envelope["success"] is False and envelope["msg"] == message


async def test_section_images_with_alignment2d_and_the_data_sets_alignment3d(
    served: Simulator,
) -> None:
    envelope = await query(
        served,
        "model::SectionDataSet,rma::criteria,[id$eq100141599],"
        "rma::include,section_images(alignment2d),alignment3d",
    )
    (record,) = envelope["msg"]
    assert record["alignment3d"]["aligned_id"] == 100141599
    assert record["alignment3d"]["aligned_type"] == "DataSet"
    images = record["section_images"]
    assert len(images) == SECTIONS
    assert all(i["alignment2d"]["section_image_id"] == i["id"] for i in images)


def _identity_error2(forward: Any, backward: Any) -> float:
    worst = 0.0
    for x, y in ((0.0, 0.0), (30000.0, 0.0), (0.0, 20000.0), (12345.0, 6789.0)):
        bx, by = apply2(backward, *apply2(forward, x, y))
        worst = max(worst, abs(bx - x), abs(by - y))
    return worst


def test_alignments_are_inverse_pairs_with_live_magnitudes() -> None:
    catalogue = Catalogue.build(sections_per_dataset=140, extra_connectivity_datasets=0)
    for data_set_id, resolution in ((100141599, 0.35), (69782969, 1.049)):
        data_set = catalogue.get("SectionDataSet", data_set_id)
        assert data_set is not None
        (alignment3d,) = catalogue.lookup("Alignment3d", "aligned_id", data_set_id)
        tvr, trv = read3(alignment3d, "tvr"), read3(alignment3d, "trv")
        images = catalogue.lookup("SectionImage", "data_set_id", data_set_id)
        for image in images[:: len(images) // 5]:
            (alignment2d,) = catalogue.lookup("Alignment2d", "section_image_id", image["id"])
            tsv, tvs = read2(alignment2d, "tsv"), read2(alignment2d, "tvs")
            # tsv scales by the image's µm per pixel; tvs undoes it (under half a pixel).
            assert abs(tsv[0][0] ** 2 + tsv[0][1] ** 2 - resolution**2) < 0.05 * resolution**2
            assert _identity_error2(tsv, tvs) < 0.5
            # The image lands on the brain (13.2 x 8 x 11.4 mm); scans keep some slide around it.
            depth = float(str(image["section_number"])) * float(str(data_set["section_thickness"]))
            x0, y0 = float(str(image["x"])), float(str(image["y"]))
            x1, y1 = x0 + float(str(image["width"])), y0 + float(str(image["height"]))
            for corner in ((x0, y0), (x1, y0), (x0, y1), (x1, y1)):
                volume = (*apply2(tsv, *corner), depth)
                reference = apply3(tvr, *volume)
                assert -3000 < reference[0] < 16200 and -3000 < reference[1] < 11000
                assert -3000 < reference[2] < 14400
                back = apply3(trv, *reference)
                assert max(abs(b - v) for b, v in zip(back, volume, strict=True)) < 0.5


def test_catalogue_is_deterministic() -> None:
    first, second = Catalogue.build(sections_per_dataset=2), Catalogue.build(sections_per_dataset=2)
    assert first.tables == second.tables and first.links == second.links


def test_ontology_holds_the_real_structures_with_consistent_paths() -> None:
    for structure_id, acronym, name in [
        (997, "root", "root"),
        (8, "grey", "Basic cell groups and regions"),
        (315, "Isocortex", "Isocortex"),
        (385, "VISp", "Primary visual area"),
        (593, "VISp1", "Primary visual area, layer 1"),
        (985, "MOp", "Primary motor area"),
        (322, "SSp", "Primary somatosensory area"),
        (382, "CA1", "Field CA1"),
        (672, "CP", "Caudoputamen"),
    ]:
        structure = ontology.by_id(structure_id)
        assert (structure.acronym, structure.name) == (acronym, name)
        assert ontology.by_acronym(acronym) == structure
    assert ontology.by_id(385).structure_id_path == "/997/8/567/688/695/315/669/385/"
    assert {s.acronym for s in ontology.children(385)} == {
        "VISp1", "VISp2/3", "VISp4", "VISp5", "VISp6a", "VISp6b",
    }  # fmt: skip
    assert 200 <= len(ontology.STRUCTURES) <= 500
    orders = [s.graph_order for s in ontology.STRUCTURES]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    for structure in ontology.STRUCTURES:
        if structure.parent_structure_id is not None:
            parent = ontology.by_id(structure.parent_structure_id)
            assert structure.structure_id_path == f"{parent.structure_id_path}{structure.id}/"
            assert structure.depth == parent.depth + 1


def test_ontology_tree_nests_every_structure_once() -> None:
    root = ontology.tree()
    assert root["id"] == 997 and root["parent_structure_id"] is None
    seen: list[int] = []

    def walk(node: dict[str, Any]) -> None:
        seen.append(int(node["id"]))
        for child in node["children"]:
            assert child["parent_structure_id"] == node["id"]
            walk(child)

    walk(root)
    assert sorted(seen) == sorted(s.id for s in ontology.STRUCTURES)
    descendants = {s.acronym for s in ontology.descendants(322)}
    assert {"SSp-bfd", "SSp-bfd4", "SSp1"} <= descendants and "SSp" not in descendants
