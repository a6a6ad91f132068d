"""Query: db-plugins' query API (filters, find, paginate, update, get_or_create ...) over plain SQL.

``db.query(Model)`` returns a :class:`Query` bound to a model; ``db.query()`` an unbound one whose methods take
``model=``, as in db-plugins. Builder methods return a new query (the original is untouched)::

    >>> q = Query(None, Watchlist).filter_by({"name": "sn"}).filter("score", ">=", 0.5)
    >>> q.order_by("-score").limit(10).as_sql()
    'SELECT "wid", "name", "score" FROM "watchlist" WHERE "name" = %s AND "score" >= %s ORDER BY "score" DESC LIMIT %s'

Filters are equality dicts (``filter_by({"oid": oid})`` or ``filter_by(oid=oid)``; ``None`` means ``IS NULL``)
and ``filter(column, op, value)`` with ``op`` one of ``= != < <= > >= in, not in, between, is null, is not null,
like, ilike``. ``find(filter_by=...)`` takes a dict or a list of ``(column, op, value)`` triples. Every column
name is checked against the model before any SQL is built: an unknown (or hostile) name raises
``UnknownColumnError``. Identifiers are quoted with ``psycopg.sql.Identifier``; values are always bound.

Reads run on the session's connection (``session.connection()``), so they see the session's uncommitted writes.
``update()`` and ``delete()`` run inside the session's transaction and are durable on ``db.session.commit()``;
``get_or_create`` persists on return unless inside ``with db.transaction():`` (see :mod:`dbplugins.ingest`).

The SQL text of each query shape (table, columns, filter columns and operators, ordering) is composed once and
cached, so a hot loop only binds values; psycopg prepares statements run more than 5 times on a connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

import psycopg
from psycopg.rows import RowFactory, tuple_row

from . import bulk, ingest
from .errors import (
    DbpError,
    MissingValueError,
    MultipleResultsFound,
    NoResultFound,
    QueryError,
)
from .pagination import KeysetPage, Pagination
from .rows import check_columns, warn_dropped
from .schema import Table, table_of
from .session import statement_cursor
from .statements import (
    OrderSpec,
    WhereSpec,
    class_row_for,
    statement,
    update_statement,
)
from .values import bind, filter_value, translate_error

if TYPE_CHECKING:
    from .connection import SQLConnection
    from .session import Session

__all__ = ["Query", "Pagination", "KeysetPage", "OPERATORS"]

T = TypeVar("T")

_MISSING: Any = object()

#: Accepted spellings of the filter operators -> canonical operator.
OPERATORS: dict[str, str] = {
    "=": "=",
    "==": "=",
    "!=": "!=",
    "<>": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
    "in": "in",
    "not in": "not in",
    "between": "between",
    "is null": "is null",
    "is not null": "is not null",
    "is": "is",
    "is not": "is not",
    "like": "like",
    "ilike": "ilike",
}

Cond = tuple[str, str, Any]
"""A filter condition: (column, canonical operator, value)."""
# -- conditions ------------------------------------------------------------------------------------------------


def make_condition(column: str, op: str, value: Any = _MISSING) -> Cond:
    """Normalise one ``(column, op, value)`` filter; ``QueryError`` for an unknown operator or a bad value."""
    if not isinstance(op, str) or " ".join(op.lower().split()) not in OPERATORS:
        raise QueryError(f"unknown filter operator {op!r} (use one of: {', '.join(sorted(set(OPERATORS)))})")
    canon = OPERATORS[" ".join(op.lower().split())]
    if canon in ("is", "is not"):
        if value is not None:
            raise QueryError(f"filter {column!r} {op!r}: only None may follow 'is' / 'is not'")
        canon = "is null" if canon == "is" else "is not null"
    if canon in ("is null", "is not null"):
        if value is not _MISSING and value is not None:
            raise QueryError(f"filter {column!r} {op!r} takes no value")
        return (column, canon, None)
    if value is _MISSING:
        raise QueryError(f"filter {column!r} {op!r} needs a value")
    if value is None:
        if canon == "=":
            return (column, "is null", None)
        if canon == "!=":
            return (column, "is not null", None)
        raise QueryError(
            f"filter {column!r} {op!r} None: compare with None only through '=', '!=' or 'is null'"
        )
    if canon in ("in", "not in"):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise QueryError(f"filter {column!r} {op!r} needs a list of values, got {type(value).__name__}")
        return (column, canon, list(value))
    if canon == "between":
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
            raise QueryError(f"filter {column!r} 'between' needs a (low, high) pair, got {value!r}")
        return (column, canon, (value[0], value[1]))
    return (column, canon, value)


def conditions(filter_by: Any) -> list[Cond]:
    """The conditions of a ``filter_by`` argument: a dict (equality) or a list of ``(column, op, value)``."""
    if filter_by is None:
        return []
    if isinstance(filter_by, Mapping):
        return [make_condition(k, "=", v) for k, v in filter_by.items()]
    if isinstance(filter_by, (str, bytes)) or not isinstance(filter_by, Iterable):
        raise QueryError(
            "filter_by must be a dict of column -> value or a list of (column, op, value) triples, "
            f"got {type(filter_by).__name__}"
        )
    out: list[Cond] = []
    for item in filter_by:
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise QueryError(f"filter_by items must be (column, op, value) triples, got {item!r}")
        out.append(make_condition(*item) if len(item) == 3 else make_condition(item[0], item[1]))
    return out


def _parse_order(item: str) -> tuple[str, bool]:
    if not isinstance(item, str):
        raise QueryError(f"order_by takes column names such as 'mjd', '-mjd' or 'mjd desc', got {item!r}")
    text = item.strip()
    if text.startswith("-"):
        return text[1:].strip(), True
    words = text.split()
    if len(words) == 2 and words[1].lower() in ("asc", "desc"):
        return words[0], words[1].lower() == "desc"
    return text, False


# -- the query -----------------------------------------------------------------------------------------------


class Query(Generic[T]):
    """A query on one model: db-plugins' ``SQLQuery`` API without SQLAlchemy.

    Build with :meth:`filter_by`, :meth:`filter`, :meth:`order_by`, :meth:`limit`, :meth:`offset` (each returns a
    new query), then run with :meth:`all`, :meth:`first`, :meth:`one`, :meth:`one_or_none`, :meth:`count`,
    :meth:`paginate`, :meth:`keyset`, :meth:`delete`. db-plugins' methods (:meth:`find`, :meth:`find_one`,
    :meth:`check_exists`, :meth:`get_or_create`, :meth:`update`, :meth:`bulk_insert`) take ``model=`` so that
    they work on an unbound ``db.query()`` too.
    """

    def __init__(self, db: SQLConnection | None, model: type[T] | None = None) -> None:
        if model is not None:
            table_of(model)  # ConfigurationError now for a class that is not a model
        self._db = db
        self._model = model
        self._conds: tuple[Cond, ...] = ()
        self._order: OrderSpec = ()
        self._limit: int | None = None
        self._offset: int | None = None
        self._columns: tuple[str, ...] | None = None

    # -- building --------------------------------------------------------------------------------------------

    def _clone(self, **changes: Any) -> Query[Any]:
        new: Query[Any] = Query.__new__(Query)
        new.__dict__.update(self.__dict__)
        for key, value in changes.items():
            setattr(new, key, value)
        return new

    def _check(self, names: Iterable[str], what: str) -> None:
        if self._model is not None:
            check_columns(table_of(self._model), names, what=what)

    def filter_by(self, filter_by: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Query[T]:
        """Add equality conditions: ``filter_by({"oid": oid})`` or ``filter_by(oid=oid)``; None is ``IS NULL``.

        >>> Query(None, Watchlist).filter_by(name="sn", score=None).as_sql()
        'SELECT "wid", "name", "score" FROM "watchlist" WHERE "name" = %s AND "score" IS NULL'
        """
        if filter_by is not None and not isinstance(filter_by, Mapping):
            raise QueryError(
                f"filter_by() takes a dict of column -> value, got {type(filter_by).__name__}; "
                "use filter(column, op, value) for comparisons"
            )
        new = conditions({**(filter_by or {}), **kwargs})
        self._check((c for c, _, _ in new), "filter column")
        return self._clone(_conds=self._conds + tuple(new))

    def filter(self, column: str, op: str, value: Any = _MISSING) -> Query[T]:
        """Add one comparison: ``op`` is ``= != < <= > >= in, not in, between, is null, is not null, like, ilike``.

            >>> Query(None, Watchlist).filter("wid", "in", [1, 2]).filter("score", "between", (0, 1)).as_sql()
            'SELECT "wid", "name", "score" FROM "watchlist" WHERE "wid" = ANY(%s::bigint[]) AND "score" BETWEEN %s AND %s'
            >>> Query(None, Watchlist).filter("score", "is not null").as_sql()
            'SELECT "wid", "name", "score" FROM "watchlist" WHERE "score" IS NOT NULL'

        ``!=`` and ``not in`` follow SQL: rows where the column is NULL do not match.
        """
        cond = make_condition(column, op, value)
        self._check([column], "filter column")
        return self._clone(_conds=(*self._conds, cond))

    def order_by(self, *columns: str | None) -> Query[T]:
        """Order by columns: ``"mjd"`` ascending, ``"-mjd"`` or ``"mjd desc"`` descending; ``order_by(None)`` clears.

        >>> Query(None, Watchlist).order_by("name", "-score").as_sql()
        'SELECT "wid", "name", "score" FROM "watchlist" ORDER BY "name", "score" DESC'
        """
        if columns == (None,):
            return self._clone(_order=())
        order = tuple(_parse_order(c) for c in columns if c is not None)
        self._check((c for c, _ in order), "order_by column")
        return self._clone(_order=self._order + order)

    def limit(self, n: int | None) -> Query[T]:
        """At most ``n`` rows (None: no limit)."""
        if n is not None and (not isinstance(n, int) or n < 0):
            raise QueryError(f"limit must be a non-negative int, got {n!r}")
        return self._clone(_limit=n)

    def offset(self, n: int | None) -> Query[T]:
        """Skip ``n`` rows (None: none)."""
        if n is not None and (not isinstance(n, int) or n < 0):
            raise QueryError(f"offset must be a non-negative int, got {n!r}")
        return self._clone(_offset=n or None)

    def columns(self, *names: str) -> Query[tuple[Any, ...]]:
        """Return tuples of these columns instead of model instances (db-plugins' ``db.query(Object.oid)``).

        >>> Query(None, Watchlist).columns("wid", "name").as_sql()
        'SELECT "wid", "name" FROM "watchlist"'
        """
        if not names:
            raise QueryError("columns() needs at least one column name")
        self._check(names, "column")
        return self._clone(_columns=tuple(names))

    # -- resolving and running ---------------------------------------------------------------------------------

    def _bind(self, model: Any = None) -> Query[Any]:
        """This query with its model resolved: the query's own, else ``model``; QueryError if neither or both."""
        if model is None:
            if self._model is None:
                raise QueryError("no model: use db.query(Model) or pass model=Model")
            return self
        table_of(model)
        if self._model is not None and self._model is not model:
            raise QueryError(
                f"this query is on {self._model.__name__}; it cannot run on model={getattr(model, '__name__', model)}"
            )
        if self._model is model:
            return self
        return self._clone(_model=model)

    def _table(self) -> Table:
        if self._model is None:
            raise QueryError("no model: use db.query(Model) or pass model=Model")
        return table_of(self._model)

    def _session(self) -> Session:
        if self._db is None:
            raise QueryError("this query is not attached to a connection (build it with db.query(...))")
        return self._db.current_session()

    def _where(self, table: Table) -> tuple[WhereSpec, list[Any]]:
        check_columns(table, (c for c, _, _ in self._conds), what="filter column")
        spec: list[tuple[str, str, str]] = []
        params: list[Any] = []
        for column, op, value in self._conds:
            col = table.columns[column]
            spec.append((column, op, col.type.cast_type if op in ("in", "not in") else ""))
            if op in ("is null", "is not null"):
                continue
            if op == "between":
                params.extend(filter_value(table, column, v) for v in value)
            elif op in ("in", "not in"):
                if col.is_array:
                    raise QueryError(f"filter {column!r} {op!r}: not supported on array column {column!r}")
                params.append([filter_value(table, column, v) for v in value])
            else:
                if (
                    isinstance(value, (list, tuple, set, frozenset))
                    and not col.is_array
                    and op in ("=", "!=")
                ):
                    raise QueryError(
                        f"filter {column!r} {op!r} got a {type(value).__name__}: "
                        f"use filter({column!r}, 'in', values) to match any of several values",
                        model=table.name,
                        column=column,
                    )
                params.append(filter_value(table, column, value))
        return tuple(spec), params

    def _select(
        self, *, limit: int | None = _MISSING, keyset: tuple[str, ...] = (), after: Sequence[Any] = ()
    ) -> tuple[str, list[Any]]:
        table = self._table()
        columns = self._columns if self._columns is not None else tuple(table.columns)
        check_columns(table, columns, what="column")
        check_columns(table, (c for c, _ in self._order), what="order_by column")
        where, params = self._where(table)
        lim = self._limit if limit is _MISSING else limit
        params.extend(after)
        stmt = statement(
            "rows", table.name, columns, where, self._order, lim is not None, self._offset is not None, keyset
        )
        if lim is not None:
            params.append(lim)
        if self._offset is not None:
            params.append(self._offset)
        return stmt, params

    def as_sql(self) -> str:
        """The SELECT this query runs, with ``%s`` placeholders (for logs and docs).

        >>> Query(None, Watchlist).filter("wid", ">", 10).limit(5).offset(20).as_sql()
        'SELECT "wid", "name", "score" FROM "watchlist" WHERE "wid" > %s LIMIT %s OFFSET %s'
        """
        return self._select()[0]

    def _row_factory(self) -> RowFactory[Any]:
        if self._columns is not None:
            return tuple_row
        return class_row_for(cast(Any, self._model))

    def _fetch(self, stmt: str, params: Sequence[Any], action: str) -> list[Any]:
        table = self._table()
        session = self._session()
        try:
            with session.connection() as conn, conn.cursor(row_factory=self._row_factory()) as cur:
                cur.execute(stmt, params)
                return cur.fetchall()
        except (psycopg.Error, UnicodeEncodeError) as exc:
            raise translate_error(exc, table, [self._values()], action=action) from exc

    def _scalar(self, stmt: str, params: Sequence[Any], action: str) -> Any:
        table = self._table()
        session = self._session()
        try:
            with session.connection() as conn:
                row = statement_cursor(conn).execute(stmt, params).fetchone()
        except (psycopg.Error, UnicodeEncodeError) as exc:
            raise translate_error(exc, table, [self._values()], action=action) from exc
        return row[0] if row else None

    def _values(self) -> dict[str, Any]:
        return {c: v for c, _, v in self._conds}

    def all(self) -> list[T]:
        """All matching rows, as model instances (tuples after :meth:`columns`)."""
        stmt, params = self._select()
        return self._fetch(stmt, params, "all")

    def __iter__(self) -> Iterator[T]:
        return iter(self.all())

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
        values = _key_values(table, table.primary_key, key)
        return self.filter_by(dict(zip(table.primary_key, values, strict=True))).one_or_none()

    def _describe(self) -> str:
        if not self._conds:
            return "the query (no filter)"
        return " AND ".join(f"{c} {op} {v!r}" for c, op, v in self._conds)

    def count(self) -> int:
        """The number of matching rows (counting within limit/offset when set).

        >>> Query(None, Watchlist).filter_by(name="sn")._count_sql()
        'SELECT count(*) FROM "watchlist" WHERE "name" = %s'
        """
        stmt, params = self._count_parts()
        return int(self._scalar(stmt, params, "count"))

    def _count_parts(self) -> tuple[str, list[Any]]:
        table = self._table()
        check_columns(table, (c for c, _ in self._order), what="order_by column")
        where, params = self._where(table)
        has_limit, has_offset = self._limit is not None, self._offset is not None
        stmt = statement("count", table.name, (), where, self._order, has_limit, has_offset)
        if has_limit:
            params.append(self._limit)
        if has_offset:
            params.append(self._offset)
        return stmt, params

    def _count_sql(self) -> str:
        return self._count_parts()[0]

    def exists(self) -> bool:
        """Whether any row matches (``SELECT EXISTS (...)``)."""
        table = self._table()
        where, params = self._where(table)
        stmt = statement("exists", table.name, (), where, (), False, False)
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
        stmt = statement("delete", table.name, (), where, (), False, False)
        session = self._session()
        conn = session.begin()
        try:
            cur = conn.execute(stmt, params)
        except (psycopg.Error, UnicodeEncodeError) as exc:
            raise translate_error(exc, table, [self._values()], action="delete") from exc
        return cur.rowcount

    # -- db-plugins' methods ---------------------------------------------------------------------------------

    def check_exists(self, model: Any = None, filter_by: Any = None) -> bool:
        """Whether a row of ``model`` matches ``filter_by`` (a dict, or a list of (column, op, value))."""
        return self._bind(model)._with(filter_by).exists()

    def _with(self, filter_by: Any) -> Query[Any]:
        conds = conditions(filter_by)
        if not conds:
            return self
        check_columns(self._table(), (c for c, _, _ in conds), what="filter column")
        return self._clone(_conds=self._conds + tuple(conds))

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

    def find_one(self, model: Any = None, filter_by: Any = None) -> Any:
        """The one row of ``model`` matching ``filter_by``, or None; ``MultipleResultsFound`` if several match."""
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
            'SELECT "wid", "name", "score" FROM "watchlist" WHERE "name" = %s AND "wid" > %s ORDER BY "wid" LIMIT %s'
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
        key = None if after is None else tuple(_key_values(table, pk, after))
        ordered = self._clone(_order=tuple((c, False) for c in pk))
        stmt, params = ordered._select(limit=per_page + 1, keyset=pk if key else (), after=key or ())
        rows = self._fetch(stmt, params, "keyset")
        has_next = len(rows) > per_page
        items = rows[:per_page]
        next_after = tuple(self._key_of(table, items[-1])) if items else key
        return KeysetPage(self, items, per_page, key, next_after, has_next)

    def _keyset_sql(self) -> str:
        table = self._table()
        ordered = self._clone(_order=tuple((c, False) for c in table.primary_key))
        return ordered._select(limit=1, keyset=table.primary_key, after=(0,))[0]

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

    def get_or_create(self, model: Any = None, filter_by: Any = None, **kwargs: Any) -> tuple[Any, bool]:
        """``(instance, created)``: the row of ``model`` matching ``filter_by``, inserted with ``kwargs`` if missing.

        Race-safe (``INSERT ... ON CONFLICT DO NOTHING RETURNING``, then a SELECT only when the row existed);
        persists on return unless inside ``with db.transaction():``. See :func:`dbplugins.ingest.get_or_create`.
        """
        query = self._bind(model)
        if self._conds:
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

        See :func:`dbplugins.ingest.get_or_create_many`.
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
        """Set ``values`` on the row of ``instance`` (``UPDATE ... WHERE <pk> RETURNING``); return the instance.

        Runs inside the session's transaction: durable on ``db.session.commit()``, undone by ``rollback()``. The
        instance is refreshed in place from the row returned (a frozen dataclass gets a new instance instead).
        Unknown columns raise ``UnknownColumnError``; a row that no longer exists raises ``NoResultFound``.
        """
        cls = model if model is not None else type(instance)
        query = self._bind(cls)
        table = table_of(cls)
        if not isinstance(instance, cls):
            raise QueryError(
                f"update() got a {type(instance).__name__}, not a {cls.__name__}", model=table.name
            )
        if not isinstance(values, Mapping):
            raise QueryError(
                f"update() values must be a dict of column -> value, got {type(values).__name__}"
            )
        check_columns(table, values, what="column")
        if not table.primary_key:
            raise QueryError(f"update() needs a primary key; model {table.name!r} has none", model=table.name)
        key = [getattr(instance, c) for c in table.primary_key]
        for c, v in zip(table.primary_key, key, strict=True):
            if v is None:
                raise MissingValueError(
                    f"update(): the instance has no value for primary key column {c!r}",
                    model=table.name,
                    column=c,
                )
        if not values:
            return instance
        stmt = update_statement(table.name, tuple(values), table.primary_key, tuple(table.columns))
        params = [bind(table, c, v, action="update") for c, v in values.items()] + key
        session = query._session()
        conn = session.begin()
        try:
            with conn.cursor(row_factory=class_row_for(cast(Any, cls))) as cur:
                cur.execute(stmt, params)
                row = cur.fetchone()
        except (psycopg.Error, UnicodeEncodeError) as exc:
            raise translate_error(exc, table, [values], action="update") from exc
        if row is None:
            where = ", ".join(f"{c}={v!r}" for c, v in zip(table.primary_key, key, strict=True))
            raise NoResultFound(f"update(): no row of model {table.name!r} with {where}", model=table.name)
        try:
            for name in table.columns:
                setattr(instance, name, getattr(row, name))
        except AttributeError:  # frozen dataclass (FrozenInstanceError is an AttributeError)
            return row
        return instance

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

        ``unknown``: ``"error"`` (the default) raises for a row key that is not a column, ``"ignore"`` drops it.
        ``parallel``: the number of COPY streams (default 1); see docs/parallel.md for ``parallel > 1``.

        See :func:`dbplugins.bulk.bulk_insert` for ``on_conflict`` (``"ignore"``, ``"error"``, ``"update"``).
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

    def __repr__(self) -> str:
        if self._model is None:
            return "<dbplugins.Query (no model)>"
        try:
            return f"<dbplugins.Query {self.as_sql()}>"
        except DbpError as exc:
            return f"<dbplugins.Query on {self._model.__name__} (invalid: {exc})>"


def _key_values(table: Table, columns: Sequence[str], key: Any) -> list[Any]:
    """The values of ``columns`` in ``key``: a model instance, a dict, a tuple, or a bare value (one column)."""
    if table.cls is not None and isinstance(key, table.cls):
        values = [getattr(key, c) for c in columns]
    elif isinstance(key, Mapping):
        missing = [c for c in columns if c not in key]
        if missing:
            raise QueryError(f"key of model {table.name!r} lacks column(s) {missing}", model=table.name)
        values = [key[c] for c in columns]
    elif isinstance(key, (tuple, list)):
        if len(key) != len(columns):
            raise QueryError(
                f"key of model {table.name!r} has {len(columns)} column(s) {list(columns)}, got {key!r}",
                model=table.name,
            )
        values = list(key)
    else:
        if len(columns) != 1:
            raise QueryError(
                f"model {table.name!r} has a composite key {list(columns)}: pass a tuple or a dict",
                model=table.name,
            )
        values = [key]
    if any(v is None for v in values):
        raise QueryError(f"key of model {table.name!r} has a None value: {values!r}", model=table.name)
    return values
