"""The structure ontology, flattened: the API nests a tree, every question about it is a lookup.

Input is the RMA envelope of ``/api/v2/structure_graph_download/1.json``:
``{"success": true, "msg": [root]}`` where each node holds ``id, acronym, name,
parent_structure_id, ...`` and its ``children``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from crawler.errors import ContentError, UsageError


@dataclass(frozen=True)
class Structure:
    """One brain structure; ``fields`` keeps the node's other fields as the API gave them."""

    id: int
    acronym: str
    name: str
    parent_structure_id: int | None
    fields: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)


class Ontology:
    """Structures by id and by acronym, with each one's children, built once from the tree."""

    def __init__(self, structures: Mapping[int, Structure]) -> None:
        self.by_id: Mapping[int, Structure] = dict(structures)
        self.by_acronym: Mapping[str, Structure] = {s.acronym: s for s in structures.values()}
        children: dict[int, list[int]] = {}
        for structure in structures.values():
            if structure.parent_structure_id is not None:
                children.setdefault(structure.parent_structure_id, []).append(structure.id)
        self._children = children

    def __len__(self) -> int:
        return len(self.by_id)

    def structure(self, acronym: str) -> Structure:
        """The structure with this acronym (exact, case-sensitive, as the API spells it)."""
        try:
            return self.by_acronym[acronym]
        except KeyError:
            raise UsageError(f"no structure with acronym {acronym!r} in the ontology") from None

    def descendants(self, acronym: str, *, include_self: bool = True) -> list[int]:
        """Ids of every structure under ``acronym``, depth first in the API's order."""
        root = self.structure(acronym).id
        found: list[int] = []
        stack = [root]
        while stack:
            current = stack.pop()
            if current != root or include_self:
                found.append(current)
            stack.extend(reversed(self._children.get(current, [])))
        return found


def ontology_from_document(document: object) -> Ontology:
    """Flatten a structure graph envelope; anything that is not one is refused, not guessed at."""
    if not isinstance(document, Mapping) or document.get("success") is not True:
        raise ContentError("not a successful structure graph answer (success is not true)")
    roots = document.get("msg")
    if not isinstance(roots, list) or not roots:
        raise ContentError("the structure graph answer has no root node in msg")
    structures: dict[int, Structure] = {}
    stack: list[tuple[object, int | None]] = [(root, None) for root in reversed(roots)]
    while stack:
        node, parent = stack.pop()
        structure = _structure(node, parent)
        if structure.id in structures:
            raise ContentError(f"structure {structure.id} appears twice in the structure graph")
        structures[structure.id] = structure
        children = node.get("children", []) if isinstance(node, Mapping) else []
        if not isinstance(children, list):
            raise ContentError(f"structure {structure.id} has children that are not a list")
        stack.extend((child, structure.id) for child in reversed(children))
    return Ontology(structures)


def read_ontology(path: Path) -> Ontology:
    """Load a mirrored ``structure_graph_1.json``."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ContentError(f"cannot read the structure graph {path}: {exc}") from exc
    return ontology_from_document(document)


def _structure(node: object, parent: int | None) -> Structure:
    """One node; its parent comes from the nesting, which the API's own field must agree with."""
    if not isinstance(node, Mapping):
        raise ContentError("a structure graph node is not an object")
    ident, acronym, name = node.get("id"), node.get("acronym"), node.get("name")
    if isinstance(ident, bool) or not isinstance(ident, int):
        raise ContentError(f"a structure graph node has no integer id: {ident!r}")
    if not isinstance(acronym, str) or not isinstance(name, str):
        raise ContentError(f"structure {ident} has no acronym or name")
    declared = node.get("parent_structure_id", parent)
    if declared != parent:
        raise ContentError(
            f"structure {ident} says its parent is {declared!r} but is nested under {parent!r}"
        )
    extra = {k: v for k, v in node.items() if k != "children"}
    return Structure(ident, acronym, name, parent, extra)
