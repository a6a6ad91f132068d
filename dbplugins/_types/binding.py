"""Binding values to columns through their column types, and naming the column when a value is refused.

Every bound parameter of a write (get_or_create, get_or_create_many, update) goes through :func:`bind`, i.e.
``ColumnDef.type.param``: the same rules as bulk_insert's COPY (see :mod:`dbplugins._types.column`), so a
value is stored identically on every path or refused on every path with the same ``DataError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from ..errors import DataError, DbpError, MissingValueError, context, refused_error, wrap_db_error
from .column import Refused
from .schema import Table

__all__ = ["bind", "convert_row", "filter_value", "value_problem", "translate_error"]


def bind(
    table: Table,
    column: str,
    value: Any,
    *,
    row: int | None = None,
    action: str = "",
    check_null: bool = True,
) -> Any:
    """``value`` ready to bind to ``table.column`` for a write: converted and checked by the column type.

    Raises ``DataError`` naming model, column (and ``row``) for a value the column refuses, and
    ``MissingValueError`` for a NULL (None, NaN, ``pd.NA``) in a NOT NULL column.
    """
    col = table.columns[column]
    try:
        out = col.type.param(value)
    except Refused as exc:
        raise refused_error(table.name, col.type, value, exc, row=row, action=action) from None
    if check_null and out is None and not col.nullable and value is not None:
        raise MissingValueError(
            f"{action + ': ' if action else ''}{value!r} is NULL in NOT NULL column {column!r}"
            + context(model=table.name, column=column, row=row),
            model=table.name,
            column=column,
            row=row,
        )
    return out


def convert_row(
    table: Table, values: Mapping[str, Any], *, row: int | None = None, action: str = ""
) -> dict[str, Any]:
    """``values`` (column -> value, columns already checked) with each value bound as :func:`bind` does; a
    NULL (None, NaN...) in a NOT NULL column is left for the caller's required-value check. Values whose type
    the column takes as it is (``ColumnType.trusted``) are not touched: the common case costs a set lookup."""
    cols = table.columns
    out: dict[str, Any] = {}
    for c, v in values.items():
        if v is None or type(v) in cols[c].type.trusted:
            out[c] = v
        else:
            out[c] = bind(table, c, v, row=row, action=action, check_null=False)
    return out


def filter_value(table: Table, column: str, value: Any) -> Any:
    """A value compared with ``table.column`` in a filter: converted like a write where the column type
    accepts it (``1001.0`` -> ``1001``, a dict for a json column), else left for the server to compare
    (``ndet < 1.5`` is a fine filter although 1.5 cannot be stored in an integer column)."""
    try:
        return table.columns[column].type.param(value)
    except Refused:
        return value


def value_problem(table: Table, column: str, value: Any) -> str | None:
    """Why ``value`` cannot be stored in ``table.column`` (its column type refuses it), or None."""
    try:
        table.columns[column].type.convert(value)
    except Refused as exc:
        return str(exc)
    return None


def translate_error(
    exc: psycopg.Error | UnicodeEncodeError,
    table: Table,
    rows: Sequence[Mapping[str, Any]] = (),
    *,
    action: str,
    row_numbers: Sequence[int] | None = None,
) -> DbpError:
    """The ``DbpError`` for a psycopg error raised while running a statement on ``table``.

    A value psycopg or the server refuses comes back with a message that names no column: find it in ``rows``
    (the values bound) and name its column, and its row number in a batch (``row_numbers[i]`` for ``rows[i]``,
    else ``i``).
    """
    err = wrap_db_error(exc, model=table.name, action=action)
    if isinstance(exc, (psycopg.DataError, UnicodeEncodeError)) and err.column is None:
        for i, values in enumerate(rows):
            for column, value in values.items():
                col = table.columns.get(column)
                problem = value_problem(table, column, value) if col is not None else None
                if problem is None or col is None:
                    continue
                row = row_numbers[i] if row_numbers is not None else (i if len(rows) > 1 else None)
                found = refused_error(table.name, col.type, value, problem, row=row, action=action)
                return DataError(
                    found.message, model=table.name, column=column, row=row, sqlstate=err.sqlstate
                )
    return err
