"""What the planner makes of simulator records: expected URLs computed by the plan functions."""

from __future__ import annotations

from typing import Any

from crawler.plan import Item, PlanOptions, data_set_context, plan_section_image
from crawler.simulator import Catalogue


def data_set_record(catalogue: Catalogue, data_set_id: int) -> dict[str, Any]:
    """A SectionDataSet as seeding receives it: with its equalization and products."""
    record = catalogue.get("SectionDataSet", data_set_id)
    assert record is not None, data_set_id
    equalization = catalogue.lookup("Equalization", "section_data_set_id", data_set_id)
    return {
        **record,
        "equalization": dict(equalization[0]) if equalization else None,
        "products": [
            dict(p) for p in catalogue.related_by_name("SectionDataSet", "products", record)
        ],
    }


def planned_items(
    catalogue: Catalogue, image: dict[str, Any], options: PlanOptions | None = None
) -> list[Item]:
    """The items the planner makes of one SectionImage."""
    options = options or PlanOptions()
    record = data_set_record(catalogue, int(image["data_set_id"]))
    return list(plan_section_image(image, options, data_set_context(record, options)))


def planned_ref(
    catalogue: Catalogue, image: dict[str, Any], options: PlanOptions | None = None
) -> str:
    """The URL (relative) of a whole section image as planned (``--range auto`` included)."""
    (item,) = planned_items(catalogue, image, options)
    return item.ref
