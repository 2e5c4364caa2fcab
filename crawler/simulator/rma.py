"""Parse RMA query strings (ALLEN_API.md §1) into plain data, with no catalogue in sight.

Grammar handled: comma-joined stages `model::X`, `rma::criteria,...`, `rma::include,...`,
`rma::options[...]`; filters `[field$op value]`; association filters `name[...]` and
`name(criteria,...)`; includes `name`, `name[filters]`, `name(children)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

OPS = frozenset({"eq", "ne", "lt", "le", "gt", "ge", "in", "li", "il"})
DEFAULT_NUM_ROWS = 50
MAX_NUM_ROWS = 25000  # said to be the live maximum (§1); larger requests are clamped


class RmaError(ValueError):
    """A query the service would reject; its text becomes the `msg` of a success:false reply."""


@dataclass(frozen=True)
class FieldFilter:
    field: str
    op: str
    values: tuple[str | None, ...]  # raw, unquoted; None is the literal null


@dataclass(frozen=True)
class AssocFilter:
    name: str
    filters: tuple[FieldFilter, ...]
    nested: tuple[Criterion, ...]


Criterion = FieldFilter | AssocFilter


@dataclass(frozen=True)
class Include:
    name: str
    filters: tuple[FieldFilter, ...] = ()
    children: tuple[Include, ...] = ()


@dataclass(frozen=True)
class Options:
    num_rows: int | None = DEFAULT_NUM_ROWS  # None means 'all'
    start_row: int = 0
    order: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    only: tuple[str, ...] | None = None
    except_: tuple[str, ...] = ()
    count: bool = True
    tabular: tuple[str, ...] | None = None  # flat rows of these columns (`a.b as title`)


@dataclass(frozen=True)
class Query:
    model: str
    criteria: tuple[Criterion, ...] = ()
    includes: tuple[Include, ...] = ()
    options: Options = field(default_factory=Options)


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside brackets, parentheses and quotes."""
    parts: list[str] = []
    depth, quote, start = 0, "", 0
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
            if depth < 0:
                raise RmaError(f"Unbalanced '{char}' in {text!r}")
        elif char == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth or quote:
        raise RmaError(f"Unterminated bracket or quote in {text!r}")
    parts.append(text[start:])
    return [part.strip() for part in parts]


def _closing(text: str, start: int) -> int:
    """Index of the bracket closing the one at `start`."""
    opener = text[start]
    closer = "]" if opener == "[" else ")"
    depth, quote = 0, ""
    for i in range(start, len(text)):
        char = text[i]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
            if depth == 0:
                if char != closer:
                    raise RmaError(f"Mismatched brackets in {text!r}")
                return i
    raise RmaError(f"Unterminated '{opener}' in {text!r}")


def _name_and_parts(text: str) -> tuple[str, list[str], str | None]:
    """Split `name[a][b](inner)` into its name, bracket contents and parenthesised part."""
    i = 0
    while i < len(text) and text[i] not in "[(":
        i += 1
    name = text[:i].strip()
    brackets: list[str] = []
    inner: str | None = None
    while i < len(text):
        if text[i] == "[":
            end = _closing(text, i)
            brackets.append(text[i + 1 : end])
        elif text[i] == "(" and inner is None:
            end = _closing(text, i)
            inner = text[i + 1 : end]
        elif text[i].isspace():
            end = i
        else:
            raise RmaError(f"Unexpected {text[i]!r} in {text!r}")
        i = end + 1
    return name, brackets, inner


def unquote(value: str) -> str:
    """Strip one pair of matching quotes, since `'x'` and `x` mean the same value."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def split_values(value: str) -> list[str]:
    """Comma-separated values with optional quotes: `1,2,3`, `'a','b'` or `'a,b'`."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        if value[0] not in inner:
            return [part.strip() for part in inner.split(",")]
    return [unquote(part) for part in split_top(value)]


def parse_filter(text: str) -> FieldFilter:
    """`field$opvalue`, as found between brackets."""
    name, dollar, rest = text.partition("$")
    name = name.strip()
    if not dollar or not name or not name.replace("_", "").replace(".", "").isalnum():
        raise RmaError(f"Cannot parse filter [{text}]")
    op, raw = rest[:2], rest[2:]
    if op not in OPS:
        raise RmaError(f"Unknown operator ${op} in [{text}]")
    if op in ("in",):
        values: tuple[str | None, ...] = tuple(split_values(raw))
    elif raw.strip().lower() == "null":
        values = (None,)
    else:
        values = (unquote(raw),)
    return FieldFilter(name, op, values)


def parse_criterion(text: str) -> list[Criterion]:
    """One comma-free criteria token: bracket filters or an association filter."""
    text = text.strip()
    if not text:
        raise RmaError("Empty criterion")
    name, brackets, inner = _name_and_parts(text)
    filters = tuple(parse_filter(b) for b in brackets)
    if not name:
        if inner is not None:
            raise RmaError(f"Cannot parse criterion {text!r}")
        return list(filters)
    nested: tuple[Criterion, ...] = ()
    if inner is not None:
        nested = tuple(c for token in split_top(inner) for c in parse_criterion(token))
    return [AssocFilter(name, filters, nested)]


def parse_criteria(tokens: list[str]) -> tuple[Criterion, ...]:
    """All criteria tokens of a stage; they AND together."""
    return tuple(c for token in tokens if token for c in parse_criterion(token))


def parse_include(text: str) -> Include:
    """`name`, `name[filters]` or `name(child,...)`: what to nest in each returned record."""
    name, brackets, inner = _name_and_parts(text.strip())
    if not name:
        raise RmaError(f"Cannot parse include {text!r}")
    children = tuple(parse_include(t) for t in split_top(inner) if t) if inner else ()
    return Include(name, tuple(parse_filter(b) for b in brackets), children)


def _int_option(name: str, value: str, minimum: int) -> int:
    try:
        number = int(unquote(value))
    except ValueError:
        raise RmaError(f"Option {name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise RmaError(f"Option {name} must be at least {minimum}")
    return number


def _order(value: str) -> tuple[tuple[str, bool], ...]:
    keys: list[tuple[str, bool]] = []
    for item in split_values(value):
        # `id`, `'id'`, `id$desc`, `id desc` and AllenSDK's `id+desc` all occur
        words = item.replace("$", " ").replace("+", " ").split()
        if len(words) == 2:
            words[1] = words[1].lower()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise RmaError(f"Cannot parse order {value!r}")
        keys.append((words[0], len(words) == 2 and words[1] == "desc"))
    return tuple(keys)


def parse_options(pairs: list[tuple[str, str]], base: Options | None = None) -> Options:
    """Apply `(name, value)` option pairs, from `[name$eqvalue]` or legacy top-level params."""
    opts = base or Options()
    for name, value in pairs:
        if name == "num_rows":
            if unquote(value).lower() == "all":
                opts = replace(opts, num_rows=None)
            else:
                number = _int_option(name, value, 0)
                opts = replace(opts, num_rows=min(number, MAX_NUM_ROWS))
        elif name == "start_row":
            opts = replace(opts, start_row=_int_option(name, value, 0))
        elif name == "order":
            opts = replace(opts, order=_order(value))
        elif name == "only":
            opts = replace(opts, only=tuple(split_values(value)))
        elif name == "except":
            opts = replace(opts, except_=tuple(split_values(value)))
        elif name == "count":
            opts = replace(opts, count=unquote(value).lower() not in ("false", "f", "0"))
        elif name == "tabular":
            opts = replace(opts, tabular=tuple(split_values(value)))
        elif name != "debug":
            raise RmaError(f"Unknown option {name!r}")
    return opts


def _option_pairs(brackets: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for bracket in brackets:
        name, dollar, rest = bracket.partition("$")
        if not dollar or rest[:2] != "eq":
            raise RmaError(f"Cannot parse option [{bracket}]")
        pairs.append((name.strip(), rest[2:]))
    return pairs


def parse_stages(text: str) -> Query:
    """Parse `model::X,rma::criteria,...,rma::include,...,rma::options[...]`."""
    model = ""
    criteria: list[str] = []
    includes: list[str] = []
    option_brackets: list[str] = []
    stage = ""
    for token in split_top(text):
        head, sep, tail = token.partition("::")
        if sep and head in ("model", "rma", "pipe"):
            name, brackets, inner = _name_and_parts(tail)
            if head == "model":
                if model:
                    raise RmaError("Only one model stage is supported")
                if inner is not None:
                    raise RmaError(f"Cannot parse stage {token!r}")
                model, stage = name, "model"
                criteria.extend(f"[{b}]" for b in brackets)
            elif head == "rma" and name in ("criteria", "include", "options") and model:
                stage = name
                rest = tail[len(name) :].strip()
                if name == "options":
                    option_brackets.extend(brackets)
                elif rest:
                    (criteria if name == "criteria" else includes).append(rest)
            else:
                raise RmaError(f"Unsupported stage {token!r}")
        elif stage == "criteria":
            criteria.append(token)
        elif stage == "include":
            includes.append(token)
        elif stage == "options":
            option_brackets.extend(_name_and_parts(token)[1])
        else:
            raise RmaError(f"Cannot parse {token!r}: expected a model:: or rma:: stage")
    if not model:
        raise RmaError("Query has no model:: stage")
    return Query(
        model=model,
        criteria=parse_criteria(criteria),
        includes=tuple(parse_include(t) for t in includes if t),
        options=parse_options(_option_pairs(option_brackets)),
    )


def parse_legacy(model: str, params: Mapping[str, str]) -> Query:
    """`/api/v2/data/<Model>/query.json?criteria=...&include=...&num_rows=...` (§1)."""
    criteria = parse_criteria(split_top(params["criteria"])) if params.get("criteria") else ()
    includes = tuple(parse_include(t) for t in split_top(params.get("include", "")) if t)
    option_names = ("num_rows", "start_row", "order", "only", "except", "count", "tabular")
    pairs = [(name, params[name]) for name in option_names if name in params]
    return Query(model, criteria, includes, parse_options(pairs))


def parse_record(model: str, record_id: int, params: Mapping[str, str]) -> Query:
    """`/api/v2/data/<Model>/<id>.json?include=a,b`: one record by id."""
    includes = tuple(parse_include(t) for t in split_top(params.get("include", "")) if t)
    return Query(model, (FieldFilter("id", "eq", (str(record_id),)),), includes)
