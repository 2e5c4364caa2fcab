"""What the planner makes of simulator records: expected URLs computed by the plan functions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from crawler.plan import (
    NO_CONTEXT,
    DataSetContext,
    Item,
    PlanOptions,
    atlas_renderings,
    atlas_root,
    data_set_context,
    image_path,
    plan_image,
    section_renderings,
)
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


def section_image_path(
    data_set_id: int, kind: str, downsample: int, image: Mapping[str, Any]
) -> str:
    """``<data_set_id>/<kind>/ds<N>/<section_number:04d>_<image_id>.jpg``."""
    return image_path(str(int(data_set_id)), kind, downsample, image)


def plan_section_image(
    image: Mapping[str, Any], options: PlanOptions, context: DataSetContext = NO_CONTEXT
) -> Iterator[Item]:
    """Items for one SectionImage record of a data set (its context from data_set_context)."""
    root = str(int(image["data_set_id"]))
    yield from plan_image(root, image, section_renderings(options, context), options)


def plan_atlas_image(
    image: Mapping[str, Any], atlas_id: int, options: PlanOptions
) -> Iterator[Item]:
    """Items for one AtlasImage record of an atlas."""
    yield from plan_image(atlas_root(atlas_id), image, atlas_renderings(atlas_id, options), options)


BASE = "http://api.test"


def planned(count: int, data_set: int = 1) -> list[Item]:
    return [
        Item(
            ref=f"/api/v2/section_image_download/{i}?downsample=4",
            path=f"{data_set}/section/ds4/{i:04d}_{i}.jpg",
            kind="section",
            data_set_id=data_set,
            image_id=i,
        )
        for i in range(1, count + 1)
    ]


async def differences_from_the_tables(url: str) -> list[object]:
    """What Alembic's autogenerate would change to make a migrated manifest match models.py."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from crawler.manifest.database import create_engine, upgrade
    from crawler.manifest.models import add_postgresql_clauses, metadata

    await upgrade(url)
    add_postgresql_clauses()
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await engine.dispose()
