"""One ``bulk_insert(..., parallel=N)`` call (see :mod:`dbplugins._copy.parallel`): the dealing of the input
to its streams, by key, and how the call ends (commit, roll back, resolve the prepared transactions)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import operator
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg import sql

from ..errors import ConnectionError, DbpError, wrap_db_error
from .checker import _RowChecker
from .parallel_stream import _BATCH, _DONE, _POLL, _Aborted, _Stream
from .statements import _Statements

if TYPE_CHECKING:
    from .._session.session import Session

log = logging.getLogger("dbplugins.bulk")

# After a failure: how long the other streams get to stop once their statements are cancelled (seconds).
_STOP_WAIT = 30.0
# Tries (each bounded by the pool's timeout) to reach the server to resolve the prepared transactions.
_RESOLVE_TRIES = 3


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
        """Record the first real failure of the call (an _Aborted is the echo of another) and stop
        everything."""
        with self.lock:
            if self.error is None and not isinstance(exc, _Aborted):
                self.error = exc
                self.failed_stream = stream
        self.abort.set()

    # -- dealing -------------------------------------------------------------------------------------------

    def deal(self, head: Any, rest: Iterator[Any]) -> None:
        """Read the input once, in the caller's thread, and hand it to the streams in batches.

        ``self.dealt`` gets one byte per row, its stream: the k-th row a stream received is the k-th
        occurrence of its number there (see :meth:`input_index`), which costs less per row than keeping every
        index.
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

        A stream still running ``_STOP_WAIT`` seconds after its cancel (a server that stopped answering) is
        left behind: its connection is not given back to the pool, and the call fails without waiting longer.
        """
        deadline: float | None = None
        for stream in self.streams:
            while stream.thread.is_alive():
                stream.thread.join(_POLL)
                if self.abort.is_set() and deadline is None:
                    self._cancel()
                    deadline = time.monotonic() + _STOP_WAIT
                if deadline is not None and time.monotonic() > deadline and stream.thread.is_alive():
                    log.warning(
                        "bulk_insert: COPY stream %d did not stop after its cancel", stream.number + 1
                    )
                    stream.stuck = True
                    self.failed(
                        stream,
                        ConnectionError(
                            f"bulk_insert(parallel={self.parallel}): stream {stream.number + 1} did not stop "
                            f"within {_STOP_WAIT:g} s of its cancel",
                            model=self.check.table.name,
                        ),
                    )
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
                    f"{exc.message}; every stream of this bulk_insert(parallel={self.parallel}) was "
                    "prepared, so the call is decided and its rows will land: COMMIT PREPARED the "
                    f"transactions still listed in pg_prepared_xacts with gid LIKE '{self.gid_prefix}-%'",
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
                f"the streams' prepared transactions could not be rolled back ({exc.message}): nothing of "
                "this call is visible, but ROLLBACK PREPARED the transactions listed in pg_prepared_xacts "
                f"with gid LIKE '{self.gid_prefix}-%'"
            )
        return "nothing was written"

    def _resolve(self, session: Session, command: _Resolution, gids: list[str]) -> None:
        """``COMMIT PREPARED`` / ``ROLLBACK PREPARED`` each of ``gids`` that the server holds.

        Prepared transactions outlive connections and server restarts: after a lost connection a fresh one
        from the pool looks them up in ``pg_prepared_xacts`` (a PREPARE whose answer was lost may or may not
        have happened) and finishes the job.
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
        """Give the pool back the streams' dead connections now (it replaces them), so a fresh one can be
        had."""
        for stream in self.streams:
            if not stream.released and not stream.stuck and (stream.conn.closed or stream.conn.broken):
                stream.release(session)

    def _partial(self, err: DbpError, committed: list[_Stream]) -> DbpError:
        """``err`` saying which streams committed (without prepared transactions) and that a re-run
        completes."""
        rows = sum(s.count for s in committed)
        note = (
            f'; bulk_insert(parallel={self.parallel}) ran without prepared transactions (the server has '
            f'max_prepared_transactions = 0): {len(committed)} of its streams had committed ({rows} rows) '
            'when this happened, the others rolled back; running the same call again completes it, each row '
            f'exactly once (on_conflict="{self.mode}" skips or updates what is there)'
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
    """The columns whose values choose a row's stream: the primary key, or the part of it that is a foreign
    key.

    Rows of equal primary key must meet in one stream (so that the first or last occurrence wins as with one
    stream), and any part of the key keeps them together. A foreign key's part is better: the server's check
    of a foreign key takes a KEY SHARE lock on the referenced row, and a row locked by two transactions at
    once gets a MultiXact, which costs server time (two hand-written streams of the bench's detection rows,
    split by ``oid`` against split in turn: 1.15x against 1.02x one stream, on a loaded machine). The price:
    rows of few distinct referenced rows (one object's light curve) fill few streams.
    """
    pk = tuple(table.primary_key)
    for fk in table.foreign_keys:
        if set(fk.columns) < set(pk):
            return tuple(fk.columns)
    return pk


def _key_function(check: _RowChecker) -> Callable[[Any], int] | None:
    """``row -> int``: a hash of the row's dealing key (:func:`_deal_columns`), equal for rows whose keys are
    equal (None: the table has no primary key).

    Rows the checker will refuse (no key, not a row at all) go to stream 0, whose checker names the error.
    Keys whose values hash alike in Python when PostgreSQL stores them alike (``1001`` and ``1001.0`` into an
    integer key) land in one stream; unhashable key values (a list for an array column) are hashed as tuples.
    """
    columns = _deal_columns(check.table)
    if not columns:
        return None
    items = operator.itemgetter(*columns)
    attrs = operator.attrgetter(*columns)
    cls = check.cls
    # A row that leaves a key column to the server (serial, identity) has no key to keep together: its rows
    # go to the streams in turn.
    generated = frozenset(columns) & check.server_defaults
    turn = itertools.count()

    def key(row: Any) -> int:
        try:
            if type(row) is dict:
                value = items(row)
            elif type(row) is cls:
                value = attrs(row)
                if generated and check.layout_of(row) & generated:
                    return next(turn)
            else:
                value = items(row)
        except (KeyError, TypeError, AttributeError):
            if generated and check.layout_of(row) & generated:
                return next(turn)
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
