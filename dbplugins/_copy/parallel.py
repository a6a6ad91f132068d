"""``bulk_insert(..., parallel=N)``: one input dealt to N COPY streams on N pooled connections.

One COPY stream is server-bound: one backend parses and inserts the rows on one core while the client idles.
Here the caller's thread reads the input once and deals the rows, in batches, to N streams by a hash of the
primary key (all rows of one key go to one stream, in input order, so "first occurrence wins" for ``"ignore"``
and "last occurrence wins" for ``"update"`` keep holding; of a key whose part is a foreign key, that part: see
``_deal_columns``); a table without a primary key gets its batches in turn. Each stream is a thread that runs
the COPY engine of :mod:`dbplugins._copy` (``_Loader``: the same row checks, typing, staging and conflict
handling as ``parallel=1``) on its own connection, in its own transaction.

Threads, not processes: the rows are Python objects in the caller's process, and handing them to another
process costs a pickle per row, about what checking and encoding it costs; psycopg's COPY writes run in C and
release the GIL while the server reads, which is where a stream waits. The client work stays on one core at a
time; the server's work is what spreads over N backends.

How the call ends:

- The server allows prepared transactions (``max_prepared_transactions >= N``): every stream ends with
  ``PREPARE TRANSACTION``, then all are committed (``COMMIT PREPARED``), or all rolled back (``ROLLBACK
  PREPARED``) on any failure: all-or-nothing, as ``parallel=1``. The staging tables of ``"ignore"`` (after a
  duplicate) and ``"update"`` are then unlogged tables of the call, dropped before the PREPARE (a transaction
  that touched a temporary table cannot be prepared).
- It does not: ``on_conflict="error"`` is refused (the call could not be undone once a stream committed), and
  ``"ignore"`` / ``"update"`` run with plain transactions. The streams commit one after the other only once
  all of them have done their work, so a failure while they work commits nothing; a failure between their
  COMMITs leaves the committed streams' rows in place, and the error says so: running the same call again
  completes it (both modes are idempotent: a row lands exactly once).

Bounded: each stream's queue holds at most ``_QUEUE_BATCHES`` batches of ``_BATCH`` rows, every wait on a
queue polls a shared abort flag, the stream transactions wait at most ``_STREAM_LOCK_WAIT`` for a lock (two
streams can only wait for each other through the client, which no server deadlock detector sees), and a failed
stream's siblings have their statements cancelled. The one per-row cost that grows with the input is an 8-byte
index per row (a stream's position -> the row's index in the caller's input, for error messages).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg

from ..citus.relay import on_citus
from ..errors import DbpError, wrap_db_error
from .checker import _RowChecker
from .parallel_call import _Call
from .parallel_stream import _Stream
from .statements import _Statements

if TYPE_CHECKING:
    from .._session.session import Session

__all__ = ["parallel_insert"]

log = logging.getLogger("dbplugins.bulk")

_MAX_STREAMS = 255  # a stream number is one byte of Call.dealt


# -- errors --------------------------------------------------------------------------------------------------

_ROW = re.compile(r"\brow (\d+)\]")


def _relocated(err: DbpError, stream: _Stream, parallel: int, outcome: str) -> DbpError:
    """``err`` of a stream, its row index turned into the index in the caller's input, its message
    completed."""
    row = err.row
    message = err.message
    found_row = stream.call.input_index(stream.number, row) if row is not None and row >= 0 else None
    if row is not None and found_row is not None:
        row = found_row
        found = list(_ROW.finditer(message))
        if found and int(found[-1].group(1)) == err.row:
            last = found[-1]
            message = message[: last.start(1)] + str(row) + message[last.end(1):]
    message += f" (bulk_insert parallel={parallel}, stream {stream.number + 1} failed; {outcome})"
    return type(err)(
        message, model=err.model, column=err.column, row=row, sqlstate=err.sqlstate, constraint=err.constraint
    )


# -- the entry point -----------------------------------------------------------------------------------------


def _probe(session: Session, table: str, mode: str, parallel: int) -> bool:
    """Whether the streams can use prepared transactions; refuses what cannot run. Borrows one connection."""
    with session.connection() as conn:
        try:
            row = conn.execute("SELECT current_setting('max_prepared_transactions')::integer").fetchone()
            citus = on_citus(conn)
        except psycopg.Error as exc:
            raise wrap_db_error(exc, model=table, action="bulk_insert") from exc
    if citus:
        raise DbpError(
            f"bulk_insert(parallel={parallel}) is not supported on a Citus cluster, which already spreads "
            "one COPY over its workers' shards: use parallel=1",
            model=table,
        )
    allowed = int(row[0]) if row else 0
    if allowed >= parallel:
        return True
    if allowed > 0:
        raise DbpError(
            f"bulk_insert(parallel={parallel}) prepares one transaction per stream, and the server allows "
            f"{allowed} (max_prepared_transactions): use parallel <= {allowed}, or raise the setting",
            model=table,
        )
    if mode == "error":
        raise DbpError(
            f'bulk_insert(parallel={parallel}, on_conflict="error") needs prepared transactions to stay '
            'all-or-nothing (its streams commit on separate connections, and a duplicate found by one '
            'stream after another committed could not be undone), and this server has '
            'max_prepared_transactions = 0: set max_prepared_transactions >= the number of streams (needs '
            'a restart), use on_conflict="ignore" or "update" (a failed call can then be run again and '
            'lands each row once), or use parallel=1',
            model=table,
        )
    return False


def parallel_insert(
    session: Session,
    check: _RowChecker,
    stmts: _Statements,
    head: Any,
    rest: Iterator[Any],
    *,
    mode: str,
    chunk: int,
    parallel: int,
) -> int:
    """``bulk_insert`` of ``head`` then ``rest`` over ``parallel`` COPY streams (see the module
    documentation).

    ``head`` was checked by the caller (:func:`dbplugins._copy.bulk.bulk_insert`), which validated the
    arguments.
    """
    table = check.table.name
    if session.in_transaction:
        raise DbpError(
            f"bulk_insert(parallel={parallel}) cannot run inside an open transaction (a 'with "
            "db.transaction()' block, or uncommitted work of the session): its streams write on "
            "connections of their own, which cannot join it; use parallel=1 to make the insert part of the "
            "transaction, or commit first",
            model=table,
        )
    pool_size = session._pool.max_size
    if parallel > _MAX_STREAMS:
        raise DbpError(f"bulk_insert: parallel={parallel} is more than {_MAX_STREAMS} streams", model=table)
    if parallel > pool_size:
        raise DbpError(
            f"bulk_insert(parallel={parallel}) needs {parallel} connections at once and the pool holds at "
            f"most {pool_size} (max_size): use a smaller parallel, or connect with max_size >= {parallel}",
            model=table,
        )
    twophase = _probe(session, table, mode, parallel)
    call = _Call(check, stmts, mode, chunk, twophase, parallel)
    try:
        for k in range(parallel):
            call.streams.append(_Stream(call, k, session._acquire()))
        for stream in call.streams:
            stream.thread.start()
        try:
            call.deal(head, rest)
        except BaseException as exc:  # the caller's iterable raised, or a stream failed (_Aborted)
            call.failed(None, exc)
        try:
            call.wait()
        except BaseException as exc:  # interrupted (KeyboardInterrupt) while waiting: stop the streams, undo
            call.failed(None, exc)
            call.wait()
        if call.error is None:
            return call.commit(session)
        outcome = call.roll_back(session)
        error = _final_error(call, outcome)
        if error is call.error:
            raise error
        raise error from call.error
    finally:
        call.abort.set()  # a stream still waiting on its queue stops
        for stream in call.streams:
            if stream.thread.is_alive():  # only after a second interrupt, or a stream that ignored its cancel
                stream.stuck = True
                log.warning(
                    "bulk_insert: COPY stream %d still running; its connection is abandoned",
                    stream.number + 1,
                )
            stream.release(session)


def _final_error(call: _Call, outcome: str) -> BaseException:
    error = call.error
    assert error is not None
    stream = call.failed_stream
    if stream is None:  # the caller's own iterable raised: give it back as it was
        return error
    if isinstance(error, DbpError):
        return _relocated(error, stream, call.parallel, outcome)
    if isinstance(error, psycopg.Error):
        err = wrap_db_error(error, model=call.check.table.name, action="bulk_insert")
        return _relocated(err, stream, call.parallel, outcome)
    if isinstance(error, Exception):
        return DbpError(
            f"bulk_insert(parallel={call.parallel}): stream {stream.number + 1} failed: "
            f"{type(error).__name__}: {error} ({outcome})",
            model=call.check.table.name,
        )
    return error
