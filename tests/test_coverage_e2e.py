"""Everything a user can point at, end to end against the simulator over HTTP.

Selections (products, criteria, atlases, ids files, section ranges), image kinds, colour windows,
tiles and experiment extras: asserted on bytes on disk, manifest rows and simulator counters.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import sqlite3
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from PIL import Image, ImageChops, ImageStat

from crawler.simulator import Catalogue, SimulatorConfig, expected_bytes, serve_in_thread
from tests.conftest import FAST, ls_rows, run_cli
from tests.planning import data_set_record

CONNECTIVITY = 100141599
VISP = 126862385
ISH = 69782969
FAILED = 500000001


def args(sim: Any, out: Path, command: str, *extra: str) -> list[str]:
    return [command, "--out", str(out), "--api-base", sim.base_url, *FAST, *extra]


def relative(sim: Any, url: object) -> str:
    return str(url)[len(sim.base_url) :]


def summary(err: str) -> dict[str, Any]:
    lines = [json.loads(x) for x in err.splitlines() if '"run.summary"' in x]
    return dict(lines[-1])


def products_of(catalogue: Catalogue, record: dict[str, Any]) -> set[int]:
    related = catalogue.related_by_name("SectionDataSet", "products", record)
    return {int(str(p["id"])) for p in related}


def lines_of(catalogue: Catalogue, record: dict[str, Any]) -> set[str]:
    """The Cre lines of a data set's donor, walked through the catalogue's associations."""
    (specimen,) = catalogue.related_by_name("SectionDataSet", "specimen", record)
    (donor,) = catalogue.related_by_name("Specimen", "donor", specimen)
    return {str(t["name"]) for t in catalogue.related_by_name("Donor", "transgenic_lines", donor)}


def injection_sites_of(catalogue: Catalogue, record: dict[str, Any]) -> set[str]:
    """The primary injection structures (acronyms) of a data set's specimen."""
    (specimen,) = catalogue.related_by_name("SectionDataSet", "specimen", record)
    injections = catalogue.related_by_name("Specimen", "stereotaxic_injections", specimen)
    return {
        str(s["acronym"])
        for i in injections
        for s in catalogue.related_by_name("Injection", "primary_injection_structure", i)
    }


def usable_images(catalogue: Catalogue, data_set_id: int) -> list[dict[str, Any]]:
    return [
        dict(i)
        for i in catalogue.lookup("SectionImage", "data_set_id", data_set_id)
        if not i["failed"]
    ]


def planned_data_sets(out: Path) -> tuple[set[int], int]:
    connection = sqlite3.connect(out / "manifest.sqlite")
    try:
        ids = {int(r[0]) for r in connection.execute("select distinct data_set_id from items")}
        (count,) = connection.execute("select count(*) from items").fetchone()
    finally:
        connection.close()
    return ids, int(count)


# -- selection ----------------------------------------------------------------------------------


def _expected_selection(catalogue: Catalogue, case: str) -> set[int]:
    records = [dict(r) for r in catalogue.records("SectionDataSet")]
    usable = [r for r in records if not r["failed"]]
    if case == "product5":
        return {r["id"] for r in usable if 5 in products_of(catalogue, r)}
    if case == "products1and3":
        return {r["id"] for r in usable if products_of(catalogue, r) & {1, 3}}
    if case == "sst_with_failed":
        return {r["id"] for r in records if "Sst-IRES-Cre" in lines_of(catalogue, r)}
    if case == "visp_connectivity":
        return {
            r["id"]
            for r in usable
            if "VISp" in injection_sites_of(catalogue, r) and 5 in products_of(catalogue, r)
        }
    if case == "union":
        return {VISP, ISH} | {r["id"] for r in usable if 3 in products_of(catalogue, r)}
    if case == "ids_file":
        return {CONNECTIVITY, ISH}
    raise AssertionError(case)


SELECTIONS = {
    "product5": ["--product", "5"],
    "products1and3": ["--product", "1", "--product", "3"],
    "sst_with_failed": [
        "--criteria",
        "specimen(donor(transgenic_lines[name$eq'Sst-IRES-Cre']))",
        "--include-failed",
    ],
    "visp_connectivity": [
        "--criteria",
        "products[id$eq5],specimen(stereotaxic_injections(primary_injection_structure"
        "[acronym$eq'VISp']))",
    ],
    "union": [
        "--dataset",
        str(VISP),
        "--criteria",
        f"[id$in{VISP},{ISH}]",
        "--product",
        "3",
        "--dataset",
        str(ISH),
    ],
    "ids_file": ["--ids-file", "IDS"],
}


@pytest.mark.parametrize("case", sorted(SELECTIONS))
def test_every_selection_option_enumerates_exactly_the_right_data_sets(
    sim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"# two experiments\n{CONNECTIVITY}\n\n{ISH}  # ISH\n{CONNECTIVITY}\n")
    paging = tmp_path / "paging.toml"
    paging.write_text("page_size = 3\n")  # several pages per query: the paging rules apply
    selection = [str(ids_file) if a == "IDS" else a for a in SELECTIONS[case]]
    out = tmp_path / "m"
    result = run_cli(capsys, *args(sim, out, "plan", "--config", str(paging), *selection))
    assert result.code == 0, result.err
    expected = _expected_selection(sim.catalogue, case)
    assert expected, case
    data_sets, count = planned_data_sets(out)
    assert data_sets == expected
    assert {int(p.parent.name) for p in out.glob("*/dataset.json")} == expected
    include_failed = "--include-failed" in selection
    images = sum(
        len(
            [
                i
                for i in sim.catalogue.lookup("SectionImage", "data_set_id", d)
                if include_failed or not i["failed"]
            ]
        )
        for d in expected
    )
    assert count == images
    assert f"planned {len(expected)} data set(s), {images} image(s), {images} item(s)" in (
        result.out
    )
    assert sim.counters.by_route.get("image", 0) == 0


def test_atlas_and_sections_select_atlas_images(
    sim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    result = run_cli(capsys, *args(sim, out, "plan", "--atlas", "2", "--sections", "2-5"))
    assert result.code == 0, result.err
    atlas_data_set = sim.catalogue.lookup("AtlasDataSet", "atlas_id", 2)[0]
    expected = {
        int(i["id"])
        for i in sim.catalogue.lookup("AtlasImage", "data_set_id", atlas_data_set["id"])
        if 2 <= int(i["section_number"]) <= 5
    }
    rows = ls_rows(capsys, out)
    assert {int(str(r["image_id"])) for r in rows} == expected and len(rows) == len(expected)
    assert {r["data_set_id"] for r in rows} == {atlas_data_set["id"]}
    assert all(str(r["path"]).startswith("atlas_2/section/ds4/") for r in rows)
    assert "1 atlas(es), 4 image(s), 4 item(s)" in result.out
    seed = json.loads((out / "atlas_2" / "atlas.json").read_text())
    assert seed["atlas_id"] == 2 and len(seed["atlas_images"]) >= len(expected)


# -- image kinds, colour windows ---------------------------------------------------------------


def test_each_image_kind_lands_at_its_path_byte_exact(
    sim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    kinds = ["--image", "section", "--image", "expression,projection"]
    selection = ["--dataset", str(CONNECTIVITY), "--dataset", str(ISH), "--atlas", "1"]
    extra = [*selection, *kinds, "--annotation", "--sections", "1-2", "--downsample", "3"]
    result = run_cli(capsys, *args(sim, out, "mirror", *extra))
    assert result.code == 0, result.err
    rows = ls_rows(capsys, out)
    seen: set[tuple[str, str]] = set()
    for row in rows:
        ref = relative(sim, row["url"])
        body = (out / str(row["path"])).read_bytes()
        assert body == expected_bytes(sim.catalogue, ref)
        assert row["status"] == "done" and row["size"] == len(body)
        assert row["sha256"] == hashlib.sha256(body).hexdigest()
        model, image = sim.catalogue.image(int(str(row["image_id"])))
        root = "atlas_1" if model == "AtlasImage" else str(image["data_set_id"])
        name = f"{image['section_number']:04d}_{image['id']}.jpg"
        assert row["path"] == f"{root}/{row['kind']}/ds3/{name}"
        seen.add((root, str(row["kind"])))
        service = {
            "section": "atlas_image_download?" if root == "atlas_1" else "section_image_download",
            "expression": "section_image_download",
            "projection": "projection_image_download",
            "annotation": "atlas_image_download",
        }[str(row["kind"])]
        assert ref.startswith(f"/api/v2/{service.rstrip('?')}/{image['id']}?")
        params = dict(parse_qsl(urlsplit(ref).query))
        assert params["downsample"] == "3"
        assert params.get("view") == ("expression" if row["kind"] == "expression" else None)
        assert params.get("projection") == ("true" if row["kind"] == "projection" else None)
        if row["kind"] == "annotation":
            assert (params["annotation"], params["atlas"]) == ("true", "1")
    # expression masks for ISH only, projection overlays for connectivity only
    assert seen == {
        (str(CONNECTIVITY), "section"),
        (str(CONNECTIVITY), "projection"),
        (str(ISH), "section"),
        (str(ISH), "expression"),
        ("atlas_1", "section"),
        ("atlas_1", "annotation"),
    }
    # ISH section 1 is marked failed: skipped; 2 + 2 connectivity, 1 + 1 ISH, 2 + 2 atlas
    assert len(rows) == 10


def test_range_auto_sends_the_equalization_and_explicit_windows_change_the_pixels(
    sim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    equalization = sim.catalogue.lookup("Equalization", "section_data_set_id", CONNECTIVITY)[0]
    window = ",".join(
        str(equalization[f"{c}_{e}"]) for c in ("red", "green", "blue") for e in ("lower", "upper")
    )
    assert window == "0,923,0,987,0,4095"
    selection = ["--dataset", str(CONNECTIVITY), "--dataset", str(ISH), "--sections", "2-3"]
    bodies: dict[str, dict[str, bytes]] = {}
    for setting in ("auto", "none", "0,2000,0,2000,0,4095"):
        out = tmp_path / setting.replace(",", "_")
        result = run_cli(capsys, *args(sim, out, "mirror", *selection, "--range", setting))
        assert result.code == 0, result.err
        bodies[setting] = {}
        for row in ls_rows(capsys, out):
            ref = relative(sim, row["url"])
            params = dict(parse_qsl(urlsplit(ref).query))
            body = (out / str(row["path"])).read_bytes()
            assert body == expected_bytes(sim.catalogue, ref)
            bodies[setting][str(row["path"])] = body
            if setting == "auto":
                # ISH has no Equalization: auto sends nothing for it
                assert params.get("range") == (window if row["data_set_id"] != ISH else None)
            else:
                assert params.get("range") == (None if setting == "none" else setting)
    connectivity = [p for p in bodies["auto"] if p.startswith(str(CONNECTIVITY))]
    assert len(connectivity) == 2 and len(bodies["auto"]) == 4
    for path in connectivity:
        # the service's default window is the Equalization: the same pixels either way
        assert bodies["auto"][path] == bodies["none"][path]
        assert bodies["auto"][path] != bodies["0,2000,0,2000,0,4095"][path]


# -- tiles --------------------------------------------------------------------------------------


def whole_image_ref(tile_ref: str) -> str:
    """The same rendering without the region: the whole image at the tier."""
    parts = urlsplit(tile_ref)
    region = {"left", "top", "width", "height"}
    kept = [(k, v) for k, v in parse_qsl(parts.query) if k not in region]
    return f"{parts.path}?{urlencode(kept, safe=',')}"


@pytest.mark.parametrize(("downsample", "tile"), [(1, 64), (2, 50)])
def test_tiles_cover_each_image_exactly_with_the_right_pixels(
    sim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], downsample: int, tile: int
) -> None:
    out = tmp_path / "m"
    extra = [
        "--dataset",
        str(CONNECTIVITY),
        "--image",
        "section",
        "--image",
        "projection",
        "--atlas",
        "1",
        "--annotation",
        "--sections",
        "2-3",
        "--downsample",
        str(downsample),
        "--tile",
        str(tile),
    ]
    result = run_cli(capsys, *args(sim, out, "mirror", *extra))
    assert result.code == 0, result.err
    rows = ls_rows(capsys, out)
    refs = {str(r["path"]): relative(sim, r["url"]) for r in rows}
    assert all(r["status"] == "done" for r in rows)
    indexes = sorted(out.rglob("index.json"))
    assert len(indexes) == 2 * 2 + 2 * 2  # 2 sections x 2 kinds, 2 atlas images x 2 kinds
    scale = 2**downsample
    for index_path in indexes:
        index = json.loads(index_path.read_text())
        _, image = sim.catalogue.image(index["image_id"])
        width, height = math.ceil(image["width"] / scale), math.ceil(image["height"] / scale)
        assert (index["tier"], index["tile_size"]) == (downsample, tile)
        assert (index["tier_width"], index["tier_height"]) == (width, height)
        assert (index["rows"], index["cols"]) == (
            math.ceil(height / tile),
            math.ceil(width / tile),
        )
        assert index["um_per_pixel"] == pytest.approx(image["resolution"] * scale)
        files = {p.name for p in index_path.parent.iterdir()} - {"index.json"}
        assert files == {t["file"] for t in index["tiles"]}
        canvas = Image.new("RGB", (width, height))
        area = 0
        for entry in index["tiles"]:
            path = index_path.parent / entry["file"]
            ref = refs[path.relative_to(out).as_posix()]
            body = path.read_bytes()
            assert body == expected_bytes(sim.catalogue, ref)
            params = dict(parse_qsl(urlsplit(ref).query))
            assert int(params["left"]) == image["x"] + entry["col"] * tile * scale
            assert int(params["top"]) == image["y"] + entry["row"] * tile * scale
            assert (int(params["width"]), int(params["height"])) == (
                entry["width"],
                entry["height"],
            )
            with Image.open(io.BytesIO(body)) as picture:
                assert picture.size == (entry["width"], entry["height"])
                canvas.paste(picture.convert("RGB"), (entry["col"] * tile, entry["row"] * tile))
            area += entry["width"] * entry["height"]
        assert area == width * height  # no overlap, no gap
        first = index_path.parent / index["tiles"][0]["file"]
        whole_ref = whole_image_ref(refs[first.relative_to(out).as_posix()])
        with Image.open(io.BytesIO(expected_bytes(sim.catalogue, whole_ref))) as whole:
            assert whole.size == (width, height)
            difference = ImageChops.difference(canvas, whole.convert("RGB"))
        mean = sum(ImageStat.Stat(difference).mean) / 3
        assert mean < 2.0, (index_path, mean)


@pytest.mark.slow
def test_full_resolution_tile_plan_of_an_experiment_streams_into_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = Catalogue.build(sections_per_dataset=140, image_scale=1.0)
    with serve_in_thread(catalogue, SimulatorConfig()) as sim:
        out = tmp_path / "m"
        extra = ["--dataset", str(CONNECTIVITY), "--downsample", "0", "--tile", "1024"]
        result = run_cli(capsys, *args(sim, out, "plan", *extra))
        assert result.code == 0, result.err
        images = usable_images(catalogue, CONNECTIVITY)
        expected = sum(
            math.ceil(int(i["width"]) / 1024) * math.ceil(int(i["height"]) / 1024) for i in images
        )
        assert expected > 60_000
        _, count = planned_data_sets(out)
        assert count == expected
        assert len(list(out.rglob("index.json"))) == len(images)
        assert f"{expected} item(s) ({expected} new)" in result.out
        assert sim.counters.by_route.get("image", 0) == 0
        again = run_cli(capsys, *args(sim, out, "plan", *extra))
        assert f"{expected} item(s) (0 new)" in again.out


# -- extras -------------------------------------------------------------------------------------


def test_extras_are_validated_recorded_and_not_redone(
    sim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    extra = [
        "--dataset",
        f"{CONNECTIVITY},{ISH}",
        "--sections",
        "2-2",
        "--with",
        "grid,unionizes",
        "--grid-types",
        "projection_density,injection_fraction",
        "--grid-resolution",
        "50",
    ]
    result = run_cli(capsys, *args(sim, out, "mirror", *extra))
    assert result.code == 0, result.err
    rows = {str(r["path"]): r for r in ls_rows(capsys, out)}
    extras = {p: r for p, r in rows.items() if r["image_id"] is None}
    assert set(extras) == {
        f"{CONNECTIVITY}/grid/projection_density_50.nrrd",
        f"{CONNECTIVITY}/grid/injection_fraction_50.nrrd",
        f"{CONNECTIVITY}/unionizes.json",
        f"{CONNECTIVITY}/unionizes.csv",
        f"{ISH}/grid/expression.zip",
    }
    for path, row in extras.items():
        body = (out / path).read_bytes()
        assert row["status"] == "done" and row["size"] == len(body) and len(body) > 0
        assert row["sha256"] == hashlib.sha256(body).hexdigest()
        if row["kind"] in ("grid", "expression_grid"):
            assert body == expected_bytes(sim.catalogue, relative(sim, row["url"]))
    nrrd = (out / f"{CONNECTIVITY}/grid/projection_density_50.nrrd").read_bytes()
    assert nrrd.startswith(b"NRRD000") and b"encoding: gzip" in nrrd
    with zipfile.ZipFile(out / f"{ISH}/grid/expression.zip") as archive:
        assert archive.testzip() is None
        assert {"energy.mhd", "density.raw", "intensity.raw"} <= set(archive.namelist())

    truth = sorted(
        (
            dict(r)
            for r in sim.catalogue.lookup(
                "ProjectionStructureUnionize", "section_data_set_id", CONNECTIVITY
            )
        ),
        key=lambda r: r["id"],
    )
    assert truth
    assert json.loads((out / f"{CONNECTIVITY}/unionizes.json").read_text()) == truth
    table = list(csv.DictReader(io.StringIO((out / f"{CONNECTIVITY}/unionizes.csv").read_text())))
    assert [int(r["id"]) for r in table] == [r["id"] for r in truth]
    assert table[0]["structure_id"] == str(truth[0]["structure_id"])

    # a second run costs no grid download and no unionize query
    def unionize_queries() -> int:
        return sum(n for u, n in sim.counters.by_url.items() if "ProjectionStructureUnionize" in u)

    grids, queries = sim.counters.by_route.get("grid", 0), unionize_queries()
    assert grids == 3 and queries >= 2
    again = run_cli(capsys, *args(sim, out, "mirror", *extra))
    assert again.code == 0, again.err
    assert sim.counters.by_route.get("grid", 0) == grids
    assert unionize_queries() == queries
    assert summary(again.err)["done"] == 0

    # a lost derived file is produced again, alone
    (out / f"{CONNECTIVITY}/unionizes.csv").unlink()
    third = run_cli(capsys, *args(sim, out, "mirror", *extra))
    assert third.code == 0, third.err
    assert summary(third.err)["done"] == 1
    assert (out / f"{CONNECTIVITY}/unionizes.csv").exists()
    assert unionize_queries() == queries + 1


def test_a_corrupt_grid_volume_is_never_recorded_done(
    sim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_config: Path
) -> None:
    out = tmp_path / "m"
    extra = [
        "--config",
        str(fast_config),
        "--dataset",
        str(CONNECTIVITY),
        "--sections",
        "1-1",
        "--with",
        "grid",
        "--retries",
        "2",
    ]
    sim.set_faults(fault_rate=1.0, fault_kinds={"corrupt_grid"})  # only grid answers are hit
    result = run_cli(capsys, *args(sim, out, "mirror", *extra))
    assert result.code == 1
    path = f"{CONNECTIVITY}/grid/projection_density_25.nrrd"
    (row,) = [r for r in ls_rows(capsys, out) if r["path"] == path]
    assert row["status"] == "failed" and row["sha256"] is None
    assert "NRRD" in str(row["error"]) and row["attempts"] == 3
    assert not (out / path).exists() and not list(out.rglob("*.part"))
    assert sim.counters.by_route.get("grid", 0) == 3
    assert [r["status"] for r in ls_rows(capsys, out) if r["kind"] == "section"] == ["done"]

    sim.set_faults(fault_rate=0.0)
    again = run_cli(capsys, *args(sim, out, "mirror", *extra))
    assert again.code == 0, again.err
    (row,) = [r for r in ls_rows(capsys, out) if r["path"] == path]
    body = (out / path).read_bytes()
    assert row["status"] == "done" and row["sha256"] == hashlib.sha256(body).hexdigest()
    assert body == expected_bytes(sim.catalogue, relative(sim, row["url"]))


# -- usage errors -------------------------------------------------------------------------------

USAGE = [
    (["--ids-file", "BADIDS"], "ids file BADIDS, line 3: not a data set id: 'abc'"),
    (["--ids-file", "MISSING"], "cannot read ids file MISSING: No such file or directory"),
    (["--product", "five"], "not a product id: 'five' (expected a positive integer)"),
    (["--product", "999"], "no SectionDataSet in product 999 at BASE"),
    (["--atlas", "0"], "not an atlas id: '0' (expected a positive integer)"),
    (["--atlas", "999"], "no AtlasImage in atlas 999 at BASE"),
    (["--criteria", "model::Specimen"], "invalid --criteria 'model::Specimen': expected RMA"),
    (
        ["--criteria", "[no_such_field$eq1]"],
        "the API rejected --criteria '[no_such_field$eq1]': Data Access error in query: "
        "unknown attribute 'no_such_field' for model SectionDataSet",
    ),
    (
        ["--criteria", "[transgenic_line$eq'Sst-IRES-Cre']"],
        "the API rejected --criteria \"[transgenic_line$eq'Sst-IRES-Cre']\": Data Access error "
        "in query: unknown attribute 'transgenic_line' for model SectionDataSet",
    ),
    (
        ["--criteria", "specimen(donors[id$eq1])"],
        "the API rejected --criteria 'specimen(donors[id$eq1])': Data Access error in query: "
        "unknown association 'donors' for model Specimen",
    ),
    (["--dataset", "1", "--sections", "9-3"], "invalid --sections '9-3': expected A-B"),
    (["--dataset", "1", "--image", "nissl"], "invalid images (--image): unknown image kind"),
    (["--dataset", "1", "--range", "0,923,0,987"], "invalid range: expected auto, none or six"),
    (["--dataset", "1", "--range", "0,923,0,987,0,4096"], "invalid range: values must be within"),
    (["--dataset", "1", "--range", "9,3,0,1,0,1"], "invalid range: red lower bound 9 must be"),
    (["--dataset", "1", "--tile", "4"], "tile must be 0 (whole images) or between 16 and 8192"),
    (["--dataset", "1", "--tile", "x"], "Invalid value for '--tile': 'x' is not a valid integer"),
    (["--dataset", "1", "--with", "movies"], "invalid extras (--with): unknown extra 'movies'"),
    (["--dataset", "1", "--grid-types", "x"], "invalid grid-types: unknown type 'x'"),
    (["--dataset", "1", "--grid-resolution", "30"], "grid-resolution must be one of 10, 25, 50"),
    (["--dataset", "1", "--annotation"], "--annotation applies to atlas images: add --atlas ID"),
    ([], "nothing selected: give --dataset, --ids-file, --product, --criteria, --atlas, "),
]


@pytest.mark.parametrize(("extra", "message"), USAGE)
def test_new_options_are_validated_in_one_line_with_exit_2(
    sim: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    bad_ids = tmp_path / "bad.txt"
    bad_ids.write_text("100141599\n# fine\nabc\n")
    names = {"BADIDS": str(bad_ids), "MISSING": str(tmp_path / "missing.txt")}
    extra = [names.get(a, a) for a in extra]
    message = message.replace("BASE", sim.base_url)
    for key, value in names.items():
        message = message.replace(key, value)
    for command in ("plan", "mirror"):
        result = run_cli(capsys, *args(sim, tmp_path / "m", command, *extra))
        assert result.code == 2, result.err
        lines = [x for x in result.err.splitlines() if x.startswith("allen-mirror: error")]
        assert len(lines) == 1 and lines[0].startswith(f"allen-mirror: error: {message}"), lines
        assert "Traceback" not in result.err
    assert sim.counters.by_route.get("image", 0) == 0


def test_data_set_record_helper_matches_the_seed(
    sim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    result = run_cli(capsys, *args(sim, out, "plan", "--dataset", str(CONNECTIVITY)))
    assert result.code == 0, result.err
    seeded = json.loads((out / str(CONNECTIVITY) / "dataset.json").read_text())["data_set"]
    helper = data_set_record(sim.catalogue, CONNECTIVITY)
    assert seeded["equalization"] == helper["equalization"]
    assert seeded["products"] == helper["products"]
