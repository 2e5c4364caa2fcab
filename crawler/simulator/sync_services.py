"""The image synchronization services and the structure graph download (ALLEN_API.md §6).

``/api/v2/image_to_reference/{image}.json?x=&y=`` maps a full-resolution pixel into reference
µm: tvr · [tsv · [x, y, 1], section_number × section_thickness, 1]. ``/api/v2/reference_to_image/
{space}.json?x=&y=&z=&section_data_set_ids=A,B`` maps a reference point back: trv gives the
section volume point, whose depth picks the nearest section (a tie goes to the lower section
number, then the lower image id; points beyond the ends get the end section), and that image's
tvs gives the pixel. Plain Python over the records' own fields, on purpose independent of
``crawler.atlas`` so the tests that compare the two check something. The reference space id of
the path is not checked against the data sets' (the live rule is not recorded).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

from crawler.simulator.alignments import apply2, apply3, read2, read3
from crawler.simulator.catalogue import Catalogue
from crawler.simulator.query import error_envelope
from crawler.simulator.schema import Record
from crawler.simulator.source import DataSource

STRUCTURE_GRAPH = re.compile(r"/api/v2/structure_graph_download/(\d+)\.json")
IMAGE_TO_REFERENCE = re.compile(r"/api/v2/image_to_reference/(\d+)\.json")
REFERENCE_TO_IMAGE = re.compile(r"/api/v2/reference_to_image/(\d+)\.json")
PREFIXES = tuple(
    f"/api/v2/{name}/"
    for name in ("structure_graph_download", "image_to_reference", "reference_to_image")
)

Answer = tuple[int, bytes]  # HTTP status, JSON envelope


class ServiceError(Exception):
    """A request the service refuses: the status and message of its answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def answer(source: DataSource, path: str, query: Mapping[str, str]) -> Answer | None:
    """The status and envelope for one of these services, or None for any other path.

    The data source computes the numbers (the simulator from its tables, `serve` with
    `crawler.atlas`, as `locate` does); this function owns the URLs, parameters and envelopes.
    """
    try:
        if match := STRUCTURE_GRAPH.fullmatch(path):
            graph = source.structure_graph(int(match[1]))
            if graph is None:
                raise ServiceError(404, f"no structure graph {match[1]}")
            return 200, graph
        if match := IMAGE_TO_REFERENCE.fullmatch(path):
            point = source.image_to_reference(int(match[1]), *_numbers(query, "x", "y"))
            return 200, _dumps(success({"image_to_reference": point}))
        if match := REFERENCE_TO_IMAGE.fullmatch(path):
            ids = _ids(query.get("section_data_set_ids", ""))
            x, y, z = _numbers(query, "x", "y", "z")
            hits = [{"image_sync": source.reference_to_image(i, x, y, z)} for i in ids]
            return 200, _dumps(success(hits))
    except ServiceError as exc:
        return exc.status, _dumps(error_envelope(str(exc)))
    if not path.startswith(PREFIXES):
        return None
    return 404, _dumps(error_envelope(f"No route {path}"))


def _dumps(envelope: Mapping[str, object]) -> bytes:
    return json.dumps(envelope).encode()


def image_to_reference(catalogue: Catalogue, image_id: int, x: float, y: float) -> dict[str, float]:
    """One pixel of a SectionImage in reference µm."""
    image = catalogue.get("SectionImage", image_id)
    if image is None:
        raise ServiceError(404, f"no SectionImage {image_id}")
    data_set = _data_set(catalogue, image)
    tsv = read2(_alignment2d(catalogue, image_id), "tsv")
    tvr = read3(_alignment3d(catalogue, data_set), "tvr")
    u, v = apply2(tsv, x, y)
    depth = _number(image["section_number"]) * _number(data_set["section_thickness"])
    p, i, r = apply3(tvr, u, v, depth)
    return {"x": p, "y": i, "z": r}


def reference_to_image(
    catalogue: Catalogue, data_set_id: int, x: float, y: float, z: float
) -> dict[str, object]:
    """The data set's nearest section to a reference point, and the pixel on it."""
    data_set = catalogue.get("SectionDataSet", data_set_id)
    if data_set is None:
        raise ServiceError(404, f"no SectionDataSet {data_set_id}")
    u, v, depth = apply3(read3(_alignment3d(catalogue, data_set), "trv"), x, y, z)
    thickness = _number(data_set["section_thickness"])
    candidates: list[tuple[float, int, int, Record]] = []
    for image in catalogue.lookup("SectionImage", "data_set_id", data_set_id):
        found = catalogue.lookup("Alignment2d", "section_image_id", image["id"])
        number = image["section_number"]
        if found and isinstance(number, int):
            distance = abs(number * thickness - depth)
            candidates.append((distance, number, int(str(image["id"])), found[0]))
    if not candidates:
        raise ServiceError(400, f"SectionDataSet {data_set_id} has no aligned section images")
    _, number, image_id, alignment = min(candidates, key=lambda c: c[:3])
    px, py = apply2(read2(alignment, "tvs"), u, v)
    return {
        "section_data_set_id": data_set_id,
        "section_image_id": image_id,
        "section_number": number,
        "x": px,
        "y": py,
    }


def success(msg: object) -> dict[str, object]:
    """The success envelope of a service answer (one row for a single object)."""
    count = len(msg) if isinstance(msg, list) else 1
    return {"success": True, "id": 0, "start_row": 0, "num_rows": count, "total_rows": count,
            "msg": msg}  # fmt: skip


def _data_set(catalogue: Catalogue, image: Record) -> Record:
    data_set = catalogue.get("SectionDataSet", int(str(image["data_set_id"])))
    if data_set is None:
        raise ServiceError(400, f"SectionImage {image['id']} belongs to no SectionDataSet")
    return data_set


def _alignment2d(catalogue: Catalogue, image_id: int) -> Record:
    found = catalogue.lookup("Alignment2d", "section_image_id", image_id)
    if not found:
        raise ServiceError(400, f"SectionImage {image_id} has no Alignment2d")
    return found[0]


def _alignment3d(catalogue: Catalogue, data_set: Record) -> Record:
    found = catalogue.lookup("Alignment3d", "aligned_id", data_set["id"])
    if not found:
        raise ServiceError(400, f"SectionDataSet {data_set['id']} has no Alignment3d")
    return found[0]


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ServiceError(400, f"not a number: {value!r}")
    return float(value)


def _numbers(query: Mapping[str, str], *names: str) -> tuple[float, ...]:
    values = []
    for name in names:
        try:
            value = float(query[name])
        except KeyError:
            raise ServiceError(400, f"parameter {name} is required") from None
        except ValueError:
            raise ServiceError(400, f"parameter {name} must be a number") from None
        if not math.isfinite(value):
            raise ServiceError(400, f"parameter {name} must be finite")
        values.append(value)
    return tuple(values)


def _ids(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ServiceError(400, "section_data_set_ids must list data set ids")
    return [int(p) for p in parts]
