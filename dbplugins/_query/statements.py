"""Composing the SQL text of queries: quoted identifiers, ``%s`` placeholders, one cached text per shape.

    >>> statement("rows", "object", ("oid", "ndet"), (("ndet", ">=", "integer"),), (("oid", False),),
    ...           True, False)
    'SELECT "oid", "ndet" FROM "object" WHERE "ndet" >= %s ORDER BY "oid" LIMIT %s'

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
    "statement",
    "update_statement",
    "class_row_for",
]

# Canonical operator -> SQL of a binary comparison.
_BINARY_SQL = {
    "=": "=",
    "!=": "<>",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
    "like": "LIKE",
    "ilike": "ILIKE",
}

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


def _where_sql(where: WhereSpec) -> sql.Composable:
    parts: list[sql.Composable] = []
    for column, op, sql_type in where:
        ident = sql.Identifier(column)
        if op == "is null":
            parts.append(sql.SQL("{} IS NULL").format(ident))
        elif op == "is not null":
            parts.append(sql.SQL("{} IS NOT NULL").format(ident))
        elif op == "in":
            parts.append(sql.SQL("{} = ANY(%s::{}[])").format(ident, cast_type(sql_type)))
        elif op == "not in":
            parts.append(sql.SQL("{} <> ALL(%s::{}[])").format(ident, cast_type(sql_type)))
        elif op == "between":
            parts.append(sql.SQL("{} BETWEEN %s AND %s").format(ident))
        else:
            parts.append(sql.SQL("{} {} %s").format(ident, sql.SQL(_BINARY_SQL[op])))
    if not parts:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts)


def _order_sql(order: OrderSpec) -> sql.Composable:
    if not order:
        return sql.SQL("")
    items = [sql.SQL("{} DESC").format(sql.Identifier(c)) if desc else sql.Identifier(c) for c, desc in order]
    return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(items)


@functools.lru_cache(maxsize=4096)
def statement(
    kind: str,
    table: str,
    columns: tuple[str, ...],
    where: WhereSpec,
    order: OrderSpec,
    limit: bool,
    offset: bool,
    keyset: tuple[str, ...] = (),
) -> str:
    """The SQL text of one query shape; cached, so repeated shapes cost a dict lookup."""
    tail: sql.Composable = sql.SQL("")
    if keyset:
        # Row comparison (a, b) > (x, y) walks the primary key index from the last key seen.
        if len(keyset) == 1:
            cond = sql.SQL("{} > %s").format(sql.Identifier(keyset[0]))
        else:
            marks = sql.SQL(", ").join(sql.Placeholder() for _ in keyset)
            cond = sql.SQL("({}) > ({})").format(column_list(keyset), marks)
        tail = (sql.SQL(" AND ") if where else sql.SQL(" WHERE ")) + cond
    where_sql = _where_sql(where) + tail
    limit_sql = sql.SQL(" LIMIT %s") if limit else sql.SQL("")
    offset_sql = sql.SQL(" OFFSET %s") if offset else sql.SQL("")
    tname = sql.Identifier(table)
    stmt: sql.Composable
    if kind == "rows":
        stmt = sql.SQL("SELECT {} FROM {}").format(column_list(columns), tname)
        stmt = stmt + where_sql + _order_sql(order) + limit_sql + offset_sql
    elif kind == "count":
        if limit or offset:
            inner = sql.SQL("SELECT 1 FROM {}").format(tname) + where_sql + _order_sql(order) + limit_sql
            stmt = sql.SQL("SELECT count(*) FROM (") + inner + offset_sql + sql.SQL(") AS dbp_count")
        else:
            stmt = sql.SQL("SELECT count(*) FROM {}").format(tname) + where_sql
    elif kind == "exists":
        stmt = sql.SQL("SELECT EXISTS (SELECT 1 FROM {}").format(tname) + where_sql + sql.SQL(")")
    elif kind == "delete":
        stmt = sql.SQL("DELETE FROM {}").format(tname) + where_sql
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    return render(stmt)


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
