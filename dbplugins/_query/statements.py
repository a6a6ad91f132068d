"""The pieces queries are composed from: quoted column lists, checked ``::type`` casts, rendering, the
UPDATE of one row, row factories. The SELECT / count / exists / delete texts are composed in one place,
:func:`dbplugins._query.shapes.query_statement`.

    >>> render(sql.SQL("SELECT {} FROM {}").format(column_list(["oid", "ndet"]), sql.Identifier("object")))
    'SELECT "oid", "ndet" FROM "object"'

Identifiers always go through ``psycopg.sql.Identifier``; the only raw SQL spliced in is operators from a
fixed table and type names from model declarations, checked by :func:`cast_type`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from psycopg import sql
from psycopg.rows import RowFactory, class_row

from ..errors import ConfigurationError

__all__ = [
    "WhereSpec",
    "OrderSpec",
    "cast_type",
    "column_list",
    "render",
    "update_statement",
    "class_row_for",
]

# Canonical operator -> SQL of a binary comparison.
# A type name as the model declares it (format_type spelling): what may follow "::" in a cast.
_TYPE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_ ]*(\(\s*\d+\s*(,\s*\d+\s*)?\))?(\[\])*$")

WhereSpec = tuple[tuple[str, str, str], ...]
"""The shape of a WHERE clause: (column, operator, column type) per condition, values left out."""
OrderSpec = tuple[tuple[str, bool], ...]
"""ORDER BY as (column, descending) pairs."""


def cast_type(sql_type: str) -> sql.SQL:
    """The column type ``sql_type`` for a ``::type`` cast, checked to be a plain type name."""
    if not _TYPE_RE.match(sql_type):
        raise ConfigurationError(f"column type {sql_type!r} cannot be used in a cast")
    # Validated above; the type comes from the model declaration, never from data.
    return sql.SQL(sql_type)


def column_list(names: Iterable[str], qualifier: str | None = None) -> sql.Composed:
    """``"a", "b"`` (or ``"q"."a", "q"."b"``) for ``names``."""
    if qualifier is None:
        return sql.SQL(", ").join(sql.Identifier(n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(qualifier, n) for n in names)


def render(statement: sql.Composable) -> str:
    """The text of a composed statement (identifiers quoted, ``%s`` placeholders kept)."""
    return statement.as_string(None)


@functools.lru_cache(maxsize=1024)
def update_statement(
    table: str, columns: tuple[str, ...], pk: tuple[str, ...], returning: tuple[str, ...]
) -> str:
    """``UPDATE t SET a = %s, ... WHERE pk = %s ... RETURNING cols``."""
    sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in columns)
    where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in pk)
    return render(
        sql.SQL("UPDATE {} SET {} WHERE {} RETURNING {}").format(
            sql.Identifier(table), sets, where, column_list(returning)
        )
    )


@functools.lru_cache(maxsize=1024)
def class_row_for(cls: Any) -> RowFactory[Any]:
    """psycopg's ``class_row`` for a model, made once per class."""
    return class_row(cls)
