"""A mirror as a `DataSource`: its records, its files, and `locate`'s image synchronization.

What the mirror holds is answered from it, byte for byte; what it does not hold raises
`NotHeld` with the `allen-mirror mirror ...` line that would fetch it. The image
synchronization services are computed by `crawler.atlas` from the mirrored alignments, the
code behind `allen-mirror locate`, so `serve` and `locate` give the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from crawler.atlas import (
    Alignment2d,
    Alignment3d,
    image_to_reference,
    reference_to_image,
    series_from_records,
)
from crawler.errors import AllenMirrorError
from crawler.serve import hints
from crawler.serve.files import FileIndex, HeldFile, read_held
from crawler.serve.records import Held
from crawler.simulator.catalogue import Catalogue
from crawler.simulator.ccf_volumes import ARCHIVE_PREFIX
from crawler.simulator.imaging import plan_render
from crawler.simulator.schema import Record, Value
from crawler.simulator.source import CatalogueRecords, NotHeld
from crawler.simulator.sync_services import STRUCTURE_GRAPH, ServiceError

# Fields of a top-level $eq/$in filter that name whole data sets: a mirror that lacks one of
# them cannot answer the query truthfully with fewer rows.
_DATA_SET_FIELDS = {
    "SectionDataSet": "id",
    "SectionImage": "data_set_id",
    "Equalization": "section_data_set_id",
    "Alignment3d": "aligned_id",
}


@dataclass
class MirrorSource(CatalogueRecords):
    """Records loaded from OUT's JSON files, and the manifest's done files by meaning."""

    out: Path
    catalogue: Catalogue
    held: Held
    files: FileIndex

    # -- records -------------------------------------------------------------------------

    def join_rows(self, model: str, record: Record) -> int:
        return 1  # a mirror's records are what it holds: no joined rows to overstate

    def check_query(self, model: str, criteria: Mapping[str, tuple[Value, ...]]) -> None:
        field = _DATA_SET_FIELDS.get(model)
        if field is not None and field in criteria:
            missing = [v for v in criteria[field] if v not in self.held.data_sets]
            if missing:
                raise NotHeld(
                    f"SectionDataSet {', '.join(map(str, missing))}",
                    hints.data_sets(self.out, missing),
                )
        if model in ("SectionImage", "AtlasImage") and "id" in criteria:
            missing = [v for v in criteria["id"] if not isinstance(v, int) or not self.image(v)]
            if missing:
                # which data set an unknown image belongs to is what the mirror cannot know
                option = (
                    "--atlas <its atlas id>"
                    if model == "AtlasImage"
                    else "--dataset <its data set id>"
                )
                raise NotHeld(
                    f"{model} {', '.join(map(str, missing))}", hints.command(self.out, option)
                )
        if model == "ProjectionStructureUnionize" and "section_data_set_id" in criteria:
            missing = [v for v in criteria["section_data_set_id"] if v not in self.held.unionizes]
            if missing:
                raise NotHeld(
                    f"the ProjectionStructureUnionize rows of {', '.join(map(str, missing))}",
                    hints.data_sets(self.out, missing, "--with", "unionizes"),
                )
        if model in ("Structure", "StructureGraph") and not self.held.graphs:
            raise NotHeld("the structure ontology", self._with("ontology"))

    def _with(self, extra: str) -> str:
        """A command adding a once-per-mirror extra, with a selection the mirror already has."""
        if self.held.data_sets:
            return hints.data_sets(self.out, [min(self.held.data_sets)], "--with", extra)
        if self.held.atlases:
            atlas = str(min(self.held.atlases.values()))
            return hints.command(self.out, "--atlas", atlas, "--with", extra)
        return hints.command(self.out, "--dataset <a data set id>", "--with", extra)

    # -- files ---------------------------------------------------------------------------

    def _bytes(self, held: HeldFile | None, what: str, command: str) -> bytes:
        if held is None:
            raise NotHeld(what, command)
        data = read_held(self.out, held)
        if data is None:
            raise NotHeld(
                f"{what} (its file {held.path} is missing or damaged)",
                f"allen-mirror verify --out {self.out} --repair",
            )
        return data

    def image_bytes(self, model: str, image: Record, query: Mapping[str, str]) -> bytes:
        equalization = self.equalization(image)
        spec = plan_render(image, 0, equalization, query)
        data_set_id = image["data_set_id"]
        atlas_id = self.held.atlases.get(int(str(data_set_id))) if model == "AtlasImage" else None
        command = hints.image(
            self.out,
            spec,
            query,
            data_set_id=int(str(data_set_id)),
            atlas_id=atlas_id,
            section_number=image["section_number"],
        )
        region = ""
        if any(name in query for name in ("left", "top", "width", "height")):
            region = f", region left={spec.left} top={spec.top} {spec.out_width}x{spec.out_height}"
        what = f"{spec.kind} of {model} {image['id']} at downsample {spec.downsample}{region}"
        return self._bytes(self.files.image(spec), what, command)

    def equalization(self, image: Record) -> Record | None:
        """The colour window of the image's data set, if the mirror has it."""
        rows = self.catalogue.lookup("Equalization", "section_data_set_id", image["data_set_id"])
        return rows[0] if rows else None

    def projection_grid(self, data_set_id: int, image: str, resolution: int) -> bytes | None:
        path = f"/grid_data/download_file/{data_set_id}"
        held = self.files.other(path, {"image": image, "resolution": str(resolution)})
        command = hints.data_sets(
            self.out,
            [data_set_id],
            *("--with", "grid", "--grid-types", image, "--grid-resolution", str(resolution)),
        )
        what = f"the {image} grid at {resolution} µm of SectionDataSet {data_set_id}"
        return self._bytes(held, what, command)

    def expression_grid(self, data_set_id: int, include: str | None) -> bytes | None:
        path = f"/grid_data/download/{data_set_id}"
        held = self.files.other(path, {} if include is None else {"include": include})
        command = hints.data_sets(self.out, [data_set_id], "--with", "grid")
        what = (
            f"the expression grid ({include or 'default volumes'}) of SectionDataSet {data_set_id}"
        )
        return self._bytes(held, what, command)

    def structure_graph(self, graph_id: int) -> bytes | None:
        path = f"/api/v2/structure_graph_download/{graph_id}.json"
        assert STRUCTURE_GRAPH.fullmatch(path)
        return self._bytes(
            self.files.other(path, {}), f"structure graph {graph_id}", self._with("ontology")
        )

    def archive_file(self, path: str) -> bytes | None:
        name = path.rsplit("/", 1)[-1]
        if not path.startswith(ARCHIVE_PREFIX + "/"):
            return None
        kind = "template" if name.startswith("average_template") else "annotation"
        resolution = name.rsplit("_", 1)[-1].removesuffix(".nrrd")
        command = self._with(kind) + f" --ccf-resolution {resolution}"
        return self._bytes(self.files.archive.get(name), f"the CCF volume {name}", command)

    # -- image synchronization (crawler.atlas, as `locate`) ------------------------------

    def image_to_reference(self, image_id: int, x: float, y: float) -> dict[str, float]:
        image = self.catalogue.get("SectionImage", image_id)
        if image is None:
            raise NotHeld(
                f"SectionImage {image_id}",
                hints.command(self.out, "--dataset <its data set id>"),
            )
        data_set = self.catalogue.get("SectionDataSet", int(str(image["data_set_id"])))
        try:
            alignment2d = Alignment2d.from_record(
                self._one("Alignment2d", "section_image_id", image_id), owner=f"image {image_id}"
            )
            alignment3d = Alignment3d.from_record(
                self._alignment3d(data_set), owner=f"data set {image['data_set_id']}"
            )
            if data_set is None:
                raise ServiceError(400, f"SectionImage {image_id} belongs to no SectionDataSet")
            point = image_to_reference(
                alignment2d,
                alignment3d,
                _number(image["section_number"]),
                _number(data_set["section_thickness"]),
                x,
                y,
            )
        except AllenMirrorError as exc:
            raise ServiceError(400, str(exc)) from exc
        return {"x": float(point.x), "y": float(point.y), "z": float(point.z)}

    def reference_to_image(
        self, data_set_id: int, x: float, y: float, z: float
    ) -> dict[str, object]:
        data_set = self.catalogue.get("SectionDataSet", data_set_id)
        if data_set is None:
            raise NotHeld(f"SectionDataSet {data_set_id}", hints.data_sets(self.out, [data_set_id]))
        images = []
        for image in self.catalogue.lookup("SectionImage", "data_set_id", data_set_id):
            alignment = self._one("Alignment2d", "section_image_id", image["id"])
            images.append({**image, "alignment2d": alignment})
        try:
            series = series_from_records(
                {**data_set, "alignment3d": self._alignment3d(data_set)}, images
            )
            hit = reference_to_image(series, x, y, z)
        except AllenMirrorError as exc:
            raise ServiceError(400, str(exc)) from exc
        return {
            "section_data_set_id": data_set_id,
            "section_image_id": int(hit.section_image_id),
            "section_number": int(hit.section_number),
            "x": float(hit.x),
            "y": float(hit.y),
        }

    def _one(self, model: str, field: str, value: Value) -> Record | None:
        rows = self.catalogue.lookup(model, field, value)
        return rows[0] if rows else None

    def _alignment3d(self, data_set: Record | None) -> Record | None:
        return None if data_set is None else self._one("Alignment3d", "aligned_id", data_set["id"])


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ServiceError(400, f"not a number: {value!r}")
    return float(value)
