"""``--dry-run``: what a mirror or sync would fetch, with nothing written at all.

The selection is seeded and planned exactly as a real run would, but the planned items are only
counted (per kind and data set, with their estimated bytes and a few example paths); no output
directory, lock, manifest, ``dataset.json`` or tile index is created. An existing manifest is
read, never migrated, to leave out what is already done.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from crawler.client import ApiClient
from crawler.config import Settings
from crawler.manifest import Manifest, open_manifest
from crawler.plan import Item
from crawler.planner import Planner
from crawler.selection import Selection
from crawler.session import RunReport

EXAMPLES = 5


@dataclass
class DryRun:
    """What a run would fetch."""

    planned: int = 0
    done: int = 0  # already done in the existing manifest
    estimated_bytes: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_data_set: Counter[int] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    report: RunReport = field(default_factory=lambda: RunReport(command="dry-run"))

    @property
    def to_fetch(self) -> int:
        return self.planned - self.done


class _Counting:
    """A planner sink that counts instead of recording."""

    def __init__(self, dry: DryRun, manifest: Manifest | None) -> None:
        self.dry = dry
        self.manifest = manifest

    async def add(self, chunk: list[Item], api_base: str) -> int:
        done = await self._done_refs([item.ref for item in chunk])
        for item in chunk:
            self.dry.planned += 1
            if item.ref in done:
                self.dry.done += 1
                continue
            self.dry.estimated_bytes += item.estimate
            self.dry.by_kind[item.kind] += 1
            self.dry.by_data_set[item.data_set_id] += 1
            if len(self.dry.examples) < EXAMPLES:
                self.dry.examples.append(item.path)
        return len(chunk) - len(done)

    async def _done_refs(self, refs: list[str]) -> set[str]:
        return set() if self.manifest is None else await self.manifest.done_refs(refs)


def _existing_sqlite(settings: Settings) -> bool:
    from sqlalchemy.engine import make_url

    database = make_url(settings.manifest_url).database
    return bool(database) and os.path.exists(str(database))


async def run_dry(settings: Settings, selection: Selection) -> DryRun:
    """Seed and plan ``selection`` in memory; nothing is written anywhere."""
    dry = DryRun()
    manifest: Manifest | None = None
    if not settings.exclusive or _existing_sqlite(settings):
        manifest = await open_manifest(settings.manifest_url, upgrade=False)
    try:
        async with ApiClient.open(settings) as client:
            planner = Planner(settings, None, client, dry.report, sink=_Counting(dry, manifest))
            await planner.plan_all(await planner.records(selection))
            dry.report.requests = client.requests
    finally:
        if manifest is not None:
            await manifest.close()
    return dry


def dry_run_lines(dry: DryRun, human_bytes: Any) -> list[str]:
    """The dry run's answer, for people."""
    report = dry.report
    lines = [
        "dry run: nothing was written",
        f"would fetch {dry.to_fetch} item(s), estimated {human_bytes(dry.estimated_bytes)} "
        f"({report.data_sets} data set(s), {report.atlases} atlas(es), {report.images} "
        f"image(s); {dry.planned} item(s) planned, {dry.done} already done)",
    ]
    if dry.by_kind:
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(dry.by_kind.items()))
        lines.append(f"  by kind: {kinds}")
    if dry.by_data_set:
        shown = sorted(dry.by_data_set.items())[:20]
        sets = ", ".join(f"{data_set}: {count}" for data_set, count in shown)
        more = len(dry.by_data_set) - len(shown)
        lines.append(f"  by data set: {sets}" + (f" (and {more} more)" if more > 0 else ""))
    lines.extend(f"  e.g. {path}" for path in dry.examples)
    return lines
