"""The simulator's data source: the synthetic catalogue, with every byte rendered on demand.

Records come straight from the `Catalogue`; images are rendered (through the render cache),
grids and CCF volumes generated, and the image synchronization services computed from the
catalogue's alignment tables. It never raises `NotHeld`: the simulator holds everything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from crawler.simulator import ccf_volumes, ontology, sync_services
from crawler.simulator.catalogue import Catalogue
from crawler.simulator.grids import expression_volumes, expression_zip, projection_nrrd
from crawler.simulator.imaging import plan_render
from crawler.simulator.render import RenderCache, render_jpeg
from crawler.simulator.schema import Record, Value
from crawler.simulator.source import CatalogueRecords


class SyntheticSource(CatalogueRecords):
    """A `DataSource` over a catalogue; `cache` (optional) keeps rendered JPEGs."""

    def __init__(self, catalogue: Catalogue, cache: RenderCache | None = None) -> None:
        self.catalogue = catalogue
        self.cache = cache

    # -- records -------------------------------------------------------------------------

    def check_query(self, model: str, criteria: Mapping[str, tuple[Value, ...]]) -> None:
        return None  # the simulator holds everything it knows

    # -- bytes and numbers ---------------------------------------------------------------

    def image_bytes(self, model: str, image: Record, query: Mapping[str, str]) -> bytes:
        image_id = image["id"]
        assert isinstance(image_id, int)
        catalogue = self.catalogue
        spec = plan_render(
            image, catalogue.version(image_id), catalogue.equalization_for(image), query
        )
        return self.cache.get(spec) if self.cache is not None else render_jpeg(spec)

    def projection_grid(self, data_set_id: int, image: str, resolution: int) -> bytes | None:
        if self.catalogue.get("SectionDataSet", data_set_id) is None:
            return None
        return projection_nrrd(data_set_id, image, resolution)

    def expression_grid(self, data_set_id: int, include: str | None) -> bytes | None:
        if self.catalogue.get("SectionDataSet", data_set_id) is None:
            return None
        return expression_zip(data_set_id, expression_volumes(include))

    def structure_graph(self, graph_id: int) -> bytes | None:
        if graph_id != ontology.GRAPH_ID:
            return None
        return json.dumps(sync_services.success([ontology.tree()])).encode()

    def image_to_reference(self, image_id: int, x: float, y: float) -> dict[str, float]:
        return sync_services.image_to_reference(self.catalogue, image_id, x, y)

    def reference_to_image(
        self, data_set_id: int, x: float, y: float, z: float
    ) -> dict[str, object]:
        return sync_services.reference_to_image(self.catalogue, data_set_id, x, y, z)

    def archive_file(self, path: str) -> bytes | None:
        return ccf_volumes.archive_file(path)
