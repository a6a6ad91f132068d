"""Filter conditions in db-plugins' forms: ``filter(column, op, value)``, ``filter_by`` dicts and triples,
order names (``"-mjd"``) and primary-key values, normalised and checked before any SQL is built."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import QueryError

if TYPE_CHECKING:
    from .._types.schema import Table

__all__ = ["OPERATORS", "Cond", "MISSING", "make_condition", "conditions", "parse_order", "key_values"]

MISSING: Any = object()
"""The value of a filter that was given none (``filter("mag", "is null")``)."""

#: Accepted spellings of the filter operators -> canonical operator.
OPERATORS: dict[str, str] = {
    "=": "=",
    "==": "=",
    "!=": "!=",
    "<>": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
    "in": "in",
    "not in": "not in",
    "between": "between",
    "is null": "is null",
    "is not null": "is not null",
    "is": "is",
    "is not": "is not",
    "like": "like",
    "ilike": "ilike",
}

Cond = tuple[str, str, Any]
"""A filter condition: (column, canonical operator, value)."""


def make_condition(column: str, op: str, value: Any = MISSING) -> Cond:
    """Normalise one ``(column, op, value)`` filter; ``QueryError`` for an unknown operator or a bad value."""
    if not isinstance(op, str) or " ".join(op.lower().split()) not in OPERATORS:
        raise QueryError(f"unknown filter operator {op!r} (use one of: {', '.join(sorted(set(OPERATORS)))})")
    canon = OPERATORS[" ".join(op.lower().split())]
    if canon in ("is", "is not"):
        if value is not None:
            raise QueryError(f"filter {column!r} {op!r}: only None may follow 'is' / 'is not'")
        canon = "is null" if canon == "is" else "is not null"
    if canon in ("is null", "is not null"):
        if value is not MISSING and value is not None:
            raise QueryError(f"filter {column!r} {op!r} takes no value")
        return (column, canon, None)
    if value is MISSING:
        raise QueryError(f"filter {column!r} {op!r} needs a value")
    if value is None:
        if canon == "=":
            return (column, "is null", None)
        if canon == "!=":
            return (column, "is not null", None)
        raise QueryError(
            f"filter {column!r} {op!r} None: compare with None only through '=', '!=' or 'is null'"
        )
    if canon in ("in", "not in"):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise QueryError(f"filter {column!r} {op!r} needs a list of values, got {type(value).__name__}")
        return (column, canon, list(value))
    if canon == "between":
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
            raise QueryError(f"filter {column!r} 'between' needs a (low, high) pair, got {value!r}")
        return (column, canon, (value[0], value[1]))
    return (column, canon, value)


def conditions(filter_by: Any) -> list[Cond]:
    """The conditions of a ``filter_by`` argument: a dict (equality) or a list of ``(column, op, value)``."""
    if filter_by is None:
        return []
    if isinstance(filter_by, Mapping):
        return [make_condition(k, "=", v) for k, v in filter_by.items()]
    if isinstance(filter_by, (str, bytes)) or not isinstance(filter_by, Iterable):
        raise QueryError(
            "filter_by must be a dict of column -> value or a list of (column, op, value) triples, "
            f"got {type(filter_by).__name__}"
        )
    out: list[Cond] = []
    for item in filter_by:
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise QueryError(f"filter_by items must be (column, op, value) triples, got {item!r}")
        out.append(make_condition(*item) if len(item) == 3 else make_condition(item[0], item[1]))
    return out


def parse_order(item: str) -> tuple[str, bool]:
    if not isinstance(item, str):
        raise QueryError(f"order_by takes column names such as 'mjd', '-mjd' or 'mjd desc', got {item!r}")
    text = item.strip()
    if text.startswith("-"):
        return text[1:].strip(), True
    words = text.split()
    if len(words) == 2 and words[1].lower() in ("asc", "desc"):
        return words[0], words[1].lower() == "desc"
    return text, False


def key_values(table: Table, columns: Sequence[str], key: Any) -> list[Any]:
    """The values of ``columns`` in ``key``: a model instance, a dict, a tuple, or a bare value
    (one column)."""
    if table.cls is not None and isinstance(key, table.cls):
        values = [getattr(key, c) for c in columns]
    elif isinstance(key, Mapping):
        missing = [c for c in columns if c not in key]
        if missing:
            raise QueryError(f"key of model {table.name!r} lacks column(s) {missing}", model=table.name)
        values = [key[c] for c in columns]
    elif isinstance(key, (tuple, list)):
        if len(key) != len(columns):
            raise QueryError(
                f"key of model {table.name!r} has {len(columns)} column(s) {list(columns)}, got {key!r}",
                model=table.name,
            )
        values = list(key)
    else:
        if len(columns) != 1:
            raise QueryError(
                f"model {table.name!r} has a composite key {list(columns)}: pass a tuple or a dict",
                model=table.name,
            )
        values = [key]
    if any(v is None for v in values):
        raise QueryError(f"key of model {table.name!r} has a None value: {values!r}", model=table.name)
    return values
