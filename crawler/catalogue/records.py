"""What the API said of a data set or atlas, read from the mirror's ``dataset.json``/``atlas.json``.

Pure functions of the parsed documents: the index row's facts (product, plane, specimen,
injection structures, transgenic lines, genes) and, per section image, what the page needs
(number, failed flag, alignment). Field names are the API's; anything missing is left out
rather than guessed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """What the data set page shows of one SectionImage (or AtlasImage) record."""

    image_id: int
    number: int
    failed: bool
    alignment2d: Mapping[str, Any] | None
    box: tuple[float, float, float, float] | None  # x, y, width, height in full-res pixels


@dataclass(slots=True)
class Described:
    """One data set or atlas as the API described it."""

    directory: str
    title: str
    facts: dict[str, str] = field(default_factory=dict)  # label -> text, in display order
    images: list[ImageRecord] = field(default_factory=list)
    record: Mapping[str, Any] = field(default_factory=dict)  # the data set record itself
    thickness: float | None = None

    @property
    def alignment3d(self) -> Mapping[str, Any] | None:
        value = self.record.get("alignment3d")
        return value if isinstance(value, Mapping) else None


def describe(directory: str, document: Mapping[str, Any] | None) -> Described:
    """The facts of ``dataset.json`` (a data set) or ``atlas.json`` (an atlas)."""
    if document is None:
        return Described(directory, _title(directory))
    if "atlas_images" in document:
        images = _images(document.get("atlas_images"))
        described = Described(directory, _title(directory), images=images)
        described.facts["product"] = "Reference atlas"
        described.facts["sections"] = str(len(images))
        return described
    record = document.get("data_set")
    record = record if isinstance(record, Mapping) else {}
    labels = document.get("labels")
    labels = labels if isinstance(labels, Mapping) else {}
    images = _images(document.get("section_images"))
    facts: dict[str, str] = {}
    products = [p.get("name") or p.get("abbreviation") for p in _maps(record.get("products"))]
    _put(facts, "product", ", ".join(str(p) for p in products if p))
    plane = labels.get("plane_of_section") or _get(record, "plane_of_section", "name")
    _put(facts, "plane", plane)
    _put(facts, "specimen", _get(record, "specimen", "name"))
    _put(facts, "injection", ", ".join(_strings(labels.get("injection_structures"))))
    _put(facts, "line", ", ".join(_strings(labels.get("transgenic_lines"))))
    _put(facts, "genes", ", ".join(_strings(labels.get("genes"))))
    thickness = record.get("section_thickness")
    if isinstance(thickness, int | float):
        facts["thickness"] = f"{thickness:g} µm"
    facts["sections"] = str(len(images))
    failed = sum(1 for image in images if image.failed)
    if failed:
        facts["sections"] += f" ({failed} failed at the API)"
    _put(facts, "QC date", str(record.get("qc_date") or "")[:10])
    return Described(
        directory,
        _title(directory),
        facts,
        images,
        record,
        float(thickness) if isinstance(thickness, int | float) else None,
    )


def read_described(out: Path, directory: str) -> Described:
    """``describe`` of a mirror directory's record file; a missing or damaged one is no facts."""
    for name in ("dataset.json", "atlas.json"):
        path = out / directory / name
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(document, Mapping):
            return describe(directory, document)
    return describe(directory, None)


def record_file(out: Path, directory: str) -> Path | None:
    """The record file of a directory, if there is one (its stat keys the page's cache)."""
    for name in ("dataset.json", "atlas.json"):
        if (out / directory / name).is_file():
            return out / directory / name
    return None


def _title(directory: str) -> str:
    if directory.startswith("atlas_"):
        return f"Atlas {directory.removeprefix('atlas_')}"
    return f"Data set {directory}" if directory.isdigit() else directory


def _images(value: Any) -> list[ImageRecord]:
    images: list[ImageRecord] = []
    for image in _maps(value):
        image_id, number = image.get("id"), image.get("section_number")
        if not isinstance(image_id, int) or not isinstance(number, int):
            continue
        box_values = [image.get(k) for k in ("x", "y", "width", "height")]
        numbers = [float(v) for v in box_values if isinstance(v, int | float)]
        box = (numbers[0], numbers[1], numbers[2], numbers[3]) if len(numbers) == 4 else None
        alignment = image.get("alignment2d")
        images.append(
            ImageRecord(
                image_id,
                number,
                bool(image.get("failed")),
                alignment if isinstance(alignment, Mapping) else None,
                box,
            )
        )
    images.sort(key=lambda i: (i.number, i.image_id))
    return images


def _maps(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value if v] if isinstance(value, list) else []


def _get(record: Mapping[str, Any], *keys: str) -> Any:
    value: Any = record
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _put(facts: dict[str, str], label: str, value: Any) -> None:
    if value:
        facts[label] = str(value)
