"""Query: db-plugins' query API (filters, find, paginate, update, get_or_create ...) over plain SQL.

``db.query(Model)`` returns a :class:`Query` bound to a model; ``db.query()`` an unbound one whose methods
take ``model=``, as in db-plugins. Builder methods return a new query (the original is untouched)::

    >>> q = Query(None, Watchlist).filter_by({"name": "sn"}).filter("score", ">=", 0.5)
    >>> q.order_by("-score").limit(10).as_sql()
    'SELECT ... FROM "watchlist" WHERE "name" = %s AND "score" >= %s ORDER BY "score" DESC LIMIT %s'

Conditions are column expressions (:mod:`dbplugins._query.expressions`): ``filter(Object.oid.in_(oids),
Object.ndet > 3)``, ``order_by(Object.lastmjd.desc())``, ``db.query(Object.oid, Object.meanra)`` for rows of
some columns with attribute access, ``distinct()``, ``to_dataframe()``. The older spellings stay: equality
dicts (``filter_by({"oid": oid})`` or ``filter_by(oid=oid)``; ``None`` means ``IS NULL``) and
``filter(column, op, value)`` with ``op`` one of
``= != < <= > >= in, not in, between, is null, is not null, like, ilike``. ``find(filter_by=...)`` takes a
dict or a list of ``(column, op, value)`` triples. Every column name is checked against the model before any
SQL is built: an unknown (or hostile) name raises ``UnknownColumnError``. Identifiers are quoted with
``psycopg.sql.Identifier``; values are always bound.

Reads run on the session's connection (``session.connection()``), so they see the session's uncommitted
writes. ``update()`` and ``delete()`` run inside the session's transaction and are durable on
``db.session.commit()``; ``get_or_create`` persists on return unless inside ``with db.transaction():`` (see
:mod:`dbplugins._upsert`).

The SQL text of each query shape (table, columns, filter columns and operators, ordering) is composed once and
cached, so a hot loop only binds values; psycopg prepares statements run more than 5 times on a connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar, cast, overload

import psycopg

from .. import _upsert as ingest
from .._copy import bulk
from .._copy.update import UpdateCount, bulk_update
from .._session.session import statement_cursor
from .._types.binding import translate_error
from .._types.rows import check_columns, warn_dropped
from .._types.schema import Table
from ..errors import (
    ConfigurationError,
    DbpError,
    MultipleResultsFound,
    NoResultFound,
    QueryError,
)
from . import frames, results, writes
from .builder import QueryBuilder, SessionSource
from .conditions import OPERATORS, conditions, key_values
from .expressions import ColumnExpr
from .pagination import KeysetPage, Pagination

__all__ = ["Query", "Pagination", "KeysetPage", "OPERATORS"]

T = TypeVar("T")
M = TypeVar("M")


class Query(QueryBuilder[T]):
    """A query on one model: db-plugins' ``SQLQuery`` API without SQLAlchemy.

    Build with :meth:`filter_by`, :meth:`filter`, :meth:`order_by`, :meth:`limit`, :meth:`offset` (each
    returns a new query), then run with :meth:`all`, :meth:`first`, :meth:`one`, :meth:`one_or_none`,
    :meth:`count`, :meth:`paginate`, :meth:`keyset`, :meth:`delete`. db-plugins' methods (:meth:`find`,
    :meth:`find_one`, :meth:`check_exists`, :meth:`get_or_create`, :meth:`update`, :meth:`bulk_insert`) take
    ``model=`` so that they work on an unbound ``db.query()`` too.
    """

    @classmethod
    def from_args(cls, db: SessionSource | None, args: Sequence[Any]) -> Query[Any]:
        """``db.query(Model)``, ``db.query()``, or ``db.query(Model.a, Model.b)``
        (a projection of one model)."""
        if not args:
            return cls(db, None)
        if all(isinstance(a, ColumnExpr) for a in args):
            exprs = cast(Sequence[ColumnExpr], args)
            model = exprs[0].cls
            for e in exprs[1:]:
                if e.table is not exprs[0].table:
                    raise QueryError(
                        f"query() columns of models {exprs[0].table.name!r} and {e.table.name!r} cannot be "
                        "mixed (no joins)"
                    )
            query: Query[Any] = cls(db, model)
            return query._clone(_columns=tuple(e.name for e in exprs), _named=True)
        if len(args) > 1:
            raise QueryError(
                "query() takes at most one model, or columns of one model "
                "(db.query(Object.oid, Object.meanra))"
            )
        return cls(db, args[0])

    def _fetch(self, stmt: str, params: Sequence[Any], action: str) -> list[Any]:
        table = self._table()
        session = self._session()
        names = self._columns if self._columns is not None else tuple(table.columns)
        binary = results.binary_ok(table, names)
        make = results.row_class(names) if self._named else None
        model = cast(type, self._model) if self._columns is None else None
        with results.gc_paused():
            try:
                with session.connection() as conn:
                    if results.prepare_flag(params) is not False:
                        rows = results.fetch_tuples(conn, stmt, params, binary=binary, make=make)
                        return results.instances(model, names, rows) if model else rows
                    # unprepared anyway (an in_ list, often many rows): streamed, each chunk built while the
                    # server produces the next
                    out: list[Any] = []
                    for chunk in results.stream_tuples(conn, stmt, params, binary=binary, make=make):
                        out.extend(results.instances(model, names, chunk) if model else chunk)
                    return out
            except (psycopg.Error, UnicodeEncodeError) as exc:
                raise translate_error(exc, table, [self._values()], action=action) from exc

    def _scalar(self, stmt: str, params: Sequence[Any], action: str) -> Any:
        table = self._table()
        session = self._session()
        try:
            with session.connection() as conn:
                cur = statement_cursor(conn)
                row = cur.execute(stmt, params, prepare=results.prepare_flag(params)).fetchone()
        except (psycopg.Error, UnicodeEncodeError) as exc:
            raise translate_error(exc, table, [self._values()], action=action) from exc
        return row[0] if row else None

    def all(self) -> list[T]:
        """All matching rows, as model instances (tuples after :meth:`columns`)."""
        stmt, params = self._select()
        return self._fetch(stmt, params, "all")

    def __iter__(self) -> Iterator[T]:
        return iter(self.all())

    def to_dataframe(self) -> Any:
        """The matching rows as a ``pandas.DataFrame`` (the ``pandas`` extra), one column per selected column.

        Built straight from the fetched tuples (no model instances), replacing ``pd.read_sql(query.statement,
        db.engine)``.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ConfigurationError("to_dataframe() needs pandas: pip install 'dbplugins[pandas]'") from None
        table = self._table()
        columns = self._columns if self._columns is not None else tuple(table.columns)
        packed = frames.frame_layout(table, columns, self._distinct)
        stmt, params = self._select(packed=packed)
        plain = [c for c in columns if c not in dict(packed)]  # as _select lists them, after the packed part
        with results.gc_paused():
            parts = self._frame_parts(table, stmt, params, plain, packed=bool(packed))
            if packed:
                frame = frames.packed_frame(pd, table, columns, packed, plain, parts)
                if frame is not None:
                    return frame
                # a column the model declares NOT NULL holds a NULL in the database: read the values plainly
                stmt, params = self._select()
                parts = self._frame_parts(table, stmt, params, columns, packed=False)
            return frames.plain_frame(pd, table, columns, parts)

    def _frame_parts(
        self, table: Table, stmt: str, params: list[Any], plain: Sequence[str], *, packed: bool
    ) -> frames.FrameParts:
        """The rows of a ``to_dataframe()`` statement, streamed and kept as columns (binary when every
        ``plain`` column reads the same)."""
        parts = frames.FrameParts(len(plain) + packed, packed)
        try:
            with self._session().connection() as conn:
                binary = results.binary_ok(table, plain)
                for chunk in results.stream_tuples(conn, stmt, params, binary=binary):
                    parts.add(chunk)
        except (psycopg.Error, UnicodeEncodeError) as exc:
            raise translate_error(exc, table, [self._values()], action="to_dataframe") from exc
        return parts

    def first(self) -> T | None:
        """The first matching row, or None (``LIMIT 1``)."""
        limit = 1 if self._limit is None else min(self._limit, 1)
        stmt, params = self._select(limit=limit)
        rows = self._fetch(stmt, params, "first")
        return cast(T, rows[0]) if rows else None

    def one_or_none(self) -> T | None:
        """The only matching row, or None; ``MultipleResultsFound`` if there are more."""
        limit = 2 if self._limit is None else min(self._limit, 2)
        stmt, params = self._select(limit=limit)
        rows = self._fetch(stmt, params, "one_or_none")
        if len(rows) > 1:
            raise MultipleResultsFound(
                f"more than one row of model {self._table().name!r} matches {self._describe()}",
                model=self._table().name,
            )
        return cast(T, rows[0]) if rows else None

    def one(self) -> T:
        """The only matching row; ``NoResultFound`` if none, ``MultipleResultsFound`` if more."""
        row = self.one_or_none()
        if row is None:
            raise NoResultFound(
                f"no row of model {self._table().name!r} matches {self._describe()}", model=self._table().name
            )
        return row

    def get(self, key: Any) -> T | None:
        """The row with primary key ``key`` (a value, a tuple for a composite key, or a dict), or None."""
        table = self._table()
        values = key_values(table, table.primary_key, key)
        return self.filter_by(dict(zip(table.primary_key, values, strict=True))).one_or_none()

    def count(self) -> int:
        """The number of matching rows (counting within limit/offset when set).

        >>> Query(None, Watchlist).filter_by(name="sn")._count_sql()
        'SELECT count(*) FROM "watchlist" WHERE "name" = %s'
        """
        stmt, params = self._count_parts()
        return int(self._scalar(stmt, params, "count"))

    def exists(self) -> bool:
        """Whether any row matches (``SELECT EXISTS (...)``)."""
        table = self._table()
        where, params = self._where(table)
        self._expr_params(table, params)
        stmt = self._statement("exists", table, (), where, (), False, False)
        return bool(self._scalar(stmt, params, "exists"))

    def delete(self) -> int:
        """Delete the matching rows inside the session's transaction; return how many.

        Like :meth:`update`, the deletion is durable on ``db.session.commit()`` and undone by ``rollback()``.
        ``delete()`` with no filter deletes every row of the table.
        """
        table = self._table()
        if self._limit is not None or self._offset is not None or self._order:
            raise QueryError(
                "delete() does not take limit(), offset() or order_by(); filter the rows instead"
            )
        where, params = self._where(table)
        self._expr_params(table, params)
        stmt = self._statement("delete", table, (), where, (), False, False)
        session = self._session()
        conn = session.begin()
        try:
            cur = conn.execute(stmt, params, prepare=results.prepare_flag(params))
        except (psycopg.Error, UnicodeEncodeError) as exc:
            raise translate_error(exc, table, [self._values()], action="delete") from exc
        return cur.rowcount

    def check_exists(self, model: Any = None, filter_by: Any = None) -> bool:
        """Whether a row of ``model`` matches ``filter_by`` (a dict, or a list of (column, op, value))."""
        return self._bind(model)._with(filter_by).exists()

    def _with(self, filter_by: Any) -> Query[Any]:
        conds = conditions(filter_by)
        if not conds:
            return self
        check_columns(self._table(), (c for c, _, _ in conds), what="filter column")
        return self._clone(_conds=self._conds + tuple(conds))

    @overload
    def find(
        self,
        model: None = None,
        filter_by: Any = None,
        paginate: Literal[True] = True,
        *,
        page: int = 1,
        per_page: int = 10,
    ) -> Pagination[T]: ...

    @overload
    def find(
        self,
        model: None = None,
        filter_by: Any = None,
        *,
        paginate: Literal[False],
        page: int = 1,
        per_page: int = 10,
    ) -> list[T]: ...

    @overload
    def find(
        self,
        model: type[M],
        filter_by: Any = None,
        paginate: Literal[True] = True,
        *,
        page: int = 1,
        per_page: int = 10,
    ) -> Pagination[M]: ...

    @overload
    def find(
        self,
        model: type[M],
        filter_by: Any = None,
        *,
        paginate: Literal[False],
        page: int = 1,
        per_page: int = 10,
    ) -> list[M]: ...

    @overload
    def find(
        self, model: None, filter_by: Any, paginate: Literal[False], *, page: int = 1, per_page: int = 10
    ) -> list[T]: ...

    @overload
    def find(
        self, model: type[M], filter_by: Any, paginate: Literal[False], *, page: int = 1, per_page: int = 10
    ) -> list[M]: ...

    @overload
    def find(
        self,
        model: Any = None,
        filter_by: Any = None,
        paginate: bool = True,
        *,
        page: int = 1,
        per_page: int = 10,
    ) -> Any: ...

    def find(
        self,
        model: Any = None,
        filter_by: Any = None,
        paginate: bool = True,
        *,
        page: int = 1,
        per_page: int = 10,
    ) -> Any:
        """The rows of ``model`` matching ``filter_by``: a :class:`Pagination` (page 1 of 10 by default), or a
        list with ``paginate=False``. ``filter_by`` is a dict or a list of ``(column, op, value)`` triples."""
        query = self._bind(model)._with(filter_by)
        if paginate:
            return query.paginate(page, per_page)
        return query.all()

    find_all = find

    @overload
    def find_one(self, model: None = None, filter_by: Any = None) -> T | None: ...

    @overload
    def find_one(self, model: type[M], filter_by: Any = None) -> M | None: ...

    def find_one(self, model: Any = None, filter_by: Any = None) -> Any:
        """The one row of ``model`` matching ``filter_by``, or None;
        ``MultipleResultsFound`` if several match."""
        return self._bind(model)._with(filter_by).one_or_none()

    def paginate(
        self, page: int = 1, per_page: int = 10, count: bool = True, max_results: int = 50000
    ) -> Pagination[T]:
        """One page of results, db-plugins style (``LIMIT per_page OFFSET (page-1)*per_page``).

        ``page < 1`` becomes 1 and ``per_page < 0`` becomes 10. ``total`` is counted up to ``max_results + 1``
        rows, or None with ``count=False``. There is no implicit ordering: add :meth:`order_by` for stable
        pages, and prefer :meth:`keyset` for deep pages (OFFSET reads and discards every skipped row).
        """
        if page < 1:
            page = 1
        if per_page < 0:
            per_page = 10
        items = self.limit(per_page).offset((page - 1) * per_page).all()
        total = self.order_by(None).limit(max_results + 1).count() if count else None
        return Pagination(self, page, per_page, total, items, max_results=max_results)

    def keyset(self, per_page: int = 10, after: Any = None) -> KeysetPage[T]:
        """A page of rows ordered by the primary key, starting after the key ``after``.

        ``after`` is the last row of the previous page (a model instance), its key (a value, a tuple for a
        composite key, or a dict), or None for the first page. Each page costs an index seek, however deep::

            >>> Query(None, Watchlist).filter_by(name="sn")._keyset_sql()
            'SELECT ... FROM "watchlist" WHERE "name" = %s AND "wid" > %s ORDER BY "wid" LIMIT %s'
        """
        table = self._table()
        pk = table.primary_key
        if not pk:
            raise QueryError(f"keyset() needs a primary key; model {table.name!r} has none")
        if self._limit is not None or self._offset is not None:
            raise QueryError("keyset() pages by itself: drop limit() and offset()")
        if self._order and self._order != tuple((c, False) for c in pk):
            raise QueryError("keyset() orders by the primary key: drop order_by()")
        if per_page < 1:
            raise QueryError(f"keyset() needs per_page >= 1, got {per_page}")
        key = None if after is None else tuple(key_values(table, pk, after))
        ordered = self._clone(_order=tuple((c, False) for c in pk), _order_nulls=())
        stmt, params = ordered._select(limit=per_page + 1, keyset=pk if key else (), after=key or ())
        rows = self._fetch(stmt, params, "keyset")
        has_next = len(rows) > per_page
        items = rows[:per_page]
        next_after = tuple(self._key_of(table, items[-1])) if items else key
        return KeysetPage(self, items, per_page, key, next_after, has_next)

    def _key_of(self, table: Table, row: Any) -> list[Any]:
        if self._columns is None:
            return [getattr(row, c) for c in table.primary_key]
        missing = [c for c in table.primary_key if c not in self._columns]
        if missing:
            raise QueryError(f"keyset() with columns(): include the primary key column(s) {missing}")
        return [row[self._columns.index(c)] for c in table.primary_key]

    def iter_keyset(self, per_page: int = 1000) -> Iterator[T]:
        """Every matching row, in primary key order, fetched ``per_page`` at a time by keyset pagination."""
        page = self.keyset(per_page)
        while True:
            yield from page.items
            if not page.has_next:
                return
            page = page.next()

    @overload
    def get_or_create(self, model: None = None, filter_by: Any = None, **kwargs: Any) -> tuple[T, bool]: ...

    @overload
    def get_or_create(self, model: type[M], filter_by: Any = None, **kwargs: Any) -> tuple[M, bool]: ...

    def get_or_create(self, model: Any = None, filter_by: Any = None, **kwargs: Any) -> tuple[Any, bool]:
        """``(instance, created)``: the row of ``model`` matching ``filter_by``, inserted with
        ``kwargs`` if missing.

        Race-safe (``INSERT ... ON CONFLICT DO NOTHING RETURNING``, then a SELECT only when the row existed);
        persists on return unless inside ``with db.transaction():``. See
        :func:`dbplugins._upsert.one.get_or_create`.
        """
        query = self._bind(model)
        if self._conds or self._exprs:
            raise QueryError(
                "get_or_create() takes its conditions in filter_by=, not from filter()/filter_by()"
            )
        return ingest.get_or_create(query._session(), cast(Any, query._model), filter_by, kwargs)

    def get_or_create_many(
        self,
        rows: Iterable[Any],
        model: Any = None,
        key: Sequence[str] | None = None,
        *,
        batch_size: int = 10_000,
        unknown: Literal["error", "ignore"] | None = None,
    ) -> list[tuple[Any, bool]]:
        """``[(instance, created), ...]`` for ``rows`` in input order; the batched :meth:`get_or_create`.

        See :func:`dbplugins._upsert.many.get_or_create_many`.
        """
        query = self._bind(model)
        return ingest.get_or_create_many(
            query._session(),
            cast(Any, query._model),
            rows,
            key=key,
            batch_size=batch_size,
            unknown=str(unknown or getattr(self._db, "unknown_keys", "error")),
        )

    def update(self, instance: Any, values: Mapping[str, Any], model: Any = None) -> Any:
        """Set ``values`` on the row of ``instance`` (``UPDATE ... WHERE <pk> RETURNING``);
        return the instance.

        Runs inside the session's transaction: durable on ``db.session.commit()``, undone by ``rollback()``.
        The instance is refreshed in place from the row returned (a frozen dataclass gets a new instance
        instead). Unknown columns raise ``UnknownColumnError``;
        a row that no longer exists raises ``NoResultFound``.
        """
        cls = model if model is not None else type(instance)
        return writes.update(self._bind(cls)._session(), cls, instance, values)

    def bulk_insert(
        self,
        rows: Iterable[Any],
        model: Any = None,
        *,
        on_conflict: Literal["ignore", "error", "update"] = "ignore",
        chunk_size: int | None = None,
        unknown: Literal["error", "ignore"] | None = None,
        parallel: int = 1,
    ) -> int:
        """Insert ``rows`` (dicts or model instances, any iterable) with COPY; return the number inserted.

        ``unknown``: ``"error"`` (the default) raises for a row key that is not a column,
        ``"ignore"`` drops it. ``parallel``: the number of COPY streams (default 1); see docs/parallel.md.

        See :func:`dbplugins._copy.bulk.bulk_insert` for ``on_conflict`` (``"ignore"``,
        ``"error"``, ``"update"``).
        """
        query = self._bind(model)
        mode = str(unknown or getattr(self._db, "unknown_keys", "error"))
        dropped: set[str] = set()
        try:
            count: int = bulk.bulk_insert(
                query._session(),
                query._table(),
                rows,
                on_conflict=on_conflict,
                chunk_size=chunk_size,
                unknown=mode,
                dropped=dropped,
                parallel=parallel,
            )
        finally:
            if dropped and mode == "warn":
                warn_dropped(query._table(), dropped, "bulk_insert")
        return count

    def bulk_update(
        self,
        rows: Iterable[Any],
        model: Any = None,
        *,
        key: Sequence[str] | None = None,
        missing: Literal["ignore", "error"] = "ignore",
    ) -> UpdateCount:
        """Update the columns each row names (rows matched by ``key``, the primary key by default); return the
        number of rows updated, an ``int`` whose ``missing`` lists the input rows whose key is not stored.

        Rows are never inserted; ``missing="error"`` raises instead. See
        :func:`dbplugins._copy.update.bulk_update`.
        """
        query = self._bind(model)
        return bulk_update(query._session(), query._table(), rows, key=key, missing=missing)

    def __repr__(self) -> str:
        if self._model is None:
            return "<dbplugins.Query (no model)>"
        try:
            return f"<dbplugins.Query {self.as_sql()}>"
        except DbpError as exc:
            return f"<dbplugins.Query on {self._model.__name__} (invalid: {exc})>"
