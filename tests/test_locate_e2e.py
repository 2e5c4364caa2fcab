"""``locate`` end to end: mirror from the simulator with the ontology and the annotation, then
answer offline exactly what the simulator's synchronization services answer over HTTP."""

from __future__ import annotations

import json
import math
import random
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crawler.atlas.mirror import image_point, read_structures, reference_point
from crawler.cli import main
from crawler.simulator import Catalogue, SimulatorConfig, ThreadedSimulator, serve_in_thread
from crawler.simulator import ontology as sim_ontology
from crawler.simulator.ccf_volumes import ARCHIVE_PREFIX, label_at, volume_shape
from tests.conftest import FAST, run_cli, small_catalogue

CONNECTIVITY, ISH = 100141599, 69782969
RESOLUTION = 100
EXTRAS = ["--with", "ontology,annotation", "--ccf-resolution", str(RESOLUTION)]
PX, UM = 0.01, 0.01  # the tolerances the live service must be matched to


def mirror_args(sim: ThreadedSimulator, out: Path, *data_sets: int) -> list[str]:
    ids = [arg for d in data_sets for arg in ("--dataset", str(d))]
    return [
        "mirror", *ids, "--out", str(out), "--api-base", sim.base_url,
        "--archive-base", sim.base_url + ARCHIVE_PREFIX, *FAST,
    ]  # fmt: skip


def service(sim: ThreadedSimulator, path: str) -> Any:
    with urllib.request.urlopen(sim.base_url + path, timeout=10) as response:
        envelope = json.loads(response.read())
    assert envelope["success"] is True, envelope
    return envelope["msg"]


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThreadedSimulator, Path]]:
    """A connectivity and an ISH data set mirrored with ontology and annotation, once."""
    out = tmp_path_factory.mktemp("locate") / "mirror"
    with serve_in_thread(small_catalogue(), SimulatorConfig()) as sim:
        assert main([*mirror_args(sim, out, CONNECTIVITY, ISH), *EXTRAS]) == 0
        yield sim, out


def images_of(out: Path, data_set_id: int) -> list[dict[str, Any]]:
    document = json.loads((out / str(data_set_id) / "dataset.json").read_bytes())
    images: list[dict[str, Any]] = document["section_images"]
    return images


def locate(capsys: pytest.CaptureFixture[str], out: Path, *args: str) -> dict[str, Any]:
    result = run_cli(capsys, "locate", "--out", str(out), *args)
    assert result.code == 0, result.err
    answer: dict[str, Any] = json.loads(result.out)
    return answer


def expected_structure(x: float, y: float, z: float) -> int:
    """What the simulator's annotation holds at a point: voxel floor(coordinate / R)."""
    index = [math.floor(c / RESOLUTION) for c in (x, y, z)]
    if not all(0 <= n < size for n, size in zip(index, volume_shape(RESOLUTION), strict=True)):
        return 0
    return int(label_at(*index, RESOLUTION))


def assert_structure(answer: dict[str, Any], x: float, y: float, z: float) -> int:
    sid = expected_structure(x, y, z)
    assert answer["structure_id"] == sid
    if sid:
        structure = sim_ontology.by_id(sid)
        assert (answer["acronym"], answer["name"]) == (structure.acronym, structure.name)
    else:
        assert answer["acronym"] is None and answer["name"] is None
    return sid


def test_seeding_keeps_alignments_without_a_request_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve_in_thread(small_catalogue(), SimulatorConfig()) as sim:
        result = run_cli(capsys, *mirror_args(sim, tmp_path / "m", CONNECTIVITY))
        assert result.code == 0, result.err
        # One page of the data set, one of its images: alignments came inside them.
        assert sim.counters.by_route["rma"] == 2
        catalogue = sim.catalogue
    document = json.loads((tmp_path / "m" / str(CONNECTIVITY) / "dataset.json").read_bytes())
    (alignment3d,) = catalogue.lookup("Alignment3d", "aligned_id", CONNECTIVITY)
    assert document["data_set"]["alignment3d"] == alignment3d
    assert {f"tvr_{n:02d}" for n in range(12)} | {f"trv_{n:02d}" for n in range(12)} <= set(
        document["data_set"]["alignment3d"]
    )
    assert len(document["section_images"]) == 8
    for image in document["section_images"]:
        (alignment2d,) = catalogue.lookup("Alignment2d", "section_image_id", image["id"])
        assert image["alignment2d"] == alignment2d
        assert {f"tsv_{n:02d}" for n in range(6)} <= set(image["alignment2d"])


def test_image_to_reference_matches_the_service(
    mirrored: tuple[ThreadedSimulator, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    sim, out = mirrored
    rng = random.Random(17)
    structures = set()
    for data_set_id in (CONNECTIVITY, ISH):
        for image in images_of(out, data_set_id)[::2]:
            for downsample in (0, 0, 2, 4):
                scale = 2**downsample
                x = rng.uniform(image["x"], image["x"] + image["width"]) / scale
                y = rng.uniform(image["y"], image["y"] + image["height"]) / scale
                args = ["--image", str(image["id"]), "--x", repr(x), "--y", repr(y)]
                if downsample:
                    args += ["--downsample", str(downsample)]
                answer = locate(capsys, out, *args)
                live = service(
                    sim,
                    f"/api/v2/image_to_reference/{image['id']}.json?x={x * scale}&y={y * scale}",
                )["image_to_reference"]
                assert answer["image_id"] == image["id"]
                for axis in "xyz":
                    assert answer[axis] == pytest.approx(live[axis], abs=UM)
                structures.add(assert_structure(answer, live["x"], live["y"], live["z"]))
    assert 0 in structures and len(structures) >= 4  # inside and outside the brain, varied


def test_reference_to_image_matches_the_service(
    mirrored: tuple[ThreadedSimulator, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    sim, out = mirrored
    rng = random.Random(71)
    seen_sections = set()
    for data_set_id in (CONNECTIVITY, ISH):
        # Points on the sections' own planes (where a user's point usually is) and anywhere.
        images = images_of(out, data_set_id)
        for n in range(16):
            if n % 2:
                x, y, z = rng.uniform(0, 13200), rng.uniform(0, 8000), rng.uniform(0, 11400)
            else:
                image = images[n % len(images)]
                pixel = (image["x"] + image["width"] / 3, image["y"] + image["height"] / 2)
                on = service(sim, f"/api/v2/image_to_reference/{image['id']}.json"
                             f"?x={pixel[0]}&y={pixel[1]}")["image_to_reference"]  # fmt: skip
                x, y, z = on["x"], on["y"], on["z"]
            answer = locate(
                capsys, out, "--dataset", str(data_set_id), "--reference", f"{x},{y},{z}"
            )
            (hit,) = service(
                sim,
                f"/api/v2/reference_to_image/9.json?x={x}&y={y}&z={z}"
                f"&section_data_set_ids={data_set_id}",
            )
            live = hit["image_sync"]
            for key in ("section_data_set_id", "section_image_id"):
                assert answer[key] == live[key]
            assert answer["section_number"] == live["section_number"]
            assert answer["x"] == pytest.approx(live["x"], abs=PX)
            assert answer["y"] == pytest.approx(live["y"], abs=PX)
            assert_structure(answer, x, y, z)
            seen_sections.add(answer["section_image_id"])
    assert len(seen_sections) >= 6


def test_the_python_api_is_vectorised_and_agrees(
    mirrored: tuple[ThreadedSimulator, Path],
) -> None:
    sim, out = mirrored
    image = images_of(out, CONNECTIVITY)[3]
    xs = np.linspace(image["x"], image["x"] + image["width"], 7)
    ys = np.linspace(image["y"], image["y"] + image["height"], 5)[:, None]
    points = image_point(out, image["id"], xs, ys)
    assert points.x.shape == (5, 7)
    for row, col in [(0, 0), (4, 6), (2, 3)]:
        live = service(
            sim, f"/api/v2/image_to_reference/{image['id']}.json?x={xs[col]}&y={ys[row, 0]}"
        )["image_to_reference"]
        got = (points.x[row, col], points.y[row, col], points.z[row, col])
        assert got == pytest.approx((live["x"], live["y"], live["z"]), abs=UM)
    back = reference_point(out, CONNECTIVITY, points.x, points.y, points.z)
    assert (back.section_image_id == image["id"]).all()
    assert np.allclose(back.x, np.broadcast_to(xs, (5, 7)), atol=0.5)  # records keep 6 digits


def test_locate_is_offline_and_writes_nothing(
    mirrored: tuple[ThreadedSimulator, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, source = mirrored
    out = tmp_path / "copy"
    shutil.copytree(source, out)  # the simulator never saw this directory's requests
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    image = images_of(out, CONNECTIVITY)[0]
    requests_before = mirrored[0].counters.requests_total
    locate(capsys, out, "--image", str(image["id"]), "--x", "10", "--y", "20")
    locate(capsys, out, "--dataset", str(CONNECTIVITY), "--reference", "6000,4000,5000")
    assert mirrored[0].counters.requests_total == requests_before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_without_the_annotation_there_is_no_structure(
    mirrored: tuple[ThreadedSimulator, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "copy"
    shutil.copytree(mirrored[1], out)
    (out / "ccf" / f"annotation_{RESOLUTION}.nrrd").unlink()
    answer = locate(capsys, out, "--dataset", str(CONNECTIVITY), "--reference", "6000,4000,5000")
    assert set(answer) == {"section_data_set_id", "section_image_id", "section_number", "x", "y"}


def _drop(catalogue: Catalogue, model: str, field: str, value: int) -> None:
    (record,) = catalogue.lookup(model, field, value)
    catalogue.tables[model].pop(int(record["id"]))  # type: ignore[arg-type]
    catalogue._invalidate()  # the simulator's indexes are rebuilt on the next lookup


def test_no_alignment_is_exit_1_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = small_catalogue()
    unaligned_image = next(
        int(str(i["id"])) for i in catalogue.lookup("SectionImage", "data_set_id", CONNECTIVITY)
    )
    _drop(catalogue, "Alignment2d", "section_image_id", unaligned_image)
    _drop(catalogue, "Alignment3d", "aligned_id", ISH)
    out = tmp_path / "m"
    with serve_in_thread(catalogue, SimulatorConfig()) as sim:
        result = run_cli(capsys, *mirror_args(sim, out, CONNECTIVITY, ISH), "--include-failed")
        assert result.code == 0, result.err
    (kept,) = [i for i in images_of(out, CONNECTIVITY) if i["id"] == unaligned_image]
    assert "alignment2d" in kept and kept["alignment2d"] is None  # recorded as absent
    ish = json.loads((out / str(ISH) / "dataset.json").read_bytes())["data_set"]
    assert "alignment3d" in ish and ish["alignment3d"] is None
    cases = [
        (["--image", str(unaligned_image), "--x", "1", "--y", "1"], f"image {unaligned_image}"),
        (["--dataset", str(ISH), "--reference", "1,2,3"], f"data set {ISH}"),
        (["--image", str(images_of(out, ISH)[0]["id"]), "--x", "1", "--y", "1"], f"data set {ISH}"),
    ]
    for args, named in cases:
        result = run_cli(capsys, "locate", "--out", str(out), *args)
        assert result.code == 1, result
        assert result.out == "" and result.err.count("\n") == 1
        assert result.err.startswith("allen-mirror: error: ") and named in result.err
        assert "has no alignment" in result.err


def test_a_mirror_from_before_alignments_says_so(
    mirrored: tuple[ThreadedSimulator, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "old"
    (out / str(CONNECTIVITY)).mkdir(parents=True)
    document = json.loads((mirrored[1] / str(CONNECTIVITY) / "dataset.json").read_bytes())
    document["data_set"].pop("alignment3d")
    for image in document["section_images"]:
        image.pop("alignment2d")
    (out / str(CONNECTIVITY) / "dataset.json").write_text(json.dumps(document))
    image_id = document["section_images"][0]["id"]
    for args in (
        ["--image", str(image_id), "--x", "1", "--y", "1"],
        ["--dataset", str(CONNECTIVITY), "--reference", "1,2,3"],
    ):
        result = run_cli(capsys, "locate", "--out", str(out), *args)
        assert result.code == 1 and "run 'allen-mirror mirror' again" in result.err, result


USAGE = [
    (["--image", "999", "--x", "1", "--y", "1"], "no section image 999 in the mirror at OUT"),
    (["--dataset", "999", "--reference", "1,2,3"], "no data set 999 in the mirror at OUT"),
    (["--image", "IMG", "--x", "abc", "--y", "1"], "invalid --x 'abc': expected a number"),
    (["--image", "IMG", "--x", "nan", "--y", "1"], "invalid --x 'nan': expected a finite number"),
    (["--image", "IMG", "--x", "1"], "--image takes --x and --y (pixels), not --reference"),
    (["--image", "IMG", "--x", "1", "--y", "1", "--downsample", "-1"], "invalid --downsample '-1'"),
    (["--image", "x7", "--x", "1", "--y", "1"], "not an image id: 'x7'"),
    (["--dataset", "DS", "--reference", "1,2"], "invalid --reference '1,2': expected X,Y,Z"),
    (["--dataset", "DS", "--reference", "1,2,z"], "invalid --reference 'z': expected a number"),
    (["--dataset", "DS", "--x", "1", "--reference", "1,2,3"], "--dataset takes --reference"),
    (["--x", "1", "--y", "1"], "give either --image ID with --x and --y, or --dataset ID"),
    (["--image", "IMG", "--dataset", "DS"], "give either --image ID with --x and --y"),
]


@pytest.mark.parametrize(("args", "message"), USAGE)
def test_usage_errors_are_one_line_and_exit_2(
    mirrored: tuple[ThreadedSimulator, Path],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    out = mirrored[1]
    image = str(images_of(out, CONNECTIVITY)[0]["id"])
    values = [a.replace("IMG", image).replace("DS", str(CONNECTIVITY)) for a in args]
    result = run_cli(capsys, "locate", "--out", str(out), *values)
    assert result.code == 2, result
    assert result.err.count("\n") == 1 and result.out == ""
    assert message.replace("OUT", str(out)) in result.err


def test_no_mirror_and_a_damaged_annotation_are_usage_errors(
    mirrored: tuple[ThreadedSimulator, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "locate", "--out", str(tmp_path / "none"), "--dataset", "1",
                     "--reference", "1,2,3")  # fmt: skip
    assert result.code == 2 and "no mirror at" in result.err
    out = tmp_path / "copy"
    shutil.copytree(mirrored[1], out)
    (out / "ccf" / f"annotation_{RESOLUTION}.nrrd").write_bytes(b"<html>outage</html>")
    result = run_cli(capsys, "locate", "--out", str(out), "--dataset", str(CONNECTIVITY),
                     "--reference", "1,2,3")  # fmt: skip
    assert result.code == 2 and result.err.count("\n") == 1
    assert "verify --repair" in result.err and "API" not in result.err


def test_a_million_points_take_well_under_a_second(
    mirrored: tuple[ThreadedSimulator, Path],
) -> None:
    """Measured once, bound generously (the shared test machine is slow): ~0.03 s, 0.1 s and
    0.05 s on a developer machine for the three steps."""
    out = mirrored[1]
    image = images_of(out, CONNECTIVITY)[3]
    rng = np.random.default_rng(0)
    xs = rng.uniform(image["x"], image["x"] + image["width"], 1_000_000)
    ys = rng.uniform(image["y"], image["y"] + image["height"], 1_000_000)
    structures = read_structures(out)
    assert structures is not None
    started = time.perf_counter()
    points = image_point(out, image["id"], xs, ys)
    back = reference_point(out, CONNECTIVITY, points.x, points.y, points.z)
    ids = structures.at(points.x, points.y, points.z)
    elapsed = time.perf_counter() - started
    assert back.x.shape == ids.shape == (1_000_000,)
    assert elapsed < 5.0, elapsed
