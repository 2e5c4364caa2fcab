"""AllenSDK calls a lab script makes, run against an API base; prints what they returned as JSON.

Run by tests/test_serve_allensdk.py with the AllenSDK environment's Python (.venv-allensdk),
once against the simulator and once against `allen-mirror serve` over a mirror of it:

    python tests/allensdk_client.py BASE_URL DOWNLOAD_DIR IDS_JSON

It imports nothing of this project: it is the user's side of the wire. Every call's result (or
its exception, as text) goes under one key; downloads are written into DOWNLOAD_DIR.
"""

from __future__ import annotations

import json
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

warnings.simplefilter("ignore")  # AllenSDK 2.16 on its pinned stack warns about its own APIs

from allensdk.api.queries.grid_data_api import GridDataApi  # noqa: E402
from allensdk.api.queries.image_download_api import ImageDownloadApi  # noqa: E402
from allensdk.api.queries.mouse_connectivity_api import MouseConnectivityApi  # noqa: E402
from allensdk.api.queries.ontologies_api import OntologiesApi  # noqa: E402
from allensdk.api.queries.rma_api import RmaApi  # noqa: E402
from allensdk.api.queries.synchronization_api import SynchronizationApi  # noqa: E402
from allensdk.core.mouse_connectivity_cache import MouseConnectivityCache  # noqa: E402
from allensdk.core.structure_tree import StructureTree  # noqa: E402


def plain(value: Any) -> Any:
    """JSON-ready: numpy scalars and arrays become Python numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def main() -> None:
    base, where, ids = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    where.mkdir(parents=True, exist_ok=True)
    data_set, image, atlas_image = ids["data_set"], ids["image"], ids["atlas_image"]
    section, tile, window = ids["section_number"], ids["tile"], ids["range"]
    results: dict[str, Any] = {}

    def record(name: str, call: Callable[[], Any]) -> None:
        try:
            results[name] = plain(call())
        except Exception as exc:  # the failure is the result: the test says which to expect
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc(file=sys.stderr)

    rma = RmaApi(base_uri=base)
    record(
        "rma.data_set",
        lambda: rma.model_query(
            "SectionDataSet",
            criteria=f"[id$eq{data_set}]",
            # AllenSDK joins include items with nothing between them: one string, commas inside
            include=["equalization,products,specimen(donor,stereotaxic_injections)"],
            num_rows="all",
        ),
    )
    record(
        "rma.images_page",
        lambda: rma.model_query(
            "SectionImage",
            criteria=f"[data_set_id$eq{data_set}]",
            order=["section_number+desc"],
            num_rows=2,
            start_row=1,
            only=["id", "section_number", "width"],
        ),
    )
    record(
        "rma.images_except",
        lambda: rma.model_query(
            "SectionImage",
            criteria=f"[data_set_id$eq{data_set}]",
            order=["'id'"],
            num_rows="all",
            excpt=["path", "expression_path"],
        ),
    )
    record(
        "rma.tabular",
        lambda: rma.model_query(
            "SectionImage",
            criteria=f"[data_set_id$eq{data_set}]",
            tabular=["section_images.id", "section_number as number", "data_set.section_thickness"],
            order=["section_images.section_number"],
            num_rows="all",
        ),
    )
    short = rma.build_query_url(
        f"model::SectionDataSet[id$eq{data_set}],rma::options[count$eqfalse]"
    )
    record("rma.short_form", lambda: rma.json_msg_query(short))
    paged = rma.build_query_url(
        rma.model_stage("SectionImage", criteria=f"[data_set_id$eq{data_set}]", num_rows=1)
    )
    record(
        "rma.envelope",
        lambda: {
            k: v
            for k, v in rma.retrieve_parsed_json_over_http(paged).items()
            if k in ("success", "start_row", "num_rows", "total_rows")
        },
    )
    record(
        "rma.unionizes_by_structure",
        lambda: rma.model_query(
            "ProjectionStructureUnionize",
            criteria=f"[section_data_set_id$eq{data_set}],structure[acronym$eq'VISp']",
            num_rows="all",
        ),
    )

    images = ImageDownloadApi(base_uri=base)
    record("image.section_images", lambda: images.section_image_query(data_set))
    record("image.ranges", lambda: images.get_section_image_ranges([image]))
    record(
        "image.by_product",
        lambda: [d["id"] for d in images.get_section_data_sets_by_product([5])],
    )
    downloads = {
        "section.jpg": lambda p: images.download_section_image(
            image, p, downsample=4, range=window
        ),
        "section_default_range.jpg": lambda p: images.download_section_image(
            image, p, downsample=4
        ),
        "projection.jpg": lambda p: images.download_projection_image(
            image, p, downsample=4, projection=True, range=window
        ),
        "atlas_annotation.jpg": lambda p: images.download_atlas_image(
            atlas_image, p, annotation=True, atlas=1, downsample=4
        ),
        "tile.jpg": lambda p: images.download_section_image(
            image,
            p,
            downsample=tile["downsample"],
            left=tile["left"],
            top=tile["top"],
            width=tile["width"],
            height=tile["height"],
            range=window,
        ),
        "not_mirrored.jpg": lambda p: images.download_section_image(image, p, downsample=3),
    }
    for name, download in downloads.items():
        record(f"download.{name}", lambda d=download, n=name: d(str(where / n)) or "ok")

    connectivity = MouseConnectivityApi(base_uri=base)
    record("mca.experiments", lambda: connectivity.get_experiments([data_set]))
    record(
        "mca.projection_image_info",
        lambda: connectivity.get_projection_image_info(data_set, section),
    )
    record(
        "mca.unionizes",
        lambda: connectivity.get_structure_unionizes([data_set], is_injection=False),
    )
    record(
        "mca.projection_density",
        lambda: (
            connectivity.download_projection_density(
                str(where / "mca_projection_density.nrrd"), data_set, 25
            )
            or "ok"
        ),
    )
    grids = GridDataApi(base_uri=base)
    record(
        "grid.projection_density",
        lambda: (
            grids.download_projection_grid_data(
                data_set, ["projection_density"], 25, str(where / "grid_projection_density.nrrd")
            )
            or "ok"
        ),
    )

    ontologies = OntologiesApi(base_uri=base)

    def tree() -> Any:
        structures = ontologies.get_structures(structure_graph_ids=1)
        built = StructureTree(StructureTree.clean_structures(structures))
        visp = built.get_structures_by_acronym(["VISp"])[0]
        return {
            "count": len(structures),
            "VISp": visp,
            "ancestors": [s["acronym"] for s in built.ancestors([visp["id"]])[0]],
            "children_of_root": sorted(built.child_ids([997])[0]),
        }

    record("ontology.tree", tree)
    record(
        "rma.not_mirrored",
        lambda: rma.model_query("SectionDataSet", criteria=f"[id$eq{ids['other_data_set']}]"),
    )
    record("ontology.graphs", lambda: [g["id"] for g in ontologies.get_structure_graphs()])

    sync = SynchronizationApi(base_uri=base)
    record("sync.image_to_reference", lambda: sync.get_image_to_reference(image, 1200.0, 800.0))
    record(
        "sync.reference_to_image",
        lambda: sync.get_reference_to_image(9, 6000.0, 3000.0, 5000.0, [data_set]),
    )

    cache = MouseConnectivityCache(
        manifest_file=str(where / "mcc" / "manifest.json"), resolution=25, base_uri=base
    )

    def density() -> Any:
        volume, header = cache.get_projection_density(data_set)
        return {"shape": list(volume.shape), "sum": float(volume.sum()), "sizes": header["sizes"]}

    record("mcc.projection_density", density)
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
