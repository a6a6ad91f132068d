"""Session: a unit of work over the connection pool.

A session holds a pooled connection only while a transaction is open. Outside a transaction each statement
borrows a connection (in autocommit) and gives it back at once, so an idle worker holds nothing. A transaction
opens either explicitly (``with session.transaction():``, nested blocks become savepoints) or implicitly, with
the first write that the caller must confirm (``Query.update``): it then lasts until ``commit()`` or
``rollback()``, as db-plugins' ``db.session.commit()`` after ``update`` expects.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import PoolTimeout

from .errors import DbpError, PoolTimeoutError, wrap_db_error
from .session_compat import ScopedCompat, SessionCompat

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

__all__ = ["Session", "ScopedSession", "statement_cursor"]

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
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        if readable:
            conn.execute("")
    except (psycopg.Error, OSError, ValueError):
        return False
    return True


def statement_cursor(conn: Conn) -> psycopg.Cursor[Any]:
    """A tuple-row cursor kept on ``conn`` for the statements whose rows the library reads itself.

    A new cursor resolves the dumper of every parameter type and the loader of every result column again; reusing
    one per connection saves that (about 30 us of a ~100 us get_or_create call, measured in a loop on the 2-core
    machine). Safe because a pooled connection serves one thread at a time and callers never hand the cursor out.
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
        self._closed = False

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

    # -- connections -------------------------------------------------------------------------------------------

    def _acquire(self) -> Conn:
        if self._closed:
            raise DbpError("this session was closed; call db.create_session() for a new one")
        # Each dead connection is found without a round trip and handed back closed, so the pool replaces it;
        # after a server restart every idle connection may be dead, hence up to max_size + 1 tries. (The pool's
        # own check= hook backs off 1 s, 2 s, 4 s... between failed checks, which exhausts its timeout.)
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

    @contextlib.contextmanager
    def connection(self) -> Iterator[Conn]:
        """The connection to run a statement on: the transaction's, or a borrowed one in autocommit.

        psycopg errors raised inside are translated to ``DbpError`` by the callers (who know the model and row).
        """
        if self._conn is not None:
            yield self._conn
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

        Inside a transaction (explicit or implicit) it is a savepoint, and nothing is committed here. Otherwise a
        fresh transaction that commits on success; when ``persist`` is true and an implicit transaction is open,
        it is committed too after the block (db-plugins' get_or_create committed the session).
        """
        if self._conn is not None:
            with self._conn.transaction():
                yield self._conn
            if persist and not self._explicit:
                self.commit()
            return
        with self.connection() as conn, conn.transaction():
            yield conn

    def begin(self) -> Conn:
        """Open the implicit transaction unless one is open; return its connection."""
        if self._conn is None:
            conn = self._acquire()
            try:
                conn.execute("BEGIN")
            except psycopg.Error as exc:
                self._pool.putconn(conn)
                raise wrap_db_error(exc, action="BEGIN") from exc
            self._conn = conn
        return self._conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """``with session.transaction():`` commits on success and rolls back on any exception.

        Nested blocks are savepoints: an exception inside undoes the inner block only if the caller catches it.
        """
        outermost = self._conn is None
        conn = self.begin() if outermost else self._conn
        assert conn is not None
        self._explicit += 1
        try:
            if outermost:
                yield self
            else:
                with conn.transaction():
                    yield self
        except BaseException:
            self._explicit -= 1
            if outermost:
                self.rollback()
            raise
        else:
            self._explicit -= 1
            if outermost:
                self.commit()

    # -- unit of work ----------------------------------------------------------------------------------------

    def commit(self) -> None:
        """Make the open transaction durable and give its connection back. No-op without a transaction."""
        if self._conn is None:
            return
        if self._explicit:
            raise DbpError("commit() inside 'with db.transaction()': the block commits when it ends")
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
        """Undo the open transaction and give its connection back. No-op without a transaction."""
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
        self.rollback()
        self._explicit = 0

    def remove(self) -> None:
        """Close the session for good (db-plugins' scoped ``session.remove()``)."""
        self.close()
        self._closed = True


def _thread_scope() -> Hashable:
    return threading.get_ident()


class ScopedSession(ScopedCompat):
    """A registry of sessions, one per scope: per thread by default, or per ``scope_func()`` value.

    ``db.session`` is this object when ``use_scoped=True``; every method acts on the current scope's session.
    """

    def __init__(
        self,
        factory: Callable[[], Session],
        scope_func: Callable[[], Hashable] | None = None,
    ) -> None:
        self._factory = factory
        self._scope = scope_func or _thread_scope
        self._sessions: dict[Hashable, Session] = {}
        self._lock = threading.Lock()

    def current(self) -> Session:
        """The session of the current scope, created on first use."""
        key = self._scope()
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = self._sessions[key] = self._factory()
        return session

    def __call__(self) -> Session:
        return self.current()

    def remove(self) -> None:
        """Close and forget the current scope's session."""
        key = self._scope()
        with self._lock:
            session = self._sessions.pop(key, None)
        if session is not None:
            session.remove()

    def remove_all(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.remove()

    # Delegation: the unit-of-work API of the current scope's session.
    def commit(self) -> None:
        self.current().commit()

    def rollback(self) -> None:
        self.current().rollback()

    def close(self) -> None:
        self.current().close()

    def transaction(self) -> contextlib.AbstractContextManager[Session]:
        return self.current().transaction()

    def connection(self) -> contextlib.AbstractContextManager[Conn]:
        return self.current().connection()

    def atomic(self, *, persist: bool = True) -> contextlib.AbstractContextManager[Conn]:
        return self.current().atomic(persist=persist)

    def begin(self) -> Conn:
        return self.current().begin()

    @property
    def in_transaction(self) -> bool:
        return self.current().in_transaction

    @property
    def in_explicit_transaction(self) -> bool:
        return self.current().in_explicit_transaction

    def __repr__(self) -> str:
        return f"<dbplugins.ScopedSession {len(self._sessions)} scope(s)>"
