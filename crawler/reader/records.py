"""A data set's records as the mirror keeps them in ``OUT/<data_set_id>/dataset.json``.

The seed writes the SectionDataSet (with Equalization, products, specimen, injections, genes,
plane and, where the API has one, ``alignment3d``), the ``labels`` it was selected by and every
SectionImage (with ``alignment2d`` where present). One data set is small (a few hundred rows),
so it is read whole, one data set at a time: the reader never holds more than that.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler.plan import equalization_window, is_connectivity
from crawler.selection import labels as record_labels

Window = tuple[int, int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class DataSetRecords:
    """The SectionDataSet record, what it is labelled by, and its SectionImages by id."""

    record: Mapping[str, Any]
    labels: Mapping[str, Any]
    images: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)  # see data_set_fields

    @property
    def id(self) -> int:
        return int(self.record["id"])

    @property
    def section_thickness(self) -> float | None:
        value = self.fields.get("section_thickness_um")
        return float(value) if isinstance(value, float) else None

    @property
    def equalization(self) -> Window | None:
        """The default colour window the service applies when a URL sends no ``range``."""
        return equalization_window(self.record)

    @property
    def connectivity(self) -> bool | None:
        return is_connectivity(self.record)

    @property
    def alignment3d(self) -> Mapping[str, Any] | None:
        value = self.fields.get("alignment3d")
        return value if isinstance(value, Mapping) else None


def records_path(out: Path, data_set_id: int) -> Path:
    return out / str(int(data_set_id)) / "dataset.json"


def read_records(out: Path, data_set_id: int) -> DataSetRecords | None:
    """The data set's records, or None when its ``dataset.json`` is missing or unreadable
    (the reader then skips its items and counts them)."""
    path = records_path(out, data_set_id)
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    record = document.get("data_set") if isinstance(document, dict) else None
    if not isinstance(record, dict) or "id" not in record:
        return None
    labels = document.get("labels")
    images = {
        int(row["id"]): row
        for row in document.get("section_images") or []
        if isinstance(row, dict) and "id" in row
    }
    labels = labels if isinstance(labels, dict) else record_labels(record)
    return DataSetRecords(record, labels, images, data_set_fields(record, labels))


def data_set_fields(record: Mapping[str, Any], labels: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata every sample of a data set shares, computed once per data set."""
    thickness = record.get("section_thickness")
    alignment = record.get("alignment3d")
    if isinstance(alignment, list):  # a has_one some servers send as a list
        alignment = alignment[0] if alignment else None
    return {
        "section_thickness_um": float(thickness)
        if isinstance(thickness, int | float) and thickness > 0
        else None,
        "plane_of_section": _text(labels.get("plane_of_section")),
        "products": [int(p["id"]) for p in _many(record.get("products")) if "id" in p],
        "specimen": _text(_first(record.get("specimen")).get("name")),
        "transgenic_lines": _texts(labels.get("transgenic_lines")),
        "injection_structures": _texts(labels.get("injection_structures")),
        "genes": _texts(labels.get("genes")),
        "alignment3d": alignment if isinstance(alignment, Mapping) else None,
    }


def _many(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        return [value]
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _first(value: Any) -> Mapping[str, Any]:
    found = _many(value)
    return found[0] if found else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _texts(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
