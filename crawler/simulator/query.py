"""Evaluate a parsed RMA query against a data source's records and build the JSON envelope (§1).

Shared by the simulator (its catalogue) and `crawler.serve` (a mirror's records): both only
provide `source.Records`. Pure apart from reading the records: validation happens before any
record is scanned, so an unknown model, field or association fails the same way whether or not
rows exist, with the "Data Access error in query: ..." wording of the live service
(ALLEN_API.md §7).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from crawler.simulator.rma import Criterion, FieldFilter, Include, Query, RmaError
from crawler.simulator.schema import (
    ASSOCIATIONS,
    MODEL_FIELDS,
    Association,
    FieldType,
    Record,
    Value,
)
from crawler.simulator.source import Records

Predicate = Callable[[Record], bool]
_TRUE = frozenset({"true", "t", "1", "yes"})
_FALSE = frozenset({"false", "f", "0", "no"})
DATA_ACCESS = "Data Access error in query:"


def _association(model: str, name: str) -> Association:
    """The named association of a model, or the error the live service gives for a typo."""
    association = ASSOCIATIONS.get(model, {}).get(name)
    if association is None:
        raise RmaError(f"{DATA_ACCESS} unknown association '{name}' for model {model}")
    return association


def merge_includes(includes: tuple[Include, ...]) -> tuple[Include, ...]:
    """One include per association: `specimen(donor),specimen(stereotaxic_injections)` nest
    both under one `specimen`, as the service merges include paths."""
    merged: dict[str, Include] = {}
    for include in includes:
        seen = merged.get(include.name)
        if seen is None:
            merged[include.name] = include
        else:
            merged[include.name] = replace(
                seen,
                filters=seen.filters + include.filters,
                children=seen.children + include.children,
            )
    return tuple(replace(i, children=merge_includes(i.children)) for i in merged.values())


def _coerce(kind: FieldType, raw: str, field: str) -> Value:
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise RmaError(f"Invalid value {raw!r} for {kind} field {field}") from None
    if kind == "bool":
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise RmaError(f"Invalid value {raw!r} for boolean field {field}")
    return raw


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _like(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.compile(regex, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _field_type(model: str, field: str) -> tuple[str, FieldType]:
    fields = MODEL_FIELDS[model]
    if field not in fields and "." in field:
        field = field.rsplit(".", 1)[1]  # table-qualified names such as sub_images.section_number
    if field not in fields:
        raise RmaError(f"{DATA_ACCESS} unknown attribute '{field}' for model {model}")
    return field, fields[field]


def compile_filter(model: str, flt: FieldFilter) -> Predicate:
    """Turn one `[field$op value]` into a predicate, coercing values to the field's type."""
    field, kind = _field_type(model, flt.field)
    if flt.op in ("li", "il"):
        pattern = _like(flt.values[0] or "", ignore_case=flt.op == "il")
        return lambda r: r[field] is not None and pattern.fullmatch(_text(r[field])) is not None
    if flt.values == (None,):
        if flt.op not in ("eq", "ne"):
            raise RmaError(f"null only works with $eq and $ne ({flt.field})")
        want_null = flt.op == "eq"
        return lambda r: (r[field] is None) == want_null
    values = [_coerce(kind, v, field) for v in flt.values if v is not None]
    if flt.op == "in":
        allowed = set(values)
        return lambda r: r[field] in allowed
    if len(values) != 1:
        raise RmaError(f"Operator ${flt.op} takes one value ({flt.field})")
    target: Any = values[0]
    compare: dict[str, Callable[[Any], bool]] = {
        "eq": lambda v: v == target,
        "ne": lambda v: v != target,
        "lt": lambda v: v < target,
        "le": lambda v: v <= target,
        "gt": lambda v: v > target,
        "ge": lambda v: v >= target,
    }
    test = compare[flt.op]
    if flt.op == "ne":
        return lambda r: test(r[field])
    return lambda r: r[field] is not None and test(r[field])


def compile_criterion(catalogue: Records, model: str, criterion: Criterion) -> Predicate:
    """Compile a filter or an association filter; association results are memoised per record."""
    if isinstance(criterion, FieldFilter):
        return compile_filter(model, criterion)
    association = _association(model, criterion.name)
    inner = [compile_filter(association.target, f) for f in criterion.filters]
    inner += [compile_criterion(catalogue, association.target, c) for c in criterion.nested]
    memo: dict[Value, bool] = {}

    def target_matches(record: Record) -> bool:
        key = record["id"]
        if key not in memo:
            memo[key] = all(p(record) for p in inner)
        return memo[key]

    return lambda r: any(target_matches(t) for t in catalogue.related(association, r))


def _candidates(catalogue: Records, model: str, criteria: tuple[Criterion, ...]) -> list[Record]:
    """Use an index for the first top-level $eq/$in filter, else scan the whole table."""
    for criterion in criteria:
        if isinstance(criterion, FieldFilter) and criterion.op in ("eq", "in"):
            if None in criterion.values:
                continue
            field, kind = _field_type(model, criterion.field)
            found: dict[Value, Record] = {}
            for raw in criterion.values:
                assert raw is not None
                for record in catalogue.lookup(model, field, _coerce(kind, raw, field)):
                    found[record["id"]] = record
            return [
                found[key] for key in sorted(found, key=lambda k: k if isinstance(k, int) else 0)
            ]
    return catalogue.records(model)


def _sort_key(value: Value) -> tuple[bool, Any]:
    """Nulls first, then values; the flag keeps None from being compared with a value."""
    return (value is not None, 0 if value is None else value)


def _sort(model: str, rows: list[Record], order: tuple[tuple[str, bool], ...]) -> list[Record]:
    for name, descending in reversed(order):
        field, _ = _field_type(model, name)
        rows = sorted(rows, key=lambda r: (r[field] is not None, r[field] or 0), reverse=descending)
    return rows


def _validate_include(model: str, include: Include) -> None:
    association = _association(model, include.name)
    for flt in include.filters:
        compile_filter(association.target, flt)
    for child in include.children:
        _validate_include(association.target, child)


def serialize(
    catalogue: Records,
    model: str,
    record: Record,
    includes: tuple[Include, ...],
    only: tuple[str, ...] | None = None,
    except_: tuple[str, ...] = (),
) -> dict[str, object]:
    """A record as JSON-ready dict with its included associations nested in it."""
    out: dict[str, object] = {
        key: value
        for key, value in record.items()
        if (only is None or key in only) and key not in except_
    }
    for include in includes:
        association = ASSOCIATIONS[model][include.name]
        checks = [compile_filter(association.target, f) for f in include.filters]
        related = [
            serialize(catalogue, association.target, r, include.children)
            for r in catalogue.related(association, record)
            if all(check(r) for check in checks)
        ]
        out[include.name] = related if association.many else (related[0] if related else None)
    return out


def _column(model: str, spec: str) -> tuple[tuple[str, ...], str, str, str]:
    """A tabular column `assoc.field as title` -> (association chain, target model, field,
    title); a leading table name (`structures.id`) that is no association just qualifies."""
    path, _, title = " ".join(spec.replace("+", " ").split()).partition(" as ")
    parts = [part for part in path.strip().split(".") if part]
    if not parts:
        raise RmaError(f"Cannot parse tabular column {spec!r}")
    chain: list[str] = []
    target = model
    for part in parts[:-1]:
        association = ASSOCIATIONS.get(target, {}).get(part)
        if association is None:
            break  # a table-qualified name: `_field_type` strips the qualifier
        chain.append(part)
        target = association.target
    field, _ = _field_type(target, parts[-1] if chain else path.strip())
    return tuple(chain), target, field, title.strip() or field


def tabular_rows(
    catalogue: Records, model: str, record: Record, columns: tuple[str, ...]
) -> list[dict[str, object]]:
    """`rma::options[tabular$eq...]`: flat rows, one per combination of the associated records
    the columns reach (an association with no record drops the row, as a join does)."""
    specs = [_column(model, column) for column in columns]
    reached: dict[tuple[str, ...], list[Record]] = {(): [record]}
    for chain, _, _, _ in specs:
        for depth in range(1, len(chain) + 1):
            key = chain[:depth]
            if key in reached:
                continue
            owner_model = model
            for name in key[:-1]:
                owner_model = ASSOCIATIONS[owner_model][name].target
            association = ASSOCIATIONS[owner_model][key[-1]]
            # a chain deeper than one association follows its first record at each step: rows
            # multiply by the last association's records only (our simplification of the join)
            parents = reached[key[:-1]][:1]
            reached[key] = [t for p in parents for t in catalogue.related(association, p)]
    leaves = sorted({chain for chain, _, _, _ in specs if chain})
    rows: list[dict[str, Record]] = [{}]
    for chain in leaves:
        rows = [{**row, ".".join(chain): target} for row in rows for target in reached[chain]]
    out = []
    for row in rows:
        flat: dict[str, object] = {}
        for chain, _, field, title in specs:
            source = row[".".join(chain)] if chain else record
            flat[title] = source[field]
        out.append(flat)
    return out


def named_ids(query: Query) -> dict[str, tuple[Value, ...]]:
    """Values the top-level `$eq`/`$in` filters ask for, by field: what a mirror must hold."""
    named: dict[str, tuple[Value, ...]] = {}
    for criterion in query.criteria:
        if isinstance(criterion, FieldFilter) and criterion.op in ("eq", "in"):
            if query.model not in MODEL_FIELDS or None in criterion.values:
                continue
            field, kind = _field_type(query.model, criterion.field)
            values = tuple(_coerce(kind, raw, field) for raw in criterion.values if raw)
            named[field] = named.get(field, ()) + values
    return named


def _select(
    catalogue: Records, query: Query, overstate_total_rows: bool
) -> tuple[list[Record], int, tuple[Include, ...]]:
    """(the page's records, total_rows, merged includes) of a query; RmaError for a bad one."""
    model = query.model
    if model not in MODEL_FIELDS:
        raise RmaError(f"Unknown model '{model}'")
    predicates = [compile_criterion(catalogue, model, c) for c in query.criteria]
    includes = merge_includes(query.includes)
    for include in includes:
        _validate_include(model, include)
    for name, _ in query.options.order:
        _field_type(model, name)
    for column in query.options.tabular or ():
        _column(model, column)
    rows = [
        r for r in _candidates(catalogue, model, query.criteria) if all(p(r) for p in predicates)
    ]
    rows = _sort(model, rows, query.options.order)
    opts = query.options
    end = None if opts.num_rows is None else opts.start_row + opts.num_rows
    page = rows[opts.start_row : end]
    if not opts.count:
        total = len(page)  # no count query was run: report what the page holds (our choice)
    elif overstate_total_rows:
        total = sum(catalogue.join_rows(model, r) for r in rows)
    else:
        total = len(rows)
    return page, total, includes


def evaluate(
    catalogue: Records, query: Query, *, overstate_total_rows: bool = True
) -> dict[str, object]:
    """Run a query and return the success envelope; raise RmaError for a bad query."""
    page, total, includes = _select(catalogue, query, overstate_total_rows)
    opts, model = query.options, query.model
    return {
        "success": True,
        "id": 0,
        "start_row": opts.start_row,
        "num_rows": len(page),
        "total_rows": total,
        "msg": _messages(catalogue, model, page, includes, query),
    }


def _messages(
    catalogue: Records,
    model: str,
    page: list[Record],
    includes: tuple[Include, ...],
    query: Query,
) -> list[dict[str, object]]:
    opts = query.options
    if opts.tabular:
        return [row for r in page for row in tabular_rows(catalogue, model, r, opts.tabular)]
    return [serialize(catalogue, model, r, includes, opts.only, opts.except_) for r in page]


def evaluate_json(catalogue: Records, query: Query, *, overstate_total_rows: bool = True) -> bytes:
    """``evaluate``'s envelope as JSON bytes, each record's JSON taken from the source's cache.

    A whole product is dozens of pages of 2,000 images with their alignments: building and
    encoding every record again for every sync made the simulator, not the client or the
    latency, what a no-op sync waited for. The cache forgets everything on any mutation.
    """
    if query.options.tabular:  # flat rows are built per query: nothing to cache
        return json.dumps(
            evaluate(catalogue, query, overstate_total_rows=overstate_total_rows)
        ).encode()
    page, total, includes = _select(catalogue, query, overstate_total_rows)
    opts, model, cache = query.options, query.model, catalogue.serialized()
    shape = (model, includes, opts.only, opts.except_)
    parts = []
    for record in page:
        key = (shape, record["id"])
        part = cache.get(key)
        if part is None:
            data = serialize(catalogue, model, record, includes, opts.only, opts.except_)
            cache[key] = part = json.dumps(data).encode()
        parts.append(part)
    head = json.dumps(
        {"success": True, "id": 0, "start_row": opts.start_row, "num_rows": len(page)}
    ).encode()
    return head[:-1] + b', "total_rows": %d, "msg": [%s]}' % (total, b", ".join(parts))


def error_envelope(message: str) -> dict[str, object]:
    """The failure envelope of §1: success false and the error text in msg."""
    return {"success": False, "id": -1, "msg": message}
