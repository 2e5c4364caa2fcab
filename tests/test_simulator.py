"""The simulator's catalogue, mutations and lifecycle (async, threaded and as a subprocess)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

import aiohttp
import pytest

from crawler.simulator import (
    Catalogue,
    Simulator,
    SimulatorConfig,
    expected_bytes,
    serve_in_thread,
    tier_count,
)
from crawler.simulator.schema import MODEL_FIELDS


def small() -> Catalogue:
    return Catalogue.build(
        sections_per_dataset=3,
        extra_connectivity_datasets=1,
        extra_ish_datasets=0,
        image_scale=0.03,
    )


# -- catalogue -------------------------------------------------------------------------------


@pytest.fixture
def catalogue() -> Catalogue:
    return small()


@pytest.fixture(scope="module")
def default_catalogue() -> Catalogue:
    return Catalogue.build()


def test_default_catalogue_has_the_real_ids(default_catalogue: Catalogue) -> None:
    cat = default_catalogue
    image = cat.get("SectionImage", 69750516)
    assert image is not None
    assert (image["width"], image["height"], image["resolution"], image["tier_count"]) == (
        14065,
        7297,
        1.049,
        7,
    )
    assert image["data_set_id"] == 69782969
    for data_set_id, image_id in ((100141599, 102146167), (126862385, 126862583)):
        found = cat.get("SectionImage", image_id)
        assert found is not None and found["data_set_id"] == data_set_id
        assert len(cat.lookup("SectionImage", "data_set_id", data_set_id)) == 140
        data_set = cat.get("SectionDataSet", data_set_id)
        assert data_set is not None and data_set["plane_of_section_id"] == 1
    ish = cat.get("SectionDataSet", 69782969)
    assert ish is not None and ish["plane_of_section_id"] == 2
    assert len(cat.lookup("SectionImage", "data_set_id", 69782969)) == 20
    assert {p["id"]: p["name"] for p in cat.records("Product")} == {
        1: "Mouse Brain",
        3: "Developing Mouse Brain",
        5: "Mouse Connectivity Projection",
    }
    assert {a["id"]: a["name"] for a in cat.records("Atlas")} == {
        1: "Mouse, P56, Coronal",
        2: "Mouse, P56, Sagittal",
        602630314: "Mouse, Adult, 3D Coronal",
    }
    atlas_image = cat.get("AtlasImage", 100883869)
    assert atlas_image is not None
    atlas_data_set = cat.get("AtlasDataSet", int(atlas_image["data_set_id"] or 0))
    assert atlas_data_set is not None and atlas_data_set["atlas_id"] == 1


def test_connectivity_geometry_is_realistic(default_catalogue: Catalogue) -> None:
    for image in default_catalogue.lookup("SectionImage", "data_set_id", 100141599):
        width, height = int(image["width"] or 0), int(image["height"] or 0)
        assert 25000 <= width <= 30000 and 16000 <= height <= 21000
        assert image["resolution"] == 0.35
        assert image["tier_count"] == tier_count(width, height)


def test_records_match_the_schema_and_failures_exist(default_catalogue: Catalogue) -> None:
    for model, table in default_catalogue.tables.items():
        assert table, model
        assert all(list(r) == list(MODEL_FIELDS[model]) for r in table.values())
    failed_sections = [r for r in default_catalogue.records("SectionImage") if r["failed"]]
    failed_sets = [r["id"] for r in default_catalogue.records("SectionDataSet") if r["failed"]]
    assert len(failed_sections) >= 2 and failed_sets == [500000001]


@pytest.mark.parametrize(
    ("width", "height", "tiers"), [(256, 100, 1), (257, 10, 2), (14065, 7297, 7), (1, 1, 1)]
)
def test_tier_count_formula(width: int, height: int, tiers: int) -> None:
    assert tier_count(width, height) == tiers


def test_builds_are_deterministic_and_seeded() -> None:
    assert small().tables == small().tables
    other = Catalogue.build(
        sections_per_dataset=3, extra_connectivity_datasets=1, image_scale=0.03, seed=1
    )
    assert other.get("SectionImage", 102146167) != small().get("SectionImage", 102146167)


def test_a_benchmark_catalogue_builds_quickly() -> None:
    started = time.monotonic()
    cat = Catalogue.build(extra_connectivity_datasets=34)
    assert len(cat.tables["SectionImage"]) >= 5000
    assert time.monotonic() - started < 2


# -- mutations -------------------------------------------------------------------------------


async def test_added_section_is_listed_and_downloadable(served: Simulator) -> None:
    image = served.catalogue.add_section(100141599)
    stages = (
        "model::SectionImage,rma::criteria,[data_set_id$eq100141599],rma::options[num_rows$eq'all']"
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{served.base_url}/api/v2/data/query.json?q={stages}") as response:
            listed = [row["id"] for row in (await response.json())["msg"]]
        path = f"/api/v2/section_image_download/{image['id']}?downsample=2"
        async with http.get(served.base_url + path) as response:
            assert response.status == 200
            assert await response.read() == expected_bytes(served.catalogue, path)
    assert image["id"] in listed and len(listed) == 4 and image["section_number"] == 4


async def test_removed_section_disappears(served: Simulator) -> None:
    served.catalogue.remove_section(102146167)
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{served.base_url}/api/v2/data/SectionImage/102146167.json"
        ) as response:
            assert (await response.json())["msg"] == []
        async with http.get(
            f"{served.base_url}/api/v2/section_image_download/102146167"
        ) as response:
            assert response.status == 404


async def test_changed_image_serves_new_bytes(served: Simulator) -> None:
    path = "/api/v2/section_image_download/102146167?downsample=3"
    before = expected_bytes(served.catalogue, path)
    assert served.catalogue.change_image(102146167) == 1
    async with aiohttp.ClientSession() as http, http.get(served.base_url + path) as response:
        after = await response.read()
    assert after != before and after == expected_bytes(served.catalogue, path)


# -- lifecycle -------------------------------------------------------------------------------


async def test_base_url_and_clean_shutdown_with_a_stalled_request() -> None:
    config = SimulatorConfig(fault_rate=1.0, fault_kinds=frozenset({"stall"}), stall_seconds=60)
    started = time.monotonic()
    async with Simulator(small(), config) as served:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", served.base_url)
        async with (
            aiohttp.ClientSession() as http,
            http.get(served.base_url + "/api/v2/section_image_download/102146167") as response,
        ):
            assert response.status == 200
            read = asyncio.ensure_future(response.read())
            await asyncio.sleep(0.1)
            assert served.counters.in_flight == 1
            await served.stop()  # cancels the stalled handler instead of waiting 60 s
            with pytest.raises(aiohttp.ClientPayloadError):
                await read
    assert time.monotonic() - started < 5


def test_serve_in_thread_from_synchronous_code() -> None:
    with serve_in_thread(small()) as handle:
        url = handle.base_url + "/api/v2/data/Product/5.json"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert json.loads(response.read())["msg"][0]["name"] == "Mouse Connectivity Projection"
        assert handle.counters.by_route["rma"] == 1
        handle.set_faults(fault_rate=1.0, fault_kinds={"http_503_retry_after"})
        with pytest.raises(urllib.error.HTTPError) as failure:
            urllib.request.urlopen(url, timeout=5)
        failure.value.close()
        assert failure.value.code == 503 and failure.value.headers["Retry-After"] == "1"
        handle.config.fault_rate = 0.0
        assert handle.catalogue.get("Product", 5) is not None
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=1)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_module_entry_point_announces_and_stops_on_signal(signum: int) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crawler.simulator",
            "--port",
            "0",
            "--sections",
            "2",
            "--image-scale",
            "0.02",
            "--latency-ms",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        match = re.fullmatch(r"simulator listening on (http://127\.0\.0\.1:(\d+))", line)
        assert match and int(match[2]) > 0, line
        with urllib.request.urlopen(match[1] + "/api/v2/data/Atlas/1.json", timeout=5) as response:
            assert json.loads(response.read())["msg"][0]["id"] == 1
        process.send_signal(signum)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
