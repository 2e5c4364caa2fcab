"""Image, tile-server and grid downloads from the running simulator: real bytes, real sizes."""

from __future__ import annotations

import gzip
import io
import math
import zipfile
from typing import Any

import aiohttp
import pytest
from PIL import Image, ImageChops, ImageStat

from crawler.simulator import Catalogue, Simulator, expected_bytes
from crawler.simulator.grids import grid_shape

CONN_IMAGE, ISH_IMAGE, ATLAS_IMAGE = 102146167, 69750516, 100883869


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue.build(
        sections_per_dataset=3,
        extra_connectivity_datasets=1,
        extra_ish_datasets=0,
        image_scale=0.04,
    )


async def get(http: aiohttp.ClientSession, served: Simulator, path: str) -> tuple[int, str, bytes]:
    async with http.get(served.base_url + path) as response:
        body = await response.read()
        if response.status == 200 and response.content_type != "text/html":
            assert response.headers["Content-Length"] == str(len(body))
        return response.status, response.content_type, body


async def jpeg(
    http: aiohttp.ClientSession, served: Simulator, path: str
) -> tuple[bytes, Image.Image]:
    status, content_type, body = await get(http, served, path)
    assert (status, content_type) == (200, "image/jpeg"), body[:200]
    assert body[:2] == b"\xff\xd8" and body[-2:] == b"\xff\xd9"
    image = Image.open(io.BytesIO(body))
    image.load()
    return body, image


def record(catalogue: Catalogue, image_id: int) -> dict[str, Any]:
    found = catalogue.image(image_id)
    assert found is not None
    return found[1]


@pytest.mark.parametrize("downsample", [0, 1, 2, 3])
async def test_whole_image_size_follows_downsample(
    served: Simulator, http: aiohttp.ClientSession, catalogue: Catalogue, downsample: int
) -> None:
    rec = record(catalogue, CONN_IMAGE)
    _, image = await jpeg(
        http, served, f"/api/v2/section_image_download/{CONN_IMAGE}?downsample={downsample}"
    )
    scale = 2**downsample
    assert image.size == (math.ceil(rec["width"] / scale), math.ceil(rec["height"] / scale))


async def test_region_size_and_clipping_at_every_edge(
    served: Simulator, http: aiohttp.ClientSession, catalogue: Catalogue
) -> None:
    rec = record(catalogue, CONN_IMAGE)
    x, y, w, h, d = rec["x"], rec["y"], rec["width"], rec["height"], 2
    base = f"/api/v2/section_image_download/{CONN_IMAGE}?downsample={d}"
    _, inside = await jpeg(http, served, f"{base}&left={x + 8}&top={y + 8}&width=30&height=20")
    assert inside.size == (30, 20)
    right, bottom = x + w - 10 * 4, y + h - 6 * 4
    _, edge = await jpeg(http, served, f"{base}&left={right}&top={bottom}&width=64&height=64")
    assert edge.size == (10, 6)
    _, before = await jpeg(http, served, f"{base}&left={x - 40}&top={y}&width=20&height=5")
    assert before.size == (10, 5)  # 40 of its 80 full-resolution columns lie left of the image
    _, default_size = await jpeg(http, served, f"{base}&left={x + w - 4 * 4}&top={y}&height=3")
    assert default_size.size == (4, 3)


async def test_tiles_stitch_into_the_whole_tier(
    served: Simulator, http: aiohttp.ClientSession, catalogue: Catalogue
) -> None:
    rec = record(catalogue, CONN_IMAGE)
    d, tile = 2, 64
    scale = 2**d
    _, whole = await jpeg(
        http, served, f"/api/v2/section_image_download/{CONN_IMAGE}?downsample={d}"
    )
    stitched = Image.new("RGB", whole.size)
    for row in range(math.ceil(whole.height / tile)):
        for col in range(math.ceil(whole.width / tile)):
            left, top = rec["x"] + col * tile * scale, rec["y"] + row * tile * scale
            path = (
                f"/api/v2/section_image_download/{CONN_IMAGE}?downsample={d}"
                f"&left={left}&top={top}&width={tile}&height={tile}"
            )
            _, piece = await jpeg(http, served, path)
            expected = (min(tile, whole.width - col * tile), min(tile, whole.height - row * tile))
            assert piece.size == expected
            stitched.paste(piece, (col * tile, row * tile))
    difference = ImageStat.Stat(ImageChops.difference(stitched, whole.convert("RGB")))
    assert max(difference.mean) < 2.0  # equal up to JPEG loss


async def test_bytes_are_deterministic_and_match_expected_bytes(
    served: Simulator, http: aiohttp.ClientSession, catalogue: Catalogue
) -> None:
    path = f"/api/v2/section_image_download/{CONN_IMAGE}?downsample=3&quality=80"
    first, _ = await jpeg(http, served, path)
    second, _ = await jpeg(http, served, path)
    alias, _ = await jpeg(http, served, path.replace("section_image_download", "image_download"))
    assert first == second == alias == expected_bytes(catalogue, path)
    fresh = Catalogue.build(
        sections_per_dataset=3,
        extra_connectivity_datasets=1,
        extra_ish_datasets=0,
        image_scale=0.04,
    )
    assert expected_bytes(fresh, path) == first


async def test_defaults_equal_explicit_parameters(
    served: Simulator, http: aiohttp.ClientSession, catalogue: Catalogue
) -> None:
    rec = record(catalogue, CONN_IMAGE)
    implicit, _ = await jpeg(
        http, served, f"/api/v2/section_image_download/{CONN_IMAGE}?downsample=2"
    )
    explicit, _ = await jpeg(
        http,
        served,
        f"/api/v2/section_image_download/{CONN_IMAGE}?downsample=2&left={rec['x']}&top={rec['y']}"
        f"&width={math.ceil(rec['width'] / 4)}&height={math.ceil(rec['height'] / 4)}"
        "&range=0,923,0,987,0,4095&quality=95",
    )
    assert implicit == explicit


async def test_range_and_quality_change_bytes(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    base = f"/api/v2/section_image_download/{CONN_IMAGE}?downsample=3"
    default, _ = await jpeg(http, served, base)
    ranged, _ = await jpeg(http, served, base + "&range=0,4095,0,4095,0,4095")
    lower_quality, _ = await jpeg(http, served, base + "&quality=30")
    assert len({default, ranged, lower_quality}) == 3
    assert len(lower_quality) < len(default)


async def test_views_render_different_bytes(served: Simulator, http: aiohttp.ClientSession) -> None:
    plain, _ = await jpeg(http, served, f"/api/v2/section_image_download/{CONN_IMAGE}?downsample=3")
    projection, _ = await jpeg(
        http, served, f"/api/v2/projection_image_download/{CONN_IMAGE}?downsample=3&projection=true"
    )
    by_view, _ = await jpeg(
        http, served, f"/api/v2/projection_image_download/{CONN_IMAGE}?downsample=3&view=projection"
    )
    expression, _ = await jpeg(
        http, served, f"/api/v2/section_image_download/{ISH_IMAGE}?downsample=2&view=expression"
    )
    expression_flag, _ = await jpeg(
        http, served, f"/api/v2/section_image_download/{ISH_IMAGE}?downsample=2&expression=true"
    )
    ish, _ = await jpeg(http, served, f"/api/v2/section_image_download/{ISH_IMAGE}?downsample=2")
    annotation, _ = await jpeg(
        http,
        served,
        f"/api/v2/atlas_image_download/{ATLAS_IMAGE}?downsample=2&annotation=true&atlas=1",
    )
    nissl, _ = await jpeg(
        http, served, f"/api/v2/atlas_image_download/{ATLAS_IMAGE}?downsample=2&atlas=1"
    )
    assert projection == by_view and expression == expression_flag
    assert len({plain, projection, expression, ish, annotation, nissl}) == 6


async def test_tile_server_serves_identical_bytes(
    served: Simulator, http: aiohttp.ClientSession, catalogue: Catalogue
) -> None:
    rec = record(catalogue, CONN_IMAGE)
    query = "downsample=2&left={}&top={}&width=50&height=40".format(rec["x"], rec["y"])
    download, _ = await jpeg(http, served, f"/api/v2/section_image_download/{CONN_IMAGE}?{query}")
    tiles, _ = await jpeg(http, served, f"/cgi-bin/imageservice?path={rec['path']}&{query}")
    assert tiles == download
    ish = record(catalogue, ISH_IMAGE)
    mask, _ = await jpeg(
        http, served, f"/cgi-bin/imageservice?path={ish['expression_path']}&downsample=2"
    )
    assert mask == expected_bytes(
        catalogue, f"/api/v2/section_image_download/{ISH_IMAGE}?downsample=2&view=expression"
    )


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/api/v2/section_image_download/{CONN_IMAGE}?downsample=two", 400),
        (f"/api/v2/section_image_download/{CONN_IMAGE}?downsample=-1", 400),
        (f"/api/v2/section_image_download/{CONN_IMAGE}?quality=101", 400),
        (f"/api/v2/section_image_download/{CONN_IMAGE}?width=0", 400),
        (f"/api/v2/section_image_download/{CONN_IMAGE}?left=9999999", 400),
        (f"/api/v2/section_image_download/{CONN_IMAGE}?range=0,100,0,100", 400),
        (f"/api/v2/section_image_download/{CONN_IMAGE}?range=0,5000,0,100,0,100", 400),
        (f"/api/v2/section_image_download/{CONN_IMAGE}?view=elsewhere", 400),
        (f"/api/v2/section_image_download/{CONN_IMAGE}?projection=maybe", 400),
        (f"/api/v2/atlas_image_download/{ATLAS_IMAGE}?annotation=true&atlas=2", 400),
        ("/api/v2/section_image_download/1", 404),
        (f"/api/v2/atlas_image_download/{CONN_IMAGE}", 404),
        ("/cgi-bin/imageservice?path=/nowhere.aff", 404),
        ("/no/such/route", 404),
    ],
)
async def test_invalid_requests_are_errors_not_jpegs(
    served: Simulator, http: aiohttp.ClientSession, path: str, status: int
) -> None:
    got, content_type, body = await get(http, served, path)
    assert got == status and content_type != "image/jpeg" and not body.startswith(b"\xff\xd8")


# -- grids -----------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [25, 100])
async def test_projection_grid_is_a_gzip_nrrd(
    served: Simulator, http: aiohttp.ClientSession, resolution: int
) -> None:
    path = f"/grid_data/download_file/126862385?image=projection_density&resolution={resolution}"
    async with http.get(served.base_url + path) as response:
        assert response.status == 200 and response.content_type == "application/octet-stream"
        assert "filename=" in response.headers["Content-Disposition"]
        body = await response.read()
    header, _, data = body.partition(b"\n\n")
    lines = header.decode("ascii").splitlines()
    assert lines[0] == "NRRD0004"
    fields = dict(line.split(": ", 1) for line in lines[1:] if not line.startswith("#"))
    assert fields["encoding"] == "gzip" and fields["type"] == "float"
    sizes = [int(n) for n in fields["sizes"].split()]
    assert sizes == list(grid_shape(resolution))
    assert len(gzip.decompress(data)) == 4 * math.prod(sizes)


async def test_grid_types_differ_and_bad_parameters_fail(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    base = "/grid_data/download_file/126862385?resolution=50&image="
    density = await get(http, served, base + "projection_density")
    mask = await get(http, served, base + "data_mask")
    assert density[0] == mask[0] == 200 and density[2] != mask[2]
    assert (await get(http, served, base + "bogus"))[0] == 400
    assert (
        await get(http, served, "/grid_data/download_file/126862385?image=data_mask&resolution=30")
    )[0] == 400
    assert (await get(http, served, "/grid_data/download_file/1?image=data_mask&resolution=25"))[
        0
    ] == 404


async def test_expression_grid_is_a_zip_of_mhd_and_raw(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    status, content_type, body = await get(
        http, served, "/grid_data/download/69782969?include=energy,density,intensity"
    )
    assert (status, content_type) == (200, "application/zip")
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = sorted(archive.namelist())
        assert names == sorted(
            f"{v}.{e}" for v in ("energy", "density", "intensity") for e in ("mhd", "raw")
        )
        header = archive.read("energy.mhd").decode()
        sizes = [int(n) for n in header.split("DimSize = ")[1].splitlines()[0].split()]
        assert len(archive.read("energy.raw")) == 4 * math.prod(sizes)
    assert (await get(http, served, "/grid_data/download/69782969?include=colour"))[0] == 400
