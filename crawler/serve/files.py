"""Which mirrored file answers which request: the manifest's done items, keyed by meaning.

An image request is keyed by the `RenderSpec` the shared image parameters resolve to
(`crawler.simulator.imaging.plan_render`), so a request that means the same pixels as a
mirrored URL finds its file whatever its parameter order or spelling: `range` left out means
the data set's Equalization, `view=projection` is `projection=true`, a region is clipped the
same way. Any other file (grids, the ontology, CCF volumes) is keyed by its path and
parameters exactly, CCF volumes by their file name (their host is another).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from crawler.plan import CCF_ANNOTATION, CCF_TEMPLATE
from crawler.simulator.imaging import ParamError, RenderSpec, plan_render
from crawler.simulator.routes import DOWNLOAD
from crawler.simulator.schema import Record

OtherKey = tuple[str, tuple[tuple[str, str], ...]]
ARCHIVE_KINDS = frozenset({CCF_ANNOTATION, CCF_TEMPLATE})


@dataclass(frozen=True, slots=True)
class HeldFile:
    """A done item's file: where it is under OUT and what the manifest says it is."""

    path: str
    size: int | None
    sha256: str | None


def api_path(path: str) -> str:
    """A stored URL's path from the API's own root, whatever prefix its API base had."""
    for marker in ("/api/v2/", "/grid_data/"):
        found = path.find(marker)
        if found >= 0:
            return path[found:]
    return path


def other_key(path: str, query: Mapping[str, str]) -> OtherKey:
    """A non-image request by its path and its parameters in any order."""
    return path, tuple(sorted(query.items()))


@dataclass
class FileIndex:
    """The done files of a mirror, by what a request means; built once when serving starts."""

    images: dict[RenderSpec, HeldFile] = field(default_factory=dict)
    others: dict[OtherKey, HeldFile] = field(default_factory=dict)
    archive: dict[str, HeldFile] = field(default_factory=dict)  # file name -> file
    unplaced: int = 0  # image items whose image record the mirror lacks (cannot be keyed)

    def add(
        self,
        url: str,
        held: HeldFile,
        kind: str,
        image: Record | None,
        equalization: Record | None,
    ) -> None:
        """Index one done item, as recorded in the manifest."""
        parts = urlsplit(url)
        path = api_path(parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if kind in ARCHIVE_KINDS:
            self.archive[parts.path.rsplit("/", 1)[-1]] = held
        elif image is not None:
            try:
                spec = plan_render(image, 0, equalization, query)
            except ParamError:
                self.unplaced += 1
                return
            self.images[spec] = held  # version 0: a mirror holds one version of each image
        elif DOWNLOAD.fullmatch(path):
            self.unplaced += 1
        else:
            self.others[other_key(path, query)] = held

    def image(self, spec: RenderSpec) -> HeldFile | None:
        return self.images.get(spec)

    def other(self, path: str, query: Mapping[str, str]) -> HeldFile | None:
        return self.others.get(other_key(path, query))


def read_held(out: Path, held: HeldFile) -> bytes | None:
    """The file's bytes, or None when it is gone or not the size the manifest recorded."""
    try:
        data = (out / held.path).read_bytes()
    except OSError:
        return None
    if held.size is not None and len(data) != held.size:
        return None
    return data
