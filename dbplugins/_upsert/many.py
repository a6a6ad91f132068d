"""get_or_create_many: the batched get_or_create, one INSERT ... SELECT FROM unnest(...) per batch, atomic.

See :mod:`dbplugins._upsert.common` for what both share.
"""

from __future__ import annotations

import decimal
import functools
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import psycopg
from psycopg import errors as pge
from psycopg import sql

from .._query.statements import cast_type, column_list, render
from .._session.session import Session, statement_cursor
from .._types.binding import convert_row, translate_error
from .._types.rows import as_mapping, check_columns, check_required, field_defaults, warn_dropped
from .._types.schema import Table, table_of
from ..errors import DbpError, MissingValueError, QueryError, context
from .common import _MAX_PARAMS, _ORD, MAX_TRIES, conflict_target, log, mismatch

__all__ = ["get_or_create_many"]

T = TypeVar("T")


# -- get_or_create_many --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ManyPlan:
    """The statements of one get_or_create_many shape (model, columns given, key)."""

    cols: tuple[str, ...]  # inserted columns, table order
    key: tuple[str, ...]
    target: tuple[str, ...]
    returning: tuple[str, ...]  # every column, table order
    insert: str | None  # the unnest form; None when an array column needs the VALUES form
    select: str  # existing rows by key
    check: str | None  # existing keys by target, when the key is more than the target


def _unnest(cols: Sequence[str], types: Sequence[str], alias: str) -> sql.Composable:
    # ``types`` are ColumnType.cast_type names, without typmods: an explicit cast to varchar(5)[] would
    # truncate (the INSERT's assignment to the column then refuses a too long value,
    # as every other path does).
    arrays = sql.SQL(", ").join(sql.SQL("%s::{}[]").format(cast_type(t)) for t in types)
    return sql.SQL("unnest({}) WITH ORDINALITY AS {}({}, {})").format(
        arrays, sql.Identifier(alias), column_list(cols), sql.Identifier(_ORD)
    )


def _insert_tail(
    table: Table, cols: Sequence[str], key: Sequence[str], target: Sequence[str]
) -> sql.Composable:
    """``dbp_ins AS (INSERT ... SELECT ... FROM dbp_src) SELECT ord, row ... JOIN dbp_src`` after
    ``dbp_src``."""
    # Inserting in key order makes concurrent batches lock keys in one order, so they queue instead of
    # deadlocking; the ordinality breaks ties, so the first occurrence of a key in the input is the one
    # inserted.
    order = sql.SQL(", ").join([*(sql.Identifier(c) for c in target), sql.Identifier(_ORD)])
    join = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier("dbp_src", c), sql.Identifier("dbp_ins", c)) for c in key
    )
    return sql.SQL(
        ", dbp_ins AS (INSERT INTO {t} ({cols}) SELECT {cols} FROM dbp_src ORDER BY {order} "
        "ON CONFLICT ({target}) DO NOTHING RETURNING {ret}) "
        "SELECT {ord}, {ret_q} FROM dbp_ins JOIN dbp_src ON {join}"
    ).format(
        t=sql.Identifier(table.name),
        cols=column_list(cols),
        order=order,
        target=column_list(target),
        ret=column_list(table.columns),
        ord=sql.Identifier("dbp_src", _ORD),
        ret_q=column_list(table.columns, "dbp_ins"),
        join=join,
    )


@functools.lru_cache(maxsize=1024)
def _many_plan(model: Any, cols: tuple[str, ...], key: tuple[str, ...]) -> _ManyPlan:
    table = table_of(model)
    target = conflict_target(table, key)
    if target is None:
        raise QueryError(
            f"get_or_create_many: key {list(key)} of model {table.name!r} must contain the primary key "
            f"{list(table.primary_key)} or a unique constraint",
            model=table.name,
        )
    for c in key:
        if table.columns[c].is_array:
            raise QueryError(f"get_or_create_many: key column {c!r} is an array", model=table.name, column=c)
    types = [table.columns[c].type.cast_type for c in cols]
    insert: str | None = None
    if not any(table.columns[c].is_array for c in cols):
        # unnest() flattens arrays of arrays, so array columns take the VALUES form instead.
        src = sql.SQL("WITH dbp_src AS MATERIALIZED (SELECT * FROM {})").format(_unnest(cols, types, "dbp_s"))
        insert = render(src + _insert_tail(table, cols, key, target))
    select = sql.SQL("SELECT {}, {} FROM {} JOIN {} ON {}").format(
        sql.Identifier("dbp_k", _ORD),
        column_list(table.columns, "dbp_t"),
        _unnest(key, [table.columns[c].type.cast_type for c in key], "dbp_k"),
        sql.SQL("{} AS dbp_t").format(sql.Identifier(table.name)),
        sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(sql.Identifier("dbp_t", c), sql.Identifier("dbp_k", c)) for c in key
        ),
    )
    check = None
    if set(target) != set(key):
        check = render(
            sql.SQL("SELECT {} FROM {} JOIN {} ON {}").format(
                sql.Identifier("dbp_k", _ORD),
                _unnest(target, [table.columns[c].type.cast_type for c in target], "dbp_k"),
                sql.SQL("{} AS dbp_t").format(sql.Identifier(table.name)),
                sql.SQL(" AND ").join(
                    sql.SQL("{} = {}").format(sql.Identifier("dbp_t", c), sql.Identifier("dbp_k", c))
                    for c in target
                ),
            )
        )
    return _ManyPlan(cols, key, target, tuple(table.columns), insert, render(select), check)


@functools.lru_cache(maxsize=256)
def _values_insert(model: Any, cols: tuple[str, ...], key: tuple[str, ...], n: int) -> str:
    """The VALUES form of the batched insert, for ``n`` rows (tables with array columns)."""
    table = table_of(model)
    target = conflict_target(table, key)
    assert target is not None
    casts = [cast_type(table.columns[c].type.cast_type) for c in cols]
    one = sql.SQL(", ").join([*(sql.SQL("%s::{}").format(t) for t in casts), sql.SQL("%s::bigint")])
    rows = sql.SQL(", ").join(sql.SQL("({})").format(one) for _ in range(n))
    src = sql.SQL("WITH dbp_src ({}, {}) AS MATERIALIZED (VALUES {})").format(
        column_list(cols), sql.Identifier(_ORD), rows
    )
    return render(src + _insert_tail(table, cols, key, target))


def get_or_create_many(
    session: Session,
    model: type[T],
    rows: Iterable[Any],
    *,
    key: Sequence[str] | None = None,
    batch_size: int = 10_000,
    unknown: str = "error",
) -> list[tuple[T, bool]]:
    """``[(instance, created), ...]`` for ``rows`` (dicts or model instances), in input order.

    Each row is looked up by its ``key`` columns (default: the primary key, which ``key`` must contain, or a
    unique constraint). Per batch of ``batch_size`` rows it runs one statement (an ``INSERT ... SELECT FROM
    unnest(...) ON CONFLICT DO NOTHING RETURNING``) and, when some keys existed, a second one that selects
    them. Duplicate keys in the input (NaN equal to NaN, as PostgreSQL compares them): the first occurrence is
    inserted, later ones get the same row and ``created=False``. A column that a row leaves out is NULL (rows
    may differ in the columns they give). Concurrent callers never both create a key.

    All or nothing: a call that raises (a key that exists with other values, a constraint, a lost connection)
    has written none of its rows. Outside a transaction the call is one transaction, committed on return (a
    deadlock with a concurrent caller rolls it back and runs it again); inside ``db.transaction()`` it is a
    savepoint of the caller's transaction.
    """
    table = table_of(model)
    if batch_size < 1:
        raise QueryError(f"batch_size must be >= 1, got {batch_size}")
    key_cols = tuple(key) if key is not None else tuple(table.primary_key)
    if not key_cols:
        raise QueryError(
            f"get_or_create_many: model {table.name!r} has no primary key; pass key=", model=table.name
        )
    if isinstance(key, str):
        raise QueryError("get_or_create_many: key must be a list of column names, not a string")
    check_columns(table, key_cols, what="key column")
    if unknown not in ("error", "ignore", "warn"):
        raise QueryError(f'unknown must be "error" or "ignore", got {unknown!r}', model=table.name)
    dropped: set[str] = set()
    pydefaults = field_defaults(table)
    # Check every row before anything is written. A column a row leaves out is NULL, unless the column has a
    # server default: rows are grouped by the defaulted columns they give (one group, without such columns).
    defaulted = frozenset(c for c, col in table.columns.items() if col.type.has_default)
    groups: dict[tuple[str, ...], list[int]] = {}
    given: dict[tuple[str, ...], set[str]] = {}
    maps: list[Mapping[str, Any]] = []
    # A model instance cannot leave a field out: None in a column whose default the server computes leaves it
    # to the server, as bulk_insert does (a dict that names the column with None stores NULL).
    generated = [c for c, col in table.columns.items() if col.type.server_default]
    for i, item in enumerate(rows):
        m = as_mapping(table, item, index=i)
        if generated and not isinstance(item, Mapping) and any(m.get(c) is None for c in generated):
            m = {c: v for c, v in m.items() if v is not None or c not in generated}
        if unknown == "error":
            check_columns(table, m, row=i)
        elif any(c not in table.columns for c in m):
            dropped.update(str(c) for c in m if c not in table.columns)
            m = {c: v for c, v in m.items() if c in table.columns}
        if pydefaults and not pydefaults.keys() <= m.keys():
            m = {**{c: make() for c, make in pydefaults.items() if c not in m}, **m}
        m = convert_row(table, m, row=i, action="get_or_create_many")
        check_required(table, m, row=i)
        for c in key_cols:
            if m.get(c) is None:
                raise MissingValueError(
                    f"get_or_create_many: no value for key column {c!r}"
                    + context(model=table.name, column=c, row=i),
                    model=table.name,
                    column=c,
                    row=i,
                )
        maps.append(m)
        group = tuple(c for c in m if c in defaulted) if defaulted else ()
        groups.setdefault(group, []).append(i)
        given.setdefault(group, set()).update(m)
    if dropped and unknown == "warn":
        warn_dropped(table, dropped, "get_or_create_many", stacklevel=4)
    if not maps:
        return []
    joined = session.in_transaction
    for attempt in range(MAX_TRIES):
        try:
            return _many_call(session, model, table, key_cols, batch_size, groups, given, maps)
        except pge.DeadlockDetected as exc:
            # Two callers' batches locked keys in opposite orders across batches; the server rolled ours back.
            # Our own transaction is gone with everything it held: run the call again. In the caller's
            # transaction only the caller can decide.
            if joined or attempt == MAX_TRIES - 1:
                raise translate_error(exc, table, maps, action="get_or_create_many") from exc
            log.info("get_or_create_many: deadlock on model %r, running the call again", table.name)
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # noqa: S311 - jitter, not crypto
    raise AssertionError("unreachable")


def _many_call(
    session: Session,
    model: type[T],
    table: Table,
    key_cols: tuple[str, ...],
    batch_size: int,
    groups: dict[tuple[str, ...], list[int]],
    given: dict[tuple[str, ...], set[str]],
    maps: list[Mapping[str, Any]],
) -> list[tuple[T, bool]]:
    """Every batch in one atomic scope: a transaction of its own, or a savepoint of the caller's."""
    out: list[tuple[T, bool] | None] = [None] * len(maps)
    with session.atomic() as conn:
        for group, indices in groups.items():
            cols = tuple(c for c in table.columns if c in given[group])
            plan = _many_plan(cast(Any, model), cols, key_cols)
            size = (
                batch_size
                if plan.insert is not None
                else max(1, min(batch_size, _MAX_PARAMS // (len(cols) + 1)))
            )
            for start in range(0, len(indices), size):
                chunk = indices[start : start + size]
                try:
                    _many_batch(conn, model, table, plan, [maps[i] for i in chunk], chunk, out)
                except pge.DeadlockDetected:
                    raise  # the whole call runs again (get_or_create_many)
                except (psycopg.Error, UnicodeEncodeError) as exc:
                    raise translate_error(
                        exc, table, [maps[i] for i in chunk], action="get_or_create_many", row_numbers=chunk
                    ) from exc
    assert all(r is not None for r in out)
    return out  # type: ignore[return-value]


def _key_ident(value: Any) -> Any:
    """A key value as a dict/set key that compares as PostgreSQL does: NaN equals NaN (not so in Python)."""
    if isinstance(value, (float, decimal.Decimal)) and value != value:
        return _NAN
    return value


_NAN = ("dbp:NaN",)


def _many_batch(
    conn: psycopg.Connection[Any],
    model: Any,
    table: Table,
    plan: _ManyPlan,
    batch: list[Mapping[str, Any]],
    numbers: list[int],
    out: list[Any],
) -> None:
    """Resolve one batch into ``out`` (indexed by input row number)."""
    adapters: list[Any] = [None] * len(plan.cols)  # values were bound by convert_row
    names = plan.returning
    target_pos = [names.index(c) for c in plan.target]
    pending = list(range(len(batch)))  # positions in ``batch`` still without a result
    for _attempt in range(MAX_TRIES):
        rows = [batch[p] for p in pending]
        inserted = statement_cursor(conn).execute(*_insert_call(model, plan, adapters, rows)).fetchall()
        first_seen: set[tuple[Any, ...]] = set()
        done: set[int] = set()
        for ordinal, *values in sorted(inserted, key=lambda r: r[0]):
            pos = pending[ordinal - 1]
            ident = tuple(_key_ident(values[j]) for j in target_pos)
            created = ident not in first_seen
            first_seen.add(ident)
            out[numbers[pos]] = (model(**dict(zip(names, values, strict=True))), created)
            done.add(pos)
        missing = [p for p in pending if p not in done]
        if not missing:
            return
        found = statement_cursor(conn).execute(
            plan.select, [[batch[p][c] for p in missing] for c in plan.key]
        ).fetchall()
        for ordinal, *values in found:
            pos = missing[ordinal - 1]
            out[numbers[pos]] = (model(**dict(zip(names, values, strict=True))), False)
            done.add(pos)
        still = [p for p in missing if p not in done]
        if not still:
            return
        if plan.check is not None:
            clash = statement_cursor(conn).execute(
                plan.check, [[batch[p][c] for p in still] for c in plan.target]
            ).fetchall()
            if clash:
                pos = still[min(r[0] for r in clash) - 1]
                row = batch[pos]
                raise mismatch(
                    table,
                    plan.target,
                    row,
                    {c: row[c] for c in plan.key},
                    index=numbers[pos],
                    action="get_or_create_many",
                )
        pending = still  # their conflicting rows vanished before we could read them: insert again
    raise DbpError(
        f"get_or_create_many: gave up after {MAX_TRIES} attempts on model {table.name!r}: "
        "rows kept conflicting on insert and vanishing before they could be read",
        model=table.name,
    )


def _insert_call(
    model: Any, plan: _ManyPlan, adapters: list[Any], rows: list[Mapping[str, Any]]
) -> tuple[str, list[Any]]:
    if plan.insert is not None:
        arrays: list[Any] = []
        for c, adapter in zip(plan.cols, adapters, strict=True):
            column = [r.get(c) for r in rows]
            arrays.append(column if adapter is None else [adapter(v) for v in column])
        return plan.insert, arrays
    params: list[Any] = []
    for n, r in enumerate(rows, start=1):
        for c, adapter in zip(plan.cols, adapters, strict=True):
            value = r.get(c)
            params.append(value if adapter is None else adapter(value))
        params.append(n)
    return _values_insert(model, plan.cols, plan.key, len(rows)), params
