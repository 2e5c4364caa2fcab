"""The simulator's database: records per model, lookups, associations and mutations.

Records are plain dicts carrying exactly the fields of `schema.MODEL_FIELDS`, so the RMA
evaluator can serialise them as they are. Mutations exist for sync tests: a section appears,
disappears or changes between two crawler runs.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable

from crawler.simulator.alignments import alignment2d
from crawler.simulator.schema import ASSOCIATIONS, MODEL_FIELDS, Association, Record, Value


def tier_count(width: int, height: int) -> int:
    """Pyramid depth for 256-pixel tiles, the formula ALLEN_API.md §2 infers from real records."""
    longest = max(width, height, 1)
    return max(1, math.ceil(math.log2(longest / 256)) + 1)


class Catalogue:
    """In-memory tables of every model, with lazily built indexes that mutations invalidate."""

    def __init__(self, image_scale: float = 1.0) -> None:
        self.tables: dict[str, dict[int, Record]] = {model: {} for model in MODEL_FIELDS}
        self.links: dict[str, dict[int, list[int]]] = {}
        # Pixel dimensions are shrunk by this factor; alignments scale back up by it.
        self.image_scale = image_scale
        # Image ids whose data set join yields two rows, so total_rows overstates (§1).
        self.duplicated_join_rows: set[int] = set()
        self._versions: dict[int, int] = {}
        self._indexes: dict[tuple[str, str], dict[Value, list[int]]] = {}
        self._reverse_links: dict[str, dict[int, list[int]]] = {}
        self._next_id = 900_000_000
        # JSON of records as RMA answers serve them, by (query shape, id): see evaluate_json.
        self.serialized: dict[tuple[object, Value], bytes] = {}
        # Server worker threads read while a test mutates: index builds and writes take the lock.
        self._lock = threading.RLock()

    @classmethod
    def build(
        cls,
        seed: int = 0,
        sections_per_dataset: int | None = None,
        extra_connectivity_datasets: int = 6,
        extra_ish_datasets: int = 2,
        image_scale: float = 1.0,
    ) -> Catalogue:
        """Build the deterministic synthetic catalogue (see `synth.build_catalogue`)."""
        from crawler.simulator.synth import build_catalogue  # synth imports this module

        return build_catalogue(
            seed=seed,
            sections_per_dataset=sections_per_dataset,
            extra_connectivity_datasets=extra_connectivity_datasets,
            extra_ish_datasets=extra_ish_datasets,
            image_scale=image_scale,
        )

    # -- storage -------------------------------------------------------------------------

    def allocate_id(self) -> int:
        """Hand out a fresh synthetic id, unique across every model."""
        with self._lock:
            self._next_id += 1
            return self._next_id

    def insert(self, model: str, record: Record) -> Record:
        """Add one record; its keys must be the model's schema fields (stored in schema order)."""
        expected = MODEL_FIELDS[model].keys()
        if record.keys() != expected:
            raise ValueError(f"{model} record fields differ from schema: {sorted(record)}")
        record = {name: record[name] for name in expected}
        record_id = record["id"]
        assert isinstance(record_id, int)
        with self._lock:
            self.tables[model][record_id] = record
            self._invalidate()
        return record

    def link(self, name: str, left_id: int, right_ids: Iterable[int]) -> None:
        """Record a many-to-many association such as data set ↔ products."""
        with self._lock:
            self.links.setdefault(name, {}).setdefault(left_id, []).extend(right_ids)
            self._invalidate()

    def get(self, model: str, record_id: int) -> Record | None:
        """One record by id, or None, as RMA answers an unknown id with an empty list."""
        return self.tables[model].get(record_id)

    def records(self, model: str) -> list[Record]:
        """All records of a model in id order, the default RMA order."""
        table = self.tables[model]
        return [table[key] for key in sorted(table)]

    def lookup(self, model: str, field: str, value: Value) -> list[Record]:
        """Records whose `field` equals `value`, in id order, through a cached index."""
        key = (model, field)
        index = self._indexes.get(key)
        if index is None:
            with self._lock:
                built: dict[Value, list[int]] = {}
                for record_id in sorted(self.tables[model]):
                    built.setdefault(self.tables[model][record_id][field], []).append(record_id)
                self._indexes[key] = index = built
        table = self.tables[model]
        return [table[i] for i in index.get(value, ()) if i in table]

    def related(self, association: Association, record: Record) -> list[Record]:
        """Follow one association from `record`, returning target records in id order."""
        target = self.tables[association.target]
        if association.link is not None:
            record_id = record["id"]
            assert isinstance(record_id, int)
            links = self._link_map(association.link, association.link_reverse)
            return [target[i] for i in sorted(links.get(record_id, ())) if i in target]
        value = record[association.local_key]
        if value is None:
            return []
        if association.remote_key == "id":
            found = target.get(value) if isinstance(value, int) else None
            return [] if found is None else [found]
        return self.lookup(association.target, association.remote_key, value)

    def related_by_name(self, model: str, name: str, record: Record) -> list[Record]:
        """Follow an association named as in RMA includes, for tests and tools."""
        return self.related(ASSOCIATIONS[model][name], record)

    def _link_map(self, name: str, reverse: bool) -> dict[int, list[int]]:
        if not reverse:
            return self.links.get(name, {})
        cached = self._reverse_links.get(name)
        if cached is None:
            with self._lock:
                cached = {}
                for left, rights in self.links.get(name, {}).items():
                    for right in rights:
                        cached.setdefault(right, []).append(left)
                self._reverse_links[name] = cached
        return cached

    def _invalidate(self) -> None:
        self._indexes = {}
        self._reverse_links = {}
        self.serialized = {}

    # -- image helpers ---------------------------------------------------------------------

    def image(self, image_id: int) -> tuple[str, Record] | None:
        """A SectionImage or AtlasImage by id, with its model name."""
        for model in ("SectionImage", "AtlasImage"):
            record = self.tables[model].get(image_id)
            if record is not None:
                return model, record
        return None

    def version(self, image_id: int) -> int:
        """The image's salt, bumped by `change_image` so its rendered bytes change."""
        return self._versions.get(image_id, 0)

    def equalization_for(self, image: Record) -> Record | None:
        """The colour window of the image's data set, when it has one (§2)."""
        rows = self.lookup("Equalization", "section_data_set_id", image["data_set_id"])
        return rows[0] if rows else None

    def join_rows(self, model: str, record: Record) -> int:
        """How many joined database rows the live service would count for this record."""
        if model == "SectionImage" and record["id"] in self.duplicated_join_rows:
            return 2
        return 1

    # -- mutations for sync tests ----------------------------------------------------------

    def add_section(
        self, data_set_id: int, section_number: int | None = None, failed: bool = False
    ) -> Record:
        """Append a new SectionImage to a data set, shaped like its siblings."""
        data_set = self.get("SectionDataSet", data_set_id)
        if data_set is None:
            raise KeyError(f"no SectionDataSet {data_set_id}")
        siblings = self.lookup("SectionImage", "data_set_id", data_set_id)
        template: Record = dict(siblings[-1]) if siblings else _default_image(data_set)
        if section_number is None:
            numbers = [s["section_number"] for s in siblings]
            section_number = max((n for n in numbers if isinstance(n, int)), default=0) + 1
        image_id = self.allocate_id()
        storage = data_set["storage_directory"]
        template.update(
            id=image_id,
            data_set_id=data_set_id,
            section_number=section_number,
            failed=failed,
            lims1_id=image_id,
            path=f"{storage}{data_set_id}_{image_id}.aff",
        )
        if template["expression_path"] is not None:
            template["expression_path"] = f"{storage}{data_set_id}_{image_id}_expression.aff"
        image = self.insert("SectionImage", template)
        self.insert("Alignment2d", self.alignment2d_for(image, data_set["plane_of_section_id"]))
        return image

    def alignment2d_for(self, image: Record, plane: Value) -> Record:
        """A fresh Alignment2d for an image, in µm of its full-resolution scan."""
        pixel_um = float(image["resolution"] or 1.0) / self.image_scale
        return alignment2d(self.allocate_id(), image, pixel_um=pixel_um, plane=plane)

    def remove_section(self, image_id: int) -> Record:
        """Delete a SectionImage (and its alignment) as if Allen had withdrawn it."""
        with self._lock:
            record = self.tables["SectionImage"].pop(image_id)
            for alignment in self.lookup("Alignment2d", "section_image_id", image_id):
                alignment_id = alignment["id"]
                assert isinstance(alignment_id, int)
                self.tables["Alignment2d"].pop(alignment_id, None)
            self.duplicated_join_rows.discard(image_id)
            self._invalidate()
        return record

    def change_image(self, image_id: int) -> int:
        """Bump an image's version salt so every rendering of it yields new bytes."""
        if self.image(image_id) is None:
            raise KeyError(f"no image {image_id}")
        with self._lock:
            self._versions[image_id] = self.version(image_id) + 1
            return self._versions[image_id]


def _default_image(data_set: Record) -> Record:
    width, height = 1000, 700
    record: Record = dict.fromkeys(MODEL_FIELDS["SectionImage"])
    record.update(
        x=0,
        y=0,
        width=width,
        height=height,
        image_width=width,
        image_height=height,
        resolution=0.35,
        tier_count=tier_count(width, height),
        image_type="Primary",
        annotated=False,
        bits_per_component=8,
        number_of_components=3,
    )
    return record
