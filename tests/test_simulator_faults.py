"""Faults, latency, throttling and counters, observed the way a client sees them."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from PIL import Image

from crawler.simulator import Catalogue, Simulator, SimulatorConfig, expected_bytes
from crawler.simulator.faults import APPLICABLE, choose_fault
from crawler.simulator.routes import Reply

IMAGE = 102146167
IMAGE_PATH = f"/api/v2/section_image_download/{IMAGE}?downsample=3"
RMA_PATH = "/api/v2/data/query.json?criteria=model::Product,rma::options[num_rows$eq'all']"
GRID_PATH = "/grid_data/download_file/126862385?image=projection_density&resolution=100"


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue.build(
        sections_per_dataset=2,
        extra_connectivity_datasets=0,
        extra_ish_datasets=0,
        image_scale=0.04,
    )


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(stall_seconds=5.0)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=10, sock_read=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


def only(served: Simulator, kind: str) -> None:
    served.set_faults(fault_rate=1.0, fault_kinds={kind})


async def wait_idle(served: Simulator) -> None:
    for _ in range(200):
        if served.counters.in_flight == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{served.counters.in_flight} requests still in flight")


@pytest.mark.parametrize(
    ("kind", "status", "retry_after"),
    [
        ("http_500", 500, None),
        ("http_502", 502, None),
        ("http_503_retry_after", 503, "1"),
        ("http_429_retry_after", 429, "1"),
    ],
)
@pytest.mark.parametrize("path", [IMAGE_PATH, RMA_PATH, GRID_PATH])
async def test_http_error_faults(
    served: Simulator,
    http: aiohttp.ClientSession,
    kind: str,
    status: int,
    retry_after: str | None,
    path: str,
) -> None:
    only(served, kind)
    async with http.get(served.base_url + path) as response:
        assert response.status == status
        assert response.headers.get("Retry-After") == retry_after
        assert response.content_type == "text/html"
    assert served.counters.faults == {kind: 1}


@pytest.mark.parametrize("path", [IMAGE_PATH, RMA_PATH, GRID_PATH])
async def test_reset_closes_without_a_response(
    served: Simulator, http: aiohttp.ClientSession, path: str
) -> None:
    only(served, "reset")
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(served.base_url + path) as response:
            await response.read()
    assert served.counters.faults["reset"] >= 1
    await wait_idle(served)


@pytest.mark.parametrize("path", [IMAGE_PATH, RMA_PATH, GRID_PATH])
async def test_truncated_body_fails_the_read(
    served: Simulator, http: aiohttp.ClientSession, path: str
) -> None:
    only(served, "truncated")
    async with http.get(served.base_url + path) as response:
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == len(
            expected_bytes(served.catalogue, path)
        )
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_stall_trips_the_client_read_timeout_and_is_released(
    served: Simulator,
) -> None:
    only(served, "stall")
    timeout = aiohttp.ClientTimeout(total=10, sock_read=0.3)
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.get(served.base_url + IMAGE_PATH) as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ServerTimeoutError):
                await response.read()
        assert served.counters.in_flight == 1  # the stalled handler is still on the server
    await wait_idle(served)  # the client hung up: the server cancels the stalled handler
    assert time.monotonic() - started < 3
    assert served.counters.faults == {"stall": 1}


async def test_stall_finishes_if_the_client_waits(served: Simulator) -> None:
    served.set_faults(fault_rate=1.0, fault_kinds={"stall"}, stall_seconds=0.2)
    async with aiohttp.ClientSession() as http, http.get(served.base_url + IMAGE_PATH) as response:
        assert await response.read() == expected_bytes(served.catalogue, IMAGE_PATH)


@pytest.mark.parametrize("path", [IMAGE_PATH, RMA_PATH])
async def test_html_outage_is_a_200_html_page(
    served: Simulator, http: aiohttp.ClientSession, path: str
) -> None:
    only(served, "html_outage")
    async with http.get(served.base_url + path) as response:
        assert response.status == 200 and response.content_type == "text/html"
        assert "unavailable" in await response.text()


async def test_malformed_json_is_cut_short(served: Simulator, http: aiohttp.ClientSession) -> None:
    only(served, "malformed_json")
    async with http.get(served.base_url + RMA_PATH) as response:
        assert response.status == 200 and response.content_type == "application/json"
        body = await response.read()
    assert body and expected_bytes(served.catalogue, RMA_PATH).startswith(body)
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


@pytest.mark.parametrize(
    ("path", "content_type"), [(IMAGE_PATH, "image/jpeg"), (RMA_PATH, "application/json")]
)
async def test_empty_body(
    served: Simulator, http: aiohttp.ClientSession, path: str, content_type: str
) -> None:
    only(served, "empty_body")
    async with http.get(served.base_url + path) as response:
        assert (response.status, response.content_type) == (200, content_type)
        assert await response.read() == b""


async def test_redirect_to_tile_server_yields_identical_bytes(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    only(served, "redirect")
    async with http.get(served.base_url + IMAGE_PATH, allow_redirects=False) as response:
        assert response.status == 302
        location = response.headers["Location"]
    assert "/cgi-bin/imageservice?path=" in location and "downsample=3" in location
    async with http.get(served.base_url + IMAGE_PATH) as response:
        assert response.status == 200 and len(response.history) == 1
        assert await response.read() == expected_bytes(served.catalogue, IMAGE_PATH)
    assert served.counters.by_route["redirect"] == 1  # the tile server itself does not redirect


async def test_corrupt_jpeg_does_not_decode(served: Simulator, http: aiohttp.ClientSession) -> None:
    only(served, "corrupt_jpeg")
    async with http.get(served.base_url + IMAGE_PATH) as response:
        assert (response.status, response.content_type) == (200, "image/jpeg")
        body = await response.read()
    assert body.startswith(b"\xff\xd8") and not body.endswith(b"\xff\xd9")
    with pytest.raises(OSError):
        Image.open(io.BytesIO(body)).load()


async def test_faults_only_where_they_make_sense(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    only(served, "malformed_json")
    async with http.get(served.base_url + IMAGE_PATH) as response:
        assert await response.read() == expected_bytes(served.catalogue, IMAGE_PATH)
    only(served, "corrupt_jpeg")
    async with http.get(served.base_url + RMA_PATH) as response:
        assert json.loads(await response.read())["success"] is True
    assert not served.counters.faults


async def test_errors_are_never_dressed_up(served: Simulator, http: aiohttp.ClientSession) -> None:
    only(served, "html_outage")
    async with http.get(served.base_url + "/api/v2/section_image_download/1") as response:
        assert response.status == 404


@pytest.mark.parametrize(
    ("kind", "status"), [("http_500", 500), ("http_404", 404), ("corrupt_jpeg", 200)]
)
async def test_permanent_failures_always_fail_that_image(
    catalogue: Catalogue, http: aiohttp.ClientSession, kind: str, status: int
) -> None:
    config = SimulatorConfig(permanent_failures={IMAGE: kind})
    async with Simulator(catalogue, config) as served:
        for path in (IMAGE_PATH, f"/api/v2/image_download/{IMAGE}?downsample=2"):
            for _ in range(3):
                async with http.get(served.base_url + path) as response:
                    assert response.status == status
                    body = await response.read()
                    if status == 200:
                        assert body != expected_bytes(catalogue, path) and body[-2:] != b"\xff\xd9"
        other = "/api/v2/section_image_download/126862583?downsample=3"
        async with http.get(served.base_url + other) as response:
            assert await response.read() == expected_bytes(catalogue, other)
        assert served.counters.faults == {f"permanent_{kind}": 6}


async def test_fault_rate_changes_at_run_time(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    only(served, "http_500")
    async with http.get(served.base_url + IMAGE_PATH) as response:
        assert response.status == 500
    served.config.fault_rate = 0.0
    async with http.get(served.base_url + IMAGE_PATH) as response:
        assert response.status == 200


async def test_partial_fault_rate_is_deterministic_per_url_attempt(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    served.set_faults(fault_rate=0.5, fault_kinds={"http_500", "http_503_retry_after"})

    async def statuses() -> list[int]:
        seen = []
        for _ in range(30):
            async with http.get(served.base_url + RMA_PATH) as response:
                seen.append(response.status)
        return seen

    first = await statuses()
    served.counters.reset()
    assert await statuses() == first
    assert {200, 500, 503} == set(first)


def test_choose_fault_menus() -> None:
    config = SimulatorConfig(fault_rate=1.0)
    ok = Reply(200, "image/jpeg", b"\xff\xd8\xff\xd9", image_id=1, image_path="/a.aff")
    chosen = {choose_fault(config, "image", f"/u{i}", 1, ok) for i in range(400)}
    assert chosen == APPLICABLE["image"]
    rma = {choose_fault(config, "rma", f"/u{i}", 1, ok) for i in range(400)}
    assert rma == APPLICABLE["rma"] and "corrupt_jpeg" not in rma and "redirect" not in rma
    without_path = Reply(200, "image/jpeg", b"x", image_id=1)
    assert all(
        choose_fault(config, "image", f"/u{i}", 1, without_path) != "redirect" for i in range(200)
    )
    assert choose_fault(config, "other", "/x", 1, ok) is None


def test_config_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="fault kinds"):
        SimulatorConfig(fault_kinds=frozenset({"gremlins"}))
    with pytest.raises(ValueError, match="permanent"):
        SimulatorConfig(permanent_failures={1: "http_502"})
    with pytest.raises(ValueError, match="fault_rate"):
        SimulatorConfig(fault_rate=1.5)


# -- latency, throttling, counters -----------------------------------------------------------


async def test_latency_is_added_before_every_response(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    served.config.latency_ms = 150
    started = time.monotonic()
    async with http.get(served.base_url + RMA_PATH) as response:
        await response.read()
    assert time.monotonic() - started >= 0.15


async def test_bytes_per_second_throttles_the_body(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    size = len(expected_bytes(served.catalogue, IMAGE_PATH))
    served.config.bytes_per_second = size * 3  # about a third of a second
    started = time.monotonic()
    async with http.get(served.base_url + IMAGE_PATH) as response:
        assert await response.read() == expected_bytes(served.catalogue, IMAGE_PATH)
    assert time.monotonic() - started >= 0.25


async def test_counters_track_concurrency_routes_urls_and_bytes(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    served.config.latency_ms = 200
    paths = [f"/api/v2/section_image_download/{IMAGE}?downsample={d}" for d in (2, 3, 4)]
    paths += [RMA_PATH, GRID_PATH]

    async def fetch(path: str) -> int:
        async with http.get(served.base_url + path) as response:
            return len(await response.read())

    sizes = await asyncio.gather(*(fetch(p) for p in paths))
    counters = served.counters
    assert counters.max_in_flight == len(paths) and counters.in_flight == 0
    assert counters.requests_total == len(paths)
    assert counters.by_route == {"image": 3, "rma": 1, "grid": 1}
    assert counters.bytes_sent == sum(sizes)
    assert counters.by_status == {200: len(paths)}
    decoded = "/api/v2/data/query.json?criteria=model::Product,rma::options[num_rows$eq'all']"
    assert counters.downloads(decoded) == 1 and counters.by_url[paths[0]] == 1
    counters.reset()
    assert counters.requests_total == 0 and counters.max_in_flight == 0 and not counters.by_url
