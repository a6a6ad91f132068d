"""The COPY engine behind ``Query.bulk_insert``: binary COPY, typed from the model, streamed, all-or-nothing.

``bulk_insert(session, table, rows)`` writes any iterable of dicts or model instances into ``table`` with
``COPY ... FROM STDIN (FORMAT BINARY)``, the wire types taken from the dataclass schema (``Copy.set_types``).
Rows are checked in Python while they stream (unknown keys, missing NOT NULL values, wrong value types,
integers out of range), so bad input is reported with its column and row index and nothing is written. What
only the server can judge (a foreign key, a NUL byte in text) comes back as a ``DbpError`` naming the
constraint, or the column and row.

Conflict modes:

``"ignore"`` (default)
    Rows whose primary key exists are skipped, so a re-delivered batch lands exactly once. The input is first
    COPYed straight into the table in one COPY (the fast path: no duplicates is the common case), and the
    encoded rows are recorded as they go (in memory up to 16 MiB, then in a temporary file). If the server
    reports a unique violation (looked for every ``_PEEK_ROWS`` rows while streaming, so that a re-delivered
    batch is not sent in full first), the call starts over in a new atomic scope: the recorded rows are
    replayed into a temporary staging table and moved over with ``INSERT ... SELECT ... ORDER BY pk, ctid ON
    CONFLICT (pk) DO NOTHING`` (``ctid``, the staging order, is the input order: of rows sharing a key the
    first one given is the one kept, on every path), and the rest of the input follows the same way,
    ``chunk_size`` rows per flush. The same happens when the COPY has waited ``_FAST_PATH_LOCK_WAIT`` for a
    key that a concurrent caller holds uncommitted: staging takes keys in order, so racing callers wait for
    each other instead of deadlocking.
``"error"``
    One plain COPY: a duplicate raises ``ConstraintError`` naming the constraint.
``"update"``
    Upsert through the staging table: new keys are inserted (the columns the rows leave out get their defaults
    or NULL); an existing row gets only the columns each row *names* (a dict's keys; a dataclass instance
    names them all), applied in input order, so a column the input does not name is never touched and the last
    row naming a column wins (rows equal to what is stored are left alone). The whole input is staged first
    (each run of rows naming the same columns tagged as one segment), then moved over by one ``INSERT ...
    SELECT ... ORDER BY pk ... ON CONFLICT DO UPDATE`` per segment, all in one savepoint: with one segment
    (the usual case) callers upserting the same keys in any order take the row locks in key order and queue
    instead of deadlocking; with several, a deadlock rolls the savepoint back (releasing every row lock of the
    call) and the statements run again.

The call runs inside ``session.atomic()``: a savepoint of the caller's ``db.transaction()`` if one is open,
its own transaction (committed on return) otherwise. Client memory stays bounded whatever the input size: one
staging chunk, or the 16 MiB in-memory part of the fast path's record (``"update"`` stages the whole input in
a server-side temporary table, which spills to disk).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, get_args

import psycopg
from psycopg import errors as pge

from .._types.rows import UNKNOWN_MODES
from .._types.schema import Table
from ..citus.relay import relayed_violation
from ..errors import (
    ConstraintError,
    DbpError,
    wrap_db_error,
)
from .checker import _checker, _RowChecker
from .stage import _Loader, _Restart
from .statements import _statements
from .stream import _END, _Feed

if TYPE_CHECKING:

    from .._session.session import Session

__all__ = ["bulk_insert", "OnConflict", "DEFAULT_CHUNK_SIZE"]

OnConflict = Literal["ignore", "error", "update"]
_MODES: tuple[str, ...] = get_args(OnConflict)

# Rows per staging flush in "ignore" mode once a key turned out to exist ("update" mode stages all; each flush
# is a TRUNCATE, a COPY into the staging table and an INSERT ... SELECT in a savepoint). The fast path of
# "ignore" mode is not chunked: it sends the whole input as one COPY straight into the table, like "error"
# mode, and records it (_Spool) for the replay. It used to send chunks of this size, each after the first in a
# savepoint; measured with bench/bulk_vs_copy.py (100k rows of the synthetic night, 7-9 rounds alternating
# with a hand-written binary COPY of the same rows, median of the per-round ratios, five runs on the shared
# 2-core machine):
#     chunks of 20,000:        0.80x 0.87x 0.87x 0.88x 0.92x
#     one COPY ("error" mode): 0.91x 0.92x 0.99x 1.02x 1.04x
#     one COPY, spooled: 0.93x (night rows), 1.03x (bench/bulk_vs_copy.py's own rows; "error" 0.92x, 1.00x)
# Each chunk end drains the pipeline (the client waits for the server to finish the COPY, then a round trip
# for the savepoint and one for the next COPY), and the client's CPU competes with the server's on two cores.
# 20,000 rows keep a flush's staging table small and a 1M-row call at 50 savepoints, under PostgreSQL's 64
# cached subtransactions per backend (more make every snapshot slower).
DEFAULT_CHUNK_SIZE = 20_000


# -- errors from the server ---------------------------------------------------------------------------------

# PostgreSQL's COPY error context: "COPY detection, line 3, column oid" (binary COPY counts rows as lines).
_COPY_CONTEXT = re.compile(r"COPY .*?, line (\d+)(?:, column ([^\n:]+))?")


def _server_error(exc: psycopg.Error, check: _RowChecker, feed: _Feed) -> DbpError:
    """A psycopg error as a DbpError naming the constraint, and the row and column when the COPY reported
    them."""
    model = check.table.name
    diag = getattr(exc, "diag", None)
    context = (diag.context if diag is not None else None) or ""
    match = _COPY_CONTEXT.search(context)
    row = feed.copy_start + int(match.group(1)) - 1 if match else None
    column = match.group(2).strip() if match and match.group(2) else None
    if column is not None and column not in check.colset:
        column = None
    if column is not None and row is not None and isinstance(exc, pge.CharacterNotInRepertoire):
        if "0x00" in str(exc):
            return check._nul(check.names.index(column), row)
    err = wrap_db_error(exc, model=model, row=row, column=column, action="bulk_insert")
    relayed = relayed_violation(exc, check.table)
    # a constraint as Citus names it on a worker: the logical table's, as a ConstraintError
    if relayed is not None:
        text = (
            err.message if err.constraint else f"{err.message.removesuffix(']')}, constraint {relayed[1]!r}]"
        )
        err = ConstraintError(
            text, model=model, column=err.column, row=row, sqlstate=err.sqlstate, constraint=relayed[1]
        )
    return err


# -- the entry point -------------------------------------------------------------------------------------


def bulk_insert(
    session: Session,
    table: Table,
    rows: Iterable[Any],
    *,
    on_conflict: OnConflict = "ignore",
    chunk_size: int | None = None,
    unknown: str = "error",
    dropped: set[str] | None = None,
    parallel: int = 1,
) -> int:
    """COPY ``rows`` (dicts or instances of the table's model, any iterable) into ``table``; return the count.

    All or nothing: inside the session's open transaction as a savepoint, else in a transaction of its own
    that commits on return. An empty iterable is a no-op returning 0 that touches no connection.

    The count is the rows inserted: duplicates skipped by ``"ignore"`` are not counted; for ``"update"`` it is
    the rows inserted plus the rows whose stored values changed (a key given twice in one call counts once
    per segment, a run of rows naming the same columns, it appears in).

    ``"update"`` touches only the columns the rows name: each row sets its own keys on an existing row, a new
    row gets defaults or NULL for the rest; of several rows with one key, the last to name a column wins.

    A column whose default only the server computes (``now()``, ``nextval(...)``, ``serial``, identity) and
    that a row leaves out (a dict without the key; None in a model instance's field) is left out of the COPY,
    so the server fills it, once per row inserted; rows leaving out different such columns go in successive
    COPYs of the same call.

    ``chunk_size`` (default :data:`DEFAULT_CHUNK_SIZE`) is the number of rows per staging flush in
    ``"ignore"`` mode after a key turned out to exist (``"update"`` stages the whole input, then applies it).
    Without duplicates, ``"ignore"`` and ``"error"`` send everything in one COPY. Memory use stays bounded
    (see the module documentation); the ``"ignore"`` fast path keeps a copy of what it sent, beyond 16 MiB in
    a temporary file (about 0.3 kB per 30-column row), to replay it if a duplicate shows up.

    Raises ``UnknownColumnError`` (a key that is not a column), ``MissingValueError`` (no value for a NOT NULL
    column), ``DataError`` (a value of the wrong type or out of range, a NUL byte in text), each naming the
    column and the row index (values follow the column-type rules of :mod:`dbplugins._types.column`:
    ``1001.0`` goes into an integer column, ``1.5`` is refused; NaN is NULL outside float columns);
    ``unknown="ignore"`` drops row keys that are not columns instead of raising, and adds their names to
    ``dropped`` when given (the caller warns with them); ``ConstraintError`` naming the constraint (a foreign
    key; a duplicate key with ``on_conflict="error"``); ``ConnectionError`` if the server goes away. Nothing
    is written when it raises.
    """
    if on_conflict not in _MODES:
        raise DbpError(
            f"on_conflict must be one of {', '.join(map(repr, _MODES))}, got {on_conflict!r}",
            model=table.name,
        )
    if chunk_size is None:
        chunk = DEFAULT_CHUNK_SIZE
    elif isinstance(chunk_size, int) and not isinstance(chunk_size, bool) and chunk_size > 0:
        chunk = chunk_size
    else:
        raise DbpError(f"chunk_size must be a positive integer, got {chunk_size!r}", model=table.name)
    if isinstance(rows, (Mapping, str, bytes)) or dataclasses.is_dataclass(rows):
        raise DbpError(
            f"bulk_insert takes an iterable of rows, got a single {type(rows).__name__}; wrap it in a list",
            model=table.name,
        )
    if unknown not in UNKNOWN_MODES:
        raise DbpError(f'unknown must be "error" or "ignore", got {unknown!r}', model=table.name)
    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
        raise DbpError(f"parallel must be an integer >= 1 (the number of COPY streams), got {parallel!r}",
                       model=table.name)
    check = _checker(table).for_call(unknown, dropped)
    stmts = _statements(table, check)
    if on_conflict == "update" and not stmts.has_key:
        raise DbpError(
            f'on_conflict="update" needs a primary key; model {table.name!r} has none', model=table.name
        )

    rest = iter(rows)
    head = next(rest, _END)
    if head is _END:
        return 0
    # The first row is checked before any connection is borrowed, so input that is wrong from the start
    # (an unknown or hostile key, a missing column, a wrong type) runs no SQL at all. Later rows are checked
    # as they stream, inside the transaction that their error rolls back.
    first = check.layout(check.layout_of(head))
    error = first.diagnose(first.values_slow(head, 0), 0)
    if error is not None:
        raise error
    if parallel > 1:
        from .parallel import parallel_insert

        return parallel_insert(
            session, check, stmts, head, rest, mode=on_conflict, chunk=chunk, parallel=parallel
        )
    feed = _Feed(head, rest)
    joined = session.in_transaction  # the call becomes a savepoint of the caller's transaction
    # While the COPY streams, the connection is busy: a statement on the session from the rows' iterable
    # raises.
    busy = f"bulk_insert into {table.name!r}"
    try:
        try:
            with session.atomic() as conn, session.streaming(busy):
                loader = _Loader(conn, check, stmts, feed)
                if on_conflict == "error":
                    return loader.plain()
                if on_conflict == "update":
                    return loader.upsert()
                return loader.optimistic(in_callers_transaction=joined, chunk=chunk)
        except _Restart as restart:
            with session.atomic() as conn, session.streaming(busy):
                loader = _Loader(conn, check, stmts, feed)
                return loader.staged(chunk, "ignore", restart.spool, restart.rows, restart.layout)
    except psycopg.Error as exc:
        raise _server_error(exc, check, feed) from exc
