"""The structure graph envelope, flattened: lookups, descendants, and refusals of bad documents."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from crawler.atlas.ontology import ontology_from_document, read_ontology
from crawler.errors import ContentError, UsageError


def node(ident: int, acronym: str, parent: int | None, *children: dict[str, Any]) -> dict[str, Any]:
    """A node with the fields the live structure graph carries (ids and names are the real ones)."""
    return {
        "id": ident,
        "atlas_id": None,
        "ontology_id": 1,
        "acronym": acronym,
        "name": f"{acronym} name",
        "color_hex_triplet": "FFFFFF",
        "graph_order": 0,
        "st_level": None,
        "hemisphere_id": 3,
        "parent_structure_id": parent,
        "children": list(children),
    }


DOCUMENT: dict[str, Any] = {
    "success": True,
    "id": 0,
    "start_row": 0,
    "num_rows": 1,
    "total_rows": 1,
    "msg": [
        node(
            997,
            "root",
            None,
            node(
                8,
                "grey",
                997,
                node(
                    315,
                    "Isocortex",
                    8,
                    node(385, "VISp", 315, node(593, "VISp1", 385), node(821, "VISp2/3", 385)),
                    node(402, "VISal", 315),
                ),
                node(512, "CB", 8),
            ),
            node(1009, "fiber tracts", 997),
        )
    ],
}


def test_flat_lookup_by_id_and_acronym() -> None:
    ontology = ontology_from_document(DOCUMENT)
    assert len(ontology) == 9
    visp = ontology.by_id[385]
    assert (visp.acronym, visp.name, visp.parent_structure_id) == ("VISp", "VISp name", 315)
    assert visp.fields["color_hex_triplet"] == "FFFFFF"
    assert "children" not in visp.fields
    assert ontology.by_acronym["VISp2/3"].id == 821
    assert ontology.by_id[997].parent_structure_id is None


@pytest.mark.parametrize(
    ("acronym", "include_self", "expected"),
    [
        ("Isocortex", True, [315, 385, 593, 821, 402]),
        ("Isocortex", False, [385, 593, 821, 402]),
        ("VISp1", True, [593]),
        ("VISp1", False, []),
        ("root", True, [997, 8, 315, 385, 593, 821, 402, 512, 1009]),
    ],
)
def test_descendants(acronym: str, include_self: bool, expected: list[int]) -> None:
    ontology = ontology_from_document(DOCUMENT)
    assert ontology.descendants(acronym, include_self=include_self) == expected


def test_unknown_acronym_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="'visp'"):
        ontology_from_document(DOCUMENT).descendants("visp")


def broken(change: str) -> dict[str, Any]:
    document = copy.deepcopy(DOCUMENT)
    grey = document["msg"][0]["children"][0]
    if change == "failure":
        return {"success": False, "msg": "Data Access error"}
    if change == "empty":
        document["msg"] = []
    elif change == "duplicate":
        grey["children"].append(node(385, "again", 8))
    elif change == "wrong parent":
        grey["children"][1]["parent_structure_id"] = 997
    elif change == "no acronym":
        del grey["acronym"]
    elif change == "string id":
        grey["id"] = "8"
    return document


@pytest.mark.parametrize(
    "change", ["failure", "empty", "duplicate", "wrong parent", "no acronym", "string id"]
)
def test_bad_documents_are_refused(change: str) -> None:
    with pytest.raises(ContentError):
        ontology_from_document(broken(change))


def test_read_from_the_mirrored_file(tmp_path: Path) -> None:
    path = tmp_path / "structure_graph_1.json"
    path.write_text(json.dumps(DOCUMENT))
    assert read_ontology(path).structure("CB").parent_structure_id == 8
    path.write_text("<html>site unavailable</html>")
    with pytest.raises(ContentError):
        read_ontology(path)
    with pytest.raises(ContentError):
        read_ontology(tmp_path / "absent.json")
