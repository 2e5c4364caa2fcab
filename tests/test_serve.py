"""`allen-mirror serve`: a mirror made from the simulator, answered as the Allen API.

The shared API surface (`crawler.simulator.routes.answer`) runs on the mirror's records and
files; these tests compare its answers with the simulator's own, byte for byte where the
mirror holds the data, and check the 404 hints, the fallback, `--record`, the access log,
concurrency and that nothing is written without `--record`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import anyio
import pytest
from yarl import URL

from crawler.serve.fallback import placement
from crawler.serve.loading import load_mirror
from crawler.serve.source import MirrorSource
from crawler.simulator import ThreadedSimulator, expected_bytes, serve_in_thread
from crawler.simulator.routes import answer
from tests.conftest import run_cli, small_catalogue
from tests.serving import ATLAS, DATA_SET, WINDOW, build_mirror, serving

pytestmark = pytest.mark.slow

RANGE = ",".join(map(str, WINDOW))


@pytest.fixture(scope="module")
def sim() -> Iterator[ThreadedSimulator]:
    with serve_in_thread(small_catalogue(4)) as handle:
        yield handle


@pytest.fixture(scope="module")
def mirror(sim: ThreadedSimulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mirror(sim, tmp_path_factory.mktemp("serve") / "mirror")


@pytest.fixture(scope="module")
def source(mirror: Path) -> MirrorSource:
    return anyio.run(load_mirror, mirror, f"sqlite:///{mirror}/manifest.sqlite")


def sim_answer(sim: ThreadedSimulator, url: str) -> bytes:
    """The simulator's answer; its total_rows counting joined rows is a live quirk a mirror
    does not reproduce (it counts the rows it has)."""
    return expected_bytes(sim.catalogue, url, overstate_total_rows=False)


def mirror_answer(source: MirrorSource, url: str) -> tuple[int, bytes]:
    parsed = URL(url)
    reply = answer(source, parsed.path, dict(parsed.query))
    return reply.status, reply.body


def rma(stages: str) -> str:
    return str(URL("/api/v2/data/query.json").with_query(q=stages))


def first_image(sim: ThreadedSimulator) -> dict[str, object]:
    images = sim.catalogue.lookup("SectionImage", "data_set_id", DATA_SET)
    return next(i for i in images if not i["failed"])


@pytest.mark.parametrize(
    "stages",
    [
        f"model::SectionDataSet,rma::criteria,[id$eq{DATA_SET}],rma::include,equalization,"
        "products,alignment3d,specimen(donor(transgenic_lines),stereotaxic_injections)",
        f"model::SectionImage,rma::criteria,[data_set_id$eq{DATA_SET}],rma::include,alignment2d,"
        "rma::options[order$eq'section_number$desc'][num_rows$eq2][start_row$eq1]",
        f"model::SectionImage,rma::criteria,[data_set_id$eq{DATA_SET}],"
        "rma::options[only$eq'id,section_number'][count$eqfalse]",
        f"model::SectionImage[data_set_id$eq{DATA_SET}],rma::options[tabular$eq"
        "'section_images.id','section_number as n','data_set.section_thickness']",
        f"model::SectionDataSet,rma::criteria,[id$eq{DATA_SET}],rma::include,"
        "equalization,sub_images[section_number$eq2]",
        f"model::ProjectionStructureUnionize,rma::criteria,[section_data_set_id$in{DATA_SET}],"
        "[is_injection$eqfalse],rma::options[num_rows$eq'all'][order$eq'id']",
        "model::Equalization,rma::criteria,section_data_set(section_images[id$in{image}]),"
        "rma::options[only$eq'red_lower,red_upper']",
    ],
)
def test_rma_answers_equal_the_simulators(
    sim: ThreadedSimulator, source: MirrorSource, stages: str
) -> None:
    url = rma(stages.format(image=first_image(sim)["id"]))
    status, body = mirror_answer(source, url)
    assert status == 200, body
    assert json.loads(body) == json.loads(sim_answer(sim, url))
    assert json.loads(body)["msg"], "the query must return rows to compare"


def test_structures_come_from_the_mirrored_graph(
    sim: ThreadedSimulator, source: MirrorSource
) -> None:
    """The graph carries what StructureTree needs; those fields equal the simulator's."""
    url = rma("model::Structure,rma::criteria,[graph_id$in1],rma::options[num_rows$eq'all']"
              "[order$eq'structures.graph_order']")  # fmt: skip
    status, body = mirror_answer(source, url)
    fields = ("id", "acronym", "name", "structure_id_path", "color_hex_triplet", "graph_order",
              "parent_structure_id", "graph_id", "st_level")  # fmt: skip
    mine = [{f: s[f] for f in fields} for s in json.loads(body)["msg"]]
    theirs = [{f: s[f] for f in fields} for s in json.loads(sim_answer(sim, url))["msg"]]
    assert status == 200 and mine == theirs and len(mine) > 10


def test_downloads_are_the_mirrored_files(
    sim: ThreadedSimulator, mirror: Path, source: MirrorSource
) -> None:
    image = first_image(sim)
    name = f"{int(str(image['section_number'])):04d}_{image['id']}.jpg"
    section = (mirror / str(DATA_SET) / "section" / "ds4" / name).read_bytes()
    for url in (
        f"/api/v2/section_image_download/{image['id']}?downsample=4&range={RANGE}",
        f"/api/v2/image_download/{image['id']}?range={RANGE}&downsample=4",
        f"/api/v2/section_image_download/{image['id']}?downsample=4",  # range: the Equalization
    ):
        assert mirror_answer(source, url) == (200, section), url
        assert sim_answer(sim, url) == section
    projection = (mirror / str(DATA_SET) / "projection" / "ds4" / name).read_bytes()
    url = f"/api/v2/projection_image_download/{image['id']}?view=projection&downsample=4"
    assert mirror_answer(source, url) == (200, projection)
    grid = (mirror / str(DATA_SET) / "grid" / "projection_density_25.nrrd").read_bytes()
    url = f"/grid_data/download_file/{DATA_SET}?resolution=25&image=projection_density"
    assert mirror_answer(source, url) == (200, grid)
    graph = (mirror / "ccf" / "structure_graph_1.json").read_bytes()
    assert mirror_answer(source, "/api/v2/structure_graph_download/1.json") == (200, graph)
    volume = (mirror / "ccf" / "annotation_25.nrrd").read_bytes()
    url = "/informatics-archive/current-release/mouse_ccf/annotation/ccf_2017/annotation_25.nrrd"
    assert mirror_answer(source, url) == (200, volume)


def test_tiles_and_the_tile_server_are_the_mirrored_files(
    mirror: Path, source: MirrorSource
) -> None:
    index_path = next((mirror / str(DATA_SET) / "section" / "ds2" / "tiles").glob("*/index.json"))
    index = json.loads(index_path.read_text())
    image = source.get("SectionImage", int(index_path.parent.name.split("_")[1]))
    assert image is not None
    for tile in index["tiles"][:5]:
        query = (f"downsample=2&left={tile['left']}&top={tile['top']}&width={tile['width']}"
                 f"&height={tile['height']}&range={RANGE}")  # fmt: skip
        expected = (index_path.parent / tile["file"]).read_bytes()
        url = f"/api/v2/section_image_download/{image['id']}?{query}"
        assert mirror_answer(source, url) == (200, expected)
        tile_server = str(URL("/cgi-bin/imageservice").with_query(path=str(image["path"])))
        assert mirror_answer(source, f"{tile_server}&{query}") == (200, expected)


def test_sync_services_give_locates_numbers(
    sim: ThreadedSimulator, mirror: Path, source: MirrorSource, capsys: pytest.CaptureFixture[str]
) -> None:
    image = first_image(sim)
    url = f"/api/v2/image_to_reference/{image['id']}.json?x=1200&y=800"
    status, body = mirror_answer(source, url)
    point = json.loads(body)["msg"]["image_to_reference"]
    located = json.loads(run_cli(capsys, "locate", "--out", str(mirror), "--image",
                                 str(image["id"]), "--x", "1200", "--y", "800").out)  # fmt: skip
    assert status == 200 and [point[k] for k in "xyz"] == [located[k] for k in "xyz"]
    simulated = json.loads(sim_answer(sim, url))["msg"]["image_to_reference"]
    assert [point[k] for k in "xyz"] == pytest.approx([simulated[k] for k in "xyz"], rel=1e-9)

    url = f"/api/v2/reference_to_image/9.json?x={point['x']}&y={point['y']}&z={point['z']}" \
          f"&section_data_set_ids={DATA_SET}"  # fmt: skip
    status, body = mirror_answer(source, url)
    hit = json.loads(body)["msg"][0]["image_sync"]
    expected = json.loads(sim_answer(sim, url))["msg"][0]["image_sync"]
    assert status == 200 and hit["section_image_id"] == expected["section_image_id"] == image["id"]
    assert [hit["x"], hit["y"]] == pytest.approx([expected["x"], expected["y"]], rel=1e-9)
    assert [hit["x"], hit["y"]] == pytest.approx([1200, 800], abs=0.05)  # 6-digit inverses


@pytest.mark.parametrize(
    ("url", "what", "command"),
    [
        ("/api/v2/section_image_download/{image}?downsample=3",
         "image of SectionImage {image} at downsample 3",
         "allen-mirror mirror --out {out} --dataset 100141599 --image section --downsample 3"),
        ("/api/v2/data/query.json?q=model::SectionImage,rma::criteria,[data_set_id$eq126862385]",
         "SectionDataSet 126862385", "allen-mirror mirror --out {out} --dataset 126862385"),
        ("/api/v2/data/SectionDataSet/69782969.json", "SectionDataSet 69782969",
         "allen-mirror mirror --out {out} --dataset 69782969"),
        ("/grid_data/download_file/100141599?image=injection_density&resolution=25",
         "injection_density grid at 25 µm", "--with grid --grid-types injection_density"),
        ("/informatics-archive/current-release/mouse_ccf/average_template/average_template_25.nrrd",
         "average_template_25.nrrd", "--with template --ccf-resolution 25"),
    ],
)  # fmt: skip
def test_what_the_mirror_lacks_is_a_404_naming_the_command(
    sim: ThreadedSimulator, mirror: Path, source: MirrorSource, url: str, what: str, command: str
) -> None:
    image = first_image(sim)["id"]
    status, body = mirror_answer(source, url.format(image=image))
    text = body.decode()
    assert status == 404
    assert what.format(image=image) in text and command.format(out=mirror) in text
    if "/data/" in url:
        assert json.loads(body)["success"] is False  # AllenSDK hands msg to the caller


def test_fallback_placement_is_where_mirror_puts_files(source: MirrorSource) -> None:
    image = source.records("SectionImage")[0]
    path = f"/api/v2/section_image_download/{image['id']}"
    item = placement(source, path, {"downsample": "3"}, f"{path}?downsample=3")
    name = f"{int(str(image['section_number'])):04d}_{image['id']}.jpg"
    assert item is not None and item.path == f"{DATA_SET}/section/ds3/{name}"
    assert item.kind == "section" and item.data_set_id == DATA_SET
    tile = {"downsample": "3", "left": "0", "top": "0", "width": "8", "height": "8"}
    assert placement(source, path, tile, path) is None  # tiles belong to a tile grid
    atlas = source.records("AtlasImage")[0]
    path = f"/api/v2/atlas_image_download/{atlas['id']}"
    item = placement(source, path, {"annotation": "true", "atlas": "1"}, path)
    assert item is not None and item.path.startswith(f"atlas_{ATLAS}/annotation/ds0/")
    grid = placement(source, f"/grid_data/download_file/{DATA_SET}",
                     {"image": "data_mask", "resolution": "50"}, "x")  # fmt: skip
    assert grid is not None and grid.path == f"{DATA_SET}/grid/data_mask_50.nrrd"
    assert placement(source, "/api/v2/data/query.json", {"q": "model::Gene"}, "x") is None


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
    }


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_serve_is_read_only_logs_each_request_and_serves_many_clients(
    sim: ThreadedSimulator, mirror: Path, tmp_path: Path
) -> None:
    image = first_image(sim)
    name = f"{int(str(image['section_number'])):04d}_{image['id']}.jpg"
    expected = (mirror / str(DATA_SET) / "section" / "ds4" / name).read_bytes()
    before = tree_state(mirror)
    with serving(mirror, log_path=tmp_path / "serve.log") as served:
        url = f"{served.base_url}/api/v2/section_image_download/{image['id']}?downsample=4"

        async def many() -> list[tuple[int, bytes]]:
            async with aiohttp.ClientSession() as session:

                async def one() -> tuple[int, bytes]:
                    async with session.get(url) as response:
                        return response.status, await response.read()

                return await asyncio.gather(*(one() for _ in range(64)))

        results = asyncio.run(many())
        missing = fetch(
            f"{served.base_url}/api/v2/section_image_download/{image['id']}?downsample=1"
        )
    assert results == [(200, expected)] * 64
    assert missing[0] == 404 and b"--downsample 1" in missing[1]
    events = served.events()
    assert len(events) == 65
    assert {e["status"] for e in events} == {200, 404}
    assert all(e["path"].startswith("/api/v2/section_image_download/") for e in events)
    assert tree_state(mirror) == before  # nothing written, not even the manifest


def test_fallback_record_keeps_what_it_fetched(
    sim: ThreadedSimulator, mirror: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "mirror"
    shutil.copytree(mirror, copy)
    image = first_image(sim)
    path = f"/api/v2/section_image_download/{image['id']}?downsample=3"
    expected = expected_bytes(sim.catalogue, path)
    with serving(copy, "--fallback", sim.base_url, "--record", log_path=tmp_path / "s.log") as s:
        first = fetch(s.base_url + path)
        again = fetch(s.base_url + path)
        rma_miss = fetch(s.base_url + rma("model::SectionDataSet,rma::criteria,[id$eq69782969]"))
    assert first == again == (200, expected)
    assert json.loads(rma_miss[1])["msg"][0]["id"] == 69782969  # proxied, not kept
    name = f"{int(str(image['section_number'])):04d}_{image['id']}.jpg"
    stored = copy / str(DATA_SET) / "section" / "ds3" / name
    assert stored.read_bytes() == expected
    with sqlite3.connect(copy / "manifest.sqlite") as db:
        row = db.execute(
            "SELECT status, size, sha256, kind FROM items WHERE path = ?",
            (f"{DATA_SET}/section/ds3/{name}",),
        ).fetchone()
    assert row == ("done", len(expected), hashlib.sha256(expected).hexdigest(), "section")
    origins = [(e["origin"], e.get("recorded")) for e in s.events() if e["path"] != "/"]
    assert origins[:2] == [("fallback", f"{DATA_SET}/section/ds3/{name}"), ("mirror", None)]
    assert origins[2] == ("fallback", None)
    assert run_cli_verify(copy) == 0


def run_cli_verify(out: Path) -> int:
    from crawler.cli import main

    return main(["verify", "--out", str(out), "--no-progress", "--log-format", "json"])


def test_serve_usage_errors(
    mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "serve", "--out", str(mirror), "--record")
    assert result.code == 2 and "--fallback" in result.err
    result = run_cli(capsys, "serve", "--out", str(tmp_path / "none"))
    assert result.code == 2 and "no manifest" in result.err
    result = run_cli(capsys, "serve", "--out", str(mirror), "--fallback", "ftp://x")
    assert result.code == 2 and "--fallback" in result.err
    with serving(mirror, log_path=tmp_path / "serve.log") as served:
        port = URL(served.base_url).port
        result = run_cli(capsys, "serve", "--out", str(mirror), "--port", str(port))
    assert result.code == 2 and f"cannot listen on 127.0.0.1:{port}" in result.err
