"""SQLConnection: the entry point, a psycopg_pool connection pool plus sessions::

    db = SQLConnection()
    db.connect(dsn="postgresql://alerce@db.example/ztf")     # or connect(config=DB_CONFIG["SQL"]), connect()
    obj, created = db.query(Object).get_or_create(filter_by={"oid": "ZTF20abc"}, ndet=1)
    db.close()

``connect()`` with no arguments takes ``DBP_DSN`` / ``DATABASE_URL``, then ``./settings.py``, then starts the
embedded server. Pool options (``min_size``, ``max_size``, ``timeout``, ``max_lifetime``, ``max_idle``,
``reconnect_timeout``, ``num_workers``, ``check``) go straight to ``psycopg_pool.ConnectionPool``.

``connect()`` opens one connection itself before it opens the pool, so a wrong password, an unknown database,
a refused port or an unresolvable host fails there, within ``connect_timeout``, as a ``ConnectionFailedError``
that says why, instead of as a pool timeout on the first query.
"""

from __future__ import annotations

import logging
import os
import struct
import weakref
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar, overload

import psycopg
from psycopg import sql
from psycopg.abc import Buffer
from psycopg_pool import ConnectionPool

from .. import config as _config
from ..errors import ConfigurationError, DbpError, wrap_db_error
from .compat import bind_query_property, unbind_query_property, warn_ignored
from .pool import Failures, Pool, close_pool, probe, recording_class
from .scoped import ScopedSession
from .session import Session
from .session import Session as _Session  # the name Session is shadowed by a db-plugins argument below
from .sqllog import LoggedCursor

if TYPE_CHECKING:
    from .._query.query import Query

__all__ = ["SQLConnection"]

log = logging.getLogger("dbplugins")

_M = TypeVar("_M")

# Pool defaults. A worker process rarely needs more than a couple of connections; 10 leaves room for threads
# while 8 such workers stay far below PostgreSQL's default max_connections of 100.
DEFAULT_POOL = {
    "min_size": 1,
    "max_size": 10,
    "timeout": 30.0,
    "max_lifetime": 3600.0,
    "max_idle": 600.0,
    "reconnect_timeout": 300.0,
}

# Seconds to wait for a new connection (libpq's connect_timeout) unless the DSN sets one. libpq itself waits
# forever, and a firewall that drops packets would hang connect() for minutes; a server that answers at all
# answers in milliseconds, a TLS + SCRAM handshake over a WAN in well under a second.
DEFAULT_CONNECT_TIMEOUT = 10.0


def _configurer(
    user: Callable[[psycopg.Connection[Any]], None] | None,
) -> Callable[[psycopg.Connection[Any]], None]:
    """The pool's ``configure``: autocommit (which sessions rely on), then the caller's own ``configure=``."""

    def configure(conn: psycopg.Connection[Any]) -> None:
        # Statements outside a session transaction are single round trips that commit themselves.
        conn.autocommit = True
        # Every statement of every module goes through a cursor of this class: the dbplugins.sql log.
        conn.cursor_factory = LoggedCursor
        # A text ``real`` read as the float32 it denotes, as the binary loader does (see Float4TextLoader).
        conn.adapters.register_loader("float4", Float4TextLoader)
        if user is not None:
            user(conn)
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.commit()
            conn.autocommit = True

    return configure


class Float4TextLoader(psycopg.adapt.Loader):
    """A ``real`` in text format, read as the float32 it stands for.

    The server writes a float4 as its shortest decimal form ("6.710887e+07" for 67108872). psycopg's text
    loader parses that into the nearest double, 67108870.0, while its binary loader widens the float32
    exactly, 67108872.0: the same stored value came back as two different floats depending on the result
    format (queries fetch binary; ``db.execute`` and results with a column that has no binary loader fetch
    text). Rounding the parsed double to float32 gives the stored value back (the shortest form round-trips,
    PostgreSQL 12 and later), so every path reads the same float.
    """

    def load(self, data: Buffer) -> float:
        value: float = _FLOAT4.unpack(_FLOAT4.pack(float(bytes(data))))[0]
        return value


_FLOAT4 = struct.Struct("f")


class SQLConnection:
    """A connection pool and its session(s): db-plugins' ``SQLConnection``, backed by psycopg 3.

    Use as a context manager, or call :meth:`close` when done, to close the pool.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | str | None = None,
        engine: Any = None,
        Base: Any = None,  # noqa: N803 - db-plugins' signature
        Session: Any = None,  # noqa: N803
        session: Any = None,
    ) -> None:
        if engine is not None or Session is not None or session is not None:
            raise ConfigurationError(
                "SQLConnection(engine=, Session=, session=) are SQLAlchemy objects and are not supported; "
                "pass a config dict or DSN to connect()"
            )
        self.config = config
        self.Base = Base
        self.settings: _config.ConnectionSettings | None = None
        self.pool: ConnectionPool[Any] | None = None
        self.session: _Session | ScopedSession | None = None
        self.use_scoped = False
        self._session_options: dict[str, Any] = {}
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # -- connecting ------------------------------------------------------------------------------------------

    def connect(
        self,
        config: Mapping[str, Any] | str | None = None,
        *,
        dsn: str | None = None,
        base: Any = None,
        session_options: Mapping[str, Any] | None = None,
        create_session: bool = True,
        use_scoped: bool = False,
        scope_func: Callable[[], Hashable] | None = None,
        settings_path: str | None = None,
        connect_timeout: float | None = None,
        **pool_options: Any,
    ) -> None:
        """Open the pool and (by default) a session.

        ``config`` is a db-plugins ``DB_CONFIG["SQL"]`` dict or a DSN; ``dsn`` a DSN. With neither, the
        environment, ``settings.py`` and finally the embedded server are tried, in that order. The dict is not
        modified. ``pool_options`` are ``psycopg_pool.ConnectionPool`` options.

        One connection is made here and closed again, before the pool opens: if the server refuses it (wrong
        password, unknown database, refused port, unresolvable host, bad ``sslmode``) this raises
        :class:`~dbplugins.ConnectionFailedError` within ``connect_timeout`` seconds (default: the DSN's
        ``connect_timeout``, else 10), naming host, port, database and user and the server's reason.
        """
        if self.pool is not None:
            raise DbpError("already connected; call close() first")
        cfg = config if config is not None else self.config
        settings = _config.resolve(cfg, dsn=dsn, settings_path=settings_path)
        if base is not None:
            self.Base = base
        warn_ignored(base=self.Base, session_options=session_options)
        self._session_options = dict(session_options or {})
        options = {**DEFAULT_POOL, **pool_options}
        options["configure"] = _configurer(options.get("configure"))
        unknown = set(options) - _POOL_ARGS
        if unknown:
            raise ConfigurationError(f"unknown pool option(s): {', '.join(sorted(unknown))}")
        # The pool's connections get the same bound as the probe, unless the DSN or kwargs= chose one.
        user_kwargs = options.get("kwargs") or {}
        if callable(user_kwargs):  # psycopg_pool >= 3.3: a function returning fresh kwargs per connection
            kwargs = dict(user_kwargs())
        else:
            kwargs = dict(user_kwargs)
            if "connect_timeout" not in settings.params and "connect_timeout" not in kwargs:
                timeout = DEFAULT_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
                kwargs["connect_timeout"] = max(1, round(timeout))
            elif connect_timeout is not None:
                kwargs["connect_timeout"] = max(1, round(connect_timeout))
            options["kwargs"] = kwargs
        connection_class = options.get("connection_class") or psycopg.Connection
        probe(settings, connection_class, kwargs)
        self.settings = settings
        if base is not None:
            self.Base = base
        self._session_options = dict(session_options or {})
        failures = Failures()
        options["connection_class"] = recording_class(connection_class, failures)
        pool: ConnectionPool[Any] = Pool(
            settings.conninfo, open=False, name=f"dbplugins:{settings.params.get('dbname', '')}", **options
        )
        pool.dbp_settings, pool.dbp_failures = settings, failures  # type: ignore[attr-defined]
        pool.open(wait=False)
        self.pool = pool
        # An SQLConnection nobody closes still closes its pool: when it is garbage-collected, or at
        # interpreter exit, from the thread that drops it. Left to the pool's own __del__, the last reference
        # can fall in one of the pool's worker threads, which then tries to join itself ("Exception ignored in
        # ConnectionPool.__del__ ... cannot join current thread", psycopg/psycopg#1043).
        self._finalizer = weakref.finalize(self, close_pool, pool, os.getpid())
        log.info("connected pool to %s (from %s)", settings.safe_dsn, settings.source)
        if create_session:
            self.create_session(use_scoped, scope_func)

    def create_session(
        self, use_scoped: bool = False, scope_func: Callable[[], Hashable] | None = None
    ) -> None:
        """Create ``db.session``: a plain session, or a registry of per-thread (per
        ``scope_func()``) sessions."""
        pool = self._require_pool()
        if use_scoped:
            self.session = ScopedSession(lambda: Session(pool, self._session_options), scope_func)
            self.use_scoped = True
            bind_query_property(self)  # Model.query, as db-plugins' Base.query = session.query_property()
        else:
            self.session = Session(pool, self._session_options)

    def end_session(self) -> None:
        """Close ``db.session`` (rolling back anything uncommitted) and set it to ``None``."""
        if self.session is None:
            return
        if isinstance(self.session, ScopedSession):
            self.session.remove()
        else:
            self.session.close()
        self.session = None

    def close(self) -> None:
        """Close the sessions and the pool. Idempotent."""
        unbind_query_property(self)
        if self.session is not None:
            if isinstance(self.session, ScopedSession):
                self.session.remove_all()
            else:
                self.session.close()
            self.session = None
        if self.pool is not None:
            pool, self.pool = self.pool, None
            if self._finalizer is not None:
                self._finalizer.detach()
            pool.close()

    def __enter__(self) -> SQLConnection:
        if self.pool is None:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        target = self.settings.safe_dsn if self.settings else "not connected"
        return f"<dbplugins.SQLConnection {target}>"

    # -- sessions --------------------------------------------------------------------------------------------

    def _require_pool(self) -> ConnectionPool[Any]:
        if self.pool is None:
            raise DbpError("not connected: call db.connect(...) first")
        return self.pool

    def current_session(self) -> Session:
        """The session that queries use now (the current scope's, for scoped sessions)."""
        if self.session is None:
            raise DbpError("no session: call db.create_session() (end_session() removed it)")
        if isinstance(self.session, ScopedSession):
            return self.session.current()
        return self.session

    def transaction(self) -> AbstractContextManager[Session]:
        """``with db.transaction():`` an explicit transaction on the current session (nested = savepoint)."""
        return self.current_session().transaction()

    @overload
    def query(self, model: type[_M], /) -> Query[_M]: ...
    @overload
    def query(self, *args: Any) -> Query[Any]: ...
    def query(self, *args: Any) -> Query[Any]:
        """A query on a model class, on columns of one model (``db.query(Object.oid, Object.meanra)``: rows
        with attribute access), or an unbound one (``db.query()``) that takes ``model=`` per call."""
        from .._query.query import Query

        return Query.from_args(self, args)

    # -- schema ----------------------------------------------------------------------------------------------

    def execute(self, statement: Any, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on the current session (its transaction if open) and return its rows, if any."""
        session = self.current_session()
        try:
            with session.connection() as conn:
                cur = conn.execute(statement, params)
                return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise wrap_db_error(exc) from exc

    def create_db(self, distributed: bool = False) -> None:
        """Create the built-in schema from the hand-written DDL in ``sql/schema`` (missing tables only).

        ``distributed=True``: on a Citus coordinator, also distribute the tables as their models declare
        (``DbpError`` if the server has no Citus); see docs/scaling.md.
        """
        from .._sqlfiles import schema_script

        script = schema_script()
        if not script.strip():
            return
        session = self.current_session()
        try:
            with session.atomic() as conn:
                if distributed:
                    from .. import citus

                    citus.create_distributed_schema(conn, citus.builtin_tables(), script)
                    return
                conn.execute(script.encode())  # our own files, not user data
        except psycopg.Error as exc:
            raise wrap_db_error(exc, action="create_db") from exc

    def drop_db(self) -> None:
        """Drop the built-in tables (and whatever depends on them)."""
        names = [t.name for t in _builtin_tables()]
        if not names:
            return
        stmt = sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
            sql.SQL(", ").join(map(sql.Identifier, names))
        )
        session = self.current_session()
        try:
            with session.atomic() as conn:
                conn.execute(stmt)
        except psycopg.Error as exc:
            raise wrap_db_error(exc, action="drop_db") from exc


def _builtin_tables() -> Iterator[Any]:
    try:
        from ..models import ALL_MODELS
    except ImportError:  # pragma: no cover - models ship with the package
        return iter(())
    from .._types.schema import table_of

    return (table_of(m) for m in ALL_MODELS)


_POOL_ARGS = frozenset(
    {
        "min_size",
        "max_size",
        "timeout",
        "max_waiting",
        "max_lifetime",
        "max_idle",
        "reconnect_timeout",
        "reconnect_failed",
        "num_workers",
        "configure",
        "check",
        "reset",
        "kwargs",
        "connection_class",
    }
)
