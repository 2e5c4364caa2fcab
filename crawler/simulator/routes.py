"""Map a request path and query to the fault-free reply: the only thing the server "means".

`answer` is the API surface, written once against a `DataSource`: the simulator's synthetic
catalogue (`resolve`, `expected_bytes`) or a mirror (`crawler.serve`). Pure apart from reading
the source, so tests can compute what a mirror must hold without a server, and the aiohttp
layers only add faults (simulator) or fallback and logging (serve) and I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from yarl import URL

from crawler.simulator import ccf_volumes, sync_services
from crawler.simulator.catalogue import Catalogue
from crawler.simulator.imaging import ParamError, image_kind
from crawler.simulator.query import error_envelope, evaluate_json, named_ids
from crawler.simulator.render import RenderCache
from crawler.simulator.rma import RmaError, parse_legacy, parse_record, parse_stages
from crawler.simulator.schema import Record
from crawler.simulator.source import DataSource, NotHeld
from crawler.simulator.synthetic import SyntheticSource

RouteKind = Literal["rma", "image", "grid", "redirect", "other"]
JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
JPEG = "image/jpeg"
NRRD = "application/octet-stream"
# The live status of a failed RMA query is undocumented (§1); 500 makes "non-2xx" obvious.
RMA_ERROR_STATUS = 500

_RMA_QUERY = re.compile(r"/api/v2/data/query\.(\w+)")
_RMA_LEGACY = re.compile(r"/api/v2/data/(\w+)/query\.(\w+)")
_RMA_RECORD = re.compile(r"/api/v2/data/(\w+)/(\d+)\.(\w+)")
DOWNLOAD = re.compile(
    r"/api/v2/(section_image_download|image_download|projection_image_download"
    r"|atlas_image_download)/(\d+)"
)
_GRID_FILE = re.compile(r"/grid_data/download_file/(\d+)")
_GRID_ZIP = re.compile(r"/grid_data/download/(\d+)")
TILE_SERVER = "/cgi-bin/imageservice"


@dataclass(frozen=True)
class Reply:
    """A complete HTTP answer, plus what the fault layer needs to know about it."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    image_id: int | None = None  # for permanent per-image failures
    image_path: str | None = None  # the .aff path a redirect to the tile server names
    not_held: NotHeld | None = None  # a mirror lacks the data (crawler.serve may fall back)


def route_kind(path: str) -> RouteKind:
    """Which counter bucket and which fault menu a path belongs to.

    The JSON services (structure graph, image sync) fail like RMA answers; the archive's CCF
    volumes like grid files.
    """
    if path.startswith(("/api/v2/data/", *sync_services.PREFIXES)):
        return "rma"
    if path.startswith(ccf_volumes.ARCHIVE_PREFIX + "/"):
        return "grid"
    if path.startswith("/api/v2/") and "_download/" in path:
        return "image"
    if path.startswith("/grid_data/"):
        return "grid"
    if path == TILE_SERVER:
        return "redirect"
    return "other"


def _text(status: int, message: str) -> Reply:
    return Reply(status, TEXT, f"{status} {message}\n".encode())


def _json(envelope: Mapping[str, object], status: int = 200) -> Reply:
    return Reply(status, JSON, json.dumps(envelope).encode())


def not_held(path: str, missing: NotHeld) -> Reply:
    """HTTP 404 naming what the mirror lacks and the command that would fetch it: a failure
    envelope for the JSON services (AllenSDK hands its `msg` to the caller), text otherwise."""
    if route_kind(path) == "rma":
        body = json.dumps(error_envelope(missing.message)).encode()
        return Reply(404, JSON, body, not_held=missing)
    return Reply(404, TEXT, f"404 Not Found: {missing.message}\n".encode(), not_held=missing)


def _rma(
    source: DataSource, path: str, query: Mapping[str, str], overstate_total_rows: bool
) -> Reply:
    try:
        if match := _RMA_QUERY.fullmatch(path):
            extension = match[1]
            stages = query.get("criteria") or query.get("q")
            if not stages:
                raise RmaError("Missing criteria or q parameter")
            parsed = parse_stages(stages)
        elif match := _RMA_LEGACY.fullmatch(path):
            extension = match[2]
            parsed = parse_legacy(match[1], query)
        elif match := _RMA_RECORD.fullmatch(path):
            extension = match[3]
            parsed = parse_record(match[1], int(match[2]), query)
        else:
            return _json(error_envelope(f"No route matches {path}"), RMA_ERROR_STATUS)
        if extension != "json":
            return _json(error_envelope(f"Format {extension!r} is not served"), 400)
        source.check_query(parsed.model, named_ids(parsed))
        body = evaluate_json(source, parsed, overstate_total_rows=overstate_total_rows)
    except RmaError as exc:
        return _json(error_envelope(str(exc)), RMA_ERROR_STATUS)
    return Reply(200, JSON, body)


def _image_reply(source: DataSource, model: str, image: Record, query: Mapping[str, str]) -> Reply:
    image_id = image["id"]
    assert isinstance(image_id, int)
    body = source.image_bytes(model, image, query)
    path = image["path"]
    return Reply(
        200, JPEG, body, image_id=image_id, image_path=path if isinstance(path, str) else None
    )


def _check_atlas(source: DataSource, image: Record, query: Mapping[str, str]) -> None:
    raw = query.get("atlas")
    if raw is None:
        return
    try:
        atlas_id = int(raw)
    except ValueError:
        raise ParamError(f"atlas must be an integer, got {raw!r}") from None
    data_set = source.get("AtlasDataSet", int(image["data_set_id"] or 0))
    if data_set is None or data_set["atlas_id"] != atlas_id:
        raise ParamError(f"image {image['id']} is not part of atlas {atlas_id}")


def _download(source: DataSource, service: str, image_id: int, query: Mapping[str, str]) -> Reply:
    found = source.image(image_id)
    if found is None or (service == "atlas_image_download" and found[0] != "AtlasImage"):
        model = "AtlasImage" if service == "atlas_image_download" else "SectionImage"
        source.check_query(model, {"id": (image_id,)})  # a mirror names what it lacks
        return _text(404, "Not Found")
    model, image = found
    if model == "AtlasImage":
        _check_atlas(source, image, query)
    elif query.get("annotation", "false").lower() in ("true", "t", "1"):
        raise ParamError("annotation is only available for atlas images")
    return _image_reply(source, model, image, query)


def _tile_server(source: DataSource, query: Mapping[str, str]) -> Reply:
    aff = query.get("path")
    if not aff:
        raise ParamError("path is required")
    params = {key: value for key, value in query.items() if key != "path"}
    for model in ("SectionImage", "AtlasImage"):
        for image in source.lookup(model, "path", aff):
            return _image_reply(source, model, image, params)
    for image in source.lookup("SectionImage", "expression_path", aff):
        if image_kind(params) not in ("image", "expression"):
            raise ParamError("an expression path only renders the expression view")
        return _image_reply(source, "SectionImage", image, {**params, "expression": "true"})
    return _text(404, "Not Found")


def _grid(source: DataSource, path: str, query: Mapping[str, str]) -> Reply:
    if match := _GRID_FILE.fullmatch(path):
        data_set_id = int(match[1])
        image = query.get("image", "")
        try:
            resolution = int(query.get("resolution", ""))
        except ValueError:
            raise ParamError("resolution must be an integer") from None
        body = source.projection_grid(data_set_id, image, resolution)
        if body is None:
            return _text(404, "Not Found")
        disposition = f'attachment; filename="{image}_{resolution}.nrrd"'
        return Reply(200, "application/octet-stream", body, (("Content-Disposition", disposition),))
    if match := _GRID_ZIP.fullmatch(path):
        data_set_id = int(match[1])
        body = source.expression_grid(data_set_id, query.get("include"))
        if body is None:
            return _text(404, "Not Found")
        disposition = f'attachment; filename="{data_set_id}.zip"'
        return Reply(200, "application/zip", body, (("Content-Disposition", disposition),))
    return _text(404, "Not Found")


def answer(
    source: DataSource,
    path: str,
    query: Mapping[str, str],
    *,
    overstate_total_rows: bool = True,
) -> Reply:
    """The fault-free reply of any data source for a decoded path and query."""
    try:
        return _answer(source, path, query, overstate_total_rows)
    except NotHeld as missing:
        return not_held(path, missing)


def _answer(
    source: DataSource, path: str, query: Mapping[str, str], overstate_total_rows: bool
) -> Reply:
    kind = route_kind(path)
    if (service := sync_services.answer(source, path, query)) is not None:
        return Reply(service[0], JSON, service[1])
    if path.startswith(ccf_volumes.ARCHIVE_PREFIX + "/"):
        volume = source.archive_file(path)
        return _text(404, "Not Found") if volume is None else Reply(200, NRRD, volume)
    if kind == "rma":
        return _rma(source, path, query, overstate_total_rows)
    try:
        if kind == "image":
            match = DOWNLOAD.fullmatch(path)
            if match is None:
                return _text(404, "Not Found")
            return _download(source, match[1], int(match[2]), query)
        if kind == "redirect":
            return _tile_server(source, query)
        if kind == "grid":
            return _grid(source, path, query)
    except ParamError as exc:
        return _text(400, f"Bad Request: {exc}")
    return _text(404, "Not Found")


def resolve(
    catalogue: Catalogue,
    path: str,
    query: Mapping[str, str],
    *,
    overstate_total_rows: bool = True,
    cache: RenderCache | None = None,
) -> Reply:
    """The simulator's fault-free reply for a decoded path and query."""
    source = SyntheticSource(catalogue, cache)
    return answer(source, path, query, overstate_total_rows=overstate_total_rows)


def tile_server_location(image_path: str, query: Mapping[str, str]) -> str:
    """Where a redirecting download service sends the client (§5): same params, by .aff path."""
    params = {"path": image_path, **{k: v for k, v in query.items() if k != "path"}}
    return str(URL(TILE_SERVER).with_query(params))


def expected_bytes(
    catalogue: Catalogue, path_and_query: str, *, overstate_total_rows: bool = True
) -> bytes:
    """The exact body the fault-free server returns for `path_and_query`; raises on non-200."""
    url = URL(path_and_query)
    reply = resolve(catalogue, url.path, url.query, overstate_total_rows=overstate_total_rows)
    if reply.status != 200:
        raise ValueError(f"{path_and_query} answers HTTP {reply.status}: {reply.body!r}")
    return reply.body
