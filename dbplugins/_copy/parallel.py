"""``bulk_insert(..., parallel=N)``: one input dealt to N COPY streams on N pooled connections.

One COPY stream is server-bound: one backend parses and inserts the rows on one core while the client idles.
Here the caller's thread reads the input once and deals the rows, in batches, to N streams by a hash of the
primary key (all rows of one key go to one stream, in input order, so "first occurrence wins" for ``"ignore"``
and "last occurrence wins" for ``"update"`` keep holding; of a key whose part is a foreign key, that part: see
``_deal_columns``); a table without a primary key gets its batches in turn. Each stream is a thread that runs
the COPY engine of :mod:`dbplugins._copy` (``_Loader``: the same row checks, typing, staging and conflict
handling as ``parallel=1``) on its own connection, in its own transaction. ``dbp load --jobs N``
(:mod:`dbplugins._load.loadjobs`) deals the records of a CSV file instead and shares the rest:
:func:`check_parallel`, :func:`run_streams` and the ending of :mod:`dbplugins._copy.parallel_end`.

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
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import psycopg

from ..citus.relay import on_citus
from ..errors import DbpError, wrap_db_error
from .checker import _RowChecker
from .parallel_call import _Call
from .parallel_end import _Coordinator
from .parallel_stream import _Stream, _StreamBase
from .statements import _Statements

if TYPE_CHECKING:
    from .._session.session import Session

__all__ = ["parallel_insert", "check_parallel", "run_streams"]

log = logging.getLogger("dbplugins.bulk")

_MAX_STREAMS = 255  # a stream number is one byte of Call.dealt


# -- the entry point -----------------------------------------------------------------------------------------


def _probe(session: Session, table: str, mode: str, parallel: int, cli: bool = False) -> bool:
    """Whether the streams can use prepared transactions; refuses what cannot run. Borrows one connection.

    ``cli``: the messages name ``dbp load``'s options (``--jobs``, ``--on-conflict``) instead of
    ``bulk_insert``'s arguments.
    """
    with session.connection() as conn:
        try:
            row = conn.execute("SELECT current_setting('max_prepared_transactions')::integer").fetchone()
            citus = on_citus(conn)
        except psycopg.Error as exc:
            raise wrap_db_error(exc, model=table, action="bulk_insert") from exc
    call = f"dbp load --jobs {parallel}" if cli else f"bulk_insert(parallel={parallel})"
    one = "--jobs 1" if cli else "parallel=1"
    if citus:
        raise DbpError(
            f"{call} is not supported on a Citus cluster, which already spreads one COPY over its workers' "
            f"shards: use {one}",
            model=table,
        )
    allowed = int(row[0]) if row else 0
    if allowed >= parallel:
        return True
    if allowed > 0:
        fewer = f"--jobs <= {allowed}" if cli else f"parallel <= {allowed}"
        raise DbpError(
            f"{call} prepares one transaction per stream, and the server allows {allowed} "
            f"(max_prepared_transactions): use {fewer}, or raise the setting",
            model=table,
        )
    if mode == "error":
        if cli:
            call, others, again = f"{call} --on-conflict error", "--on-conflict ignore or update", "load"
        else:
            call = f'bulk_insert(parallel={parallel}, on_conflict="error")'
            others, again = 'on_conflict="ignore" or "update"', "call"
        raise DbpError(
            f"{call} needs prepared transactions to stay all-or-nothing (its streams commit on separate "
            "connections, and a duplicate found by one stream after another committed could not be "
            "undone), and this server has max_prepared_transactions = 0: set max_prepared_transactions >= "
            f"the number of streams (needs a restart), use {others} (a failed {again} can then be run "
            f"again and lands each row once), or use {one}",
            model=table,
        )
    return False


def check_parallel(session: Session, table: str, mode: str, parallel: int, *, cli: bool = False) -> bool:
    """Refuse what a call of ``parallel`` streams cannot do here (an open transaction, too small a pool, a
    Citus cluster, ``"error"`` mode without prepared transactions); whether the streams use prepared
    transactions."""
    call = f"dbp load --jobs {parallel}" if cli else f"bulk_insert(parallel={parallel})"
    one = "--jobs 1" if cli else "parallel=1"
    if session.in_transaction:
        raise DbpError(
            f"{call} cannot run inside an open transaction (a 'with db.transaction()' block, or uncommitted "
            "work of the session): its streams write on connections of their own, which cannot join it; use "
            f"{one} to make the insert part of the transaction, or commit first",
            model=table,
        )
    pool_size = session._pool.max_size
    if parallel > _MAX_STREAMS:
        raise DbpError(f"{call}: more than {_MAX_STREAMS} streams", model=table)
    if parallel > pool_size:
        raise DbpError(
            f"{call} needs {parallel} connections at once and the pool holds at most {pool_size} (max_size): "
            f"use fewer streams, or connect with max_size >= {parallel}",
            model=table,
        )
    return _probe(session, table, mode, parallel, cli)


def run_streams(
    session: Session,
    call: _Coordinator,
    new_stream: Callable[[psycopg.Connection[Any], int], _StreamBase],
    deal: Callable[[], None],
) -> int:
    """Run ``call``: a stream per pooled connection (``new_stream(conn, number)``), ``deal()`` in the
    caller's thread handing them the input, then the commit of every stream or the roll back of all (see
    the module documentation); the rows written."""
    try:
        for k in range(call.parallel):
            call.streams.append(new_stream(session._acquire(), k))
        for stream in call.streams:
            stream.thread.start()
        try:
            deal()
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
        error = call.final_error(outcome)
        if error is call.error:
            raise error
        raise error from call.error
    finally:
        call.abort.set()  # a stream still waiting on its queue stops
        for stream in call.streams:
            if stream.thread.is_alive():  # only after a second interrupt, or a stream that ignored its cancel
                stream.stuck = True
                log.warning(
                    "%s: COPY stream %d still running; its connection is abandoned",
                    call.label,
                    stream.number + 1,
                )
            stream.release(session)


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
    twophase = check_parallel(session, check.table.name, mode, parallel)
    call = _Call(check, stmts, mode, chunk, twophase, parallel)
    return run_streams(
        session, call, lambda conn, k: _Stream(call, k, conn), lambda: call.deal(head, rest)
    )
