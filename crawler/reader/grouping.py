"""Which of an image's manifest rows make which sample: decided in plain functions.

The reader streams one data set's done items ordered by image id, so all rows of one image
arrive together; ``image_members`` turns them into members per tier and kind. Decisions:

- one sample per tier (an image mirrored at ds4 and ds2 gives two samples);
- a whole image wins over tiles of the same kind and tier (both may be mirrored);
- two done rows for one path (a colour window or quality changed, which replaces the file at
  the same path) keep the one fetched last, whose bytes are on disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crawler.reader.layout import ItemPlace, item_place, url_window


@dataclass(frozen=True, slots=True)
class Row:
    """The fields of a manifest item the reader uses."""

    id: int
    path: str
    kind: str
    image_id: int
    size: int
    sha256: str
    url: str
    fetched_at: datetime | None = None

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> Row:
        return cls(
            int(row["id"]),
            str(row["path"]),
            str(row["kind"]),
            int(row["image_id"]),
            int(row["size"] or 0),
            str(row["sha256"] or ""),
            str(row["url"]),
            row.get("fetched_at"),
        )


@dataclass(frozen=True, slots=True)
class MemberRows:
    """The rows of one member: one whole image, or its tiles in row-major order."""

    kind: str
    tier: int
    rows: tuple[tuple[Row, ItemPlace], ...]

    @property
    def tiled(self) -> bool:
        return self.rows[0][1].tiled

    @property
    def window(self) -> tuple[int, ...] | None:
        return url_window(self.rows[0][0].url)


def image_members(
    rows: Iterable[Row], kinds: Iterable[str], tiers: Iterable[int] | None = None
) -> dict[int, dict[str, MemberRows]]:
    """tier -> kind -> member for one image's done rows; rows of other kinds or tiers, and
    rows that are not image files (paths the planner does not write for images), are left out."""
    wanted, tier_set = set(kinds), set(tiers) if tiers is not None else None
    latest: dict[str, tuple[Row, ItemPlace]] = {}
    for row in rows:
        place = item_place(row.path)
        if place is None or row.kind not in wanted or place.kind != row.kind:
            continue
        if tier_set is not None and place.tier not in tier_set:
            continue
        seen = latest.get(row.path)
        if seen is None or _newer(row, seen[0]):
            latest[row.path] = (row, place)
    whole: dict[tuple[int, str], tuple[Row, ItemPlace]] = {}
    tiles: dict[tuple[int, str], list[tuple[Row, ItemPlace]]] = {}
    for row, place in latest.values():
        if place.tile is None:
            whole[(place.tier, place.kind)] = (row, place)
        else:
            tiles.setdefault((place.tier, place.kind), []).append((row, place))
    found: dict[int, dict[str, MemberRows]] = {}
    for (tier, kind), entry in whole.items():
        found.setdefault(tier, {})[kind] = MemberRows(kind, tier, (entry,))
    for (tier, kind), entries in tiles.items():
        if (tier, kind) not in whole:
            entries.sort(key=lambda e: e[1].tile or (0, 0))
            found.setdefault(tier, {})[kind] = MemberRows(kind, tier, tuple(entries))
    return {tier: found[tier] for tier in sorted(found, reverse=True)}


def _newer(row: Row, other: Row) -> bool:
    """Fetched later (ties, or no dates: the later item id)."""
    mine, theirs = row.fetched_at, other.fetched_at
    if mine is not None and theirs is not None and mine != theirs:
        return mine > theirs
    return row.id > other.id
