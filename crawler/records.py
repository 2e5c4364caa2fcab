"""API records checked where they enter (seeding): what planning relies on is there and sane.

Planning turns ids into paths and numbers into URLs and tile grids. A record whose id is
``"../../x"`` or ``1.5e300``, whose section number has 300 digits or whose width would make a
grid of 10^290 tiles would end in a traceback, a database overflow or a path outside OUT. Such
a record is skipped here with one warning naming it; nothing after seeding ever sees it. The
checks are pure and table-tested; a record that passes has whole numbers where planning reads
them (numeric strings become ints).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import structlog

log = structlog.get_logger("crawler.seed")

MAX_ID = 2**63 - 1  # the manifest's BIGINT
MAX_SECTION = 1_000_000  # real section numbers stay below 1,000
MAX_PIXELS = 10_000_000  # full-resolution scans are about 30,000 pixels wide

Record = dict[str, Any]


def whole(value: object, low: int, high: int) -> int | None:
    """``value`` as an int in ``low..high``: an int, or a string of ASCII digits; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 20:
            return None
        value = int(text)
    if not isinstance(value, int) or not low <= value <= high:
        return None
    return value


# (field, lowest, highest, required)
_DATA_SET_FIELDS = (("id", 1, MAX_ID, True),)
_IMAGE_FIELDS = (
    ("id", 1, MAX_ID, True),
    ("data_set_id", 1, MAX_ID, True),
    ("section_number", 0, MAX_SECTION, False),
    ("x", 0, MAX_PIXELS, False),
    ("y", 0, MAX_PIXELS, False),
    ("width", 0, MAX_PIXELS, False),
    ("height", 0, MAX_PIXELS, False),
)


def _checked(record: object, fields: Iterable[tuple[str, int, int, bool]]) -> Record | str:
    """The record with its numeric fields as ints, or what is wrong with it.

    A whole product is 100,000 images every sync: a field that is already an int in range
    costs one comparison, and the record is copied only when a field must be converted.
    """
    if not isinstance(record, Mapping):
        return f"not a record ({type(record).__name__})"
    fixed: Record | None = None
    for name, low, high, required in fields:
        value = record.get(name)
        if type(value) is int and low <= value <= high:
            continue
        if value is None:
            if required:
                return f"no {name}"
            continue
        number = whole(value, low, high)
        if number is None:
            return f"{name} {_show(value)} is not a whole number in {low}..{high}"
        if fixed is None:
            fixed = dict(record)
        fixed[name] = number
    if fixed is not None:
        return fixed
    return record if type(record) is dict else dict(record)


def check_data_set(record: object) -> Record | str:
    """A SectionDataSet record with a sane id; products without a whole id are left out."""
    checked = _checked(record, _DATA_SET_FIELDS)
    if isinstance(checked, str):
        return checked
    checked = dict(checked)  # its products are filtered below: never the caller's dict
    products = checked.get("products")
    if isinstance(products, list):
        checked["products"] = [
            product
            for product in products
            if isinstance(product, Mapping) and whole(product.get("id"), 0, MAX_ID) is not None
        ]
    return checked


def check_image(record: object, data_set_id: int | None = None) -> Record | str:
    """A SectionImage or AtlasImage record; with ``data_set_id``, it must belong to that set."""
    checked = _checked(record, _IMAGE_FIELDS)
    if isinstance(checked, str):
        return checked
    if data_set_id is not None and checked["data_set_id"] != data_set_id:
        return f"data_set_id {checked['data_set_id']} is not {data_set_id}"
    return checked


def usable(rows: Iterable[object], model: str, check: Any) -> list[Record]:
    """The rows ``check`` accepts; each one refused is a warning naming it and why."""
    kept: list[Record] = []
    for row in rows:
        checked = check(row)
        if isinstance(checked, str):
            raw = row.get("id") if isinstance(row, Mapping) else None
            log.warning("seed.bad_record", model=model, id=_show(raw), problem=checked)
            continue
        kept.append(checked)
    return kept


def _show(value: object, limit: int = 40) -> str:
    """A bad value, quoted and shortened for a log line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
