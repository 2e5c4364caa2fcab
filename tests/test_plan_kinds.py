"""Table tests of what to fetch: option values, kinds, URLs and paths, extras, estimates, checks."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import zipfile
from pathlib import Path

import pytest

from crawler import kinds, plan, validate
from crawler.cli import parse_ids_text, parse_sections
from crawler.config import load_settings
from crawler.errors import ContentError, UsageError
from crawler.extras import unionizes_csv, unionizes_json
from crawler.kinds import check_jpeg_body
from crawler.plan import PlanOptions
from crawler.simulator.grids import expression_zip, projection_nrrd
from crawler.validate import JpegWalker
from tests.planning import plan_atlas_image, plan_section_image

CONNECTIVITY = {
    "id": 100141599,
    "products": [{"id": 5}],
    "equalization": {
        "red_lower": 0,
        "red_upper": 923,
        "green_lower": 0,
        "green_upper": 987,
        "blue_lower": 0,
        "blue_upper": 4095,
    },
}
ISH = {"id": 69782969, "products": [{"id": 1}], "equalization": None}
IMAGE = {"id": 102146167, "data_set_id": 100141599, "section_number": 7, "width": 1600}
IMAGE.update(height=800, x=10, y=20)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auto", "auto"),
        (" AUTO ", "auto"),
        ("none", None),
        ("0,923,0,987,0,4095", (0, 923, 0, 987, 0, 4095)),
        ("1, 2, 3, 4, 5, 6", (1, 2, 3, 4, 5, 6)),
    ],
)
def test_parse_range_accepts(text: str, expected: object) -> None:
    assert plan.parse_range(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "1,2,3", "1,2,3,4,5,6,7", "0,4096,0,1,0,1", "-1,2,0,1,0,1", "5,5,0,1,0,1", "a,b,c,d,e,f"],
)
def test_parse_range_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        plan.parse_range(text)


def test_parse_choices_deduplicates_and_names_the_bad_value() -> None:
    assert plan.parse_choices("section,projection section", plan.IMAGE_KINDS, "kind") == (
        "section",
        "projection",
    )
    with pytest.raises(ValueError, match="'nissl'"):
        plan.parse_choices("section,nissl", plan.IMAGE_KINDS, "kind")


@pytest.mark.parametrize(
    ("record", "setting", "window", "connectivity"),
    [
        (CONNECTIVITY, "auto", (0, 923, 0, 987, 0, 4095), True),
        (CONNECTIVITY, None, None, True),
        (CONNECTIVITY, (1, 2, 3, 4, 5, 6), (1, 2, 3, 4, 5, 6), True),
        (ISH, "auto", None, False),  # no Equalization: no range parameter
        (ISH, (1, 2, 3, 4, 5, 6), (1, 2, 3, 4, 5, 6), False),
        ({"id": 1}, "auto", None, None),  # products unknown
    ],
)
def test_range_auto_is_the_equalization_where_there_is_one(
    record: dict[str, object], setting: object, window: object, connectivity: object
) -> None:
    context = plan.data_set_context(record, PlanOptions(range=setting))  # type: ignore[arg-type]
    assert context.window == window
    assert context.connectivity is connectivity


def refs(record: dict[str, object], **options: object) -> dict[str, str]:
    chosen = PlanOptions(**options)  # type: ignore[arg-type]
    context = plan.data_set_context(record, chosen)
    image = {**IMAGE, "data_set_id": record["id"]}
    return {item.path: item.ref for item in plan_section_image(image, chosen, context)}


def test_each_image_kind_has_its_service_parameters_and_path() -> None:
    kinds_all = ("section", "expression", "projection")
    assert refs(CONNECTIVITY, kinds=kinds_all, quality=80) == {
        "100141599/section/ds4/0007_102146167.jpg": "/api/v2/section_image_download/102146167"
        "?downsample=4&quality=80&range=0,923,0,987,0,4095",
        "100141599/projection/ds4/0007_102146167.jpg": "/api/v2/projection_image_download/"
        "102146167?projection=true&downsample=4&quality=80&range=0,923,0,987,0,4095",
    }
    assert refs(ISH, kinds=kinds_all, downsample=2) == {
        "69782969/section/ds2/0007_102146167.jpg": "/api/v2/section_image_download/102146167"
        "?downsample=2",
        "69782969/expression/ds2/0007_102146167.jpg": "/api/v2/section_image_download/"
        "102146167?view=expression&downsample=2",
    }


def test_atlas_images_section_and_annotation() -> None:
    image = {**IMAGE, "data_set_id": 500000101}
    options = PlanOptions(annotation=True, range=(1, 2, 3, 4, 5, 6))
    items = list(plan_atlas_image(image, 1, options))
    assert [(i.kind, i.path, i.ref, i.data_set_id) for i in items] == [
        (
            "section",
            "atlas_1/section/ds4/0007_102146167.jpg",
            "/api/v2/atlas_image_download/102146167?downsample=4&range=1,2,3,4,5,6",
            500000101,
        ),
        (
            "annotation",
            "atlas_1/annotation/ds4/0007_102146167.jpg",
            "/api/v2/atlas_image_download/102146167?annotation=true&atlas=1&downsample=4",
            500000101,
        ),
    ]
    only_drawings = PlanOptions(kinds=("projection",), annotation=True)
    assert [i.kind for i in plan_atlas_image(image, 1, only_drawings)] == ["annotation"]


def test_extras_for_connectivity_and_ish() -> None:
    options = PlanOptions(
        extras=("grid", "unionizes"), grid_types=("projection_density", "data_mask")
    )
    connectivity = list(
        plan.plan_extras(CONNECTIVITY, options, plan.data_set_context(CONNECTIVITY, options))
    )
    assert [(i.kind, i.path) for i in connectivity] == [
        ("grid", "100141599/grid/projection_density_25.nrrd"),
        ("grid", "100141599/grid/data_mask_25.nrrd"),
        ("unionizes", "100141599/unionizes.json"),
        ("unionizes", "100141599/unionizes.csv"),
    ]
    assert connectivity[0].ref == (
        "/grid_data/download_file/100141599?image=projection_density&resolution=25"
    )
    assert connectivity[2].ref.startswith("/api/v2/data/query.json?criteria=model::Projection")
    assert connectivity[3].ref.startswith("/api/v2/data/query.csv?criteria=model::Projection")
    assert all(i.image_id is None and i.estimate > 0 for i in connectivity)
    ish = list(plan.plan_extras(ISH, options, plan.data_set_context(ISH, options)))
    assert [(i.kind, i.path, i.ref) for i in ish] == [
        (
            "expression_grid",
            "69782969/grid/expression.zip",
            "/grid_data/download/69782969?include=energy,density,intensity",
        )
    ]


@pytest.mark.parametrize(
    ("sections", "number", "inside"),
    [(None, 7, True), ((1, 7), 7, True), ((8, 9), 7, False), ((7, 7), 7, True)],
)
def test_sections_limit(sections: tuple[int, int] | None, number: int, inside: bool) -> None:
    assert plan.in_sections({"section_number": number}, sections) is inside


def test_estimate_model() -> None:
    # JPEG: 1 kB of headers plus bytes per tier pixel by kind, at the service's quality
    assert plan.estimate_jpeg_bytes("section", 1000, 1000) == 1_000 + 164_000
    assert plan.estimate_jpeg_bytes("projection", 1000, 1000) == 1_000 + 60_000
    assert plan.estimate_jpeg_bytes("unknown", 100, 100) == 1_000 + 1_640
    assert plan.estimate_jpeg_bytes("section", 0, 5) == 1_000
    # the quality scale (libjpeg): 95 -> 10 %, 75 -> 50 %, 50 -> 100 %, 25 -> 200 %, 100 -> 1 %
    assert [plan.quality_scale(q) for q in (95, 75, 50, 25, 100, 0)] == [10, 50, 100, 200, 1, 5000]
    # a coarser quantizer: one slope per halving of the step, floored
    assert plan.bytes_per_pixel("section", 85) == pytest.approx(0.164 - 0.064 * math.log2(3))
    assert plan.bytes_per_pixel("section", 10) == plan.MIN_BYTES_PER_PIXEL
    assert plan.bytes_per_pixel("expression", 100) > plan.bytes_per_pixel("expression")
    # a window that maps a quarter of the range of every channel onto 0-255: amplitudes x 4
    quarter = (0, 1024, 0, 1024, 0, 1024)
    assert plan.window_gain(quarter) == pytest.approx(4095 / 1024)
    assert plan.window_gain(None) == pytest.approx(plan.window_gain((0, 4095, 0, 4095, 0, 4095)))
    assert plan.bytes_per_pixel("section", window=quarter) == pytest.approx(
        0.164 + 0.064 * math.log2(4095 / 1024)
    )
    # grids: float32 voxels of the CCF volume at the resolution, gzip to a tenth
    assert plan.estimate_grid_bytes(25) == pytest.approx(528 * 320 * 456 * 4 * 0.1, abs=1)
    assert plan.estimate_grid_bytes(100) < plan.estimate_grid_bytes(50)
    # a whole image's estimate uses its tier size: 1600 x 800 at tier 4 is 100 x 50
    (item,) = plan_section_image(IMAGE, PlanOptions(range=None))
    assert item.estimate == 1_000 + 820


def test_body_check_by_kind() -> None:
    image = kinds.BodyRule(
        check_jpeg_body, image=True, stream_check=JpegWalker, max_bytes=kinds.IMAGE_MAX_BYTES
    )
    assert kinds.body_rule("section") == image
    assert kinds.body_rule("annotation") == image
    assert image.limit(10**12) == kinds.IMAGE_MAX_BYTES and image.limit(1000) == 1000
    assert kinds.body_rule("grid").limit(10**12) == 10**12
    assert kinds.body_rule("grid") == kinds.BodyRule(kinds.check_nrrd_body, image=False)
    assert kinds.body_rule("expression_grid") == kinds.BodyRule(kinds.check_zip_body, image=False)


def test_nrrd_check() -> None:
    served = projection_nrrd(100141599, "projection_density", 25)
    validate.check_nrrd(served[:16], url="u")  # plain header, gzip-encoded data
    whole = gzip.compress(b"NRRD0004\ntype: float\n" + bytes(100), mtime=0)
    validate.check_nrrd(whole[:16], url="u")
    for bad in (b"<!DOCTYPE html><html>", bytes(16), gzip.compress(b"PK\x03\x04" * 40)[:16]):
        with pytest.raises(ContentError):
            validate.check_nrrd(bad[:16], url="u")


def test_zip_check() -> None:
    body = expression_zip(69782969, ("energy",))
    validate.check_zip(body[:16], body[-16:], len(body), url="u")
    cut = body[: len(body) - 30]
    with pytest.raises(ContentError):
        validate.check_zip(cut[:16], cut[-16:], len(cut), url="u")
    with pytest.raises(ContentError):
        validate.check_zip(b"NRRD0004" * 2, body[-16:], len(body), url="u")


def test_unionizes_render_as_json_and_csv_in_id_order() -> None:
    rows = [
        {"id": 9, "structure_id": 385, "is_injection": True, "volume": 0.5},
        {"id": 3, "structure_id": 997, "is_injection": False, "volume": None},
    ]
    assert [r["id"] for r in json.loads(unionizes_json(rows))] == [3, 9]
    table = list(csv.reader(io.StringIO(unionizes_csv(rows).decode())))
    assert table == [
        ["id", "is_injection", "structure_id", "volume"],
        ["3", "false", "997", ""],
        ["9", "true", "385", "0.5"],
    ]
    assert unionizes_json(rows) == unionizes_json(list(reversed(rows)))  # stable bytes


def test_ids_file_text() -> None:
    text = "# my experiments\n100141599\n\n  126862385  # VISp\n#\n"
    assert parse_ids_text(text, "ids.txt") == (100141599, 126862385)
    with pytest.raises(UsageError, match=r"^ids.txt, line 3: not a data set id: '12x'"):
        parse_ids_text("1\n2\n12x\n", "ids.txt")
    with pytest.raises(UsageError, match="line 1"):
        parse_ids_text("1 2\n", "ids.txt")


@pytest.mark.parametrize(
    ("text", "expected"), [(None, None), ("3-9", (3, 9)), (" 4 - 4 ", (4, 4)), ("12", (12, 12))]
)
def test_sections_option(text: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_sections(text) == expected


@pytest.mark.parametrize("text", ["9-3", "a-b", "-3", "3-", "1-2-3", "", "½-1"])
def test_sections_option_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="invalid --sections"):
        parse_sections(text)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"images": "section,nissl"}, "invalid images (--image): unknown image kind 'nissl'"),
        ({"range": "1,2"}, "invalid range: expected auto, none or six integers"),
        ({"tile": "8"}, "tile must be 0 (whole images) or between 16 and 8192, got 8"),
        ({"extras": "grid,movies"}, "invalid extras (--with): unknown extra 'movies'"),
        ({"grid_types": "density"}, "invalid grid-types: unknown type 'density'"),
        ({"grid_resolution": "30"}, "grid-resolution must be one of 10, 25, 50, 100"),
    ],
)
def test_settings_refuse_bad_plan_options(flags: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as raised:
        load_settings(None, flags, environ={})
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_plan_options_from_the_config_file(tmp_path: Path) -> None:

    config = tmp_path / "c.toml"
    config.write_text(
        'images = "projection,section"\nrange = "none"\ntile = 512\nextras = "unionizes"\n'
        'grid_types = "data_mask"\ngrid_resolution = 100\nannotation = true\n'
    )
    settings = load_settings(config, {}, environ={"ALLEN_MIRROR_DOWNSAMPLE": "2"})
    options = settings.plan_options()
    assert options == PlanOptions(
        downsample=2,
        kinds=("projection", "section"),
        range=None,
        tile=512,
        annotation=True,
        extras=("unionizes",),
        grid_types=("data_mask",),
        grid_resolution=100,
    )


def test_zipfile_agrees_with_the_check() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "hello")
    body = buffer.getvalue()
    validate.check_zip(body[:16], body[-16:], len(body), url="u")


def test_equalization_sent_as_a_one_element_list_is_understood() -> None:
    as_list = {**CONNECTIVITY, "equalization": [CONNECTIVITY["equalization"]]}
    context = plan.data_set_context(as_list, PlanOptions(range="auto"))
    assert context.window == (0, 923, 0, 987, 0, 4095)
