"""The mouse structure ontology (graph 1) the simulator serves, as plain data and small lookups.

One table (`ontology_data.ROWS`, real CCF ids, acronyms, names, parents and colours) feeds the
Structure RMA model, the injection sites of the synthetic experiments and the nested tree of
`structure_graph_download/1.json`, so none of them can disagree with another.

`st_level` is the one derived field: the public table leaves it blank, so the node's depth in the
graph stands in for it (equal on the top levels: root 0, grey 1, ... Isocortex 5; below that the
live levels skip numbers, e.g. areas 8 and layers 11).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from crawler.simulator.ontology_data import ROWS
from crawler.simulator.schema import Record

GRAPH_ID = 1
ONTOLOGY_ID = 1
ROOT_ID = 997
HEMISPHERE_BOTH = 3
WEIGHT = 8690  # every structure of the 2017 table carries this weight


@dataclass(frozen=True, slots=True)
class Structure:
    """One node of the ontology with the live field names."""

    id: int
    atlas_id: int | None
    acronym: str
    name: str
    parent_structure_id: int | None
    graph_order: int
    depth: int
    color_hex_triplet: str

    @property
    def st_level(self) -> int:
        return self.depth

    @property
    def safe_name(self) -> str:
        return self.name.replace(",", "")

    @property
    def structure_id_path(self) -> str:
        """`/997/8/567/.../385/`: the ids from the root down to this node."""
        return "/" + "/".join(str(i) for i in ancestor_ids(self.id)) + "/"


STRUCTURES: tuple[Structure, ...] = tuple(Structure(*row) for row in ROWS)
_BY_ID = {s.id: s for s in STRUCTURES}
_BY_ACRONYM = {s.acronym: s for s in STRUCTURES}


def by_id(structure_id: int) -> Structure:
    """The structure with this id; KeyError if the subset does not hold it."""
    return _BY_ID[structure_id]


def by_acronym(acronym: str) -> Structure | None:
    """The structure with this acronym (case-sensitive, as RMA `$eq` is), or None."""
    return _BY_ACRONYM.get(acronym)


@cache
def ancestor_ids(structure_id: int) -> tuple[int, ...]:
    """Ids from the root down to `structure_id`, both included."""
    parent = _BY_ID[structure_id].parent_structure_id
    return (structure_id,) if parent is None else (*ancestor_ids(parent), structure_id)


@cache
def children(structure_id: int) -> tuple[Structure, ...]:
    """Direct children in graph order."""
    return tuple(s for s in STRUCTURES if s.parent_structure_id == structure_id)


def descendants(structure_id: int) -> tuple[Structure, ...]:
    """Every node below `structure_id` (itself excluded), in graph order."""
    return tuple(
        s for s in STRUCTURES if s.id != structure_id and structure_id in ancestor_ids(s.id)
    )


def record(structure: Structure) -> Record:
    """The Structure RMA record: the fields a live `model::Structure` query returns."""
    return {
        "id": structure.id,
        "atlas_id": structure.atlas_id,
        "acronym": structure.acronym,
        "name": structure.name,
        "safe_name": structure.safe_name,
        "color_hex_triplet": structure.color_hex_triplet,
        "depth": structure.depth,
        "failed": False,
        "graph_id": GRAPH_ID,
        "graph_order": structure.graph_order,
        "hemisphere_id": HEMISPHERE_BOTH,
        "ontology_id": ONTOLOGY_ID,
        "parent_structure_id": structure.parent_structure_id,
        "st_level": structure.st_level,
        "structure_id_path": structure.structure_id_path,
        "weight": WEIGHT,
    }


def graph_record() -> Record:
    """The StructureGraph RMA record of the mouse ontology (graph 1)."""
    return {
        "id": GRAPH_ID,
        "ontology_id": ONTOLOGY_ID,
        "name": "Mouse Brain Atlas",
        "description": "Adult mouse structure graph (synthetic subset)",
    }


def tree(structure_id: int = ROOT_ID) -> dict[str, object]:
    """The nested node of `structure_graph_download` (ALLEN_API.md §6), children in graph order."""
    node = by_id(structure_id)
    return {
        "id": node.id,
        "atlas_id": node.atlas_id,
        "graph_id": GRAPH_ID,
        "ontology_id": ONTOLOGY_ID,
        "acronym": node.acronym,
        "name": node.name,
        "color_hex_triplet": node.color_hex_triplet,
        "graph_order": node.graph_order,
        "st_level": node.st_level,
        "hemisphere_id": HEMISPHERE_BOTH,
        "parent_structure_id": node.parent_structure_id,
        "structure_id_path": node.structure_id_path,
        "children": [tree(child.id) for child in children(structure_id)],
    }
