"""`--fallback URL [--record]`: what the mirror lacks is asked of a live API, and optionally kept.

`placement` decides (a pure function) where a fetched body belongs in the mirror, exactly where
`allen-mirror mirror` would have put it: a whole image under
``<data set or atlas_N>/<kind>/ds<N>/<section>_<id>.jpg``, a projection grid under
``<id>/grid/<type>_<R>.nrrd``, the ontology under ``ccf/structure_graph_<G>.json``. Anything
else (RMA answers, tiles, image sync) is proxied but not kept: records belong in
``dataset.json``, which only `mirror` writes. `Recorder` then stores the body through the
mirror's own store (``.part``, hashed, checked like a download, fsynced, renamed) and records
it as a done item of the manifest, so `verify`, `sync` and the next `serve` know it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import anyio
import structlog
from sqlalchemy import Select, select

from crawler.ccf import check_structure_graph
from crawler.errors import AllenMirrorError
from crawler.kinds import body_rule
from crawler.localstore import LocalStore
from crawler.manifest import Manifest, Status
from crawler.manifest.base import Outcome
from crawler.manifest.models import items
from crawler.plan import GRID, ONTOLOGY, Item, atlas_root, image_path
from crawler.serve.loading import add_item
from crawler.serve.source import MirrorSource
from crawler.simulator.imaging import ParamError, plan_render
from crawler.simulator.routes import DOWNLOAD
from crawler.store import StoredFile

log = structlog.get_logger("crawler.serve")

_GRID_FILE = re.compile(r"/grid_data/download_file/(\d+)")
_GRAPH = re.compile(r"/api/v2/structure_graph_download/(\d+)\.json")
_KIND_DIRECTORY = {
    "image": "section",
    "projection": "projection",
    "expression": "expression",
    "annotation": "annotation",
}
_REGION = ("left", "top", "width", "height")
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10, sock_read=60)


@dataclass(frozen=True, slots=True)
class Fetched:
    """The live API's answer, passed on to the client as it came."""

    status: int
    content_type: str
    body: bytes


def placement(source: MirrorSource, path: str, query: Mapping[str, str], ref: str) -> Item | None:
    """Where `mirror` would keep this request's body (``ref``: its path and query as sent),
    or None when it is not kept."""
    if (match := DOWNLOAD.fullmatch(path)) and not any(name in query for name in _REGION):
        found = source.image(int(match[2]))
        if found is None:
            return None
        model, image = found
        try:
            spec = plan_render(image, 0, source.equalization(image), query)
        except ParamError:
            return None
        data_set_id = int(str(image["data_set_id"]))
        atlas_id = source.held.atlases.get(data_set_id)
        if model == "AtlasImage" and atlas_id is None:
            return None
        root = atlas_root(atlas_id) if atlas_id is not None else str(data_set_id)
        kind = _KIND_DIRECTORY[spec.kind]
        target = image_path(root, kind, spec.downsample, image)
        return Item(ref, target, kind, data_set_id, int(str(image["id"])))
    if (match := _GRID_FILE.fullmatch(path)) and set(query) == {"image", "resolution"}:
        data_set_id = int(match[1])
        if data_set_id not in source.held.data_sets or not query["resolution"].isdigit():
            return None
        target = f"{data_set_id}/grid/{query['image']}_{int(query['resolution'])}.nrrd"
        return Item(ref, target, GRID, data_set_id, None)
    if (match := _GRAPH.fullmatch(path)) and not query:
        return Item(ref, f"ccf/structure_graph_{int(match[1])}.json", ONTOLOGY, 0, None)
    return None


class Fallback:
    """Proxies to a live API base; with a `Recorder`, keeps what it can place."""

    def __init__(self, base: str, recorder: Recorder | None) -> None:
        self.base = base.rstrip("/")
        self.recorder = recorder
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=TIMEOUT, auto_decompress=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch(self, path_qs: str) -> Fetched:
        """The live answer; a connection failure is a 502 naming the fallback."""
        assert self._session is not None, "start() first"
        url = self.base + path_qs
        try:
            async with self._session.get(url) as response:
                body = await response.read()
                kind = response.headers.get("Content-Type", "application/octet-stream")
                return Fetched(response.status, kind, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = (
                f"502 Bad Gateway: the fallback {self.base} failed: {exc or type(exc).__name__}"
            )
            return Fetched(502, "text/plain; charset=utf-8", (message + "\n").encode())


class Recorder:
    """Writes fetched bodies into the mirror, one at a time (the manifest is one writer)."""

    def __init__(self, source: MirrorSource, manifest: Manifest, api_base: str) -> None:
        self.source = source
        self.manifest = manifest
        self.api_base = api_base.rstrip("/")
        self.store = LocalStore(source.out)
        self._lock = anyio.Lock()

    async def close(self) -> None:
        await self.manifest.close()

    async def keep(
        self, path: str, query: Mapping[str, str], ref: str, fetched: Fetched
    ) -> str | None:
        """Store and record the body if it has a place; returns its path, or None."""
        item = placement(self.source, path, query, ref)
        if item is None or fetched.status != 200:
            return None
        url = self.api_base + item.ref
        async with self._lock:
            stored = await self._store(item, url, fetched.body)
            await self.manifest.add_items([item], self.api_base)
            rows = await self.manifest.read(select_item(item.ref))
            if not rows:
                return None
            outcome = Outcome(int(rows[0].id), Status.DONE, url, 1, 200, stored.size, stored.sha256)
            await self.manifest.record([outcome])
        add_item(self.source, url, item.path, item.kind, item.image_id, stored.size, stored.sha256)
        log.info("serve.recorded", url=url, path=item.path, size=stored.size)
        return item.path

    async def _store(self, item: Item, url: str, body: bytes) -> StoredFile:
        async with self.store.part(item.path) as part:
            await part.write(body)
            if item.kind == ONTOLOGY:
                check_structure_graph(body, url=url)
            else:
                body_rule(item.kind).check(part, url)
            [result] = await self.store.commit([part])
        if isinstance(result, AllenMirrorError):
            raise result
        return result


def select_item(ref: str) -> Select[tuple[int]]:
    return select(items.c.id).where(items.c.ref == ref)
