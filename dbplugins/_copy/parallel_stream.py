"""The COPY streams of ``bulk_insert(..., parallel=N)`` (see :mod:`dbplugins._copy.parallel`): each a thread
with its connection, its queue of batches and its transaction, and the staging tables of its own that it uses
under prepared transactions."""

from __future__ import annotations

import contextlib
import copy as copymod
import queue
import threading
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from .bulk import _server_error
from .stage import _Loader, _Restart
from .statements import _Statements
from .stream import _END, _Feed

if TYPE_CHECKING:
    from .._session.session import Session
    from .parallel_call import _Call
    from .parallel_end import _Coordinator

# Rows per batch handed to a stream, and batches a stream's queue holds: memory stays at about
# N * (_QUEUE_BATCHES + 1) * _BATCH rows whatever the input size.
_BATCH = 2048
_QUEUE_BATCHES = 4
# How often a wait on a queue or a thread looks at the abort flag (seconds).
_POLL = 0.05
# The longest a stream's transaction waits for a lock. Two streams of one call hold disjoint keys, but a
# unique constraint other than the key, or a concurrent caller waiting on one stream while holding what
# another waits for, makes them wait for each other through this client, which the server's deadlock detector
# cannot see.
_STREAM_LOCK_WAIT = "60s"

_DONE: Any = object()


class _Aborted(Exception):
    """Another part of the call failed: this stream stops and rolls back."""


class _StreamBase:
    """One stream of a parallel call: a thread, its connection, its queue and its transaction.

    The coordinator (:class:`dbplugins._copy.parallel_end._Coordinator`) sees only this face; what the thread
    writes is the subclass's :meth:`_work` (:class:`_Stream`: rows through the COPY engine; ``dbp load
    --jobs``: the file's CSV bytes, :mod:`dbplugins._load.loadjobs`).
    """

    def __init__(self, call: _Coordinator, number: int, conn: psycopg.Connection[Any]) -> None:
        self.call = call
        self.number = number
        self.conn = conn
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_BATCHES)
        self.count = 0
        # set once PREPARE TRANSACTION was sent (it may or may not have succeeded)
        self.gid: str | None = None
        self.prepared = False
        self.began = False  # it opened a transaction (a stream dealt nothing opens none)
        self.busy = False  # running a statement the coordinator may cancel
        self.stuck = False  # did not stop after a cancel: its connection is abandoned
        self.released = False  # its connection went back to the pool
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

    def _prepare(self, cur: psycopg.Cursor[Any]) -> None:
        """End the stream's work with PREPARE TRANSACTION (the coordinator commits or rolls it back)."""
        self.gid = f"{self.call.gid_prefix}-{self.number}"
        cur.execute(sql.SQL("PREPARE TRANSACTION {}").format(sql.Literal(self.gid)))
        self.prepared = True

    def _work(self) -> int:
        """The stream's work, in its thread: the rows written (raises on failure)."""
        raise NotImplementedError


class _Stream(_StreamBase):
    """A stream of ``bulk_insert(..., parallel=N)``: its batches of rows through the COPY engine."""

    call: _Call

    def __init__(self, call: _Call, number: int, conn: psycopg.Connection[Any]) -> None:
        super().__init__(call, number, conn)
        self.feed: _Feed | None = None
        # Its statements: bulk.py's, or with staging tables of its own under prepared transactions.
        self.stmts = call.stmts
        self.drop_staging: sql.Composed | None = None
        if call.twophase:
            self.stmts, self.drop_staging = _unlogged_staging(call.stmts, uuid.uuid4().hex[:16])

    def _work(self) -> int:
        rows = self._rows()
        head = next(rows, _END)
        if head is _END:
            return 0  # no row was dealt to this stream: no transaction
        call = self.call
        feed = self.feed = _Feed(head, rows)
        self.began = True
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
                    count = loader.optimistic(in_callers_transaction=False, chunk=call.chunk)
                except _Restart as restart:  # a key exists: redo this stream's rows through staging
                    cur.execute("ROLLBACK")
                    self._begin(cur)
                    loader = _Loader(conn, call.check, self.stmts, feed)
                    count = loader.staged(call.chunk, "ignore", restart.spool, restart.rows, restart.layout)
            if self.drop_staging is not None:
                cur.execute(self.drop_staging)
                self._prepare(cur)
            return count
        except psycopg.Error as exc:
            raise _server_error(exc, call.check, feed) from exc
        finally:
            self.busy = False


# Lower the stream transaction's lock_timeout to _STREAM_LOCK_WAIT, never raise it (the session's own setting
# wins when it is shorter).
_LIMIT_LOCK_WAIT = sql.SQL(
    "SELECT set_config('lock_timeout', CASE WHEN current_setting('lock_timeout')::interval = interval '0' "
    "OR current_setting('lock_timeout')::interval > %s::interval THEN %s "
    "ELSE current_setting('lock_timeout') END, true)"
)


# -- staging for prepared transactions -----------------------------------------------------------------------


def _unlogged_staging(stmts: _Statements, token: str) -> tuple[_Statements, sql.Composed]:
    """``stmts`` with its staging tables turned into unlogged tables private to one call, and their DROP.

    A transaction that touched a temporary table cannot be prepared, so a stream with prepared transactions
    stages into ``CREATE UNLOGGED TABLE`` tables of its own (invisible to others until committed, and dropped
    before the PREPARE). The statements are bulk.py's own, their staging names and the word TEMPORARY
    substituted, so the staging SQL stays one text.
    """
    out = copymod.copy(stmts)
    out._upserts = {}
    out._layouts = {}  # composed again from the renamed staging tables
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
