"""The loaders of the COPY engine: the direct COPY (with its fast-path restart), the staging table and the
upsert (the statements each one runs are composed in :mod:`dbplugins._copy.statements`)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
from psycopg import errors as pge
from psycopg import sql

from .._session.session import readable
from ..citus.relay import on_citus, relayed_conflict
from .checker import _RowChecker
from .statements import _Statements
from .statements import _statements as _statements  # re-exported: bench/bulk_vs_copy.py uses it here
from .stream import _BINARY_TRAILER, _END, _Feed, _RecordingWriter, _Spool, _write_rows

# Rows between two looks for an early answer of the server during the fast path's COPY (see
# _Loader.optimistic).
_PEEK_ROWS = 2048

# Tries of a staged INSERT that the server aborted to break a deadlock (see _Loader._insert_from_stage). On
# Citus the coordinator writes the shards of one INSERT ... SELECT over parallel connections, so key order
# does not order the locks across shards: racing redeliveries deadlock more often there (tests/test_citus.py
# races 8 workers), and each abort releases the locks, so the other side finishes; 10 tries hold under a
# loaded machine.
_DEADLOCK_RETRIES = 10

# Whether the server has sent something during the fast path's COPY (poll(): select() fails on fd >= 1024).
_answered = readable


# -- the loaders -------------------------------------------------------------------------------------------


class _Restart(Exception):
    """The direct COPY hit a duplicate: roll the atomic scope back and redo its rows through staging."""

    def __init__(self, spool: _Spool, rows: int) -> None:
        super().__init__("restart through staging")
        self.spool = spool
        self.rows = rows
        self.layout: frozenset[str] = frozenset()  # the server-default columns the recorded rows leave out


def _restart(spool: _Spool, rows: int, layout: frozenset[str]) -> _Restart:
    restart = _Restart(spool, rows)
    restart.layout = layout
    return restart


class _Loader:
    """One bulk_insert call inside one atomic scope."""

    def __init__(
        self, conn: psycopg.Connection[Any], check: _RowChecker, stmts: _Statements, feed: _Feed
    ) -> None:
        self.conn = conn
        self.check = check
        self.stmts = stmts
        self.feed = feed
        self.cur = conn.cursor()
        self.stage_ready = False

    def _next_layout(self) -> frozenset[str]:
        """The server-default columns the next row leaves out (its COPY's layout)."""
        feed = self.feed
        if feed.layout is not None:
            omitted, feed.layout = feed.layout, None
            return omitted
        return self.check.layout_of(feed.head)

    def plain(self) -> int:
        """ "error" mode: the whole input as one COPY into the table (one per run of rows leaving out other
        server-default columns: see _write_rows)."""
        start = self.feed.index
        while not self.feed.done:
            omitted = self._next_layout()
            check = self.check.layout(omitted)
            self.feed.copy_start = self.feed.index
            with self.cur.copy(self.stmts.for_layout(omitted).copy_target) as copy:
                copy.set_types(check.pg_types)
                _write_rows(copy, check, self.feed, None)
        return self.feed.index - start

    def optimistic(self, *, in_callers_transaction: bool, chunk: int) -> int:
        """ "ignore" mode: the whole input as one COPY into the table, recorded; on a duplicate, ``_Restart``.

        No savepoint: a duplicate aborts the atomic scope, and the caller (``bulk_insert``) opens a new one
        and replays the recorded rows through staging. Also when a concurrent caller holds one of our keys
        uncommitted: the COPY waits at most ``_FAST_PATH_LOCK_WAIT`` for it, then staging (which takes keys in
        order, so callers in it cannot deadlock each other) does the work.

        A server that rejected a row discards the rest of the COPY as fast as it arrives, so the client would
        send the whole input before reading the error. Every ``_PEEK_ROWS`` rows the socket is checked for an
        answer (a COPY in progress gets none): when one is there the COPY is ended, and the server's error is
        raised.

        At a row that leaves out other server-default columns than the first (see _write_rows), the COPY ends
        there and the rest goes through staging (``chunk`` rows per flush), which skips the keys this COPY
        wrote.
        """
        feed = self.feed
        start = feed.copy_start = feed.index
        omitted = self._next_layout()
        check = self.check.layout(omitted)
        row = self.cur.execute(self.stmts.limit_lock_wait).fetchone()
        assert row is not None
        lock_timeout = row[0]
        spool = _Spool(self.check.table.name)
        writer = _RecordingWriter(self.cur, spool)
        fileno = self.conn.fileno()
        answered = _answered
        try:
            with self.cur.copy(self.stmts.for_layout(omitted).copy_target, writer=writer) as copy:
                copy.set_types(check.pg_types)
                while not feed.done and feed.layout is None:
                    _write_rows(copy, check, feed, _PEEK_ROWS)
                    if answered(fileno):
                        break
                writer.ending = True
            if not feed.done and feed.layout is None:
                # The server's message was not an error (a NOTICE from a trigger) and the COPY went through:
                # the rest of the input is not in it, so start over through staging, which takes all of it.
                raise _restart(spool, feed.index - start, omitted)
        except (pge.UniqueViolation, pge.DeadlockDetected, pge.LockNotAvailable):
            # A key exists; or a concurrent caller holds one of ours uncommitted (we waited past the lowered
            # lock_timeout, or deadlocked with it): staging takes keys in order and waits as long as needed.
            raise _restart(spool, feed.index - start, omitted) from None
        except pge.InternalError_ as exc:
            # The same, relayed by Citus from a worker (XX000, "detection_pkey_102119"):
            # dbplugins/citus/relay.py.
            if not relayed_conflict(exc, self.check.table):
                spool.close()
                raise
            raise _restart(spool, feed.index - start, omitted) from None
        except BaseException as exc:
            if not isinstance(exc, _Restart):
                spool.close()
            raise
        spool.close()
        written = feed.index - start
        if not feed.done:
            # Rows leaving out other columns follow: through staging, without the lowered lock wait (staging
            # takes keys in order and may wait for them).
            self.cur.execute(self.stmts.restore_lock_wait, (lock_timeout,))
            return written + self.staged(chunk, "ignore")
        if in_callers_transaction:
            # The lowered setting would outlive this call (our own transaction ends it at COMMIT; a restart's
            # rollback undoes it).
            self.cur.execute(self.stmts.restore_lock_wait, (lock_timeout,))
        return written

    def staged(
        self,
        chunk: int,
        mode: str,
        replay: _Spool | None = None,
        replay_rows: int = 0,
        replay_layout: frozenset[str] = frozenset(),
    ) -> int:
        """The rest of the input through the staging table, ``chunk`` rows per flush; rows written.

        ``replay`` (the rows of a failed direct COPY, ``replay_rows`` of them, leaving out the server-default
        columns ``replay_layout``) goes first, in one flush with the rows that fill it up to ``chunk``. A
        flush holds rows of one layout (the server-default columns they leave out).
        """
        total = 0
        try:
            while not self.feed.done or replay is not None:
                omitted = replay_layout if replay is not None else self._next_layout()
                total += self._stage_chunk(chunk, omitted, replay, replay_rows)
                if replay is not None:
                    replay.close()
                replay, replay_rows = None, 0
        finally:
            if replay is not None:
                replay.close()
        return total

    def upsert(self) -> int:
        """ "update" mode: the whole input into the staging table, then one upsert per segment; rows written.

        A segment is a run of rows naming the same columns: its statement sets exactly those. One statement
        per call in the usual case, which takes the keys in order: two callers upserting the same keys (in any
        order, in any number of rows) queue on the first key they share instead of deadlocking across chunks.
        """
        stmts = self.stmts
        check = self.check
        feed = self.feed
        if not self.stage_ready:
            self.cur.execute(stmts.create_ustage)
            self.stage_ready = True
        self.cur.execute(stmts.truncate_ustage)
        # A segment's rows name the same columns, so they leave out the same server-default columns: its
        # COPY and its INSERT leave them out, and the server fills them for the rows inserted (an existing
        # row keeps its value: only the named columns are set).
        segments: list[tuple[tuple[str, ...], _Statements]] = []
        while not feed.done:
            named = _named_columns(check, feed.head)
            omitted = check.layout_of(feed.head)
            layout = check.layout(omitted)
            self.cur.execute(stmts.set_segment, (str(len(segments)),))
            if len(segments) == 1:
                self.cur.execute(stmts.index_ustage)  # each later segment's statement reads only its rows
            segments.append((named, stmts.for_layout(omitted)))
            run = _Run(check, named, feed.rest)
            part = _Feed(feed.head, run)
            part.index = feed.index
            feed.copy_start = feed.index
            try:
                with self.cur.copy(segments[-1][1].copy_ustage) as copy:
                    copy.set_types(layout.pg_types)
                    _write_rows(copy, layout, part, None)
            finally:
                feed.index = part.index
                feed.head = run.pending if part.done else part.head
        if len(segments) == 1:
            named, seg = segments[0]
            return self._apply([(seg.upsert(named, False), ())])
        return self._apply([(seg.upsert(named, True), (n,)) for n, (named, seg) in enumerate(segments)])

    def _stage_chunk(
        self, limit: int, omitted: frozenset[str], replay: _Spool | None, replay_rows: int
    ) -> int:
        stmts = self.stmts.for_layout(omitted)
        check = self.check.layout(omitted)
        feed = self.feed
        if not self.stage_ready:
            self.cur.execute(self.stmts.create_stage)
            self.stage_ready = True
        self.cur.execute(stmts.truncate_stage)
        feed.copy_start = feed.index - replay_rows
        with self.cur.copy(stmts.copy_stage) as copy:
            copy.set_types(check.pg_types)
            if replay is not None:
                for block in replay.replay():
                    copy.write(block)
            remaining = limit - replay_rows
            before = feed.index
            if remaining > 0 and not feed.done and feed.layout is None:
                _write_rows(copy, check, feed, remaining)
            if replay is not None and feed.index == before:
                copy.write(_BINARY_TRAILER)  # replayed rows lost theirs and no written row follows to add it
        return self._insert_from_stage(stmts.insert_ignore)

    def _insert_from_stage(self, insert: sql.Composed) -> int:
        return self._apply([(insert, ())])

    def _apply(self, statements: list[tuple[sql.Composed, tuple[Any, ...]]]) -> int:
        """Run the staged statements in one savepoint, retried when the server breaks a deadlock by aborting
        one.

        Ordered inserts cannot deadlock with each other inside one statement, but they can with a concurrent
        direct COPY (input order), across chunks of two multi-chunk "ignore" calls, or across the segments of
        "update" calls. Rolling back to the savepoint releases every row lock the statements took, so the
        other side finishes within the back-off. After the last try the DeadlockDetected propagates and the
        whole call is rolled back.
        """
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                written = 0
                with self.conn.transaction():
                    citus = on_citus(self.conn)
                    for stmt, params in statements:
                        # Citus's INSERT ... SELECT reports the rows selected: count what RETURNING gives
                        if citus:
                            stmt = sql.SQL(
                                "WITH _dbp_ins AS ({} RETURNING 1) SELECT count(*) FROM _dbp_ins"
                            ).format(stmt)
                        self.cur.execute(stmt, params or None)
                        counted = self.cur.fetchone() if self.cur.description else None
                        written += int(counted[0]) if counted is not None else max(self.cur.rowcount, 0)
                return written
            except pge.DeadlockDetected:
                if attempt == _DEADLOCK_RETRIES - 1:
                    raise
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # noqa: S311 - jitter, not crypto
        raise AssertionError("unreachable")


def _named_columns(check: _RowChecker, row: Any) -> tuple[str, ...]:
    """The columns a row names, in table order: a mapping's keys, or every column (a model instance) but the
    server-default ones it holds None in."""
    if isinstance(row, Mapping):
        return tuple(n for n in check.names if n in row)
    if check.server_defaults:
        omitted = check.layout_of(row)
        return tuple(n for n in check.names if n not in omitted)
    return check.names


class _Run:
    """The rows of an iterator while they name the same columns as the first of the run ("update" mode).

    Stops (StopIteration) before the first row that names others and keeps it in ``pending``; the caller
    starts the next run with it. ``pending`` is ``_END`` when the input itself ended.
    """

    __slots__ = ("rows", "keys", "full", "cls", "pending", "check")

    def __init__(self, check: _RowChecker, named: tuple[str, ...], rows: Iterator[Any]) -> None:
        self.check = check
        self.rows = rows
        self.keys = frozenset(named)
        self.full = len(named) == check.ncols
        self.cls = check.cls
        self.pending: Any = _END

    def __iter__(self) -> _Run:
        return self

    def __next__(self) -> Any:
        if self.pending is not _END:
            raise StopIteration
        row = next(self.rows)  # the end of the input ends the run
        if type(row) is dict:
            same = row.keys() == self.keys
        elif isinstance(row, Mapping):
            same = frozenset(row.keys()) == self.keys
        elif type(row) is not self.cls:
            same = True  # not a row: the writer names the error
        elif self.check.server_defaults:  # an instance names the columns but the server-default ones at None
            same = frozenset(_named_columns(self.check, row)) == self.keys
        else:  # a model instance names every column
            same = self.full
        if same:
            return row
        self.pending = row
        raise StopIteration
