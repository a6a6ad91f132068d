"""``bulk_insert(..., parallel=N)``: one input dealt to N COPY streams on N pooled connections.

One COPY stream is server-bound: one backend parses and inserts the rows on one core while the client idles.
Here the caller's thread reads the input once and deals the rows, in batches, to N streams by a hash of the
primary key (all rows of one key go to one stream, in input order, so "first occurrence wins" for ``"ignore"``
and "last occurrence wins" for ``"update"`` keep holding; of a key whose part is a foreign key, that part: see
``_deal_columns``); a table without a primary key gets its batches in turn. Each stream is a thread that runs
the COPY engine of :mod:`dbplugins._copy` (``_Loader``: the same row checks, typing, staging and conflict
handling as ``parallel=1``) on its own connection, in its own transaction.

Threads, not processes: the rows are Python objects in the caller's process, and handing them to another process
costs a pickle per row, about what checking and encoding it costs; psycopg's COPY writes run in C and release
the GIL while the server reads, which is where a stream waits. The client work stays on one core at a time; the
server's work is what spreads over N backends.

How the call ends:

- The server allows prepared transactions (``max_prepared_transactions >= N``): every stream ends with
  ``PREPARE TRANSACTION``, then all are committed (``COMMIT PREPARED``), or all rolled back (``ROLLBACK
  PREPARED``) on any failure: all-or-nothing, as ``parallel=1``. The staging tables of ``"ignore"`` (after a
  duplicate) and ``"update"`` are then unlogged tables of the call, dropped before the PREPARE (a transaction
  that touched a temporary table cannot be prepared).
- It does not: ``on_conflict="error"`` is refused (the call could not be undone once a stream committed), and
  ``"ignore"`` / ``"update"`` run with plain transactions. The streams commit one after the other only once all
  of them have done their work, so a failure while they work commits nothing; a failure between their COMMITs
  leaves the committed streams' rows in place, and the error says so: running the same call again completes it
  (both modes are idempotent: a row lands exactly once).

Bounded: each stream's queue holds at most ``_QUEUE_BATCHES`` batches of ``_BATCH`` rows, every wait on a queue
polls a shared abort flag, the stream transactions wait at most ``_STREAM_LOCK_WAIT`` for a lock (two streams
can only wait for each other through the client, which no server deadlock detector sees), and a failed stream's
siblings have their statements cancelled. The one per-row cost that grows with the input is an 8-byte index per
row (a stream's position -> the row's index in the caller's input, for error messages).
"""

from __future__ import annotations

import contextlib
import copy as copymod
import itertools
import logging
import operator
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg import sql

from ..citus.relay import on_citus
from ..errors import ConnectionError, DbpError, wrap_db_error
from .bulk import _server_error
from .checker import _RowChecker
from .stage import _Loader, _Restart, _Statements
from .stream import _END, _Feed

if TYPE_CHECKING:
    from .._session.session import Session

__all__ = ["parallel_insert"]

log = logging.getLogger("dbplugins.bulk")

# Rows per batch handed to a stream, and batches a stream's queue holds: memory stays at about
# N * (_QUEUE_BATCHES + 1) * _BATCH rows whatever the input size.
_BATCH = 2048
_QUEUE_BATCHES = 4
# How often a wait on a queue or a thread looks at the abort flag (seconds).
_POLL = 0.05
# The longest a stream's transaction waits for a lock. Two streams of one call hold disjoint keys, but a unique
# constraint other than the key, or a concurrent caller waiting on one stream while holding what another waits
# for, makes them wait for each other through this client, which the server's deadlock detector cannot see.
_STREAM_LOCK_WAIT = "60s"
# After a failure: how long the other streams get to stop once their statements are cancelled (seconds).
_STOP_WAIT = 30.0
# Tries (each bounded by the pool's timeout) to reach the server to resolve the prepared transactions.
_RESOLVE_TRIES = 3

_MAX_STREAMS = 255  # a stream number is one byte of Call.dealt

_DONE: Any = object()


class _Aborted(Exception):
    """Another part of the call failed: this stream stops and rolls back."""


class _Stream:
    """One COPY stream: a thread, its connection, its queue of batches and its transaction."""

    def __init__(self, call: _Call, number: int, conn: psycopg.Connection[Any]) -> None:
        self.call = call
        self.number = number
        self.conn = conn
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_BATCHES)
        self.count = 0
        self.gid: str | None = None  # set once PREPARE TRANSACTION was sent (it may or may not have succeeded)
        self.prepared = False
        self.busy = False  # running a statement the coordinator may cancel
        self.stuck = False  # did not stop after a cancel: its connection is abandoned
        self.released = False  # its connection went back to the pool
        self.feed: _Feed | None = None
        # Its statements: bulk.py's, or with staging tables of its own under prepared transactions.
        self.stmts = call.stmts
        self.drop_staging: sql.Composed | None = None
        if call.twophase:
            self.stmts, self.drop_staging = _unlogged_staging(call.stmts, uuid.uuid4().hex[:16])
        self.thread = threading.Thread(target=self._run, name=f"dbp-copy-{number}", daemon=True)

    # -- the coordinator's side --------------------------------------------------------------------------

    def usable(self) -> bool:
        """Whether the coordinator may run a statement on this stream's connection now."""
        conn = self.conn
        return (
            not self.released
            and not self.stuck
            and not self.thread.is_alive()
            and not conn.closed
            and not conn.broken
            and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        )

    def release(self, session: Session) -> None:
        """Give the connection back to the pool (once; a stuck stream's is abandoned)."""
        if self.released or self.stuck:
            return
        self.released = True
        with contextlib.suppress(Exception):
            session._pool.putconn(self.conn)

    def put(self, item: Any) -> None:
        """Hand a batch (or ``_DONE``) to the stream; waits while its queue is full, until the call aborts."""
        while True:
            try:
                self.queue.put(item, timeout=_POLL)
                return
            except queue.Full:
                if self.call.abort.is_set():
                    raise _Aborted from None

    # -- the stream's thread -------------------------------------------------------------------------------

    def _rows(self) -> Iterator[Any]:
        abort = self.call.abort
        while True:
            try:
                item = self.queue.get(timeout=_POLL)
            except queue.Empty:
                if abort.is_set():
                    raise _Aborted from None
                continue
            if item is _DONE:
                return
            yield from item

    def _run(self) -> None:
        try:
            self.count = self._work()
        except BaseException as exc:  # noqa: BLE001 - handed to the coordinator, which raises it
            self.call.failed(self, exc)

    def _begin(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute("BEGIN")
        cur.execute(_LIMIT_LOCK_WAIT, (_STREAM_LOCK_WAIT, _STREAM_LOCK_WAIT))

    def _work(self) -> int:
        rows = self._rows()
        head = next(rows, _END)
        if head is _END:
            return 0  # no row was dealt to this stream: no transaction
        call = self.call
        feed = self.feed = _Feed(head, rows)
        conn = self.conn
        cur = conn.cursor()
        try:
            self.busy = True
            self._begin(cur)
            loader = _Loader(conn, call.check, self.stmts, feed)
            if call.mode == "error":
                count = loader.plain()
            elif call.mode == "update":
                count = loader.upsert()
            else:
                try:
                    count = loader.optimistic(in_callers_transaction=False)
                except _Restart as restart:  # a key exists: redo this stream's rows through staging
                    cur.execute("ROLLBACK")
                    self._begin(cur)
                    loader = _Loader(conn, call.check, self.stmts, feed)
                    count = loader.staged(call.chunk, "ignore", restart.spool, restart.rows)
            if self.drop_staging is not None:
                cur.execute(self.drop_staging)
                self.gid = f"{call.gid_prefix}-{self.number}"
                cur.execute(sql.SQL("PREPARE TRANSACTION {}").format(sql.Literal(self.gid)))
                self.prepared = True
            return count
        except psycopg.Error as exc:
            raise _server_error(exc, call.check, feed) from exc
        finally:
            self.busy = False


# Lower the stream transaction's lock_timeout to _STREAM_LOCK_WAIT, never raise it (the session's own setting wins
# when it is shorter).
_LIMIT_LOCK_WAIT = sql.SQL(
    "SELECT set_config('lock_timeout', CASE WHEN current_setting('lock_timeout')::interval = interval '0' "
    "OR current_setting('lock_timeout')::interval > %s::interval THEN %s "
    "ELSE current_setting('lock_timeout') END, true)"
)


class _Call:
    """One ``bulk_insert(..., parallel=N)`` call: the streams, the dealing, and how it ends."""

    def __init__(
        self, check: _RowChecker, stmts: _Statements, mode: str, chunk: int, twophase: bool, parallel: int
    ) -> None:
        self.check = check
        self.mode = mode
        self.chunk = chunk
        self.twophase = twophase
        self.parallel = parallel
        self.gid_prefix = f"dbp-copy-{uuid.uuid4().hex}"
        self.abort = threading.Event()
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.failed_stream: _Stream | None = None
        self.streams: list[_Stream] = []
        self.dealt = bytearray()  # the stream of each row of the input, in input order (see deal)
        self.stmts = stmts

    def failed(self, stream: _Stream | None, exc: BaseException) -> None:
        """Record the first real failure of the call (an _Aborted is the echo of another) and stop everything."""
        with self.lock:
            if self.error is None and not isinstance(exc, _Aborted):
                self.error = exc
                self.failed_stream = stream
        self.abort.set()

    # -- dealing -------------------------------------------------------------------------------------------

    def deal(self, head: Any, rest: Iterator[Any]) -> None:
        """Read the input once, in the caller's thread, and hand it to the streams in batches.

        ``self.dealt`` gets one byte per row, its stream: the k-th row a stream received is the k-th occurrence
        of its number there (see :meth:`input_index`), which costs less per row than keeping every index.
        """
        streams = self.streams
        n = len(streams)
        pending: list[list[Any]] = [[] for _ in range(n)]
        dealt = self.dealt
        abort = self.abort
        rows = itertools.chain((head,), rest)
        key = _key_function(self.check)
        if key is None:  # no key: whole batches in turn
            turn = 0
            while batch := list(itertools.islice(rows, _BATCH)):
                if abort.is_set():
                    raise _Aborted
                dealt.extend(bytes((turn,)) * len(batch))
                streams[turn].put(batch)
                turn = (turn + 1) % n
        else:
            items = operator.itemgetter(*_deal_columns(self.check.table))
            mark = dealt.append
            for row in rows:
                try:  # the common case inline (a dict with a hashable key); else the key function
                    s = hash(items(row)) % n if type(row) is dict else key(row) % n
                except (KeyError, TypeError):
                    s = key(row) % n
                bucket = pending[s]
                bucket.append(row)
                mark(s)
                if len(bucket) >= _BATCH:
                    if abort.is_set():
                        raise _Aborted
                    streams[s].put(bucket)
                    pending[s] = []
            for s, bucket in enumerate(pending):
                if bucket:
                    streams[s].put(bucket)
        for stream in streams:
            stream.put(_DONE)

    def input_index(self, stream: int, position: int) -> int | None:
        """The index in the caller's input of the row at ``position`` in what ``stream`` received."""
        found = -1
        try:
            for _ in range(position + 1):
                found = self.dealt.index(stream, found + 1)
        except ValueError:
            return None
        return found

    def wait(self) -> None:
        """Wait for every stream; after a failure, cancel the statements of those still running.

        A stream still running ``_STOP_WAIT`` seconds after its cancel (a server that stopped answering) is left
        behind: its connection is not given back to the pool, and the call fails without waiting longer.
        """
        deadline: float | None = None
        for stream in self.streams:
            while stream.thread.is_alive():
                stream.thread.join(_POLL)
                if self.abort.is_set() and deadline is None:
                    self._cancel()
                    deadline = time.monotonic() + _STOP_WAIT
                if deadline is not None and time.monotonic() > deadline and stream.thread.is_alive():
                    log.warning("bulk_insert: COPY stream %d did not stop after its cancel", stream.number + 1)
                    stream.stuck = True
                    self.failed(stream, ConnectionError(
                        f"bulk_insert(parallel={self.parallel}): stream {stream.number + 1} did not stop within "
                        f"{_STOP_WAIT:g} s of its cancel", model=self.check.table.name))
                    break

    def _cancel(self) -> None:
        for stream in self.streams:
            if stream.thread.is_alive() and stream.busy and not stream.conn.closed:
                with contextlib.suppress(Exception):
                    stream.conn.cancel_safe(timeout=5.0)

    # -- ending ----------------------------------------------------------------------------------------------

    def commit(self, session: Session) -> int:
        """All streams did their work: make it durable, all of it (2PC) or stream after stream."""
        active = [s for s in self.streams if s.feed is not None]
        done: list[_Stream] = []
        if self.twophase:
            pending = [s.gid for s in active if s.gid is not None]
            try:
                self._resolve(session, "COMMIT PREPARED", pending)
            except DbpError as exc:
                raise type(exc)(
                    f"{exc.message}; every stream of this bulk_insert(parallel={self.parallel}) was prepared, so "
                    f"the call is decided and its rows will land: COMMIT PREPARED the transactions still listed "
                    f"in pg_prepared_xacts with gid LIKE '{self.gid_prefix}-%'",
                    model=self.check.table.name,
                ) from exc
            return sum(s.count for s in self.streams)
        for stream in active:
            try:
                stream.conn.execute("COMMIT")
            except psycopg.Error as exc:
                err = wrap_db_error(exc, model=self.check.table.name, action="bulk_insert")
                self.roll_back(session)  # the streams after this one
                raise self._partial(err, done) from exc
            done.append(stream)
        return sum(s.count for s in self.streams)

    def roll_back(self, session: Session) -> str:
        """Undo every stream that did not commit; return what the error should add about the outcome."""
        for stream in self.streams:
            conn = stream.conn
            if stream.stuck or stream.released or conn.closed or conn.broken:
                continue
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
        if not self.twophase:
            return "nothing was written"
        gids = [s.gid for s in self.streams if s.gid is not None]
        if not gids:
            return "nothing was written"
        try:
            self._resolve(session, "ROLLBACK PREPARED", gids)
        except DbpError as exc:
            return (
                f"the streams' prepared transactions could not be rolled back ({exc.message}): nothing of this "
                f"call is visible, but ROLLBACK PREPARED the transactions listed in pg_prepared_xacts with gid "
                f"LIKE '{self.gid_prefix}-%'"
            )
        return "nothing was written"

    def _resolve(self, session: Session, command: _Resolution, gids: list[str]) -> None:
        """``COMMIT PREPARED`` / ``ROLLBACK PREPARED`` each of ``gids`` that the server holds.

        Prepared transactions outlive connections and server restarts: after a lost connection a fresh one from
        the pool looks them up in ``pg_prepared_xacts`` (a PREPARE whose answer was lost may or may not have
        happened) and finishes the job.
        """
        last: BaseException | None = None
        for _ in range(_RESOLVE_TRIES):
            self.release_broken(session)
            idle = [s.conn for s in self.streams if s.usable()]
            try:
                if idle:
                    _finish_prepared(idle[0], command, gids)
                else:
                    with session.connection() as conn:
                        _finish_prepared(conn, command, gids)
                return
            except (psycopg.Error, DbpError) as exc:
                last = exc
        assert last is not None
        if isinstance(last, DbpError):
            raise last
        raise wrap_db_error(last, model=self.check.table.name, action=command) from last

    def release_broken(self, session: Session) -> None:
        """Give the pool back the streams' dead connections now (it replaces them), so a fresh one can be had."""
        for stream in self.streams:
            if not stream.released and not stream.stuck and (stream.conn.closed or stream.conn.broken):
                stream.release(session)

    def _partial(self, err: DbpError, committed: list[_Stream]) -> DbpError:
        """``err`` saying which streams committed (without prepared transactions) and that a re-run completes."""
        rows = sum(s.count for s in committed)
        note = (
            f"; bulk_insert(parallel={self.parallel}) ran without prepared transactions (the server has "
            f"max_prepared_transactions = 0): {len(committed)} of its streams had committed ({rows} rows) when "
            f"this happened, the others rolled back; running the same call again completes it, each row exactly "
            f'once (on_conflict="{self.mode}" skips or updates what is there)'
        )
        return type(err)(
            err.message + note,
            model=err.model,
            column=err.column,
            row=err.row,
            sqlstate=err.sqlstate,
            constraint=err.constraint,
        )


_Resolution = Literal["COMMIT PREPARED", "ROLLBACK PREPARED"]


def _finish_prepared(conn: psycopg.Connection[Any], command: _Resolution, gids: list[str]) -> None:
    cur = conn.execute("SELECT gid FROM pg_prepared_xacts WHERE gid = ANY(%s)", (gids,))
    held = {row[0] for row in cur.fetchall()}
    for gid in gids:
        if gid in held:
            conn.execute(sql.SQL("{} {}").format(sql.SQL(command), sql.Literal(gid)))


# -- dealing by key ------------------------------------------------------------------------------------------


def _deal_columns(table: Any) -> tuple[str, ...]:
    """The columns whose values choose a row's stream: the primary key, or the part of it that is a foreign key.

    Rows of equal primary key must meet in one stream (so that the first or last occurrence wins as with one
    stream), and any part of the key keeps them together. A foreign key's part is better: the server's check of
    a foreign key takes a KEY SHARE lock on the referenced row, and a row locked by two transactions at once gets
    a MultiXact, which costs server time (two hand-written streams of the bench's detection rows, split by
    ``oid`` against split in turn: 1.15x against 1.02x one stream, on a loaded machine). The price: rows of few
    distinct referenced rows (one object's light curve) fill few streams.
    """
    pk = tuple(table.primary_key)
    for fk in table.foreign_keys:
        if set(fk.columns) < set(pk):
            return tuple(fk.columns)
    return pk


def _key_function(check: _RowChecker) -> Callable[[Any], int] | None:
    """``row -> int``: a hash of the row's dealing key (:func:`_deal_columns`), equal for rows whose keys are equal
    (None: the table has no primary key).

    Rows the checker will refuse (no key, not a row at all) go to stream 0, whose checker names the error. Keys
    whose values hash alike in Python when PostgreSQL stores them alike (``1001`` and ``1001.0`` into an integer
    key) land in one stream; unhashable key values (a list for an array column) are hashed as tuples.
    """
    columns = _deal_columns(check.table)
    if not columns:
        return None
    items = operator.itemgetter(*columns)
    attrs = operator.attrgetter(*columns)
    cls = check.cls

    def key(row: Any) -> int:
        try:
            if type(row) is dict:
                value = items(row)
            elif type(row) is cls:
                value = attrs(row)
            else:
                value = items(row)
        except (KeyError, TypeError, AttributeError):
            return 0
        try:
            return hash(value)
        except TypeError:
            return hash(_frozen(value))

    return key


def _frozen(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


# -- staging for prepared transactions -------------------------------------------------------------------------


def _unlogged_staging(stmts: _Statements, token: str) -> tuple[_Statements, sql.Composed]:
    """``stmts`` with its staging tables turned into unlogged tables private to one call, and their DROP.

    A transaction that touched a temporary table cannot be prepared, so a stream with prepared transactions stages
    into ``CREATE UNLOGGED TABLE`` tables of its own (invisible to others until committed, and dropped before the
    PREPARE). The statements are bulk.py's own, their staging names and the word TEMPORARY substituted, so the
    staging SQL stays one text.
    """
    out = copymod.copy(stmts)
    out._upserts = {}
    names: dict[str, str] = {}

    def rename(name: str) -> str:
        if name not in names:
            names[name] = f"_dbp_pcopy_{token}_{len(names)}"
        return names[name]

    def rewrite(part: Any) -> Any:
        if isinstance(part, sql.Composed):
            return sql.Composed([rewrite(p) for p in part])
        if isinstance(part, sql.Identifier):
            name = part.as_string().strip('"')  # our staging names need no quoting
            # the staging tables and the index of "update" mode's (not the _dbp_segment column)
            return sql.Identifier(rename(name)) if name.startswith(("_dbp_stage_", "_dbp_ustage_")) else part
        if isinstance(part, sql.SQL) and "TEMPORARY TABLE" in part.as_string():
            return sql.SQL(part.as_string().replace("TEMPORARY TABLE", "UNLOGGED TABLE"))
        return part

    for attr, value in vars(stmts).items():
        if isinstance(value, (sql.Composed, sql.Identifier)):
            setattr(out, attr, rewrite(value))
    for attr in ("create_stage", "create_ustage"):
        text = getattr(out, attr).as_string()
        if "UNLOGGED TABLE" not in text or "_dbp_pcopy_" not in text:
            raise AssertionError(f"parallel: the COPY engine's {attr} changed shape: {text}")
    drop = sql.SQL("DROP TABLE IF EXISTS {}, {}").format(out.stage, out.ustage)
    return out, drop


# -- errors ----------------------------------------------------------------------------------------------------

_ROW = re.compile(r"\brow (\d+)\]")


def _relocated(err: DbpError, stream: _Stream, parallel: int, outcome: str) -> DbpError:
    """``err`` of a stream, its row index turned into the index in the caller's input, its message completed."""
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


# -- the entry point --------------------------------------------------------------------------------------------


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
            f"bulk_insert(parallel={parallel}) is not supported on a Citus cluster, which already spreads one "
            "COPY over its workers' shards: use parallel=1",
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
            "all-or-nothing (its streams commit on separate connections, and a duplicate found by one stream "
            "after another committed could not be undone), and this server has max_prepared_transactions = 0: "
            'set max_prepared_transactions >= the number of streams (needs a restart), use on_conflict="ignore" '
            "or \"update\" (a failed call can then be run again and lands each row once), or use parallel=1",
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
    """``bulk_insert`` of ``head`` then ``rest`` over ``parallel`` COPY streams (see the module documentation).

    ``head`` was checked by the caller (:func:`dbplugins._copy.bulk.bulk_insert`), which validated the arguments.
    """
    table = check.table.name
    if session.in_transaction:
        raise DbpError(
            f"bulk_insert(parallel={parallel}) cannot run inside an open transaction (a 'with db.transaction()' "
            "block, or uncommitted work of the session): its streams write on connections of their own, which "
            "cannot join it; use parallel=1 to make the insert part of the transaction, or commit first",
            model=table,
        )
    pool_size = session._pool.max_size
    if parallel > _MAX_STREAMS:
        raise DbpError(f"bulk_insert: parallel={parallel} is more than {_MAX_STREAMS} streams", model=table)
    if parallel > pool_size:
        raise DbpError(
            f"bulk_insert(parallel={parallel}) needs {parallel} connections at once and the pool holds at most "
            f"{pool_size} (max_size): use a smaller parallel, or connect with max_size >= {parallel}",
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
                log.warning("bulk_insert: COPY stream %d still running; its connection is abandoned", stream.number + 1)
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
