"""``bulk_update``: some columns of many stored rows, by key, in one call.

    db.query(Object).bulk_update([{"oid": "ZTF1", "ndet": 5}, {"oid": "ZTF2", "meanra": 10.5}])

Each row names its key (the primary key by default, or ``key=[...]``) and the columns to change; a column a
row leaves out is never touched for that row (never set to NULL), whatever the other rows name. Rows whose key
is not stored are never inserted: they are counted and reported (``missing="ignore"``: a warning-free count in
:attr:`BulkUpdateResult.missing`, logged), or with ``missing="error"`` the call raises naming them and writes
nothing.

How: the rows are checked and COPYed (binary, through the same row encoder and checks as ``bulk_insert``) into
a temporary table holding the key, the named columns, one "was given" flag per column that not every row
names, the row number and the occurrence number of its key; then the stored rows are locked in key order
(``SELECT ... ORDER BY key FOR UPDATE``: concurrent calls on overlapping keys wait for each other instead of
deadlocking; on Citus, which has no multi-shard FOR UPDATE, a deadlock aborts one call, which runs again) and
one ``UPDATE ... FROM`` sets each given column. A key given several times is applied in input order (one
UPDATE per occurrence round: later rows win, column by column). All or nothing: inside the session's
transaction as a savepoint, else in a transaction of its own that commits on return.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg import errors as pge
from psycopg import sql

from .._types.rows import as_mapping, check_columns
from .._types.schema import ColumnDef, Table
from ..citus.relay import on_citus
from ..errors import DbpError, MissingValueError, QueryError, wrap_db_error
from .bulk import _server_error
from .checker import _RowChecker
from .stream import _Feed, _write_rows

if TYPE_CHECKING:
    from .._session.session import Session

__all__ = ["bulk_update", "Missing", "UpdateCount"]

log = logging.getLogger("dbplugins.bulk_update")

Missing = Literal["ignore", "error"]

_STAGE = "_dbp_update_stage"
_ROW = "_dbp_row"
_ROUND = "_dbp_round"
_MAX_REPORTED = 10
# Runs of a call whose transaction the server aborted to break a deadlock (Citus only: elsewhere keys are
# locked in order first).
_DEADLOCK_TRIES = 10

# (id(table), stage columns) -> (table, stage table, row checker): bulk's encoder compiled once per shape.
_CHECKERS: dict[tuple[int, tuple[str, ...], tuple[str, ...]], tuple[Table, Table, Any]] = {}


class UpdateCount(int):
    """The number of rows updated (an ``int``), with ``missing``: the input row numbers whose key is not
    stored."""

    missing: list[int]

    def __new__(cls, value: int, missing: list[int]) -> UpdateCount:
        obj = super().__new__(cls, value)
        obj.missing = missing
        return obj


def _flag(table: Table, column: str) -> str:
    # By position, not f"_dbp_set_{column}": a 63-character column name would be truncated into another name.
    return f"_dbp_set_{list(table.columns).index(column)}"


def _checker(table: Table, key: tuple[str, ...], columns: tuple[str, ...], flagged: tuple[str, ...]) -> Any:
    """bulk's row checker/encoder for the stage table's columns (key, values, flags, row number, round)."""
    ident = (id(table), key + columns, flagged)
    entry = _CHECKERS.get(ident)
    if entry is None or entry[0] is not table:
        cols: dict[str, ColumnDef] = {}
        for name in key:
            c = table.columns[name]
            cols[name] = ColumnDef(name, c.sql_type, False, python_type=c.python_type)
        for name in columns:
            c = table.columns[name]
            # NULL allowed in the stage: a row that does not name the column sends NULL with its flag false;
            # a None given for a NOT NULL column is refused before, naming the row.
            cols[name] = ColumnDef(name, c.sql_type, True, python_type=c.python_type)
        for name in flagged:
            cols[_flag(table, name)] = ColumnDef(_flag(table, name), "boolean", False, python_type=bool)
        cols[_ROW] = ColumnDef(_ROW, "bigint", False, python_type=int)
        cols[_ROUND] = ColumnDef(_ROUND, "integer", False, python_type=int)
        stage = Table(name=table.name, columns=cols, primary_key=())
        if len(_CHECKERS) > 256:
            _CHECKERS.clear()
        entry = _CHECKERS[ident] = (table, stage, _RowChecker(stage))
    return entry[2]


def _rows_of(
    table: Table, rows: Iterable[Any], key: tuple[str, ...]
) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The rows as mappings, checked (known columns, key present and not None, no None for NOT NULL columns),
    and the union of the columns they update, in table order."""
    out: list[Mapping[str, Any]] = []
    named: set[str] = set()
    for i, row in enumerate(rows):
        if isinstance(row, Mapping):
            check_columns(table, row.keys(), what="key", row=i)
            mapping: Mapping[str, Any] = row
        else:
            mapping = as_mapping(table, row, index=i)
        for k in key:
            if mapping.get(k) is None:
                raise MissingValueError(
                    f"bulk_update: row {i} has no value for key column {k!r} of model {table.name!r}",
                    model=table.name,
                    column=k,
                    row=i,
                )
        for name, value in mapping.items():
            if name in key:
                continue
            if value is None and not table.columns[name].nullable:
                raise MissingValueError(
                    f"bulk_update: row {i} sets NOT NULL column {name!r} of model {table.name!r} to None",
                    model=table.name,
                    column=name,
                    row=i,
                )
            named.add(name)
        out.append(mapping)
    return out, [c for c in table.columns if c in named and c not in key]


def bulk_update(
    session: Session,
    table: Table,
    rows: Iterable[Any],
    *,
    key: Sequence[str] | None = None,
    missing: Missing = "ignore",
) -> UpdateCount:
    """Update the columns each row names, matching stored rows by ``key``; return the number of rows updated.

    ``rows`` are dicts (or model instances, which name every column). ``key`` defaults to the primary key.
    Rows whose key is not stored are not inserted: ``missing="ignore"`` skips them (logged at INFO with their
    row numbers, and listed in the result's ``missing``), ``missing="error"`` raises
    :class:`dbplugins.NoResultFound` naming them, and nothing is written.

    Raises ``UnknownColumnError`` (a key that is not a column), ``MissingValueError`` (no key value, or None
    for a NOT NULL column), ``DataError`` (a value of the wrong type, out of range...), each naming the column
    and the row; nothing is written when it raises.
    """
    from ..errors import NoResultFound

    if missing not in ("ignore", "error"):
        raise DbpError(f'missing must be "ignore" or "error", got {missing!r}', model=table.name)
    if isinstance(rows, (Mapping, str, bytes)) or dataclasses.is_dataclass(rows):
        raise DbpError(
            f"bulk_update takes an iterable of rows, got a single {type(rows).__name__}; wrap it in a list",
            model=table.name,
        )
    if key is None:
        keycols = tuple(table.primary_key)
        if not keycols:
            raise QueryError(
                f"bulk_update needs key=[...]: model {table.name!r} has no primary key", model=table.name
            )
    else:
        if isinstance(key, str):
            key = [key]
        keycols = tuple(key)
        if not keycols:
            raise QueryError("bulk_update: key=[] names no column", model=table.name)
        check_columns(table, keycols, what="key column")
    mappings, columns = _rows_of(table, rows, keycols)
    if not mappings or not columns:
        return UpdateCount(0, [])
    counts = dict.fromkeys(columns, 0)
    for m in mappings:
        for c in columns:
            if c in m:
                counts[c] += 1
    flagged = tuple(c for c in columns if counts[c] < len(mappings))
    check = _checker(table, keycols, tuple(columns), flagged)

    # Stage rows: every stage column present (fast path of bulk's encoder), flags and occurrence rounds.
    seen: dict[tuple[Any, ...], int] = {}
    staged: list[dict[str, Any]] = []
    rounds = 1
    for i, m in enumerate(mappings):
        k = tuple(m[c] for c in keycols)
        try:
            r = seen[k] = seen.get(k, 0) + 1
        except TypeError:  # an unhashable key value: its type is wrong, the encoder names it below
            r = 1
        rounds = max(rounds, r)
        out = {c: m[c] for c in keycols}
        for c in columns:
            out[c] = m.get(c)
        for c in flagged:
            out[_flag(table, c)] = c in m
        out[_ROW] = i
        out[_ROUND] = r
        staged.append(out)
    del seen

    t = sql.Identifier(table.name)
    s = sql.Identifier(_STAGE)
    stage_cols = sql.SQL(", ").join(map(sql.Identifier, check.names))
    key_list = sql.SQL(", ").join(map(sql.Identifier, keycols))
    # The stage's column types are the table's own (typmods included); flags, row number and round come after.
    create = sql.SQL(
        "CREATE TEMPORARY TABLE {s} ON COMMIT DROP AS SELECT {cols}{flags}, 0::bigint AS {row}, 0 AS {round} "
        "FROM {t} WITH NO DATA"
    ).format(
        s=s,
        cols=sql.SQL(", ").join(map(sql.Identifier, (*keycols, *columns))),
        flags=sql.SQL("").join(
            sql.SQL(", false AS {}").format(sql.Identifier(_flag(table, c))) for c in flagged
        ),
        row=sql.Identifier(_ROW),
        round=sql.Identifier(_ROUND),
        t=t,
    )
    copy_stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(s, stage_cols)
    match = sql.SQL(" AND ").join(
        sql.SQL("{t}.{c} = {s}.{c}").format(t=t, s=s, c=sql.Identifier(c)) for c in keycols
    )
    # The stored keys are read first (a CTE) rather than by a correlated NOT EXISTS against the table: Citus
    # refuses a direct join of a distributed table with a local (temporary) one, but plans the CTE's IN (...)
    # over the stage as an intermediate result. One statement for both servers.
    found = sql.Identifier("_dbp_found")
    find_missing = sql.SQL(
        "WITH {f} AS MATERIALIZED (SELECT {keys} FROM {t} WHERE ({keys}) IN (SELECT {keys} FROM {s})) "
        "SELECT {row}, {keys} FROM {s} WHERE NOT EXISTS (SELECT 1 FROM {f} WHERE {fmatch}) ORDER BY {row}"
    ).format(
        f=found,
        keys=key_list,
        t=t,
        s=s,
        row=sql.Identifier(_ROW),
        fmatch=sql.SQL(" AND ").join(
            sql.SQL("{f}.{c} = {s}.{c}").format(f=found, s=s, c=sql.Identifier(c)) for c in keycols
        ),
    )
    lock = sql.SQL(
        "SELECT 1 FROM {t} WHERE EXISTS (SELECT 1 FROM {s} WHERE {match}) ORDER BY {order} FOR UPDATE OF {t}"
    ).format(
        t=t,
        s=s,
        match=match,
        order=sql.SQL(", ").join(sql.SQL("{}.{}").format(t, sql.Identifier(c)) for c in keycols),
    )
    sets = sql.SQL(", ").join(
        sql.SQL("{c} = CASE WHEN {s}.{f} THEN {s}.{c} ELSE {t}.{c} END").format(
            c=sql.Identifier(c), s=s, t=t, f=sql.Identifier(_flag(table, c))
        )
        if c in flagged
        else sql.SQL("{c} = {s}.{c}").format(c=sql.Identifier(c), s=s)
        for c in columns
    )
    update = sql.SQL("UPDATE {t} SET {sets} FROM {s} WHERE {match} AND {s}.{round} = %s").format(
        t=t, sets=sets, s=s, match=match, round=sql.Identifier(_ROUND)
    )
    drop = sql.SQL("DROP TABLE {}").format(s)

    joined = session.in_transaction
    for attempt in range(_DEADLOCK_TRIES):
        it = iter(staged)
        feed = _Feed(next(it), it)
        updated = 0
        copying = False
        try:
            with session.atomic() as conn, conn.cursor() as cur:
                cur.execute(create)
                copying = True
                with cur.copy(copy_stmt) as copy:
                    copy.set_types(check.pg_types)
                    _write_rows(copy, check, feed, None)
                copying = False
                absent = cur.execute(find_missing).fetchall()
                if absent and missing == "error":
                    shown = ", ".join(
                        f"row {r[0]} ({', '.join(f'{c}={v!r}' for c, v in zip(keycols, r[1:], strict=True))})"
                        for r in absent[:_MAX_REPORTED]
                    )
                    more = f" and {len(absent) - _MAX_REPORTED} more" if len(absent) > _MAX_REPORTED else ""
                    raise NoResultFound(
                        f"bulk_update: {len(absent)} row(s) of model {table.name!r} have no stored key: "
                        f"{shown}{more}",
                        model=table.name,
                        row=absent[0][0],
                    )
                if not on_citus(conn):
                    # Citus runs no multi-shard SELECT ... FOR UPDATE, and updates the shards in parallel
                    # anyway: there a deadlock between overlapping calls is broken by the server and the call
                    # retried.
                    cur.execute(lock)
                for r in range(1, rounds + 1):
                    cur.execute(update, (r,))
                    if r == 1:
                        updated = max(cur.rowcount, 0)
                cur.execute(drop)
            break
        except pge.DeadlockDetected as exc:
            # Our own transaction is gone with every lock it held: run the call again (the input is in
            # `staged`). In the caller's transaction only the caller can decide.
            if joined or attempt == _DEADLOCK_TRIES - 1:
                raise wrap_db_error(exc, model=table.name, action="bulk_update") from exc
            log.info("bulk_update: deadlock on model %r, running the call again", table.name)
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # noqa: S311 - jitter, not crypto
        except psycopg.Error as exc:
            # the server refused a value of the COPY: bulk's reading of its context names row, column
            if copying:
                raise _server_error(exc, check, feed) from exc
            raise wrap_db_error(exc, model=table.name, action="bulk_update") from exc
    if absent:
        log.info(
            "bulk_update of %r: %d row(s) with no stored key skipped (rows %s)",
            table.name,
            len(absent),
            [r[0] for r in absent[:_MAX_REPORTED]],
        )
    return UpdateCount(updated, [r[0] for r in absent])
