"""The catalogue's pure parts, table-tested: paths, sections, reasons, charts, escaping, the
streaming structure lookup and the report's timeline."""

from __future__ import annotations

from pathlib import Path

import nrrd
import numpy as np
import pytest

from crawler.atlas import structure_at
from crawler.atlas.annotation import values_at
from crawler.catalogue.model import ImageRef, collapse, failure_reason, image_ref
from crawler.catalogue.pages import DataSetView, SectionView, data_set_page, index_page, strip_of
from crawler.catalogue.records import describe
from crawler.catalogue.svg import bar_chart, hbar_chart, human_bytes, nice_ceiling, rates
from crawler.recorder import TIMELINE_POINTS, FetchStats, thin

EVIL = '<script>alert("x")</script>'


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("1/section/ds4/0001_102.jpg", ImageRef(1, 102, "section", "ds4", None)),
        ("atlas_1/annotation/ds4/0012_7.jpg", ImageRef(12, 7, "annotation", "ds4", None)),
        (
            "1/projection/ds0/tiles/0003_9/r001_c002.jpg",
            ImageRef(3, 9, "projection", "ds0", "1/projection/ds0/tiles/0003_9"),
        ),
        ("1/grid/projection_density_25.nrrd", None),
        ("1/unionizes.json", None),
        ("ccf/annotation_25.nrrd", None),
        ("1/section/ds4/tiles/0001_2/index.json", None),
    ],
)
def test_image_ref(path: str, expected: ImageRef | None) -> None:
    assert image_ref(path) == expected


def test_collapse_merges_tiles_orders_sections_and_keeps_errors() -> None:
    tiles = "1/section/ds0/tiles/0002_20"
    rows = [
        (f"{tiles}/r000_c000.jpg", "section", "done", 10, "a" * 64, None, "2026-01-01 00:00:00"),
        ("1/section/ds4/0002_20.jpg", "section", "done", 5, "b" * 64, None, None),
        ("1/section/ds4/0001_10.jpg", "section", "failed", None, None, "HTTP 404", None),
        (f"{tiles}/r000_c001.jpg", "section", "failed", None, None, "timeout", None),
        ("1/grid/projection_density_25.nrrd", "grid", "done", 99, "c" * 64, None, None),
    ]
    sections, others = collapse(rows)
    assert [(s.number, s.image_id) for s in sections] == [(1, 10), (2, 20)]
    first, second = sections
    assert first.main() is not None and first.main().status == "failed"  # type: ignore[union-attr]
    assert first.failed[0].error == "HTTP 404"
    whole, tiled = sorted(second.variants, key=lambda v: v.tiled)
    assert (whole.tiled, whole.digest, whole.status) == (False, "b" * 64, "done")
    assert (tiled.path, tiled.counts, tiled.size) == (tiles, {"done": 1, "failed": 1}, 10)
    assert tiled.status == "failed" and tiled.error == "timeout" and len(tiled.digest) == 64
    assert second.main() is whole  # done before failed
    assert [o.path for o in others] == ["1/grid/projection_density_25.nrrd"]
    # a tile's new sha256 changes its image's digest
    changed = [(*rows[0][:4], "d" * 64, *rows[0][5:]), *rows[1:]]
    assert collapse(changed)[0][1].variants[0].digest != tiled.digest


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        ("HTTP 404", 404, "HTTP 404"),
        ("cannot connect to host:80", None, "cannot connect to host"),
        ("truncated body: 1200 of 5000 bytes", None, "truncated body"),
        ("got 123 bytes", None, "got N bytes"),
        (None, None, "unknown"),
        ("x" * 80, None, "x" * 47 + "…"),
    ],
)
def test_failure_reason(error: str | None, status: int | None, reason: str) -> None:
    assert failure_reason(error, status) == reason


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1.0), (0.3, 0.5), (7, 10.0), (250, 500.0), (1200, 2000.0), (-3, 1.0)]
)
def test_nice_ceiling(value: float, top: float) -> None:
    assert nice_ceiling(value) == top


@pytest.mark.parametrize(
    ("value", "text"), [(0, "0 B"), (999, "999 B"), (1500, "1.5 kB"), (2.5e9, "2.5 GB")]
)
def test_human_bytes(value: float, text: str) -> None:
    assert human_bytes(value) == text


def test_rates_per_interval() -> None:
    timeline = [(2.0, 10, 1000), (4.0, 30, 5000), (4.0, 30, 5000), (8.0, 30, 5000)]
    assert rates(timeline) == [(2.0, 5.0, 500.0), (4.0, 10.0, 2000.0), (8.0, 0.0, 0.0)]


def test_timeline_samples_at_intervals_and_thins_past_its_limit() -> None:
    stats = FetchStats(started=100.0)
    stats.sample(100.5)  # too soon
    stats.done, stats.bytes = 3, 300
    stats.sample(102.0)
    stats.sample(103.0)  # too soon again
    stats.sample(103.0, force=True)
    assert stats.timeline == [(2.0, 3, 300), (3.0, 3, 300)]
    long = [(float(i), i, i) for i in range(TIMELINE_POINTS + 1)]
    thinned, interval = thin(long, 2.0)
    assert len(thinned) == (TIMELINE_POINTS + 2) // 2 and interval == 4.0
    assert thin(long[:10], 2.0) == (long[:10], 2.0)


def test_strip_spreads_over_the_sections() -> None:
    sections = [SectionView(n, n, (f"t{n}", 1, 1), None) for n in range(1, 21)]
    assert [t[0] for t in strip_of(sections, 4)] == ["t1", "t7", "t14", "t20"]
    assert len(strip_of(sections[:3], 6)) == 3


def test_describe_reads_the_api_fields_and_labels() -> None:
    document = {
        "data_set": {
            "id": 5,
            "products": [{"name": "Mouse Connectivity Projection"}],
            "specimen": {"name": "C57BL/6J-1"},
            "section_thickness": 50.0,
            "alignment3d": None,
        },
        "labels": {
            "plane_of_section": "coronal",
            "injection_structures": ["MOp", "SSp"],
            "transgenic_lines": ["Sst-IRES-Cre"],
            "genes": [],
        },
        "section_images": [
            {"id": 2, "section_number": 9, "failed": True},
            {"id": 1, "section_number": 3, "x": 1, "y": 2, "width": 30, "height": 40},
            {"id": "bad"},
        ],
    }
    described = describe("5", document)
    assert described.facts == {
        "product": "Mouse Connectivity Projection",
        "plane": "coronal",
        "specimen": "C57BL/6J-1",
        "injection": "MOp, SSp",
        "line": "Sst-IRES-Cre",
        "thickness": "50 µm",
        "sections": "2 (1 failed at the API)",
    }
    assert [(i.number, i.failed, i.box) for i in described.images] == [
        (3, False, (1.0, 2.0, 30.0, 40.0)),
        (9, True, None),
    ]
    assert described.alignment3d is None
    atlas = describe("atlas_1", {"atlas_id": 1, "atlas_images": []})
    assert atlas.title == "Atlas 1" and atlas.facts["product"] == "Reference atlas"


def test_everything_from_the_api_is_escaped() -> None:
    row = {
        "directory": "5",
        "title": EVIL,
        "href": "5.html",
        "facts": {"product": EVIL, "specimen": 'a"b'},
        "counts": {"done": 1},
        "bytes": 10,
        "last_synced": None,
        "strip": [],
    }
    index = index_page([row], [], note=EVIL)
    view = DataSetView(
        "5",
        EVIL,
        {"specimen": EVIL},
        {"failed": 1},
        0,
        None,
        [SectionView(1, 2, None, None, status="failed", error=EVIL, ccf=EVIL)],
        [],
        alignment=EVIL,
        alignment_matrix=EVIL,
    )
    page = data_set_page(view, note="")
    chart = bar_chart(EVIL, [(EVIL, [("done", 1.0)])]) + hbar_chart(EVIL, [(EVIL, 2.0)])
    for html in (index, page, chart):
        assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert 'data-text="5 &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;' in index


@pytest.mark.parametrize("encoding", ["gzip", "raw"])
def test_structures_at_reads_many_points_in_one_pass(tmp_path: Path, encoding: str) -> None:
    rng = np.random.default_rng(7)
    volume = rng.integers(0, 2000, size=(13, 8, 11), dtype=np.uint32)
    path = tmp_path / "annotation_25.nrrd"
    header = {"space directions": np.diag([25.0, 25.0, 25.0]), "encoding": encoding}
    nrrd.write(str(path), volume, header)
    points = [tuple(p) for p in rng.uniform(-30, 340, size=(300, 3))]
    points += [(0.0, 0.0, 0.0), (324.9, 199.9, 274.9), (float("nan"), 1.0, 1.0)]
    xs, ys, zs = np.asarray(points).T
    assert values_at(path, points) == [int(v) for v in structure_at(volume, 25.0, xs, ys, zs)]
    assert values_at(path, []) == []
