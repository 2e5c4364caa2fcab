"""What the API surface reads: the `DataSource` interface shared by the simulator and `serve`.

The RMA engine (`query`), the download routes (`routes`) and the image synchronization
services (`sync_services`) are written once, against this interface. The simulator's
`SyntheticSource` renders everything from its catalogue; `crawler.serve` answers from a
mirror's files and says what it does not hold with `NotHeld`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from crawler.simulator.catalogue import Catalogue
from crawler.simulator.schema import Association, Record, Value


class NotHeld(Exception):
    """A request a data source cannot answer because it does not hold the data (HTTP 404).

    ``what`` names the missing data; ``command`` is the `allen-mirror mirror ...` line that
    would fetch it.
    """

    def __init__(self, what: str, command: str) -> None:
        super().__init__(what)
        self.what = what
        self.command = command

    @property
    def message(self) -> str:
        return f"not in this mirror: {self.what}; fetch it with: {self.command}"


class Records(Protocol):
    """The tables RMA queries run against: records by model, indexes and associations."""

    def get(self, model: str, record_id: int) -> Record | None: ...

    def records(self, model: str) -> list[Record]: ...

    def lookup(self, model: str, field: str, value: Value) -> list[Record]: ...

    def related(self, association: Association, record: Record) -> list[Record]: ...

    def join_rows(self, model: str, record: Record) -> int: ...

    def image(self, image_id: int) -> tuple[str, Record] | None: ...

    def serialized(self) -> dict[tuple[object, Value], bytes]:
        """The JSON of records as RMA answers serve them, by (query shape, id): a cache the
        records' owner empties on any change (see `query.evaluate_json`)."""
        ...


class CatalogueRecords:
    """`Records` read from a `Catalogue`: what the simulator's source and a served mirror share
    (both keep their records in one)."""

    catalogue: Catalogue

    def get(self, model: str, record_id: int) -> Record | None:
        return self.catalogue.get(model, record_id)

    def records(self, model: str) -> list[Record]:
        return self.catalogue.records(model)

    def lookup(self, model: str, field: str, value: Value) -> list[Record]:
        return self.catalogue.lookup(model, field, value)

    def related(self, association: Association, record: Record) -> list[Record]:
        return self.catalogue.related(association, record)

    def join_rows(self, model: str, record: Record) -> int:
        return self.catalogue.join_rows(model, record)

    def image(self, image_id: int) -> tuple[str, Record] | None:
        return self.catalogue.image(image_id)

    def serialized(self) -> dict[tuple[object, Value], bytes]:
        return self.catalogue.serialized


class DataSource(Records, Protocol):
    """Records plus the bytes and numbers of the non-RMA services.

    Every method may raise `NotHeld`; the simulator's source never does.
    """

    def check_query(self, model: str, criteria: Mapping[str, tuple[Value, ...]]) -> None:
        """Raise NotHeld when a query names records by id that the source does not hold.

        ``criteria`` maps a top-level field to the values an `$eq`/`$in` filter asks for.
        """
        ...

    def image_bytes(self, model: str, image: Record, query: Mapping[str, str]) -> bytes:
        """The JPEG of an image download (or a tile of it) with these parameters."""
        ...

    def projection_grid(self, data_set_id: int, image: str, resolution: int) -> bytes | None:
        """`/grid_data/download_file/<id>?image=&resolution=`: one gzip NRRD (None: no such
        data set)."""
        ...

    def expression_grid(self, data_set_id: int, include: str | None) -> bytes | None:
        """`/grid_data/download/<id>?include=`: the expression grid zip (None: no such data
        set)."""
        ...

    def structure_graph(self, graph_id: int) -> bytes | None:
        """The `structure_graph_download` JSON envelope, or None for an unknown graph."""
        ...

    def image_to_reference(self, image_id: int, x: float, y: float) -> dict[str, float]:
        """A full-resolution pixel of a SectionImage in reference µm."""
        ...

    def reference_to_image(
        self, data_set_id: int, x: float, y: float, z: float
    ) -> dict[str, object]:
        """The data set's nearest section to a reference point, and the pixel on it."""
        ...

    def archive_file(self, path: str) -> bytes | None:
        """A file of the Allen informatics archive (CCF volumes), or None."""
        ...
