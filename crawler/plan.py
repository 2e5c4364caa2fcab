"""Planning: a SectionImage and the settings become download items, in plain functions.

Paths and URLs are pure functions of the record and the settings, so planning is
deterministic and replanning the same selection adds nothing to the manifest.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

SECTION = "section"


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """The settings that shape items; a subset of Settings so planning stays pure."""

    downsample: int = 4
    quality: int | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """One file to download: its natural key is ``ref``, the URL relative to the API base."""

    ref: str
    path: str  # relative to OUT, with forward slashes
    kind: str
    data_set_id: int
    image_id: int | None

    def url(self, api_base: str) -> str:
        """The absolute URL against a given API base (live service or simulator)."""
        return api_base + self.ref


def section_image_path(
    data_set_id: int, kind: str, downsample: int, image: Mapping[str, Any]
) -> str:
    """``<data_set_id>/<kind>/ds<N>/<section_number:04d>_<image_id>.jpg``."""
    number = int(image.get("section_number") or 0)
    return f"{data_set_id}/{kind}/ds{downsample}/{number:04d}_{int(image['id'])}.jpg"


def section_image_ref(image_id: int, options: PlanOptions) -> str:
    """The download service URL (relative) for a whole image at the chosen tier."""
    params: dict[str, int] = {"downsample": options.downsample}
    if options.quality is not None:
        params["quality"] = options.quality
    return f"/api/v2/section_image_download/{image_id}?{urlencode(params)}"


def is_failed(record: Mapping[str, Any]) -> bool:
    """The API marks unusable data sets and sections ``failed`` (a bool, or 'true')."""
    return str(record.get("failed", False)).lower() == "true"


def plan_section_image(image: Mapping[str, Any], options: PlanOptions) -> Iterator[Item]:
    """Items for one SectionImage record."""
    data_set_id = int(image["data_set_id"])
    image_id = int(image["id"])
    yield Item(
        ref=section_image_ref(image_id, options),
        path=section_image_path(data_set_id, SECTION, options.downsample, image),
        kind=SECTION,
        data_set_id=data_set_id,
        image_id=image_id,
    )
