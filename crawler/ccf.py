"""The atlas-wide extras: the structure graph and the CCF 2017 volumes, under ``OUT/ccf/``.

``--with ontology,annotation,template`` asks for files that belong to no data set: they are
planned once per run (``plan_ccf``, pure), recorded with ``data_set_id`` 0 (``CCF_DATA_SET_ID``;
real ids are positive, and sync's removal rule only looks at image items), and fetched like
every download. The volumes live on the informatics archive, another host than the API, so their
ref is their absolute URL (``crawler.plan.item_url`` uses it as it is); the structure graph is an
API answer, so its ref is relative like every other.

The structure graph is checked whole, not by its first bytes: it must parse as a successful RMA
envelope whose ``msg`` holds one root node of a well-formed tree (``crawler.atlas.ontology``).
A body that fails is retried like a cut one; what is stored is the server's bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from crawler import rma
from crawler.client import ApiClient
from crawler.errors import ContentError
from crawler.manifest.repository import Claimed
from crawler.plan import (
    CCF_ANNOTATION,
    CCF_TEMPLATE,
    GRID_EXTENT_UM,
    ONTOLOGY,
    WITH_ANNOTATION,
    WITH_TEMPLATE,
    Item,
    PlanOptions,
    item_url,
)
from crawler.redact import mask_url
from crawler.store import Part

CCF_DATA_SET_ID = 0  # the manifest's data_set_id of files that belong to no data set
CCF_DIRECTORY = "ccf"
STRUCTURE_GRAPH_ID = 1  # the adult mouse ontology
ONTOLOGY_REF = f"/api/v2/structure_graph_download/{STRUCTURE_GRAPH_ID}.json"
ONTOLOGY_PATH = f"{CCF_DIRECTORY}/structure_graph_{STRUCTURE_GRAPH_ID}.json"

# Rough sizes for the plan estimate (inferred, not published): the graph of ~1,300 nodes is
# under a megabyte; gzip shrinks the label volume ~50x (large constant regions) and the
# template's 16-bit intensities ~3x.
ONTOLOGY_BYTES = 1_000_000
ANNOTATION_GZIP_RATIO = 0.02
TEMPLATE_GZIP_RATIO = 0.3


def annotation_path(resolution: int) -> str:
    """Where the archive keeps the CCF 2017 annotation at ``resolution`` µm (under its base)."""
    return f"/annotation/ccf_2017/annotation_{int(resolution)}.nrrd"


def template_path(resolution: int) -> str:
    """Where the archive keeps the average template at ``resolution`` µm (under its base)."""
    return f"/average_template/average_template_{int(resolution)}.nrrd"


def volume_bytes(resolution: int, bytes_per_voxel: int, ratio: float) -> int:
    """Expected size of a gzip-encoded CCF volume (528 x 320 x 456 voxels at 25 µm)."""
    voxels = math.prod(math.ceil(extent / resolution) for extent in GRID_EXTENT_UM)
    return math.ceil(voxels * bytes_per_voxel * ratio)


def plan_ccf(options: PlanOptions) -> Iterator[Item]:
    """The atlas-wide items the options ask for; the same options always give the same refs."""
    extras, resolution = options.extras, options.ccf_resolution
    if ONTOLOGY in extras:
        yield Item(ONTOLOGY_REF, ONTOLOGY_PATH, ONTOLOGY, CCF_DATA_SET_ID, None, ONTOLOGY_BYTES)
    volumes = (
        (WITH_ANNOTATION, CCF_ANNOTATION, annotation_path(resolution), 4, ANNOTATION_GZIP_RATIO),
        (WITH_TEMPLATE, CCF_TEMPLATE, template_path(resolution), 2, TEMPLATE_GZIP_RATIO),
    )
    for extra, kind, path, width, ratio in volumes:
        if extra in extras:
            yield Item(
                ref=options.archive_base + path,
                path=f"{CCF_DIRECTORY}/{path.rsplit('/', 1)[1]}",
                kind=kind,
                data_set_id=CCF_DATA_SET_ID,
                image_id=None,
                estimate=volume_bytes(resolution, width, ratio),
            )


class _Collected(Part):
    """A part that keeps its body in memory, so the structure graph can be parsed whole."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.chunks: list[bytes] = []

    async def write(self, chunk: bytes) -> None:
        self._account(chunk)
        self.chunks.append(chunk)


def check_structure_graph(body: bytes, *, url: str) -> None:
    """A successful RMA envelope holding one well-formed tree; ContentError says what is not."""
    page = rma.parse_page(body, "application/json", url=url)
    if len(page.rows) != 1:
        raise ContentError(f"structure graph has {len(page.rows)} root nodes, not 1", url=url)
    # Imported here: the atlas package loads numpy and pynrrd, which a mirror run otherwise
    # never needs.
    from crawler.atlas.ontology import ontology_from_document

    try:
        ontology_from_document({"success": True, "msg": page.rows})
    except ContentError as exc:
        raise ContentError(str(exc), url=url) from exc


async def ontology_body(client: ApiClient, item: Claimed) -> bytes:
    """The structure graph's bytes as the server sent them, once they parse as a whole tree.

    Each attempt is checked inside the retry policy, so an outage page or a cut body is asked
    again like any other download.
    """
    url = item_url(client.settings.api_base, item.ref)
    shown = mask_url(url)  # what errors and logs carry: never a password

    async def attempt() -> bytes:
        part = _Collected(item.path)
        await client.stream_into(url, part, image=False, limit=client.settings.max_item_bytes)
        body = b"".join(part.chunks)
        check_structure_graph(body, url=shown)
        return body

    body, _ = await client.retrying(attempt, url)
    return body
