"""The SQL of condition shapes: a condition's value-free description (columns, operators, nesting) composed
into text once per shape and cached, so a hot loop only binds values. Used by
:mod:`dbplugins._query.expressions` and the builder.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from psycopg import sql

from .statements import cast_type, column_list, render

if TYPE_CHECKING:
    from .expressions import Condition

__all__ = ["Shape", "where_sql", "order_sql", "sql_of", "params_of", "legacy_shape", "query_statement"]

# Operator of a binary comparison -> its SQL.
_BINARY = {
    "=": "=",
    "!=": "<>",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
    "like": "LIKE",
    "ilike": "ILIKE",
    "not like": "NOT LIKE",
    "not ilike": "NOT ILIKE",
}

Shape = tuple[Any, ...]
"""The value-free description of a condition: what its SQL text depends on (hashable, cached)."""


def _shape_sql(shape: Shape) -> sql.Composable:
    kind = shape[0]
    if kind in ("and", "or"):
        joiner = sql.SQL(" AND ") if kind == "and" else sql.SQL(" OR ")
        return sql.SQL("({})").format(joiner.join(_shape_sql(s) for s in shape[1]))
    if kind == "not":
        return sql.SQL("NOT ({})").format(_shape_sql(shape[1]))
    ident = sql.Identifier(shape[1])
    if kind == "null":
        return sql.SQL("{} IS NULL" if shape[2] == "is null" else "{} IS NOT NULL").format(ident)
    if kind == "cols":
        return sql.SQL("{} {} {}").format(ident, sql.SQL(_BINARY[shape[2]]), sql.Identifier(shape[3]))
    if kind == "any":
        template = "{} = ANY(%s::{}[])" if shape[2] == "in" else "{} <> ALL(%s::{}[])"
        return sql.SQL(template).format(ident, cast_type(shape[3]))
    if kind == "between":
        return sql.SQL("{} BETWEEN %s AND %s").format(ident)
    return sql.SQL("{} {} %s").format(ident, sql.SQL(_BINARY[shape[2]]))


@functools.lru_cache(maxsize=4096)
def where_sql(shapes: tuple[Shape, ...]) -> str:
    """The text of ``c1 AND c2 ...`` for condition shapes (cached per shape)."""
    return render(sql.SQL(" AND ").join(_shape_sql(s) for s in shapes))


def order_sql(items: Sequence[tuple[str, bool, str | None]]) -> sql.Composable:
    """``"a" DESC NULLS LAST, "b"`` for (column, descending, nulls) items."""
    parts = []
    for name, descending, nulls in items:
        text = "{}" + (" DESC" if descending else "") + (f" NULLS {nulls.upper()}" if nulls else "")
        # nulls is "first" / "last" (set by OrderExpr only), never caller text
        parts.append(sql.SQL(text).format(sql.Identifier(name)))
    return sql.SQL(", ").join(parts)


def sql_of(condition: Condition) -> str:
    """The SQL text of a condition, with ``%s`` placeholders."""
    return where_sql((condition.shape(),))


def params_of(condition: Condition) -> list[Any]:
    """The values a condition binds, in placeholder order."""
    out: list[Any] = []
    condition.params(out)
    return out


def legacy_shape(column: str, op: str, sql_type: str) -> Shape:
    """The shape of a ``filter(column, op, value)`` condition (see :mod:`dbplugins._query.query`)."""
    if op in ("is null", "is not null"):
        return ("null", column, op)
    if op in ("in", "not in"):
        return ("any", column, op, sql_type)
    if op == "between":
        return ("between", column)
    return ("cmp", column, op)


# How each packed column becomes fixed-width bytes (see dbplugins._query.frames): the binary send functions
# give the exact IEEE / two's-complement values, big-endian. Each code is a kind (f float, i integer,
# b boolean) and, for a column the model lets hold NULL, "n". The casts read a column whose live type is
# narrower or wider than the model's (integer for bigint, real for double precision) without changing a
# value: every integer is sent as 8 bytes, every float as a float8 (a float4 widens exactly). A NOT NULL
# column is sent bare: should it hold a NULL after all, the send function's NULL makes the whole row's bytes
# NULL, which the frame notices (it then reads the rows plainly). The nullable ones cost a coalesce: NaN for
# a float (what a DataFrame holds for NULL), a flag byte after an integer (0 value, 1 NULL), 2 for a boolean.
_PACK = {
    "f": "float8send({}::float8)",
    "fn": "coalesce(float8send({}::float8), E'\\\\x7ff8000000000000'::bytea)",
    "i": "int8send({}::int8)",
    "in": "coalesce(int8send({}::int8) || E'\\\\x00'::bytea, E'\\\\x000000000000000001'::bytea)",
    "b": "boolsend({}::boolean)",
    "bn": "coalesce(boolsend({}::boolean), E'\\\\x02'::bytea)",
}


def packed_sql(packed: tuple[tuple[str, str], ...]) -> sql.Composable:
    """One ``bytea`` expression holding the ``(column, code)`` values of a row, in order.

    Written as separate terms joined by ``||`` rather than one ``record_send(ROW(...))`` or
    ``array_send(ARRAY[...])``: on 100,000 detections the server spent 97 ms on this form against 131 ms
    and more on those (EXPLAIN (ANALYZE, SERIALIZE), measured here; a plain select of the same columns:
    65 ms).
    """
    parts = [sql.SQL(_PACK[code]).format(sql.Identifier(name)) for name, code in packed]
    return sql.SQL("({}) AS dbp_packed").format(sql.SQL(" || ").join(parts))


@functools.lru_cache(maxsize=4096)
def query_statement(
    kind: str,
    table: str,
    columns: tuple[str, ...],
    shapes: tuple[Any, ...],
    order: tuple[tuple[str, bool, str | None], ...],
    distinct: bool,
    limit: bool,
    offset: bool,
    keyset: tuple[str, ...] = (),
    packed: tuple[tuple[str, str], ...] = (),
) -> str:
    """The SQL text of one query shape (cached: a repeated shape costs a dict lookup).

    ``shapes`` are the conditions (:func:`legacy_shape` for ``filter(column, op, value)``,
    ``Condition.shape()`` for expressions), ``order`` (column, descending, nulls) items, ``keyset`` the key
    a keyset page starts after, ``packed`` the ``(column, code)`` pairs that a ``"rows"`` query selects first,
    packed into one ``bytea`` (:mod:`dbplugins._query.frames`). Every query of :class:`dbplugins.Query` is
    composed here.

        >>> query_statement("rows", "object", ("oid", "ndet"), (legacy_shape("ndet", ">=", ""),),
        ...                 (("oid", False, None),), False, True, False)
        'SELECT "oid", "ndet" FROM "object" WHERE "ndet" >= %s ORDER BY "oid" LIMIT %s'
    """
    conds: list[sql.Composable] = [sql.SQL(where_sql(shapes))] if shapes else []
    if keyset:
        if len(keyset) == 1:
            conds.append(sql.SQL("{} > %s").format(sql.Identifier(keyset[0])))
        else:
            marks = sql.SQL(", ").join(sql.Placeholder() for _ in keyset)
            conds.append(sql.SQL("({}) > ({})").format(column_list(keyset), marks))
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conds) if conds else sql.SQL("")
    order_part = sql.SQL(" ORDER BY ") + order_sql(order) if order else sql.SQL("")
    tail = (sql.SQL(" LIMIT %s") if limit else sql.SQL("")) + (
        sql.SQL(" OFFSET %s") if offset else sql.SQL("")
    )
    tname = sql.Identifier(table)
    select = sql.SQL("SELECT DISTINCT " if distinct else "SELECT ")
    stmt: sql.Composable
    if kind == "rows":
        chosen = column_list(columns)
        if packed:
            chosen = sql.SQL(", ").join([packed_sql(packed), *([chosen] if columns else [])])
        stmt = select + sql.SQL("{} FROM {}").format(chosen, tname) + where + order_part + tail
    elif kind == "count":
        if distinct or limit or offset:
            inner_cols = column_list(columns) if distinct else sql.SQL("1")
            inner = select + sql.SQL("{} FROM {}").format(inner_cols, tname) + where + order_part + tail
            stmt = sql.SQL("SELECT count(*) FROM (") + inner + sql.SQL(") AS dbp_count")
        else:
            stmt = sql.SQL("SELECT count(*) FROM {}").format(tname) + where
    elif kind == "exists":
        stmt = sql.SQL("SELECT EXISTS (SELECT 1 FROM {}").format(tname) + where + sql.SQL(")")
    elif kind == "delete":
        stmt = sql.SQL("DELETE FROM {}").format(tname) + where
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    return render(stmt)
