"""A mirror's JSON files as RMA tables: the records `serve` answers queries from.

The mirror keeps what the API said, nested as it was included (``dataset.json``: the
SectionDataSet with its Equalization, products, specimen, donor, lines, injections, genes,
plane and Alignment3d; every SectionImage with its Alignment2d), plus ``atlas.json``,
``unionizes.json`` and the structure graph. ``flatten`` walks that nesting with the shared
schema's associations and puts every record back into its own table, so the one RMA engine
(`crawler.simulator.query`) runs on it as on the simulator's catalogue. A field a record does
not carry is null; fields the schema does not know are dropped, as the engine would refuse them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler.simulator.catalogue import Catalogue
from crawler.simulator.schema import ASSOCIATIONS, MODEL_FIELDS, Record, Value

Tables = dict[str, dict[int, Record]]
Links = dict[str, dict[int, set[int]]]


@dataclass
class Held:
    """Which whole documents the mirror holds: what `check_query` and the 404 hints read."""

    data_sets: set[int] = field(default_factory=set)
    unionizes: set[int] = field(default_factory=set)
    atlases: dict[int, int] = field(default_factory=dict)  # atlas data set id -> atlas id
    graphs: set[int] = field(default_factory=set)


def _scalar(value: Any) -> Value:
    return value if isinstance(value, bool | int | float | str) or value is None else None


def put(tables: Tables, model: str, raw: Mapping[str, Any]) -> Record | None:
    """Insert (or complete) one record of ``model``; a record seen twice keeps its non-null
    fields from either sighting (an injection structure is a full record, a graph node not)."""
    record_id = raw.get("id")
    if isinstance(record_id, bool) or not isinstance(record_id, int):
        return None
    record: Record = {name: _scalar(raw.get(name)) for name in MODEL_FIELDS[model]}
    seen = tables.setdefault(model, {}).get(record_id)
    if seen is not None:
        record = {name: seen[name] if seen[name] is not None else record[name] for name in seen}
    tables[model][record_id] = record
    return record


def flatten(tables: Tables, links: Links, model: str, raw: Mapping[str, Any]) -> Record | None:
    """Put a nested API record and everything included in it into the tables."""
    record = put(tables, model, raw)
    if record is None:
        return None
    for name, association in ASSOCIATIONS.get(model, {}).items():
        nested = raw.get(name)
        if nested is None:
            continue
        children = nested if isinstance(nested, list) else [nested]
        ids = []
        for child in children:
            if isinstance(child, Mapping):
                flat = flatten(tables, links, association.target, child)
                if flat is not None:
                    ids.append(flat["id"])
        if association.link is not None and not association.link_reverse:
            owner = links.setdefault(association.link, {}).setdefault(int(str(record["id"])), set())
            owner.update(int(str(i)) for i in ids)
    return record


def _structures(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every node of a nested structure graph, parents first."""
    yield node
    for child in node.get("children") or []:
        if isinstance(child, Mapping):
            yield from _structures(child)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None  # unreadable: left out, and its data answered as not held


def load(out: Path) -> tuple[Catalogue, Held]:
    """Every mirrored record of OUT as tables, and what the mirror holds whole."""
    tables: Tables = {}
    links: Links = {}
    held = Held()
    for path in sorted((out / "ccf").glob("structure_graph_*.json")):
        document = _read(path)
        roots = document.get("msg") if isinstance(document, dict) else None
        graph_id = path.stem.removeprefix("structure_graph_")
        if not isinstance(roots, list) or not graph_id.isdigit():
            continue
        held.graphs.add(int(graph_id))
        for root in roots:
            if isinstance(root, Mapping):
                graph = {"id": int(graph_id), "ontology_id": root.get("ontology_id")}
                put(tables, "StructureGraph", graph)
                for node in _structures(root):
                    put(tables, "Structure", {"graph_id": int(graph_id), **node})
    for directory in sorted(p for p in out.iterdir() if p.name.isdigit()):
        document = _read(directory / "dataset.json")
        if isinstance(document, dict) and isinstance(document.get("data_set"), Mapping):
            record = flatten(tables, links, "SectionDataSet", document["data_set"])
            if record is not None:
                held.data_sets.add(int(str(record["id"])))
            for image in document.get("section_images") or []:
                if isinstance(image, Mapping):
                    flatten(tables, links, "SectionImage", image)
        unionizes = _read(directory / "unionizes.json")
        if isinstance(unionizes, list):
            held.unionizes.add(int(directory.name))
            for row in unionizes:
                if isinstance(row, Mapping):
                    flatten(tables, links, "ProjectionStructureUnionize", row)
    for path in sorted(out.glob("atlas_*/atlas.json")):
        document = _read(path)
        if not isinstance(document, dict) or not isinstance(document.get("atlas_id"), int):
            continue
        atlas_id = int(document["atlas_id"])
        put(tables, "Atlas", {"id": atlas_id})
        for image in document.get("atlas_images") or []:
            if isinstance(image, Mapping) and (record := put(tables, "AtlasImage", image)):
                data_set_id = record["data_set_id"]
                if isinstance(data_set_id, int):
                    put(tables, "AtlasDataSet", {"id": data_set_id, "atlas_id": atlas_id})
                    held.atlases[data_set_id] = atlas_id
    return _catalogue(tables, links), held


def _catalogue(tables: Tables, links: Links) -> Catalogue:
    catalogue = Catalogue()
    for model, rows in tables.items():
        for record_id in sorted(rows):
            catalogue.insert(model, rows[record_id])
    for name, owners in links.items():
        for owner, targets in sorted(owners.items()):
            catalogue.link(name, owner, sorted(targets))
    return catalogue
