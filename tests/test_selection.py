"""The pure half of selections: parsing friendly filters and compiling them into live criteria."""

from __future__ import annotations

from typing import Any

import pytest

from crawler.errors import UsageError
from crawler.selection import (
    Filters,
    Selection,
    compile_criteria,
    descendant_stages,
    labels,
    lookups,
    parse_filters,
    unmatched,
    value_filter,
)
from crawler.simulator.rma import AssocFilter, FieldFilter, parse_stages


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("name", ["Sst-IRES-Cre"], "[name$eq'Sst-IRES-Cre']"),
        ("acronym", ["VISp", "MOp"], "[acronym$in'VISp','MOp']"),
        ("id", [5], "[id$eq5]"),
        ("id", [1, 3], "[id$in1,3]"),
    ],
)
def test_value_filter(name: str, values: list[Any], expected: str) -> None:
    assert value_filter(name, values) == expected


COMPILED = [
    (Filters(transgenic_lines=("Sst-IRES-Cre",)), (), None, [
        "specimen(donor(transgenic_lines[name$eq'Sst-IRES-Cre']))",
    ]),
    (Filters(injection_structures=("VISp",)), (), None, [
        "specimen(stereotaxic_injections(primary_injection_structure[acronym$eq'VISp']))",
    ]),
    (Filters(injection_structures=("SSp",), with_descendants=True), (), [322, 329, 353], [
        "specimen(stereotaxic_injections(primary_injection_structure[id$in322,329,353]))",
    ]),
    (Filters(genes=("Pdyn", "Penk")), (), None, ["genes[acronym$in'Pdyn','Penk']"]),
    (Filters(planes=("coronal",)), (), None, ["plane_of_section[name$eq'coronal']"]),
    (Filters(transgenic_lines=("Sst-IRES-Cre", "Vip-IRES-Cre"), injection_structures=("VISp",)),
     (5,), None, [
        "products[id$eq5]",
        "specimen(donor(transgenic_lines[name$in'Sst-IRES-Cre','Vip-IRES-Cre']))",
        "specimen(stereotaxic_injections(primary_injection_structure[acronym$eq'VISp']))",
    ]),
    (Filters(genes=("Pdyn",), planes=("sagittal",)), (1, 3, 1), None, [
        "products[id$in1,3]",
        "genes[acronym$eq'Pdyn']",
        "plane_of_section[name$eq'sagittal']",
    ]),
]  # fmt: skip


@pytest.mark.parametrize(("filters", "products", "ids", "parts"), COMPILED)
def test_compile_criteria_ands_options_and_ors_values(
    filters: Filters, products: tuple[int, ...], ids: list[int] | None, parts: list[str]
) -> None:
    criteria = compile_criteria(filters, products, ids)
    assert criteria == ",".join(parts)
    # What we send parses as association criteria (the simulator's RMA grammar), one per option.
    query = parse_stages(f"model::SectionDataSet,rma::criteria,{criteria}")
    assert len(query.criteria) == len(parts)
    assert all(isinstance(c, AssocFilter) for c in query.criteria)


def test_line_criterion_nests_through_specimen_and_donor() -> None:
    criteria = compile_criteria(Filters(transgenic_lines=("Sst-IRES-Cre",)))
    (specimen,) = parse_stages(f"model::SectionDataSet,rma::criteria,{criteria}").criteria
    assert isinstance(specimen, AssocFilter) and specimen.name == "specimen"
    (donor,) = specimen.nested
    assert isinstance(donor, AssocFilter) and donor.name == "donor"
    (lines,) = donor.nested
    assert lines == AssocFilter(
        "transgenic_lines", (FieldFilter("name", "eq", ("Sst-IRES-Cre",)),), ()
    )


PARSED = [
    ({"transgenic_lines": "Sst-IRES-Cre, Vip-IRES-Cre,Sst-IRES-Cre"},
     Filters(transgenic_lines=("Sst-IRES-Cre", "Vip-IRES-Cre"))),
    ({"injection_structures": "VISp", "with_descendants": True},
     Filters(injection_structures=("VISp",), with_descendants=True)),
    ({"planes": "Coronal,sagittal", "genes": "Pdyn"},
     Filters(genes=("Pdyn",), planes=("coronal", "sagittal"))),
    ({}, Filters()),
]  # fmt: skip


@pytest.mark.parametrize(("settings", "expected"), PARSED)
def test_parse_filters(settings: dict[str, Any], expected: Filters) -> None:
    assert parse_filters(**settings) == expected


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"planes": "axial"}, "invalid --plane 'axial': expected coronal or sagittal"),
        ({"genes": "Pdyn'"}, 'invalid --gene "Pdyn\'": quotes, brackets'),
        ({"transgenic_lines": "Sst[x]"}, "invalid --transgenic-line 'Sst[x]'"),
        ({"injection_structures": "VISp)"}, "invalid --injection-structure 'VISp)'"),
        ({"with_descendants": True}, "--with-descendants applies to --injection-structure"),
    ],
)
def test_parse_filters_rejects_what_would_break_the_query(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError) as raised:
        parse_filters(**settings)
    assert str(raised.value).startswith(message)


def test_lookups_check_lines_structures_and_genes_but_not_planes() -> None:
    filters = Filters(
        transgenic_lines=("Sst-IRES-Cre",),
        injection_structures=("VISp", "MOp"),
        genes=("Pdyn",),
        planes=("coronal",),
    )
    found = {lookup.option: lookup.stages for lookup in lookups(filters)}
    assert found == {
        "--transgenic-line": "model::TransgenicLine,rma::criteria,[name$eq'Sst-IRES-Cre']",
        "--injection-structure": (
            "model::Structure,rma::criteria,[graph_id$eq1],[acronym$in'VISp','MOp']"
        ),
        "--gene": "model::Gene,rma::criteria,[acronym$eq'Pdyn']",
    }
    assert lookups(Filters(planes=("sagittal",))) == []


@pytest.mark.parametrize(
    ("values", "rows", "missing"),
    [
        (["VISp", "VISq"], [{"acronym": "VISp"}], ["VISq"]),
        (["VISp"], [{"acronym": "VISp"}, {"acronym": "MOp"}], []),
        (["a", "b"], [], ["a", "b"]),
    ],
)
def test_unmatched(values: list[str], rows: list[dict[str, Any]], missing: list[str]) -> None:
    assert unmatched(values, rows, "acronym") == missing


def test_descendants_are_found_by_id_path() -> None:
    assert descendant_stages(385) == (
        "model::Structure,rma::criteria,[graph_id$eq1],[structure_id_path$li'*/385/*']"
    )


def test_selection_with_filters_only_is_not_empty_and_describes_them() -> None:
    assert Selection().empty
    selection = Selection(filters=Filters(genes=("Pdyn",), planes=("sagittal",)))
    assert not selection.empty
    assert selection.describe() == {"data_sets": [], "genes": ["Pdyn"], "planes": ["sagittal"]}


def test_labels_read_the_included_associations() -> None:
    record = {
        "id": 1,
        "plane_of_section": {"id": 1, "name": "coronal"},
        "genes": [],
        "specimen": {
            "donor": {"transgenic_lines": [{"name": "Sst-IRES-Cre"}]},
            "stereotaxic_injections": [
                {"primary_injection_structure": {"acronym": "VISp"}, "structures": []}
            ],
        },
    }
    assert labels(record) == {
        "transgenic_lines": ["Sst-IRES-Cre"],
        "injection_structures": ["VISp"],
        "genes": [],
        "plane_of_section": "coronal",
    }
    assert labels({"id": 2}) == {
        "transgenic_lines": [],
        "injection_structures": [],
        "genes": [],
        "plane_of_section": None,
    }
