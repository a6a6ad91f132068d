"""get_or_create: race-safe "insert unless it exists" of one row (see :mod:`dbplugins._upsert.common`).

    >>> plan = _one_plan(Watchlist, ("wid", "name"), (("wid", False),))
    >>> plan.insert
    'INSERT INTO "watchlist" ("wid", "name") VALUES (%s, %s) ON CONFLICT ("wid") DO NOTHING RETURNING ...'
    >>> plan.select
    'SELECT "wid", "name", "score" FROM "watchlist" WHERE "wid" = %s LIMIT 1'
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import psycopg
from psycopg import sql

from .._query.statements import class_row_for, column_list, render
from .._session.session import Session, statement_cursor
from .._types.binding import convert_row, translate_error
from .._types.rows import check_columns, check_required, field_defaults
from .._types.schema import Table, table_of
from ..errors import DbpError, MissingValueError, QueryError
from .common import MAX_TRIES, conflict_target, mismatch, session_scope

__all__ = ["get_or_create"]

T = TypeVar("T")


# -- get_or_create -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _OnePlan:
    """The statements of one get_or_create shape (which columns are given, which filter values are NULL)."""

    insert: str
    insert_cols: tuple[str, ...]
    select: str
    select_cols: tuple[str, ...]  # filter columns bound in ``select`` (those not NULL), in order
    target: tuple[str, ...] | None
    insert_first: bool
    check: str | None  # SELECT 1 by the conflict target, when the filter is not that key
    # INSERT-or-SELECT in one statement (one round trip for new and existing keys alike), when insert_first:
    # its first column says whether the row was created.
    combined: str | None
    # The parameters of ``insert`` and ``combined`` from the row, of ``select`` from filter_by, adapted; made
    # once per shape so that a call spends no Python loop on them.
    bind_insert: Callable[[Mapping[str, Any]], Sequence[Any]]
    bind_select: Callable[[Mapping[str, Any]], Sequence[Any]]
    bind_combined: Callable[[Mapping[str, Any]], Sequence[Any]]


def _binder(table: Table, cols: Sequence[str]) -> Callable[[Mapping[str, Any]], Sequence[Any]]:
    """``row -> the values of cols`` (the row's values are already bound by ``convert_row``)."""
    if not cols:
        return lambda row: ()
    if len(cols) == 1:
        only = cols[0]
        return lambda row: (row[only],)  # itemgetter of one key returns a bare value
    return operator.itemgetter(*cols)


@functools.lru_cache(maxsize=2048)
def _one_plan(model: Any, row_cols: tuple[str, ...], filter_spec: tuple[tuple[str, bool], ...]) -> _OnePlan:
    table = table_of(model)
    filter_cols = tuple(c for c, _ in filter_spec)
    target = conflict_target(table, filter_cols)
    insert_first = target is not None
    if target is None:
        # The filter does not name a unique key: look first, as db-plugins did, and let the primary key (if
        # the row carries one) arbitrate a concurrent insert.
        target = conflict_target(table, row_cols)
    tname = sql.Identifier(table.name)
    cols = tuple(c for c in table.columns if c in row_cols) + tuple(
        c for c in row_cols if c not in table.columns
    )
    conflict = (
        sql.SQL("ON CONFLICT ({}) DO NOTHING").format(column_list(target))
        if target
        else sql.SQL("ON CONFLICT DO NOTHING")
    )
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({}) {} RETURNING {}").format(
        tname,
        column_list(cols),
        sql.SQL(", ").join(sql.Placeholder() for _ in cols),
        conflict,
        column_list(table.columns),
    )
    conds = [
        sql.SQL("{} IS NULL").format(sql.Identifier(c))
        if is_null
        else sql.SQL("{} = %s").format(sql.Identifier(c))
        for c, is_null in filter_spec
    ]
    select = sql.SQL("SELECT {} FROM {} WHERE {} LIMIT 1").format(
        column_list(table.columns), tname, sql.SQL(" AND ").join(conds)
    )
    check = None
    bound_filter = {c for c, is_null in filter_spec if not is_null}
    if target and set(target) != bound_filter:
        check = render(
            sql.SQL("SELECT 1 FROM {} WHERE {}").format(
                tname, sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in target)
            )
        )
    combined = None
    if insert_first:
        # Both branches share the statement's snapshot, so a row committed by a concurrent caller after it was
        # taken is invisible to the SELECT branch (the INSERT saw it and did nothing): the statement then
        # returns no row, and the caller falls back to separate statements, each with a snapshot of its own.
        combined = render(
            sql.SQL(
                "WITH ins AS ({insert}) SELECT true, {cols} FROM ins UNION ALL "
                "SELECT false, {cols} FROM {t} WHERE {conds} AND NOT EXISTS (SELECT 1 FROM ins) LIMIT 1"
            ).format(
                insert=insert,
                cols=column_list(table.columns),
                t=tname,
                conds=sql.SQL(" AND ").join(conds),
            )
        )
    select_cols = tuple(c for c, is_null in filter_spec if not is_null)
    return _OnePlan(
        combined=combined,
        insert=render(insert),
        insert_cols=cols,
        select=render(select),
        select_cols=select_cols,
        target=target,
        insert_first=insert_first,
        check=check,
        bind_insert=_binder(table, cols),
        bind_select=_binder(table, select_cols),
        # the row holds filter_by's values, so the SELECT branch's parameters come from it too
        bind_combined=_binder(table, cols + select_cols),
    )


def get_or_create(
    session: Session, model: type[T], filter_by: Mapping[str, Any] | None, values: Mapping[str, Any]
) -> tuple[T, bool]:
    """``(instance, created)``: the row of ``model`` matching ``filter_by``, inserted from
    ``values`` if missing.

    The row inserted is ``{**values, **filter_by}``. When ``filter_by`` names the primary key (or a unique
    key) one statement inserts the row or reads the existing one: one round trip either way (separate INSERT
    and SELECT statements follow only when a concurrent insert hid the row from that statement's snapshot);
    otherwise the SELECT runs first, as in db-plugins. Exactly one of any number of concurrent callers gets
    ``created=True``.

    Raises ``MissingValueError`` naming the column when a NOT NULL value is missing and the row does not exist
    (with values missing, the row is looked up first and returned if it exists, as db-plugins did),
    ``UnknownColumnError`` for a key that is not a column, and ``ConstraintError`` when the key exists with
    values that ``filter_by`` does not match (db-plugins returned ``(None, False)`` in these cases).
    """
    table = table_of(model)
    if filter_by is None or not isinstance(filter_by, Mapping) or not filter_by:
        raise QueryError(
            "get_or_create() needs filter_by, a non-empty dict of column -> value "
            f"(got {type(filter_by).__name__ if filter_by is not None else None})",
            model=table.name,
        )
    check_columns(table, filter_by, what="filter_by column")
    check_columns(table, values, what="column")
    # Every value through its column type before any SQL: the rules of bulk_insert's COPY (1001.0 -> 1001, NaN
    # -> NULL outside float columns; 1.5 into an integer or a too long text refused, naming the column).
    filter_by = convert_row(table, filter_by, action="get_or_create")
    row = {**convert_row(table, values, action="get_or_create"), **filter_by}
    for c, make in field_defaults(table).items():
        if c not in row:
            row[c] = convert_row(table, {c: make()}, action="get_or_create")[c]
    missing: MissingValueError | None = None
    try:
        check_required(table, row)
    except MissingValueError as exc:
        missing = exc  # cannot insert; the row may still exist (db-plugins returned it): look it up first
    plan = _one_plan(cast(Any, model), tuple(row), tuple((c, v is None) for c, v in filter_by.items()))
    try:
        with session_scope(session) as conn:
            if plan.combined is not None and missing is None:
                first = statement_cursor(conn).execute(plan.combined, plan.bind_combined(row)).fetchone()
                if first is not None:
                    return model(**dict(zip(table.columns, first[1:], strict=True))), bool(first[0])
            return _get_or_create_slow(conn, table, model, plan, row, filter_by, missing)
    except (psycopg.Error, UnicodeEncodeError) as exc:
        raise translate_error(exc, table, [row], action="get_or_create") from exc


def _get_or_create_slow(
    conn: psycopg.Connection[Any],
    table: Table,
    model: type[T],
    plan: _OnePlan,
    row: Mapping[str, Any],
    filter_by: Mapping[str, Any],
    missing: MissingValueError | None,
) -> tuple[T, bool]:
    """Separate statements: SELECT first (no unique key in the filter, or values missing), or INSERT then
    SELECT after the one-statement form lost a race."""
    insert_params = plan.bind_insert(row)
    select_params = plan.bind_select(filter_by)
    with conn.cursor(row_factory=class_row_for(cast(Any, model))) as cur:
        if not plan.insert_first or missing is not None:
            cur.execute(plan.select, select_params)
            found = cur.fetchone()
            if found is not None:
                return found, False
            if missing is not None:
                raise missing
        for _ in range(MAX_TRIES):
            cur.execute(plan.insert, insert_params)
            created = cur.fetchone()
            if created is not None:
                return created, True
            cur.execute(plan.select, select_params)
            found = cur.fetchone()
            if found is not None:
                return found, False
            if plan.check is not None and plan.target is not None:
                key = [row[c] for c in plan.target]
                if statement_cursor(conn).execute(plan.check, key).fetchone() is not None:
                    raise mismatch(table, plan.target, row, filter_by)
            # The conflicting row is gone (deleted, or its insert rolled back): insert again.
    raise DbpError(
        f"get_or_create: gave up after {MAX_TRIES} attempts on model {table.name!r}: the row matching "
        f"{dict(filter_by)!r} kept conflicting on insert and vanishing before it could be read",
        model=table.name,
    )
