"""The simulator's structure graph, CCF volumes and image synchronization services."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import nrrd
import numpy as np
import pytest

from crawler.simulator import ThreadedSimulator, ontology
from crawler.simulator.ccf_volumes import ARCHIVE_PREFIX, label_at, volume_shape
from crawler.simulator.synth import CONNECTIVITY_DATA_SET, ISH_DATA_SET

NODE_FIELDS = {
    "id", "acronym", "name", "color_hex_triplet", "graph_order", "st_level",
    "structure_id_path", "parent_structure_id", "ontology_id", "children",
}  # fmt: skip


def get(sim: ThreadedSimulator, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(sim.base_url + path, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_structure_graph_download(sim: ThreadedSimulator) -> None:
    status, body = get(sim, "/api/v2/structure_graph_download/1.json")
    envelope = json.loads(body)
    assert status == 200 and envelope["success"] is True
    (root,) = envelope["msg"]
    assert root["id"] == 997 and root["acronym"] == "root" and root["parent_structure_id"] is None
    count = 0

    def walk(node: dict[str, Any], path: str) -> None:
        nonlocal count
        count += 1
        assert set(node) >= NODE_FIELDS
        assert node["structure_id_path"] == f"{path}{node['id']}/"
        for child in node["children"]:
            assert child["parent_structure_id"] == node["id"]
            walk(child, node["structure_id_path"])

    walk(root, "/")
    assert count == len(ontology.STRUCTURES)
    assert get(sim, "/api/v2/structure_graph_download/2.json")[0] == 404


@pytest.mark.parametrize(
    ("name", "nrrd_type", "dtype"),
    [
        ("annotation/ccf_2017/annotation_100.nrrd", "unsigned int", np.uint32),
        ("average_template/average_template_100.nrrd", "unsigned short", np.uint16),
    ],
)
def test_ccf_volumes_have_the_archive_form(
    sim: ThreadedSimulator, tmp_path: Path, name: str, nrrd_type: str, dtype: type
) -> None:
    status, body = get(sim, f"{ARCHIVE_PREFIX}/{name}")
    assert status == 200 and body.startswith(b"NRRD0004\n")
    path = tmp_path / "v.nrrd"
    path.write_bytes(body)
    data, header = nrrd.read(str(path))
    assert header["type"] == nrrd_type and header["dimension"] == 3
    assert header["encoding"] == "gzip" and header["endian"] == "little"
    assert list(header["sizes"]) == [132, 80, 114] and data.shape == (132, 80, 114)
    assert np.array_equal(header["space directions"], np.diag([100.0, 100.0, 100.0]))
    assert data.dtype == dtype
    if dtype is np.uint32:  # the annotation: the ontology's ids where the rule puts them
        assert np.array_equal(data, label_at(*np.indices(data.shape), 100))
        ids = set(np.unique(data).tolist())
        assert 0 in ids and len(ids) > 100
        assert ids - {0} <= {s.id for s in ontology.STRUCTURES}


def test_volume_sizes_follow_the_resolution() -> None:
    assert volume_shape(25) == (528, 320, 456)
    assert volume_shape(10) == (1320, 800, 1140)
    assert volume_shape(50) == (264, 160, 228)


def test_unknown_archive_files_are_404(sim: ThreadedSimulator) -> None:
    assert get(sim, f"{ARCHIVE_PREFIX}/annotation/ccf_2017/annotation_20.nrrd")[0] == 404
    assert get(sim, f"{ARCHIVE_PREFIX}/nothing.nrrd")[0] == 404


def _matrix(record: dict[str, Any], prefix: str, layout: list[list[int]]) -> np.ndarray:
    return np.array([[record[f"{prefix}_{n:02d}"] for n in row] for row in layout], dtype=float)


def test_image_to_reference_is_the_documented_product(sim: ThreadedSimulator) -> None:
    catalogue = sim.catalogue
    image = catalogue.lookup("SectionImage", "data_set_id", CONNECTIVITY_DATA_SET)[2]
    data_set = catalogue.get("SectionDataSet", CONNECTIVITY_DATA_SET)
    assert data_set is not None
    (a2,) = catalogue.lookup("Alignment2d", "section_image_id", image["id"])
    (a3,) = catalogue.lookup("Alignment3d", "aligned_id", CONNECTIVITY_DATA_SET)
    tsv = _matrix(a2, "tsv", [[0, 1, 4], [2, 3, 5]])
    tvr = _matrix(a3, "tvr", [[0, 1, 2, 9], [3, 4, 5, 10], [6, 7, 8, 11]])
    x, y = 123.5, 456.25
    volume = tsv @ [x, y, 1]
    depth = float(image["section_number"]) * float(data_set["section_thickness"])
    expected = tvr @ [volume[0], volume[1], depth, 1]
    status, body = get(sim, f"/api/v2/image_to_reference/{image['id']}.json?x={x}&y={y}")
    answer = json.loads(body)["msg"]["image_to_reference"]
    assert status == 200
    assert [answer["x"], answer["y"], answer["z"]] == pytest.approx(expected.tolist(), abs=1e-9)


@pytest.mark.parametrize("data_set_id", [CONNECTIVITY_DATA_SET, ISH_DATA_SET])
def test_reference_to_image_finds_the_section_a_pixel_came_from(
    sim: ThreadedSimulator, data_set_id: int
) -> None:
    for image in sim.catalogue.lookup("SectionImage", "data_set_id", data_set_id)[::3]:
        x, y = image["x"] + 40, image["y"] + 30
        _, body = get(sim, f"/api/v2/image_to_reference/{image['id']}.json?x={x}&y={y}")
        point = json.loads(body)["msg"]["image_to_reference"]
        query = f"x={point['x']}&y={point['y']}&z={point['z']}&section_data_set_ids={data_set_id}"
        status, body = get(sim, f"/api/v2/reference_to_image/9.json?{query}")
        (hit,) = json.loads(body)["msg"]
        sync = hit["image_sync"]
        assert status == 200 and sync["section_data_set_id"] == data_set_id
        assert (sync["section_image_id"], sync["section_number"]) == (
            image["id"],
            image["section_number"],
        )
        # tvs is printed to 6 digits like tsv, so the round trip is close, not exact.
        assert (sync["x"], sync["y"]) == pytest.approx((x, y), abs=0.5)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v2/image_to_reference/1.json?x=1&y=1", 404),
        ("/api/v2/image_to_reference/102146167.json?x=1", 400),
        ("/api/v2/image_to_reference/102146167.json?x=a&y=1", 400),
        ("/api/v2/reference_to_image/9.json?x=1&y=1&z=1&section_data_set_ids=1", 404),
        ("/api/v2/reference_to_image/9.json?x=1&y=1&z=1", 400),
        ("/api/v2/reference_to_image/9.json?x=1&y=1&z=inf&section_data_set_ids=100141599", 400),
    ],
)
def test_service_refusals(sim: ThreadedSimulator, path: str, status: int) -> None:
    got, body = get(sim, path)
    envelope = json.loads(body)
    assert got == status and envelope["success"] is False and envelope["msg"]
