"""Malformed API records are refused where they enter (issue 15, point 7): skipped with a
warning naming them, never a traceback, never a path outside OUT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crawler.records import MAX_ID, check_data_set, check_image, whole
from crawler.simulator import SimulatorConfig, serve_in_thread
from crawler.simulator.config import MISSING
from tests.conftest import FAST, ls_rows, run_cli, small_catalogue

DATA_SET = 100141599
OTHER = 126862385


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 5),
        ("102146167", 102146167),
        ("../../x", None),
        ("-1/../../x", None),
        (1.5e300, None),
        (10**300, None),
        (-1, None),
        (True, None),
        (None, None),
        ([1], None),
        (" 7 ", 7),
        (MAX_ID, MAX_ID),
        (MAX_ID + 1, None),
    ],
)
def test_whole_numbers_only(value: object, expected: int | None) -> None:
    assert whole(value, 0, MAX_ID) == expected


def test_record_checks_name_the_problem() -> None:
    good = {"id": "5", "data_set_id": 7, "section_number": 3, "width": 100}
    assert check_image(good, 7) == {**good, "id": 5}
    assert check_image(good, 8) == "data_set_id 7 is not 8"
    assert check_image({"data_set_id": 7}) == "no id"
    assert "section_number" in str(check_image({**good, "section_number": 10**300}))
    assert "width" in str(check_image({**good, "width": 1e300}))
    assert check_image("x") == "not a record (str)"
    record = check_data_set({"id": 3, "products": [{"id": 5}, {"id": "../x"}, "junk"]})
    assert record == {"id": 3, "products": [{"id": 5}]}


def test_malformed_records_are_skipped_with_a_warning_and_the_run_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = small_catalogue(8)
    records = [i for i in catalogue.records("SectionImage") if i["data_set_id"] == DATA_SET]
    images = [i["id"] for i in records]
    usable = {i["id"] for i in records[6:] if not i["failed"]}
    patches: dict[int, dict[str, object]] = {
        images[0]: {"id": "../../x"},
        images[1]: {"id": "-1/../../x"},
        images[2]: {"id": 1.5e300},
        images[3]: {"section_number": 10**300},
        images[4]: {"id": MISSING},
        images[5]: {"width": 10**300, "height": "../../y"},
        OTHER: {"id": "../../../etc"},  # a data set record
    }
    with serve_in_thread(catalogue, SimulatorConfig(record_patches=patches)) as sim:
        out = tmp_path / "deep" / "m"
        result = run_cli(
            capsys, "mirror", "--criteria", f"[id$in{DATA_SET},{OTHER}]", "--out", str(out),
            "--api-base", sim.base_url, *FAST,
        )  # fmt: skip
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    warnings = [json.loads(line) for line in result.err.splitlines() if '"seed.bad_record"' in line]
    shown = {w["id"] for w in warnings}
    assert {"'../../x'", "'-1/../../x'", "1.5e+300", "'../../../etc'", "None"} <= shown
    assert len(warnings) == 7
    rows = ls_rows(capsys, out)
    assert {row["image_id"] for row in rows} == usable
    assert all(row["status"] == "done" for row in rows)
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert all(str(p).startswith("deep/m/") for p in written)
