"""``allen-mirror catalogue`` on real mirrors made against the simulator: pages, thumbnails,
incremental rebuilds, failures shown with their errors, the history page and the report's
timeline."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from crawler.cli import main
from crawler.simulator import SimulatorConfig, serve_in_thread
from tests.conftest import run_cli, small_catalogue

CONNECTIVITY, ISH = 100141599, 69782969


def make_mirror(out: Path) -> int:
    """Two data sets and an atlas, with a failing image, the CCF files and a tiled run; returns
    the id of the image that always fails."""
    catalogue = small_catalogue(4)
    images = [
        i
        for i in catalogue.records("SectionImage")
        if i["data_set_id"] == CONNECTIVITY and not i["failed"]
    ]
    broken = images[-1]["id"]
    config = SimulatorConfig(permanent_failures={broken: "http_404"})
    with serve_in_thread(catalogue, config) as sim:
        common = ["--out", str(out), "--api-base", sim.base_url, "--no-progress"]
        common += ["--log-format", "json", "--retries", "1"]
        archive = f"{sim.base_url}/informatics-archive/current-release/mouse_ccf"
        selection = ["--dataset", str(CONNECTIVITY), "--dataset", str(ISH), "--atlas", "1"]
        what = ["--image", "section,projection,expression", "--annotation", "--sections", "1-4"]
        extras = ["--with", "ontology,annotation", "--archive-base", archive]
        first = main(["mirror", *common, *selection, *what, *extras])
        assert first == 1  # the broken image failed
        tiled = ["--dataset", str(CONNECTIVITY), "--tile", "128", "--sections", "1-2"]
        # The broken image lies outside this selection: it stays for a run that selects it.
        assert main(["mirror", *common, *tiled]) == 0
    return int(broken)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    out = tmp_path_factory.mktemp("catalogue") / "m"
    broken = make_mirror(out)
    yield out, broken


@pytest.fixture
def copy(mirror: tuple[Path, int], tmp_path: Path) -> tuple[Path, int]:
    """A private copy of the mirror, for tests that change it."""
    out, broken = mirror
    target = tmp_path / "m"
    shutil.copytree(out, target, ignore=shutil.ignore_patterns("catalogue"))
    return target, broken


def build(capsys: pytest.CaptureFixture[str], out: Path, *extra: str) -> dict[str, int]:
    result = run_cli(capsys, "catalogue", "--out", str(out), *extra)
    assert result.code == 0, result.err
    numbers = re.search(
        r"(\d+) data set\(s\).*?(\d+) page\(s\) rendered, (\d+) written, (\d+) thumbnail",
        result.out,
    )
    assert numbers, result.out
    keys = ("data_sets", "rendered", "written", "thumbs")
    return dict(zip(keys, (int(n) for n in numbers.groups()), strict=True))


def test_builds_every_page_with_thumbnails_links_and_failures(
    copy: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    out, broken = copy
    stats = build(capsys, out)
    site = out / "catalogue"
    assert stats["data_sets"] == 3
    assert {p.name for p in site.glob("*.html")} == {
        "index.html",
        "history.html",
        f"{CONNECTIVITY}.html",
        f"{ISH}.html",
        "atlas_1.html",
    }
    page = (site / f"{CONNECTIVITY}.html").read_text()
    # every linked file exists, relative to the page
    for href in re.findall(r'href="([^"#]+)"', page):
        assert (site / href).exists(), href
    thumbs = re.findall(r'<img src="(thumbs/[^"]+)" width="(\d+)" height="(\d+)"', page)
    assert thumbs
    for src, width, height in thumbs:
        with Image.open(site / src) as image:
            assert image.size == (int(width), int(height)) and max(image.size) <= 160
    # the broken image's section shows its error, and has no picture
    card = re.search(rf'<figure class="sec failed" id="s\d+">(?:(?!</figure>).)*{broken}.*?'
                     r"</figure>", page)  # fmt: skip
    assert card and "HTTP 404" in card.group(0) and "<img" not in card.group(0)
    # tiled variants of sections 1 and 2 link to their tile directories
    assert page.count("section ds4 tiles") == 2
    # the CCF position and structure of aligned sections (ontology and annotation mirrored)
    assert re.search(r"\d+, \d+, \d+ µm · (outside the brain|[^<]+\([^<]+\))", page)
    index = (site / "index.html").read_text()
    assert "Mouse Connectivity Projection" in index and "atlas_1.html" in index
    assert "structure_graph_1.json" in index  # the atlas-wide files


def test_second_build_renders_nothing_and_a_changed_image_gets_a_new_thumbnail(
    copy: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = copy
    first = build(capsys, out)
    assert first["thumbs"] > 0 and first["rendered"] == 3
    site = out / "catalogue"
    before = {p: p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()}
    again = build(capsys, out)
    assert again == {"data_sets": 3, "rendered": 0, "written": 0, "thumbs": 0}
    after = {p: p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()}
    assert after == before, "nothing rewritten"

    # replace one mirrored image (new pixels, new sha256 in the manifest): only its data set's
    # page is rendered again, and only its thumbnail is made
    database = sqlite3.connect(out / "manifest.sqlite")
    path, old_sha = database.execute(
        "SELECT path, sha256 FROM items WHERE status='done' AND path LIKE ? "
        "AND path NOT LIKE '%tiles%' ORDER BY id LIMIT 1",
        (f"{ISH}/%",),
    ).fetchone()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out / path, "JPEG")
    data = (out / path).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    database.execute("UPDATE items SET sha256=?, size=? WHERE path=?", (sha, len(data), path))
    database.commit()
    database.close()
    changed = build(capsys, out)
    assert changed["rendered"] == 1 and changed["thumbs"] == 1
    assert (site / "thumbs" / sha[:2] / f"{sha}.jpg").exists()
    assert not (site / "thumbs" / old_sha[:2] / f"{old_sha}.jpg").exists(), "old thumb removed"
    assert f"{sha}.jpg" in (site / f"{ISH}.html").read_text()


def test_to_puts_the_site_elsewhere_with_links_back_into_the_mirror(
    mirror: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = mirror
    index = tmp_path / "www" / "allen.html"
    build(capsys, out, "--to", str(index))
    page = (index.parent / f"{CONNECTIVITY}.html").read_text()
    assert 'href="allen.html"' in page  # the header links to the index by its name
    links = [h for h in re.findall(r'href="([^"#]+)"', page) if h.endswith(".jpg")]
    assert links and all((index.parent / h).resolve().is_file() for h in links)
    assert not (out / "catalogue").exists()


def test_history_page_charts_runs_failures_and_throughput(
    mirror: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = mirror
    # (two runs within one second share a report name: the newer report is the one kept)
    reports = sorted((out / ".reports").glob("*-mirror.json"))
    assert reports
    timeline = json.loads(reports[-1].read_text())["timeline"]
    assert timeline and timeline[-1]["done"] > 0
    assert [s["seconds"] for s in timeline] == sorted(s["seconds"] for s in timeline)
    index = tmp_path / "site" / "index.html"
    build(capsys, out, "--to", str(index))
    history = (index.parent / "history.html").read_text()
    assert history.count("<svg") == 6  # items, bytes, duration, reasons, items/s, bytes/s
    assert "HTTP 404" in history  # failures by reason, from the report
    assert "#1</td>" in history and "#2</td>" in history


def test_reading_a_missing_manifest_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "catalogue", "--out", str(tmp_path / "nothing"))
    assert result.code == 2 and "no manifest" in result.err
