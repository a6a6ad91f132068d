"""Session: a unit of work over the connection pool.

A session holds a pooled connection only while a transaction is open. Outside a transaction each statement
borrows a connection (in autocommit) and gives it back at once, so an idle worker holds nothing. A transaction
opens either explicitly (``with session.transaction():``, nested blocks become savepoints) or implicitly, with
the first write that the caller must confirm (``Query.update``): it then lasts until ``commit()`` or
``rollback()``, as db-plugins' ``db.session.commit()`` after ``update`` expects.

The rules of ``with session.transaction():`` (docs/sessions.md):

- Nothing inside the block commits or rolls back on its own: ``commit()``, ``rollback()`` and ``close()``
  inside it raise ``DbpError``; to undo the block, raise out of it.
- Outside any block it always ends in a COMMIT on success. When an implicit transaction is open (an
  uncommitted ``update()``), the block joins it: on success everything, the earlier writes included, is
  committed; on an exception only the block is undone (a savepoint) and the earlier writes stay pending, as
  before the block.
- Nested blocks are savepoints.
- While ``bulk_insert`` streams a COPY on the transaction's connection, a statement on the same session (from
  the generator that feeds it) raises ``DbpError`` at once instead of waiting forever for the connection.
"""

from __future__ import annotations

import contextlib
import logging
import select
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import PoolTimeout

from ..errors import DbpError, PoolTimeoutError, wrap_db_error
from .compat import SessionCompat

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

__all__ = ["Session", "statement_cursor", "is_alive", "readable"]

log = logging.getLogger("dbplugins.session")

Conn = psycopg.Connection[Any]


def is_alive(conn: Conn) -> bool:
    """Whether an idle pooled connection still works, usually without a round trip.

    A connection whose server went away (restart, ``pg_terminate_backend``, idle timeout) has a FATAL message
    or EOF waiting on its socket; an idle healthy one has nothing to read. Only when the socket is readable do
    we pay for a real check (an empty query).
    """
    if conn.closed or conn.broken:
        return False
    try:
        if readable(conn.fileno()):
            conn.execute("")
    except (psycopg.Error, OSError, ValueError):
        return False
    return True


def readable(fd: int) -> bool:
    """Whether ``fd`` has something to read now (no wait).

    ``poll`` rather than ``select.select``, which refuses descriptors of 1024 and more (FD_SETSIZE) with a
    ValueError: a worker with many open files (Kafka consumers, logs) gets such sockets.
    """
    if _HAVE_POLL:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover - Windows has no poll()


_HAVE_POLL = hasattr(select, "poll")


def statement_cursor(conn: Conn) -> psycopg.Cursor[Any]:
    """A tuple-row cursor kept on ``conn`` for the statements whose rows the library reads itself.

    A new cursor resolves the dumper of every parameter type and the loader of every result column again;
    reusing one per connection saves that (about 30 us of a ~100 us get_or_create call, measured in a loop on
    the 2-core machine). Safe because a pooled connection serves one thread at a time and callers never hand
    the cursor out.
    """
    cur: psycopg.Cursor[Any] | None = conn.__dict__.get("_dbp_cursor")
    if cur is None or cur.closed:
        # tuple rows whatever row_factory a configure= hook gave the connection
        cur = conn.__dict__["_dbp_cursor"] = conn.cursor(row_factory=tuple_row)
    return cur


class Session(SessionCompat):
    """One unit of work. Not thread-safe: give each thread its own (see :class:`ScopedSession`)."""

    def __init__(self, pool: ConnectionPool[Any], options: dict[str, Any] | None = None) -> None:
        self._pool = pool
        self.options = dict(options or {})
        self._conn: Conn | None = None
        self._explicit = 0  # depth of open ``transaction()`` blocks
        self._held = 0  # depth of session.flush() calls: their writes stay pending, never committed
        self._closed = False
        self._streaming: str | None = None  # who holds the connection for a COPY (see streaming)

    # -- state ---------------------------------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        """True while this session holds a connection with an open transaction."""
        return self._conn is not None

    @property
    def in_explicit_transaction(self) -> bool:
        """True inside a ``with transaction():`` block."""
        return self._explicit > 0

    def __repr__(self) -> str:
        state = "explicit transaction" if self._explicit else ("transaction" if self._conn else "idle")
        return f"<dbplugins.Session {state}>"

    # -- connections -----------------------------------------------------------------------------------------

    def _acquire(self) -> Conn:
        if self._closed:
            raise DbpError("this session was closed; call db.create_session() for a new one")
        # Each dead connection is found without a round trip and handed back closed, so the pool replaces it;
        # after a server restart every idle connection may be dead, hence up to max_size + 1 tries. (The
        # pool's own check= hook backs off 1 s, 2 s, 4 s... between failed checks,
        # which exhausts its timeout.)
        for _ in range(self._pool.max_size + 1):
            try:
                conn: Conn = self._pool.getconn()
            except PoolTimeout as exc:
                raise PoolTimeoutError(f"no database connection became free: {exc}") from None
            except psycopg.Error as exc:
                raise wrap_db_error(exc, action="connecting") from exc
            if is_alive(conn):
                return conn
            log.info("discarding a pooled connection that the server closed")
            conn.close()
            self._pool.putconn(conn)
        raise PoolTimeoutError("every pooled connection was dead and no new one could be made")

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.putconn(conn)

    def _own(self) -> Conn | None:
        """The transaction's connection, if one is open and free for a statement now."""
        if self._conn is not None and self._streaming is not None:
            # psycopg's connection lock is held by the COPY: a statement would wait for it forever.
            raise DbpError(
                f"{self._streaming} is streaming rows into a COPY on this session's transaction, so the "
                "rows' iterable cannot run statements on the same session (the connection is busy until "
                "the COPY ends): read what the rows need first (e.g. list(...) of the query), or make the "
                "reads outside the transaction or with another SQLConnection"
            )
        return self._conn

    @contextlib.contextmanager
    def streaming(self, what: str) -> Iterator[None]:
        """Mark the transaction's connection as busy with a COPY fed by ``what`` (a caller's iterable).

        Any statement on this session meanwhile raises ``DbpError`` at once instead of hanging on the lock.
        Outside a transaction there is nothing to mark: statements borrow other pooled connections.
        """
        if self._conn is None:
            yield
            return
        previous, self._streaming = self._streaming, what
        try:
            yield
        finally:
            self._streaming = previous

    @contextlib.contextmanager
    def connection(self) -> Iterator[Conn]:
        """The connection to run a statement on: the transaction's, or a borrowed one in autocommit.

        psycopg errors raised inside are translated to ``DbpError`` by the callers
        (who know the model and row).
        """
        own = self._own()
        if own is not None:
            yield own
            return
        conn = self._acquire()
        try:
            yield conn
        finally:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE and not conn.closed:
                # A failed or unfinished statement on a borrowed connection: leave it clean for the next user.
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
            self._pool.putconn(conn)

    @contextlib.contextmanager
    def atomic(self, *, persist: bool = True) -> Iterator[Conn]:
        """A connection with an atomic scope for a multi-statement operation (get_or_create, bulk_insert).

        Inside a transaction (explicit or implicit) it is a savepoint, and nothing is committed here.
        Otherwise a fresh transaction that commits on success; when ``persist`` is true and an implicit
        transaction is open, it is committed too after the block
        (db-plugins' get_or_create committed the session).
        """
        own = self._own()
        if own is not None:
            with own.transaction():
                yield own
            if persist and not self._explicit and not self._held:
                self.commit()
            return
        with self.connection() as conn, conn.transaction():
            yield conn

    def begin(self) -> Conn:
        """Open the implicit transaction unless one is open; return its connection."""
        own = self._own()
        if own is not None:
            return own
        conn = self._acquire()
        try:
            conn.execute("BEGIN")
        except psycopg.Error as exc:
            self._pool.putconn(conn)
            raise wrap_db_error(exc, action="BEGIN") from exc
        self._conn = conn
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """``with session.transaction():`` commits on success and rolls back on any exception.

        Nothing inside commits on its own: ``commit()``, ``rollback()`` and ``close()`` inside the block raise
        ``DbpError`` (raise out of the block to undo it). Outside any block it always ends in a COMMIT on
        success; if an implicit transaction is open (an uncommitted ``update()``), the block joins it, commits
        it with the block on success, and on an exception undoes only the block, leaving the earlier writes
        pending. Nested blocks are savepoints: an exception inside undoes the inner block only if the caller
        catches it.
        """
        if self._explicit:
            conn = self._own()
            assert conn is not None
            self._explicit += 1
            try:
                with conn.transaction():
                    yield self
            finally:
                self._explicit -= 1
            return
        joined = self._own() is not None  # the uncommitted writes of an implicit transaction
        conn = self.begin()
        self._explicit = 1
        try:
            if joined:
                with conn.transaction():  # a savepoint: an exception undoes the block, not the earlier writes
                    yield self
            else:
                yield self
        except BaseException:
            self._explicit = 0
            if not joined:
                self.rollback()
            raise
        self._explicit = 0
        self.commit()

    def _refuse_inside_block(self, what: str) -> None:
        if self._explicit:
            raise DbpError(
                f"{what}() inside 'with db.transaction()': the block commits when it ends and rolls back "
                "when an exception leaves it; raise out of the block to undo it"
            )

    # -- unit of work ----------------------------------------------------------------------------------------

    def commit(self) -> None:
        """Make the open transaction durable and give its connection back. No-op without a transaction."""
        if self._conn is None:
            return
        self._refuse_inside_block("commit")
        conn = self._conn
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            # PostgreSQL answers COMMIT of a failed transaction with ROLLBACK and no error: the writes made
            # before the failure would vanish silently. Say so instead.
            self.rollback()
            raise DbpError(
                "commit(): a statement in this transaction failed earlier, so nothing was committed "
                "(the transaction has been rolled back)"
            )
        try:
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            raise wrap_db_error(exc, action="COMMIT") from exc
        finally:
            self._release()

    def rollback(self) -> None:
        """Undo the open transaction and give its connection back. No-op without a transaction.

        Refused (``DbpError``) inside ``with db.transaction():``, which would otherwise run the rest of the
        block in autocommit: raise out of the block to undo it.
        """
        self._refuse_inside_block("rollback")
        self._discard()

    def _discard(self) -> None:
        """Roll back and give the connection back, whatever the state (a thread or the pool ending)."""
        if self._conn is None:
            return
        conn = self._conn
        try:
            if not conn.closed:
                conn.execute("ROLLBACK")
        except psycopg.Error as exc:
            # The connection is gone (server restart): the transaction died with it; the pool discards it.
            log.info("rollback on a lost connection: %s", type(exc).__name__)
        finally:
            self._release()

    def close(self) -> None:
        """Roll back anything uncommitted and release the connection. The session stays usable."""
        self._refuse_inside_block("close")
        self._discard()

    def remove(self) -> None:
        """Close the session for good (db-plugins' scoped ``session.remove()``)."""
        self.close()
        self._closed = True

    def _end(self) -> None:
        """Close for good from outside the session's thread (the thread ended, or the pool is closing)."""
        self._closed = True
        self._explicit = 0
        self._discard()
