"""The query builder: a query's state (model, conditions, order, limit, projection)
and the SQL it compiles to.

:class:`dbplugins.Query` adds running it (reads, pages, db-plugins' methods and writes) in
:mod:`dbplugins._query.query`. Every builder method returns a new query; the SQL text of each query shape is
composed once and cached, so a hot loop only binds values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from .._types.binding import filter_value
from .._types.rows import check_columns
from .._types.schema import Table, table_of
from ..errors import QueryError
from .conditions import MISSING, Cond, conditions, make_condition, parse_order
from .expressions import ColumnExpr, Condition, OrderExpr
from .shapes import legacy_shape, query_statement
from .statements import OrderSpec, WhereSpec

if TYPE_CHECKING:
    from .._session.session import Session
    from .query import Query

__all__ = ["QueryBuilder", "SessionSource"]

T = TypeVar("T")


class SessionSource(Protocol):
    """What a query runs on: anything that gives the current session (``SQLConnection`` does)."""

    def current_session(self) -> Session: ...


class QueryBuilder(Generic[T]):
    """A query's state and its SQL; see :class:`dbplugins.Query`."""

    def __init__(self, db: SessionSource | None, model: type[T] | None = None) -> None:
        if model is not None:
            table_of(model)  # ConfigurationError now for a class that is not a model
        self._db = db
        self._model = model
        self._conds: tuple[Cond, ...] = ()
        self._order: OrderSpec = ()
        self._limit: int | None = None
        self._offset: int | None = None
        self._columns: tuple[str, ...] | None = None
        # The column-expression layer (dbplugins._query.expressions): conditions, NULLS FIRST/LAST per order
        # item (aligned with _order), DISTINCT, and rows with attribute access for db.query(M.a, M.b).
        self._exprs: tuple[Condition, ...] = ()
        self._order_nulls: tuple[str | None, ...] = ()
        self._distinct = False
        self._named = False

    def _clone(self, **changes: Any) -> Query[Any]:
        new: Query[Any] = object.__new__(type(self))  # type: ignore[arg-type]  # always a Query
        new.__dict__.update(self.__dict__)
        for key, value in changes.items():
            setattr(new, key, value)
        return new

    def _check(self, names: Iterable[str], what: str) -> None:
        if self._model is not None:
            check_columns(table_of(self._model), names, what=what)

    def filter_by(self, filter_by: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Query[T]:
        """Add equality conditions: ``filter_by({"oid": oid})`` or ``filter_by(oid=oid)``;
        None is ``IS NULL``.

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

    def filter(self, *args: Any) -> Query[T]:
        """Add conditions: column expressions (several mean AND), or one ``(column, op, value)`` comparison.

            >>> Query(None, Watchlist).filter(Watchlist.wid.in_([1, 2]), Watchlist.score > 0.5).as_sql()
            'SELECT "wid", "name", "score" FROM "watchlist" WHERE "wid" = ANY(%s::bigint[]) AND "score" > %s'

        The comparison form: ``op`` is
        ``= != < <= > >= in, not in, between, is null, is not null, like, ilike``.

            >>> Query(None, Watchlist).filter("wid", "in", [1, 2]).filter("score", "between", (0, 1)).as_sql()
            'SELECT ... FROM "watchlist" WHERE "wid" = ANY(%s::bigint[]) AND "score" BETWEEN %s AND %s'
            >>> Query(None, Watchlist).filter("score", "is not null").as_sql()
            'SELECT "wid", "name", "score" FROM "watchlist" WHERE "score" IS NOT NULL'

        ``!=`` and ``not in`` follow SQL: rows where the column is NULL do not match.
        """
        if args and isinstance(args[0], str):
            if len(args) not in (2, 3):
                raise QueryError("filter(column, op, value) takes a column name, an operator and a value")
            return self._filter_legacy(*args)
        if not args:
            raise QueryError("filter() needs at least one condition")
        for item in args:
            if not isinstance(item, Condition):
                hint = " (a bool: compare a column of the model class, e.g. Object.ndet > 3)"
                raise QueryError(
                    "filter() takes column conditions such as Object.ndet > 3, or (column, op, value); "
                    f"got {type(item).__name__} {item!r}" + (hint if isinstance(item, bool) else "")
                )
            if self._model is not None:
                self._same_model(item.table)
        return self._clone(_exprs=self._exprs + args)

    def _same_model(self, table: Table) -> None:
        own = self._table()
        if table is not own:
            raise QueryError(
                f"this query is on model {own.name!r}; a condition on model {table.name!r} cannot be used "
                "(no joins: query each model separately)",
                model=own.name,
            )

    def _filter_legacy(self, column: str, op: str, value: Any = MISSING) -> Query[T]:
        cond = make_condition(column, op, value)
        self._check([column], "filter column")
        return self._clone(_conds=(*self._conds, cond))

    def order_by(self, *columns: str | ColumnExpr | OrderExpr | None) -> Query[T]:
        """Order by columns: ``"mjd"`` ascending, ``"-mjd"`` or ``"mjd desc"`` descending;
        ``order_by(None)`` clears.

        >>> Query(None, Watchlist).order_by("name", "-score").as_sql()
        'SELECT "wid", "name", "score" FROM "watchlist" ORDER BY "name", "score" DESC'
        >>> Query(None, Watchlist).order_by(Watchlist.score.desc().nulls_last(), Watchlist.wid).as_sql()
        'SELECT "wid", "name", "score" FROM "watchlist" ORDER BY "score" DESC NULLS LAST, "wid"'
        """
        if len(columns) == 1 and columns[0] is None:
            return self._clone(_order=(), _order_nulls=())
        order: list[tuple[str, bool]] = []
        nulls: list[str | None] = []
        for c in columns:
            if c is None:
                continue
            if isinstance(c, ColumnExpr):
                c = c.asc()
            if isinstance(c, OrderExpr):
                if self._model is not None:
                    self._same_model(c.column.table)
                order.append((c.column.name, c.descending))
                nulls.append(c.nulls)
            else:
                order.append(parse_order(c))
                nulls.append(None)
        self._check((c for c, _ in order), "order_by column")
        own_nulls = self._order_nulls + (None,) * (len(self._order) - len(self._order_nulls))
        return self._clone(_order=self._order + tuple(order), _order_nulls=own_nulls + tuple(nulls))

    def distinct(self) -> Query[T]:
        """``SELECT DISTINCT``: each distinct row once (mostly useful with a projection, ``db.query(M.a)``).

        >>> Query.from_args(None, [Watchlist.name]).distinct().as_sql()
        'SELECT DISTINCT "name" FROM "watchlist"'
        """
        return self._clone(_distinct=True)

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

    def _bind(self, model: Any = None) -> Query[Any]:
        """This query with its model resolved: the query's own, else ``model``;
        QueryError if neither or both."""
        if model is None:
            if self._model is None:
                raise QueryError("no model: use db.query(Model) or pass model=Model")
            return cast("Query[Any]", self)
        table_of(model)
        if self._model is not None and self._model is not model:
            raise QueryError(
                f"this query is on {self._model.__name__}; "
                f"it cannot run on model={getattr(model, '__name__', model)}"
            )
        if self._model is model:
            return cast("Query[Any]", self)
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
        self,
        *,
        limit: int | None = MISSING,
        keyset: tuple[str, ...] = (),
        after: Sequence[Any] = (),
        packed: tuple[tuple[str, str], ...] = (),
    ) -> tuple[str, list[Any]]:
        """The SELECT of this query and its parameters; ``packed`` columns are selected first, in one
        ``bytea`` (:mod:`dbplugins._query.frames`), and left out of the plain column list."""
        table = self._table()
        columns = self._columns if self._columns is not None else tuple(table.columns)
        check_columns(table, columns, what="column")
        if packed:
            gone = {name for name, _ in packed}
            columns = tuple(c for c in columns if c not in gone)
        check_columns(table, (c for c, _ in self._order), what="order_by column")
        where, params = self._where(table)
        self._expr_params(table, params)
        lim = self._limit if limit is MISSING else limit
        params.extend(after)
        has_limit, has_offset = lim is not None, self._offset is not None
        order = self._order
        stmt = self._statement("rows", table, columns, where, order, has_limit, has_offset, keyset, packed)
        if lim is not None:
            params.append(lim)
        if self._offset is not None:
            params.append(self._offset)
        return stmt, params

    def _expr_params(self, table: Table, params: list[Any]) -> None:
        """Append the values of the expression conditions (after those of ``filter(column, op, value)``)."""
        for cond in self._exprs:
            self._same_model(cond.table)
            cond.params(params)

    def _statement(
        self,
        kind: str,
        table: Table,
        columns: tuple[str, ...],
        where: WhereSpec,
        order: OrderSpec,
        has_limit: bool,
        has_offset: bool,
        keyset: tuple[str, ...] = (),
        packed: tuple[tuple[str, str], ...] = (),
    ) -> str:
        """The SQL text for this query's shape (one composer for every shape: see
        :func:`dbplugins._query.shapes.query_statement`)."""
        nulls = self._order_nulls if order else ()
        shapes = tuple(legacy_shape(*w) for w in where) + tuple(c.shape() for c in self._exprs)
        items = tuple(
            (name, desc, nulls[i] if i < len(nulls) else None) for i, (name, desc) in enumerate(order)
        )
        return query_statement(
            kind, table.name, columns, shapes, items, self._distinct, has_limit, has_offset, keyset, packed
        )

    def as_sql(self) -> str:
        """The SELECT this query runs, with ``%s`` placeholders (for logs and docs).

        >>> Query(None, Watchlist).filter("wid", ">", 10).limit(5).offset(20).as_sql()
        'SELECT "wid", "name", "score" FROM "watchlist" WHERE "wid" > %s LIMIT %s OFFSET %s'
        """
        return self._select()[0]

    def _values(self) -> dict[str, Any]:
        return {c: v for c, _, v in self._conds}

    def _describe(self) -> str:
        parts = [f"{c} {op} {v!r}" for c, op, v in self._conds] + [c.describe() for c in self._exprs]
        if not parts:
            return "the query (no filter)"
        return " AND ".join(parts)

    def _count_parts(self) -> tuple[str, list[Any]]:
        table = self._table()
        check_columns(table, (c for c, _ in self._order), what="order_by column")
        where, params = self._where(table)
        self._expr_params(table, params)
        has_limit, has_offset = self._limit is not None, self._offset is not None
        columns = (self._columns or tuple(table.columns)) if self._distinct else ()
        stmt = self._statement("count", table, columns, where, self._order, has_limit, has_offset)
        if has_limit:
            params.append(self._limit)
        if has_offset:
            params.append(self._offset)
        return stmt, params

    def _count_sql(self) -> str:
        return self._count_parts()[0]

    def _keyset_sql(self) -> str:
        table = self._table()
        ordered = self._clone(_order=tuple((c, False) for c in table.primary_key))
        return ordered._select(limit=1, keyset=table.primary_key, after=(0,))[0]
