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

    @property
    def id(self) -> int:
        return int(self.record["id"])

    @property
    def section_thickness(self) -> float | None:
        value = self.record.get("section_thickness")
        return float(value) if isinstance(value, int | float) and value > 0 else None

    @property
    def equalization(self) -> Window | None:
        """The default colour window the service applies when a URL sends no ``range``."""
        return equalization_window(self.record)

    @property
    def connectivity(self) -> bool | None:
        return is_connectivity(self.record)

    @property
    def alignment3d(self) -> Mapping[str, Any] | None:
        value = self.record.get("alignment3d")
        if isinstance(value, list):  # a has_one some servers send as a list
            value = value[0] if value else None
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
    return DataSetRecords(
        record, labels if isinstance(labels, dict) else record_labels(record), images
    )
