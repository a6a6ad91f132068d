"""Checking caller-supplied names and rows against a model, before any SQL is built.

Every filter key, row key and update key goes through :func:`check_columns`, so a name that is not a column
(a typo, or a hostile string with quotes and semicolons) raises ``UnknownColumnError`` and never reaches SQL.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import DbpError, MissingValueError, UnknownColumnError, context
from .schema import Table

__all__ = ["check_columns", "as_mapping", "check_required", "warn_dropped", "field_defaults", "UNKNOWN_MODES"]

#: What a write does with row keys that are not columns: raise ``UnknownColumnError``, or drop them
#: (``"warn"``: drop them with one warning per call, the ``db_plugins`` compatibility default).
UNKNOWN_MODES = ("error", "ignore", "warn")


def check_columns(table: Table, keys: Iterable[Any], *, what: str = "column", row: int | None = None) -> None:
    """Raise ``UnknownColumnError`` for the first key that is not a column of ``table``."""
    columns = table.columns
    for key in keys:
        if not isinstance(key, str) or key not in columns:
            raise UnknownColumnError(
                f"unknown {what} {key!r} (columns: {', '.join(columns)})"
                + context(model=table.name, column=str(key), row=row),
                model=table.name,
                column=str(key),
                row=row,
            )


def as_mapping(table: Table, row: Any, *, index: int | None = None) -> Mapping[str, Any]:
    """A row given as a dict or as an instance of a dataclass model, as a mapping of column -> value.

    A dataclass instance of another model is refused: its fields would silently land in the wrong columns.
    """
    if isinstance(row, Mapping):
        return row
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        if table.cls is not None and type(row) is not table.cls:
            raise DbpError(
                f"the row is a {type(row).__name__}, not a {table.cls.__name__}"
                + context(model=table.name, row=index),
                model=table.name,
                row=index,
            )
        return vars(row)
    raise DbpError(
        f"a row must be a dict or a dataclass instance, got {type(row).__name__}"
        + context(model=table.name, row=index),
        model=table.name,
        row=index,
    )


def check_required(table: Table, values: Mapping[str, Any], *, row: int | None = None) -> None:
    """Raise ``MissingValueError`` naming the first NOT NULL column without a value (or with None)."""
    for name, col in table.columns.items():
        if not col.nullable and not col.type.has_default and values.get(name) is None:
            raise MissingValueError(
                f"missing value for NOT NULL column {name!r}"
                + context(model=table.name, column=name, row=row),
                model=table.name,
                column=name,
                row=row,
            )


def warn_dropped(table: Table, dropped: Iterable[str], action: str, *, stacklevel: int = 3) -> None:
    """The one warning per call of ``unknown="warn"``: the keys dropped because they are not columns."""
    names = sorted(set(dropped))
    warnings.warn(
        f"{action}: ignored {len(names)} key(s) that are not columns of model {table.name!r}: "
        f"{', '.join(names)} "
        '(pass unknown="error" to refuse them, unknown="ignore" to drop them silently)',
        UserWarning,
        stacklevel=stacklevel,
    )


_FIELD_DEFAULTS: dict[int, tuple[Table, dict[str, Any]]] = {}


def field_defaults(table: Table) -> dict[str, Any]:
    """Column -> zero-argument callable giving the dataclass field default, for the columns that have a
    non-None field default and no SQL default: what a row leaving the key out gets on every path
    (``bulk_insert`` fills them the same way), rather than NULL on some paths."""
    entry = _FIELD_DEFAULTS.get(id(table))
    if entry is None or entry[0] is not table:
        found: dict[str, Any] = {}
        if table.cls is not None:
            for f in dataclasses.fields(table.cls):
                col = table.columns.get(f.name)
                if col is None or col.type.has_default:
                    continue
                if f.default_factory is not dataclasses.MISSING:
                    found[f.name] = f.default_factory
                elif f.default is not dataclasses.MISSING and f.default is not None:
                    found[f.name] = lambda value=f.default: value
        entry = _FIELD_DEFAULTS[id(table)] = (table, found)
    return entry[1]
