"""db-plugins' (SQLAlchemy's) session API on dbplugins sessions: ``query``, ``execute``, ``add``, ``flush``.

:class:`SessionCompat` is a base class of :class:`dbplugins.Session`, :class:`ScopedCompat` of
:class:`dbplugins.ScopedSession`::

    db.session.query(Object).filter(Object.oid == oid).one_or_none()    # is db.query(Object)...
    db.session.execute("SELECT count(*) FROM object").scalar()
    db.session.add(Object(oid="ZTF20abc")); db.session.commit()        # queued, inserted at flush()/commit()

Still not an ORM: ``add()`` queues *inserts* (no identity map, no change tracking: changing an instance after
``add()`` and before the flush changes what is inserted; changing it later changes nothing, use
``Query.update``). The queue is flushed in order, consecutive instances of one model as one COPY, inside the
session's transaction, by ``flush()``, ``commit()`` and ``execute()``; ``rollback()`` and ``close()`` discard
it. A flush that fails rolls the whole transaction back (nothing half-written) and re-raises.

``connect(..., use_scoped=True)`` binds ``Model.query`` on every model to the connection, as db-plugins'
``Base.query = session.query_property()`` did: ``Object.query.filter(...)`` is
``db.query(Object).filter(...)`` on the current scope's session.
"""

from __future__ import annotations

import functools
import itertools
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg import sql

from ..errors import QueryError, wrap_db_error

if TYPE_CHECKING:
    from .._query.query import Query
    from .connection import SQLConnection
    from .session import Session

__all__ = [
    "Result",
    "SessionCompat",
    "ScopedCompat",
    "bind_query_property",
    "unbind_query_property",
    "warn_ignored",
]


class Result:
    """The rows of ``session.execute()``, fetched at once: ``fetchall()``, ``fetchone()``,
    ``scalar()``, iteration.

    ``rowcount`` is the number of rows the statement affected (or returned); ``keys()`` the column names.
    """

    def __init__(self, rows: list[Any], columns: Sequence[str], rowcount: int) -> None:
        self._rows = rows
        self._pos = 0
        self._columns = list(columns)
        self.rowcount = rowcount

    def keys(self) -> list[str]:
        return list(self._columns)

    def fetchall(self) -> list[Any]:
        """The rows not fetched yet."""
        rows = self._rows[self._pos :]
        self._pos = len(self._rows)
        return rows

    all = fetchall

    def fetchone(self) -> Any:
        """The next row, or None."""
        if self._pos >= len(self._rows):
            return None
        row = self._rows[self._pos]
        self._pos += 1
        return row

    def first(self) -> Any:
        """The first remaining row, or None (the rest is discarded)."""
        row = self.fetchone()
        self._pos = len(self._rows)
        return row

    def scalar(self) -> Any:
        """The first column of the first remaining row, or None."""
        row = self.first()
        return None if row is None else row[0]

    def scalars(self) -> list[Any]:
        """The first column of every remaining row."""
        return [row[0] for row in self.fetchall()]

    def __iter__(self) -> Iterator[Any]:
        while True:
            row = self.fetchone()
            if row is None:
                return
            yield row

    def __repr__(self) -> str:
        return f"<dbplugins.Result {len(self._rows)} row(s)>"


def _statement_text(statement: Any) -> str | bytes | sql.Composable:
    if isinstance(statement, (str, bytes, sql.Composable)):
        return statement
    text = getattr(statement, "text", None)  # SQLAlchemy's text("...") keeps its SQL in .text
    if isinstance(text, str):
        return text
    raise QueryError(
        f"execute() takes SQL text (str) or a psycopg.sql object, got {type(statement).__name__}; "
        "SQLAlchemy constructs are not supported"
    )


def _run(conn: psycopg.Connection[Any], statement: Any, params: Any) -> Result:
    from psycopg.rows import namedtuple_row

    with conn.cursor(row_factory=namedtuple_row) as cur:
        cur.execute(cast(Any, _statement_text(statement)), params)  # the caller's own SQL, as db.execute
        if cur.description is None:
            return Result([], [], cur.rowcount)
        rows = cur.fetchall()
        return Result(rows, [c.name for c in cur.description], cur.rowcount)


class SessionCompat:
    """The SQLAlchemy-style session methods of :class:`dbplugins.Session` (a base class of it).

    ``__init_subclass__`` wraps the subclass's ``commit`` (flush first) and ``rollback`` (discard the queue),
    so the session module itself needs no change beyond inheriting this class.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        commit = cls.__dict__.get("commit")
        if commit is not None:

            @functools.wraps(commit)
            def commit_flushed(self: Any) -> None:
                self.flush()
                commit(self)

            cls.commit = commit_flushed  # type: ignore[attr-defined]
        rollback = cls.__dict__.get("rollback")
        if rollback is not None:

            @functools.wraps(rollback)
            def rollback_discarding(self: Any) -> None:
                self.__dict__["_dbp_pending"] = []
                rollback(self)

            cls.rollback = rollback_discarding  # type: ignore[attr-defined]

    def _session(self) -> Session:
        return cast("Session", self)

    def current_session(self) -> Session:
        """This session (what a :class:`Query` built by :meth:`query` runs on)."""
        return self._session()

    @property
    def _pending(self) -> list[Any]:
        pending: list[Any] = self.__dict__.setdefault("_dbp_pending", [])
        return pending

    @property
    def new(self) -> list[Any]:
        """The instances queued by :meth:`add` and not flushed yet (SQLAlchemy's ``session.new``)."""
        return list(self._pending)

    def query(self, *args: Any) -> Query[Any]:
        """``db.query(...)`` on this session: a model, columns of one model, or nothing (unbound)."""
        from .._query.query import Query

        return Query.from_args(cast("SQLConnection", self), args)

    def execute(self, statement: Any, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Result:
        """Run one SQL statement (``%s`` / ``%(name)s`` placeholders) and return its :class:`Result`.

        Queued inserts are flushed first. Inside an open transaction the statement is part of it; otherwise it
        runs on its own and commits at once, like :meth:`dbplugins.SQLConnection.execute`.
        """
        session = self._session()
        self.flush()
        try:
            with session.connection() as conn:
                return _run(conn, statement, params)
        except psycopg.Error as exc:
            raise wrap_db_error(exc, action="execute") from exc

    def add(self, instance: Any) -> None:
        """Queue ``instance`` (a model instance) for insertion at the next flush/commit."""
        from .._types.schema import table_of

        if isinstance(instance, type) or isinstance(instance, (Mapping, str, bytes)):
            raise QueryError(f"add() takes a model instance, got {instance!r}")
        table_of(instance)  # ConfigurationError for an object that is not a model instance
        self._pending.append(instance)

    def add_all(self, instances: Iterable[Any]) -> None:
        """Queue each of ``instances``, in order."""
        items = list(instances)
        for item in items:
            self.add(item)

    def flush(self) -> None:
        """Insert the queued instances, in order, inside the session's transaction (opened if needed).

        Nothing is committed here: ``commit()`` does that, ``rollback()`` undoes it. If an insert fails, the
        whole transaction is rolled back and the error re-raised.
        """
        pending = self._pending
        if not pending:
            return
        from .._copy import bulk
        from .._types.schema import table_of

        session = self._session()
        self.__dict__["_dbp_pending"] = []
        session.begin()
        # The inserts join the implicit transaction and stay pending: _held keeps bulk_insert from committing
        # it (as it does for an uncommitted update(), db-plugins' get_or_create behaviour).
        session._held += 1
        try:
            for cls, group in itertools.groupby(pending, key=type):
                bulk.bulk_insert(session, table_of(cls), list(group), on_conflict="error")
        except BaseException:
            if not session.in_explicit_transaction:  # inside a block, the exception leaving it undoes it
                session.rollback()
            raise
        finally:
            session._held -= 1


class ScopedCompat:
    """:class:`SessionCompat`'s methods on a scoped session: each acts on the current scope's session."""

    def current(self) -> Session:  # pragma: no cover - provided by ScopedSession
        raise NotImplementedError

    def current_session(self) -> Session:
        return self.current()

    def query(self, *args: Any) -> Query[Any]:
        """``db.query(...)`` on the current scope's session."""
        from .._query.query import Query

        return Query.from_args(cast("SQLConnection", self), args)

    def execute(self, statement: Any, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Result:
        return self.current().execute(statement, params)

    def add(self, instance: Any) -> None:
        self.current().add(instance)

    def add_all(self, instances: Iterable[Any]) -> None:
        self.current().add_all(instances)

    def flush(self) -> None:
        self.current().flush()


# -- Model.query under use_scoped=True -----------------------------------------------------------------------

_bound: SQLConnection | None = None
_bound_lock = threading.Lock()


class QueryProperty:
    """``Model.query``: a new query on the model, bound to the connection of
    ``connect(..., use_scoped=True)``."""

    def __get__(self, instance: Any, owner: type) -> Query[Any]:
        db = _bound
        if db is None:
            raise AttributeError(
                f"{owner.__name__}.query exists once a connection is made with "
                "db.connect(..., use_scoped=True); use db.query(" + owner.__name__ + ")"
            )
        from .._query.query import Query

        return Query(db, owner)


query_property = QueryProperty()


def install_query_property(cls: type) -> None:
    """Give a model class its ``query`` attribute (unless it has a column or attribute of that name)."""
    if "query" not in cls.__dict__ and not hasattr(cls, "query"):
        cls.query = query_property  # type: ignore[attr-defined]


def bind_query_property(db: SQLConnection) -> None:
    """Make ``Model.query`` run on ``db`` (the last ``use_scoped=True`` connection wins, as in db-plugins)."""
    global _bound
    with _bound_lock:
        _bound = db


def unbind_query_property(db: SQLConnection) -> None:
    """Undo :func:`bind_query_property` if ``db`` is the bound connection."""
    global _bound
    with _bound_lock:
        if _bound is db:
            _bound = None


_warned: set[str] = set()

#: What connect()'s SQLAlchemy-era arguments do here.
IGNORED = {
    "base": "Base / base= (SQLAlchemy's declarative base): models are dataclasses declared with @model; "
    "Model.query is bound with use_scoped=True",
    "session_options": "session_options= (SQLAlchemy sessionmaker options such as autoflush, "
    "expire_on_commit): dbplugins sessions take none",
}


def warn_ignored(**given: Any) -> None:
    """Warn once per process for each SQLAlchemy-era argument that was given and is ignored."""
    for name, value in given.items():
        if value in (None, {}) or name in _warned or name not in IGNORED:
            continue
        _warned.add(name)
        warnings.warn(f"dbplugins ignores {IGNORED[name]}", UserWarning, stacklevel=3)

