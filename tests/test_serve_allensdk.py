"""The real AllenSDK client (2.16.2) against `allen-mirror serve` over a mirror of the simulator.

The same script (tests/allensdk_client.py) runs twice with the AllenSDK environment's Python:
against the simulator, then against `serve`. Every call must return what the simulator
returned, every download must be the mirrored file, and what the mirror lacks must fail with
the 404 that names the `allen-mirror mirror` command.

AllenSDK 2.16.2 pins numpy<1.24 and pandas 1.5.3, which cannot share this project's
environment, so it lives in its own (`.venv-allensdk`, see the README's Development section;
`ALLENSDK_PYTHON` points elsewhere). Without it the tests skip, unless ``CI=true`` or
``CRAWLER_REQUIRE_ALLENSDK=1`` (set by .ci/run): then they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler.simulator import SimulatorConfig, ThreadedSimulator, serve_in_thread
from tests.conftest import REPO, small_catalogue
from tests.serving import ATLAS, DATA_SET, WINDOW, build_mirror, serving

pytestmark = pytest.mark.slow

CLIENT = REPO / "tests" / "allensdk_client.py"
OTHER_DATA_SET = 126862385  # in the simulator, not in the mirror
# Differ by design: a mirror holds only what was mirrored (a product's other experiments,
# renderings at other tiers), and both services compute image sync in floating point their way.
NOT_EQUAL = {"image.by_product", "download.not_mirrored.jpg", "rma.not_mirrored",
             "sync.image_to_reference", "sync.reference_to_image"}  # fmt: skip


def allensdk_python() -> str:
    """The AllenSDK environment's interpreter, or skip (fail where it is required)."""
    python = os.environ.get("ALLENSDK_PYTHON") or str(REPO / ".venv-allensdk" / "bin" / "python")
    probe = [python, "-c", "import allensdk; print(allensdk.__version__)"]
    try:
        found = subprocess.run(probe, capture_output=True, text=True, timeout=60).stdout.strip()
    except OSError:
        found = ""
    if found == "2.16.2":
        return python
    message = (
        f"no AllenSDK 2.16.2 at {python}: install it as the README's Development section says "
        "(tests/requirements-allensdk.txt)"
    )
    if os.environ.get("CI") == "true" or os.environ.get("CRAWLER_REQUIRE_ALLENSDK") == "1":
        pytest.fail(message + "; CI=true or CRAWLER_REQUIRE_ALLENSDK=1 requires it")
    pytest.skip(message)


@pytest.fixture(scope="module")
def sim() -> Iterator[ThreadedSimulator]:
    # total_rows counting joined rows is a quirk of the live service a mirror does not repeat
    with serve_in_thread(small_catalogue(4), SimulatorConfig(overstate_total_rows=False)) as s:
        yield s


def ids(sim: ThreadedSimulator, mirror: Path) -> dict[str, Any]:
    """The ids the client script asks about: an image, a mirrored tile of it, an atlas image."""
    index_path = next((mirror / str(DATA_SET) / "section" / "ds2" / "tiles").glob("*/index.json"))
    image = sim.catalogue.get("SectionImage", int(index_path.parent.name.split("_")[1]))
    assert image is not None
    tile = json.loads(index_path.read_text())["tiles"][1]
    atlas_images = sim.catalogue.lookup("AtlasImage", "section_number", 1)
    return {
        "data_set": DATA_SET,
        "other_data_set": OTHER_DATA_SET,
        "image": image["id"],
        "section_number": image["section_number"],
        "atlas_image": next(i["id"] for i in atlas_images if i["annotated"]),
        "tile": {"downsample": 2, **{k: tile[k] for k in ("left", "top", "width", "height")}},
        "range": WINDOW,
        "tile_file": str(index_path.parent / tile["file"]),
    }


def run_client(python: str, base: str, where: Path, asked: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [python, str(CLIENT), base, str(where), json.dumps(asked)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results: dict[str, Any] = json.loads(done.stdout)
    return results


@pytest.fixture(scope="module")
def runs(sim: ThreadedSimulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    python = allensdk_python()
    root = tmp_path_factory.mktemp("allensdk")
    mirror = build_mirror(sim, root / "mirror")
    asked = ids(sim, mirror)
    simulated = run_client(python, sim.base_url, root / "from_simulator", asked)
    with serving(mirror, log_path=root / "serve.log") as served:
        mirrored = run_client(python, served.base_url, root / "from_mirror", asked)
        requests = served.events()
    return {"sim": simulated, "serve": mirrored, "root": root, "mirror": mirror,
            "ids": asked, "requests": requests}  # fmt: skip


def test_every_call_returns_what_the_simulator_returned(runs: dict[str, Any]) -> None:
    simulated, mirrored = runs["sim"], runs["serve"]
    assert simulated.keys() == mirrored.keys()
    failed = {k: v for k, v in simulated.items() if isinstance(v, dict) and "error" in v}
    assert failed == {}  # every call works against the simulator: the comparison means something
    for name in sorted(simulated.keys() - NOT_EQUAL):
        assert mirrored[name] == simulated[name], name
    assert simulated["rma.images_page"] and simulated["ontology.tree"]["count"] > 10
    assert simulated["ontology.tree"]["ancestors"][:2] == ["VISp", "VIS"]


def test_image_sync_numbers_agree(runs: dict[str, Any]) -> None:
    simulated, mirrored = runs["sim"], runs["serve"]
    point = mirrored["sync.image_to_reference"]["image_to_reference"]
    expected = simulated["sync.image_to_reference"]["image_to_reference"]
    assert [point[k] for k in "xyz"] == pytest.approx([expected[k] for k in "xyz"], rel=1e-9)
    hit, want = mirrored["sync.reference_to_image"][0], simulated["sync.reference_to_image"][0]
    assert hit["image_sync"]["section_image_id"] == want["image_sync"]["section_image_id"]
    assert [hit["image_sync"][k] for k in "xy"] == pytest.approx(
        [want["image_sync"][k] for k in "xy"], rel=1e-9
    )


def test_downloads_are_the_mirrored_files_byte_for_byte(runs: dict[str, Any]) -> None:
    root, mirror, asked = runs["root"], runs["mirror"], runs["ids"]
    image = asked["image"]
    name = f"{asked['section_number']:04d}_{image}.jpg"
    here = mirror / str(DATA_SET)
    expected = {
        "section.jpg": here / "section" / "ds4" / name,
        "section_default_range.jpg": here / "section" / "ds4" / name,
        "projection.jpg": here / "projection" / "ds4" / name,
        "tile.jpg": Path(asked["tile_file"]),
        "grid_projection_density.nrrd": here / "grid" / "projection_density_25.nrrd",
        "mca_projection_density.nrrd": here / "grid" / "projection_density_25.nrrd",
    }
    atlas = next((mirror / f"atlas_{ATLAS}" / "annotation" / "ds4").glob("0001_*.jpg"))
    expected["atlas_annotation.jpg"] = atlas
    for downloaded, source in expected.items():
        got = (root / "from_mirror" / downloaded).read_bytes()
        assert got == source.read_bytes(), downloaded
        assert got == (root / "from_simulator" / downloaded).read_bytes(), downloaded


def test_what_is_not_mirrored_gets_the_404_with_its_hint(runs: dict[str, Any]) -> None:
    mirrored, simulated = runs["serve"], runs["sim"]
    # AllenSDK raises with the status line's reason: the hint reaches the script's traceback
    error = mirrored["download.not_mirrored.jpg"]["error"]
    assert error.startswith("HTTPError: 404 Client Error: Not Found: not in this mirror: image")
    assert f"allen-mirror mirror --out {runs['mirror']} --dataset {DATA_SET}" in error
    assert "--downsample 3" in error
    assert simulated["download.not_mirrored.jpg"] == "ok"
    error = mirrored["rma.not_mirrored"]["error"]
    hint = f"HTTP Error 404: Not Found: not in this mirror: SectionDataSet {OTHER_DATA_SET}"
    assert hint in error
    assert f"allen-mirror mirror --out {runs['mirror']} --dataset {OTHER_DATA_SET}" in error
    assert simulated["rma.not_mirrored"][0]["id"] == OTHER_DATA_SET
    assert mirrored["image.by_product"] == [DATA_SET]  # what the mirror holds of product 5
    missing = [e for e in runs["requests"] if e["status"] == 404]
    assert [e["missing"] for e in missing] == [
        f"image of SectionImage {runs['ids']['image']} at downsample 3",
        f"SectionDataSet {OTHER_DATA_SET}",
    ]
    assert all(e["origin"] == "mirror" for e in runs["requests"])
