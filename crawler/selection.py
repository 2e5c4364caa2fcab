"""What the user selects, and how friendly filters become criteria the live service accepts.

SectionDataSet has no line, injection, gene or plane field: the live service answers those
questions through associations (ALLEN_API.md §7), so `--transgenic-line Sst-IRES-Cre` becomes
``specimen(donor(transgenic_lines[name$eq'Sst-IRES-Cre']))``. Everything here is a pure
function except `resolve_filters`, which only runs the look-ups it is handed a way to run.

Options combine as the README says: ids, products, free criteria and atlases add up (union);
the friendly filters narrow, AND-ed with each other and with the products; repeated values of
one filter are alternatives (``$in``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crawler.errors import UsageError

PLANES = ("coronal", "sagittal")
GRAPH_ID = 1  # the adult mouse structure graph
_FORBIDDEN = frozenset("'\"[](),$")


@dataclass(frozen=True, slots=True)
class Filters:
    """The friendly filters: names users know, compiled into association criteria."""

    transgenic_lines: tuple[str, ...] = ()
    injection_structures: tuple[str, ...] = ()
    with_descendants: bool = False
    genes: tuple[str, ...] = ()
    planes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.transgenic_lines or self.injection_structures or self.genes or self.planes)

    def describe(self) -> dict[str, object]:
        document: dict[str, object] = {}
        for name in ("transgenic_lines", "injection_structures", "genes", "planes"):
            values = getattr(self, name)
            if values:
                document[name] = list(values)
        if self.with_descendants:
            document["with_descendants"] = True
        return document


@dataclass(frozen=True, slots=True)
class Selection:
    """What the user pointed at; ids, products, criteria and atlases add up (de-duplicated)."""

    data_sets: tuple[int, ...] = ()  # --dataset and --ids-file
    products: tuple[int, ...] = ()
    criteria: tuple[str, ...] = ()  # free SectionDataSet criteria
    atlases: tuple[int, ...] = ()
    sections: tuple[int, int] | None = None  # section numbers A to B, inclusive
    filters: Filters = field(default_factory=Filters)  # narrow the products (or everything)

    @property
    def empty(self) -> bool:
        return (
            not (self.data_sets or self.products or self.criteria or self.atlases)
            and self.filters.empty
        )

    def describe(self) -> dict[str, object]:
        document: dict[str, object] = {"data_sets": list(self.data_sets)}
        for name, values in (
            ("products", self.products),
            ("criteria", self.criteria),
            ("atlases", self.atlases),
        ):
            if values:
                document[name] = list(values)
        if self.sections is not None:
            document["sections"] = f"{self.sections[0]}-{self.sections[1]}"
        document.update(self.filters.describe())
        return document


# -- parsing ------------------------------------------------------------------------------------


def split_names(text: str, option: str) -> tuple[str, ...]:
    """Comma-separated names, de-duplicated in order; quotes and brackets would break the RMA."""
    names: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            continue
        if _FORBIDDEN & set(name):
            raise UsageError(
                f"invalid {option} {name!r}: quotes, brackets, parentheses and $ are not allowed"
            )
        names.append(name)
    return tuple(dict.fromkeys(names))


def parse_filters(
    *,
    transgenic_lines: str = "",
    injection_structures: str = "",
    with_descendants: bool = False,
    genes: str = "",
    planes: str = "",
) -> Filters:
    """Filters from their comma-separated settings; say which value is unusable."""
    plane_names = tuple(p.lower() for p in split_names(planes, "--plane"))
    for plane in plane_names:
        if plane not in PLANES:
            raise UsageError(f"invalid --plane {plane!r}: expected coronal or sagittal")
    structures = split_names(injection_structures, "--injection-structure")
    if with_descendants and not structures:
        raise UsageError("--with-descendants applies to --injection-structure: add one")
    return Filters(
        transgenic_lines=split_names(transgenic_lines, "--transgenic-line"),
        injection_structures=structures,
        with_descendants=with_descendants,
        genes=split_names(genes, "--gene"),
        planes=tuple(dict.fromkeys(plane_names)),
    )


# -- compiling ----------------------------------------------------------------------------------


def value_filter(name: str, values: Sequence[str | int]) -> str:
    """``[name$eq'a']`` for one value, ``[name$in'a','b']`` for several (numbers unquoted)."""
    rendered = [str(v) if isinstance(v, int) else f"'{v}'" for v in values]
    if len(rendered) == 1:
        return f"[{name}$eq{rendered[0]}]"
    return f"[{name}$in{','.join(rendered)}]"


def line_criterion(names: Sequence[str]) -> str:
    """Data sets whose donor carries one of these transgenic lines."""
    return f"specimen(donor(transgenic_lines{value_filter('name', names)}))"


def injection_criterion(acronyms: Sequence[str], structure_ids: Sequence[int] | None = None) -> str:
    """Data sets injected primarily in these structures (by id once descendants are known)."""
    where = value_filter("acronym", acronyms)
    if structure_ids is not None:
        where = value_filter("id", structure_ids)
    return f"specimen(stereotaxic_injections(primary_injection_structure{where}))"


def gene_criterion(acronyms: Sequence[str]) -> str:
    """ISH data sets probing one of these genes."""
    return f"genes{value_filter('acronym', acronyms)}"


def plane_criterion(names: Sequence[str]) -> str:
    """Data sets cut in one of these planes."""
    return f"plane_of_section{value_filter('name', names)}"


def product_criterion(product_ids: Sequence[int]) -> str:
    """Data sets of one of these products."""
    return f"products{value_filter('id', list(product_ids))}"


def compile_criteria(
    filters: Filters,
    products: Sequence[int] = (),
    structure_ids: Sequence[int] | None = None,
) -> str:
    """One criteria stage AND-ing the products (any of) and every filter (any of its values).

    `structure_ids` replaces the injection acronyms when descendants were looked up.
    """
    parts: list[str] = []
    if products:
        parts.append(product_criterion(list(dict.fromkeys(products))))
    if filters.transgenic_lines:
        parts.append(line_criterion(filters.transgenic_lines))
    if filters.injection_structures:
        parts.append(injection_criterion(filters.injection_structures, structure_ids))
    if filters.genes:
        parts.append(gene_criterion(filters.genes))
    if filters.planes:
        parts.append(plane_criterion(filters.planes))
    return ",".join(parts)


# -- look-ups: every name must match something ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lookup:
    """One query that checks a filter's values exist, and how to read its answer."""

    option: str  # the command-line option, for the error message
    what: str  # what a value names, e.g. "transgenic line"
    field: str
    values: tuple[str, ...]
    stages: str


def lookups(filters: Filters) -> list[Lookup]:
    """The queries that confirm each line, structure acronym and gene exists (planes are fixed)."""
    found: list[Lookup] = []
    for option, what, model, name, values, extra in (
        (
            "--transgenic-line",
            "transgenic line",
            "TransgenicLine",
            "name",
            filters.transgenic_lines,
            "",
        ),
        (
            "--injection-structure",
            "structure",
            "Structure",
            "acronym",
            filters.injection_structures,
            f"[graph_id$eq{GRAPH_ID}],",
        ),
        ("--gene", "gene", "Gene", "acronym", filters.genes, ""),
    ):
        if values:
            stages = f"model::{model},rma::criteria,{extra}{value_filter(name, values)}"
            found.append(Lookup(option, what, name, values, stages))
    return found


def unmatched(values: Iterable[str], rows: Iterable[Mapping[str, Any]], name: str) -> list[str]:
    """The values no row carries in `name`, in the order given."""
    present = {str(row.get(name)) for row in rows}
    return [v for v in values if v not in present]


def descendant_stages(structure_id: int) -> str:
    """Every structure below one, through the id path the ontology stores."""
    return (
        f"model::Structure,rma::criteria,[graph_id$eq{GRAPH_ID}],"
        f"[structure_id_path$li'*/{int(structure_id)}/*']"
    )


Rows = Callable[[str, str], Awaitable[list[dict[str, Any]]]]  # (stages, what) -> every row


async def resolve_filters(selection: Selection, rows: Rows, where: str) -> str:
    """Check every named value exists, expand descendants, and return the compiled criteria.

    A value that matches nothing is a usage error naming it: an empty mirror would hide it.
    """
    filters = selection.filters
    structures: list[dict[str, Any]] = []
    for lookup in lookups(filters):
        found = await rows(lookup.stages, lookup.what)
        missing = unmatched(lookup.values, found, lookup.field)
        if missing:
            listed = ", ".join(repr(m) for m in missing)
            raise UsageError(
                f"{lookup.option} matched nothing: no {lookup.what} {listed} at {where}"
            )
        if lookup.what == "structure":
            structures = found
    structure_ids: list[int] | None = None
    if filters.with_descendants:
        chosen = [r for r in structures if r.get("acronym") in filters.injection_structures]
        ids = [int(r["id"]) for r in chosen]
        for structure_id in list(ids):
            ids += [int(r["id"]) for r in await rows(descendant_stages(structure_id), "Structure")]
        structure_ids = list(dict.fromkeys(ids))
    return compile_criteria(filters, selection.products, structure_ids)


# -- labels -------------------------------------------------------------------------------------


def _many(value: object) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return [value] if isinstance(value, dict) else []


def labels(record: Mapping[str, Any]) -> dict[str, Any]:
    """What people filter and label a data set by, read from its included associations."""
    specimens = _many(record.get("specimen"))
    donors = [d for s in specimens for d in _many(s.get("donor"))]
    injections = [i for s in specimens for i in _many(s.get("stereotaxic_injections"))]
    plane = record.get("plane_of_section")
    return {
        "transgenic_lines": [
            t.get("name") for d in donors for t in _many(d.get("transgenic_lines"))
        ],
        "injection_structures": [
            p.get("acronym")
            for i in injections
            for p in _many(i.get("primary_injection_structure"))
        ],
        "genes": [g.get("acronym") for g in _many(record.get("genes"))],
        "plane_of_section": plane.get("name") if isinstance(plane, dict) else None,
    }
