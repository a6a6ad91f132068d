"""Binding values to columns, and naming the column when psycopg or the server refuses one."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.types.json import Json, Jsonb

from .errors import DataError, DbpError, wrap_db_error
from .schema import Table

__all__ = ["value_adapter", "adapt", "value_problem", "translate_error"]


def value_adapter(sql_type: str) -> Callable[[Any], Any] | None:
    """How to bind a Python value to a column of ``sql_type``, or None when psycopg's default fits.

    json/jsonb columns take any JSON-able value (``dict`` included), which psycopg only dumps when wrapped.
    """
    if sql_type == "jsonb":
        return _wrap_json(Jsonb)
    if sql_type == "json":
        return _wrap_json(Json)
    if sql_type in ("jsonb[]", "json[]"):
        inner = _wrap_json(Jsonb if sql_type == "jsonb[]" else Json)
        return lambda v: v if v is None else [inner(x) for x in v]
    return None


def _wrap_json(wrapper: type[Json] | type[Jsonb]) -> Callable[[Any], Any]:
    def adapt(value: Any) -> Any:
        if value is None or isinstance(value, (Json, Jsonb)):
            return value
        return wrapper(value)

    return adapt


def adapt(table: Table, column: str, value: Any) -> Any:
    """``value`` ready to bind to ``table.column`` (see :func:`value_adapter`)."""
    adapter = value_adapter(table.columns[column].sql_type)
    return value if adapter is None else adapter(value)


_INT_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}


def value_problem(sql_type: str, value: Any) -> str | None:
    """Why ``value`` cannot be stored in a column of ``sql_type`` (a NUL in text, an int out of range), or None.

    Used only after the server or psycopg refused a statement, to say which value it was.
    """
    base = sql_type[:-2] if sql_type.endswith("[]") else sql_type
    items = value if sql_type.endswith("[]") and isinstance(value, (list, tuple)) else (value,)
    for item in items:
        if isinstance(item, str) and "\x00" in item:
            return "contains a NUL (0x00) character, which PostgreSQL text cannot store"
        if isinstance(item, str) and not _encodable(item):
            return "contains a lone surrogate (not valid Unicode), which UTF-8 cannot encode"
        if isinstance(item, int) and not isinstance(item, bool) and base in _INT_RANGES:
            low, high = _INT_RANGES[base]
            if not low <= item <= high:
                return f"has the value {item!r}, out of range for {base} [{low}, {high}]"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def translate_error(
    exc: psycopg.Error | UnicodeEncodeError,
    table: Table,
    rows: Sequence[Mapping[str, Any]] = (),
    *,
    action: str,
    row_numbers: Sequence[int] | None = None,
) -> DbpError:
    """The ``DbpError`` for a psycopg error raised while running a statement on ``table``.

    A value psycopg or the server refuses (a NUL byte in text, an integer out of range) comes back with a message
    that names no column: find it in ``rows`` (the values bound) and name its column, and its row number in a
    batch (``row_numbers[i]`` for ``rows[i]``, else ``i``).
    """
    err = wrap_db_error(exc, model=table.name, action=action)
    if isinstance(exc, (psycopg.DataError, UnicodeEncodeError)) and err.column is None:
        for i, values in enumerate(rows):
            for column, value in values.items():
                col = table.columns.get(column)
                problem = value_problem(col.sql_type, value) if col is not None else None
                if problem is None:
                    continue
                row = row_numbers[i] if row_numbers is not None else (i if len(rows) > 1 else None)
                where = f" in row {row}" if row is not None else ""
                return DataError(
                    f"{action}: column {column!r} of model {table.name!r}{where} {problem}",
                    model=table.name,
                    column=column,
                    row=row,
                    sqlstate=err.sqlstate,
                )
    return err
