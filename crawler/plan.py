"""Planning: image and data set records and the settings become download items, in plain functions.

Paths and URLs are pure functions of the record and the settings, so planning is
deterministic and replanning the same selection adds nothing to the manifest. Everything here
is generated lazily: a full-resolution tile plan of an experiment (~100,000 items) streams
into the manifest without ever being listed whole.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from crawler import rma
from crawler.tiles import Tile, TileGrid, index_document, tile_grid

# Image kinds: the directory under ``<data_set_id>/`` and the rendering asked of the service.
SECTION = "section"
EXPRESSION = "expression"
PROJECTION = "projection"
ANNOTATION = "annotation"
IMAGE_KINDS = (SECTION, EXPRESSION, PROJECTION)  # what --image accepts
# Extras (--with) and the kinds of their items.
GRID = "grid"
UNIONIZES = "unionizes"
# Atlas-wide extras (crawler/ccf.py plans them once per run): the structure graph and the CCF
# volumes. The volumes' item kinds are prefixed: "annotation" is already the atlas drawing.
ONTOLOGY = "ontology"  # the extra and its item kind
WITH_ANNOTATION, WITH_TEMPLATE = "annotation", "template"
CCF_ANNOTATION, CCF_TEMPLATE = "ccf_annotation", "ccf_template"
CCF_EXTRAS = (ONTOLOGY, WITH_ANNOTATION, WITH_TEMPLATE)
EXTRAS = (GRID, UNIONIZES, *CCF_EXTRAS)
EXPRESSION_GRID = "expression_grid"
GRID_TYPES = (
    "projection_density",
    "projection_energy",
    "injection_fraction",
    "injection_density",
    "injection_energy",
    "data_mask",
)
GRID_RESOLUTIONS = (10, 25, 50, 100)
CCF_RESOLUTIONS = (10, 25, 50, 100)
DEFAULT_ARCHIVE_BASE = (
    "http://download.alleninstitute.org/informatics-archive/current-release/mouse_ccf"
)
EXPRESSION_GRID_VOLUMES = ("energy", "density", "intensity")
# Mouse Connectivity Projection (AllenSDK also files connectivity under 31).
CONNECTIVITY_PRODUCTS = frozenset({5, 31})
WINDOW_MAX = 4095

Window = tuple[int, int, int, int, int, int]
RangeSetting = str | Window | None  # "auto", six integers, or None (no range parameter)


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """The settings that shape items; a subset of Settings so planning stays pure."""

    downsample: int = 4
    quality: int | None = None
    kinds: tuple[str, ...] = (SECTION,)
    range: RangeSetting = "auto"
    tile: int = 0  # tile size in tier pixels; 0 = whole images
    annotation: bool = False  # atlas images: also the annotated drawing
    extras: tuple[str, ...] = ()
    grid_types: tuple[str, ...] = ("projection_density",)
    grid_resolution: int = 25
    archive_base: str = DEFAULT_ARCHIVE_BASE  # where the CCF volumes live (another host)
    ccf_resolution: int = 25


# Not frozen: built per item, and a frozen dataclass's __init__ (object.__setattr__ per field)
# costs about four times a plain one's.
@dataclass(slots=True)
class Item:
    """One file to download: its natural key is ``ref``, the URL relative to the API base, or
    absolute for a file on another host (the CCF volumes of the informatics archive)."""

    ref: str
    path: str  # relative to OUT, with forward slashes
    kind: str
    data_set_id: int
    image_id: int | None
    estimate: int = 0  # expected bytes, for the plan summary (see estimate_jpeg_bytes)

    def url(self, api_base: str) -> str:
        """The absolute URL against a given API base (live service or simulator)."""
        return item_url(api_base, self.ref)


def item_url(api_base: str, ref: str) -> str:
    """A ref's URL: relative refs hang off the API base; an absolute ref is used as it is."""
    return ref if ref.startswith(("http://", "https://")) else api_base + ref


# -- option values (the config validates settings with these) ---------------------------------


def parse_choices(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """``a,b`` (or ``a b``) into known, de-duplicated choices; ValueError names the bad one."""
    words = [w.strip().lower() for w in text.replace(" ", ",").split(",") if w.strip()]
    if not words:
        raise ValueError(f"expected one or more of {', '.join(allowed)}")
    for word in words:
        if word not in allowed:
            raise ValueError(f"unknown {what} {word!r}: expected {' | '.join(allowed)}")
    return tuple(dict.fromkeys(words))


def parse_range(text: str) -> RangeSetting:
    """``auto``, ``none`` or ``rl,ru,gl,gu,bl,bu`` (0..4095, each lower below its upper)."""
    value = text.strip().lower()
    if value in ("auto", "none"):
        return "auto" if value == "auto" else None
    parts = [part.strip() for part in value.split(",")]
    if len(parts) != 6 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(
            f"expected auto, none or six integers rl,ru,gl,gu,bl,bu in 0-{WINDOW_MAX}, got {text!r}"
        )
    numbers = tuple(int(part) for part in parts)
    if any(n > WINDOW_MAX for n in numbers):
        raise ValueError(f"values must be within 0-{WINDOW_MAX}, got {text!r}")
    for colour, lower, upper in zip(
        ("red", "green", "blue"), numbers[0::2], numbers[1::2], strict=True
    ):
        # The service divides by the window's width: an empty window cannot render.
        if lower >= upper:
            raise ValueError(f"{colour} lower bound {lower} must be below its upper bound {upper}")
    rl, ru, gl, gu, bl, bu = numbers
    return (rl, ru, gl, gu, bl, bu)


# -- what a data set record tells the plan ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataSetContext:
    """What planning takes from a data set record besides its images."""

    window: Window | None = None  # the colour window sent with its images
    connectivity: bool | None = None  # None: not known, so every asked kind is planned
    equalization: Window | None = None  # what the service applies when no window is sent


NO_CONTEXT = DataSetContext()


def is_connectivity(record: Mapping[str, Any]) -> bool | None:
    """Connectivity data belongs to product 5 (or 31); None when the record lists no products."""
    products = record.get("products")
    if not isinstance(products, list):
        return None
    ids = {int(p["id"]) for p in products if isinstance(p, Mapping) and "id" in p}
    return bool(ids & CONNECTIVITY_PRODUCTS)


def equalization_window(record: Mapping[str, Any]) -> Window | None:
    """The data set's Equalization as a ``range`` window, when it has a usable one."""
    equalization = record.get("equalization")
    if isinstance(equalization, list) and equalization:  # a has_one some servers send as a list
        equalization = equalization[0]
    if not isinstance(equalization, Mapping):
        return None
    try:
        rl, ru, gl, gu, bl, bu = (
            int(equalization[f"{colour}_{end}"])
            for colour in ("red", "green", "blue")
            for end in ("lower", "upper")
        )
    except (KeyError, TypeError, ValueError):
        return None
    if not (0 <= rl < ru <= WINDOW_MAX and 0 <= gl < gu <= WINDOW_MAX and 0 <= bl < bu):
        return None
    return (rl, ru, gl, gu, bl, min(bu, WINDOW_MAX))


def data_set_context(record: Mapping[str, Any], options: PlanOptions) -> DataSetContext:
    """``--range auto`` sends the Equalization where the data set has one (connectivity data)."""
    if options.range == "auto":
        window = equalization_window(record)
    else:
        window = options.range if isinstance(options.range, tuple) else None
    return DataSetContext(
        window=window,
        connectivity=is_connectivity(record),
        equalization=equalization_window(record),
    )


# -- renderings, URLs and paths -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendering:
    """One rendering of an image: its kind (the directory), its service and parameters."""

    kind: str
    service: str
    params: tuple[tuple[str, str], ...] = ()
    window: Window | None = None
    seen: Window | None = None  # the window the service applies (for estimates): sent or default


_SECTION_SERVICES: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    SECTION: ("section_image_download", ()),
    EXPRESSION: ("section_image_download", (("view", "expression"),)),
    PROJECTION: ("projection_image_download", (("projection", "true"),)),
}


def applies(kind: str, context: DataSetContext) -> bool:
    """Expression masks exist for ISH data, projection overlays for connectivity data."""
    if kind == EXPRESSION:
        return context.connectivity is not True
    if kind == PROJECTION:
        return context.connectivity is not False
    return True


def section_renderings(options: PlanOptions, context: DataSetContext) -> list[Rendering]:
    """The renderings of a SectionImage that the options ask for and its data set has."""
    renderings = []
    for kind in options.kinds:
        if applies(kind, context):
            service, params = _SECTION_SERVICES[kind]
            seen = context.window or context.equalization
            renderings.append(Rendering(kind, service, params, context.window, seen))
    return renderings


def atlas_renderings(atlas_id: int, options: PlanOptions) -> list[Rendering]:
    """Atlas images: the Nissl image (kind section) and, with --annotation, the drawing.

    Atlases have no Equalization, so only an explicit ``--range`` is sent, and never with
    drawings, whose colours are structure labels.
    """
    window = options.range if isinstance(options.range, tuple) else None
    renderings = []
    if SECTION in options.kinds:
        renderings.append(Rendering(SECTION, "atlas_image_download", (), window, window))
    if options.annotation:
        params = (("annotation", "true"), ("atlas", str(int(atlas_id))))
        renderings.append(Rendering(ANNOTATION, "atlas_image_download", params))
    return renderings


def ref_parts(rendering: Rendering, image_id: int, options: PlanOptions) -> tuple[str, str]:
    """The parts of a download URL before and after a tile's region parameters.

    Computed once per image and rendering, so a million tile refs cost an f-string each.
    """
    service, head, after = _query(rendering, options)
    return f"/api/v2/{service}/{int(image_id)}?{head}", after


@functools.lru_cache(maxsize=256)
def _query(rendering: Rendering, options: PlanOptions) -> tuple[str, str, str]:
    """(service, query before a tile's region, query after it): the same for every image of a
    rendering, so URL-encoding runs once per rendering, not once per image."""
    head: list[tuple[str, str | int]] = [*rendering.params, ("downsample", options.downsample)]
    tail: list[tuple[str, str | int]] = []
    if options.quality is not None:
        tail.append(("quality", options.quality))
    if rendering.window is not None:
        tail.append(("range", ",".join(str(v) for v in rendering.window)))
    after = f"&{urlencode(tail, safe=',')}" if tail else ""
    return rendering.service, urlencode(head, safe=","), after


def tile_params(tile: Tile) -> str:
    """A tile's region: origin in full-resolution pixels, size in tier pixels."""
    return f"&left={tile.left}&top={tile.top}&width={tile.width}&height={tile.height}"


def image_ref(
    rendering: Rendering, image_id: int, options: PlanOptions, tile: Tile | None = None
) -> str:
    """The download URL (relative): view, tier, tile region, quality, colour window."""
    before, after = ref_parts(rendering, image_id, options)
    return before + (tile_params(tile) if tile is not None else "") + after


def image_name(image: Mapping[str, Any]) -> str:
    """``<section_number:04d>_<image_id>``."""
    return f"{int(image.get('section_number') or 0):04d}_{int(image['id'])}"


def image_path(root: str, kind: str, downsample: int, image: Mapping[str, Any]) -> str:
    """``<root>/<kind>/ds<N>/<section_number:04d>_<image_id>.jpg``."""
    return f"{root}/{kind}/ds{downsample}/{image_name(image)}.jpg"


def tile_directory(root: str, kind: str, downsample: int, image: Mapping[str, Any]) -> str:
    """``<root>/<kind>/ds<N>/tiles/<section_number:04d>_<image_id>``: tiles and index.json."""
    return f"{root}/{kind}/ds{downsample}/tiles/{image_name(image)}"


def atlas_root(atlas_id: int) -> str:
    """Atlas images live under ``atlas_<atlas id>/`` (their data set is the atlas's)."""
    return f"atlas_{int(atlas_id)}"


def is_failed(record: Mapping[str, Any]) -> bool:
    """The API marks unusable data sets and sections ``failed`` (a bool, or 'true')."""
    return str(record.get("failed", False)).lower() == "true"


def in_sections(image: Mapping[str, Any], sections: tuple[int, int] | None) -> bool:
    """``--sections A-B``: section numbers A to B inclusive (no limit without it)."""
    if sections is None:
        return True
    number = int(image.get("section_number") or 0)
    return sections[0] <= number <= sections[1]


# -- items ------------------------------------------------------------------------------------


def plan_image(
    root: str, image: Mapping[str, Any], renderings: list[Rendering], options: PlanOptions
) -> Iterator[Item]:
    """Items of one image: one per rendering, or one per tile of each rendering."""
    data_set_id = int(image["data_set_id"])
    image_id = int(image["id"])
    grid = tile_grid(image, options.downsample, options.tile or 1)  # the same for each rendering
    for rendering in renderings:
        kind, quality, window = rendering.kind, options.quality, rendering.seen
        if options.tile:
            directory = tile_directory(root, kind, options.downsample, image)
            before, after = ref_parts(rendering, image_id, options)
            for tile in grid.tiles():
                yield Item(
                    ref=before + tile_params(tile) + after,
                    path=f"{directory}/{tile.name}",
                    kind=kind,
                    data_set_id=data_set_id,
                    image_id=image_id,
                    estimate=estimate_jpeg_bytes(
                        kind, tile.width, tile.height, quality=quality, window=window
                    ),
                )
        else:
            yield Item(
                ref=image_ref(rendering, image_id, options),
                path=image_path(root, kind, options.downsample, image),
                kind=kind,
                data_set_id=data_set_id,
                image_id=image_id,
                estimate=estimate_jpeg_bytes(
                    kind, grid.tier_width, grid.tier_height, quality=quality, window=window
                ),
            )


def tile_indexes(
    root: str, image: Mapping[str, Any], renderings: list[Rendering], options: PlanOptions
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(path, document)`` of each tiled rendering's ``index.json`` (nothing without tiles)."""
    if not options.tile:
        return
    grid: TileGrid = tile_grid(image, options.downsample, options.tile)
    for rendering in renderings:
        directory = tile_directory(root, rendering.kind, options.downsample, image)
        yield f"{directory}/index.json", index_document(grid, image, rendering.kind)


def unionize_stages(data_set_id: int) -> str:
    """The ProjectionStructureUnionize rows of one experiment (§4)."""
    return (
        "model::ProjectionStructureUnionize,rma::criteria,"
        f"[section_data_set_id$eq{int(data_set_id)}]"
    )


def unionize_ref(data_set_id: int, fmt: str) -> str:
    """The query that returns every row, as JSON or as the live service's CSV.

    It names the item; the rows themselves are fetched page by page (crawler/extras.py).
    """
    every_row = rma.options(num_rows="'all'")
    stages = f"{unionize_stages(data_set_id)},{every_row}"
    return f"/api/v2/data/query.{fmt}?criteria={rma.encode_stages(stages)}"


def plan_extras(
    record: Mapping[str, Any], options: PlanOptions, context: DataSetContext
) -> Iterator[Item]:
    """``--with grid,unionizes``: grid volumes and structure unionizes of one data set.

    Connectivity data gets its projection grids (one NRRD per type) and unionizes; other
    data (ISH) gets its expression grid zip, and has no unionizes.
    """
    data_set_id = int(record["id"])
    if GRID in options.extras:
        if context.connectivity is False:
            query = urlencode({"include": ",".join(EXPRESSION_GRID_VOLUMES)}, safe=",")
            yield Item(
                ref=f"/grid_data/download/{data_set_id}?{query}",
                path=f"{data_set_id}/grid/expression.zip",
                kind=EXPRESSION_GRID,
                data_set_id=data_set_id,
                image_id=None,
                estimate=EXPRESSION_GRID_BYTES,
            )
        else:
            resolution = options.grid_resolution
            for grid_type in options.grid_types:
                query = urlencode({"image": grid_type, "resolution": resolution})
                yield Item(
                    ref=f"/grid_data/download_file/{data_set_id}?{query}",
                    path=f"{data_set_id}/grid/{grid_type}_{resolution}.nrrd",
                    kind=GRID,
                    data_set_id=data_set_id,
                    image_id=None,
                    estimate=estimate_grid_bytes(resolution),
                )
    if UNIONIZES in options.extras and context.connectivity is not False:
        for fmt in ("json", "csv"):
            yield Item(
                ref=unionize_ref(data_set_id, fmt),
                path=f"{data_set_id}/unionizes.{fmt}",
                kind=UNIONIZES,
                data_set_id=data_set_id,
                image_id=None,
                estimate=UNIONIZE_FILE_BYTES,
            )


# -- estimates ----------------------------------------------------------------------------------

# JPEG sizes. A JPEG spends its bits on the DCT coefficients that survive quantization, each
# costing about log2(amplitude / quantizer step) bits. So, per kind of picture, bytes per pixel
# move by a fixed ``slope`` for every doubling of the amplitudes or halving of the step:
#   - the quantizer step follows the IJG quality scale (``quality_scale``: 10 % of the base
#     tables at quality 95, the service's "default highest", 50 % at 75, 100 % at 50);
#   - a colour window (``range``, the Equalization of connectivity data) that maps 1/g of the
#     12-bit range onto 0-255 multiplies amplitudes by g; luma carries most of the bits, so g is
#     weighted like luma (``window_gain``).
# Per kind: (bytes per pixel at the default quality and no window, slope), measured on the
# simulator's renders at qualities 95, 85, 75, 50 and 25 (docs/BENCHMARKS.md "Estimates"),
# whose downsample-4 connectivity sections are ~600 kB, "a few hundred kB" like the live
# service's (ALLEN_API.md §3): sections and atlas Nissl images are textured scans, expression
# masks and drawings flat colour with edges, projection overlays mostly smooth.
JPEG_MODEL = {
    SECTION: (0.164, 0.064),
    EXPRESSION: (0.202, 0.035),
    PROJECTION: (0.060, 0.015),
    ANNOTATION: (0.206, 0.035),
}
MIN_BYTES_PER_PIXEL = 0.02  # however coarse the quantizer: the entropy coding's floor
SERVICE_QUALITY = 95  # what the service sends without quality=
LUMA = (0.299, 0.587, 0.114)  # how much red, green and blue weigh in luma (JFIF)
JPEG_OVERHEAD_BYTES = 1_000  # headers and tables of any JPEG, however small
GRID_EXTENT_UM = (13200, 8000, 11400)  # the CCF volume: 528 x 320 x 456 voxels at 25 µm
GRID_GZIP_RATIO = 0.1  # float32 voxels, mostly zero outside the projection: gzip ~10x
EXPRESSION_GRID_BYTES = 1_000_000  # three float volumes at 200 µm, zipped
UNIONIZE_FILE_BYTES = 500_000  # a few thousand rows per experiment, as JSON or CSV


def quality_scale(quality: int) -> float:
    """The IJG scale of the base quantization tables, in percent (libjpeg's
    ``jpeg_quality_scaling``); at least 1: quality 100 leaves every step at its minimum."""
    quality = min(max(quality, 1), 100)
    return max(5000 / quality if quality < 50 else 200 - 2 * quality, 1.0)


def window_gain(window: Window | None) -> float:
    """How much a colour window stretches amplitudes, weighted like luma (1 without one)."""
    if window is None:
        return 1.0
    spans = (window[1] - window[0], window[3] - window[2], window[5] - window[4])
    return sum(w * WINDOW_MAX / max(span, 1) for w, span in zip(LUMA, spans, strict=True))


@functools.lru_cache(maxsize=256)
def bytes_per_pixel(kind: str, quality: int | None = None, window: Window | None = None) -> float:
    """The JPEG model above: bytes per delivered pixel of a kind, at a quality, in a window.
    Cached: a run asks it for every item, with the few (kind, quality, window) of its renderings.
    """
    base, slope = JPEG_MODEL.get(kind, JPEG_MODEL[SECTION])
    finer = math.log2(quality_scale(SERVICE_QUALITY) / quality_scale(quality or SERVICE_QUALITY))
    return max(MIN_BYTES_PER_PIXEL, base + slope * (finer + math.log2(window_gain(window))))


def estimate_jpeg_bytes(
    kind: str, width: int, height: int, *, quality: int | None = None, window: Window | None = None
) -> int:
    """Expected size of a JPEG of ``width x height`` tier pixels of a kind."""
    per_pixel = bytes_per_pixel(kind, quality, window)
    return JPEG_OVERHEAD_BYTES + math.ceil(max(0, width) * max(0, height) * per_pixel)


def estimate_grid_bytes(resolution: int) -> int:
    """Expected size of one gzip NRRD projection grid at a resolution (µm per voxel)."""
    voxels = math.prod(math.ceil(extent / resolution) for extent in GRID_EXTENT_UM)
    return math.ceil(voxels * 4 * GRID_GZIP_RATIO)
