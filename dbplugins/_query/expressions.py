"""Column expressions: ``Object.oid == oid``, ``Object.ndet > 3``,
``Object.oid.in_(oids)``, ``and_ / or_ / not_``.

A query builder, not an ORM. :func:`install_columns` (called by :func:`dbplugins.model`) puts one
:class:`ColumnExpr` per column on the model class, *after* the dataclass machinery ran:

* on the class, ``Object.oid`` is the column expression (a non-data descriptor's ``__get__(None, cls)``);
* on an instance, ``obj.oid`` is the value: the instance ``__dict__`` wins over a non-data descriptor
  (``__get__`` is never called for a set field), and ``dataclasses.fields / replace / asdict``, pickling and
  ``__init__`` defaults (bound into ``__init__`` when the dataclass was made) are untouched. One cost: CPython
  does not specialise ``LOAD_ATTR`` past a class-level descriptor, so ``obj.oid`` in Python code is ~20-30 ns
  slower than on a bare dataclass; C-level reads (``operator.attrgetter`` in ``bulk_insert``) are unchanged.
  The class cannot take a metaclass ``__getattr__`` instead: a class's
  ``__class__`` cannot be reassigned after ``@dataclass``.

Expressions compare (``== != < <= > >=``), test (``in_ / not_in / like / ilike / not_like / is_ / is_not /
between``), order (``desc / asc / nulls_first / nulls_last``) and combine (``and_ / or_ / not_``, ``& | ~``)::

    >>> from dbplugins.models import Object
    >>> cond = (Object.ndet > 3) & Object.oid.in_(["ZTF1", "ZTF2"])
    >>> sql_of(cond)
    '("ndet" > %s AND "oid" = ANY(%s::character varying[]))'
    >>> params_of(cond)
    [3, ['ZTF1', 'ZTF2']]

Values are always bound parameters and identifiers always quoted (``psycopg.sql``). The SQL text depends only
on the *shape* of a condition (columns, operators, nesting; not the values), and is composed once per shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._types.binding import filter_value
from ..errors import QueryError
from .shapes import Shape, params_of, sql_of

if TYPE_CHECKING:
    from .._types.schema import Table

__all__ = [
    "ColumnExpr",
    "Condition",
    "OrderExpr",
    "and_",
    "or_",
    "not_",
    "cols",
    "Columns",
    "install_columns",
    "sql_of",
    "params_of",
]

_MISSING: Any = object()


class Condition:
    """A boolean SQL condition over the columns of one model. Combine with ``&``, ``|``, ``~``."""

    __slots__ = ()

    table: Table

    def shape(self) -> Shape:
        raise NotImplementedError

    def params(self, out: list[Any]) -> None:
        """Append the bound values of this condition to ``out``, in the order of its placeholders."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def __and__(self, other: Any) -> Condition:
        return and_(self, other)

    def __rand__(self, other: Any) -> Condition:
        return and_(other, self)

    def __or__(self, other: Any) -> Condition:
        return or_(self, other)

    def __ror__(self, other: Any) -> Condition:
        return or_(other, self)

    def __invert__(self) -> Condition:
        return not_(self)

    def __bool__(self) -> bool:
        # ``a and b`` / ``if Object.ndet > 3`` would silently drop a condition: say so instead.
        raise TypeError(
            "a column condition has no truth value: combine conditions with and_()/or_()/not_() or & | ~, "
            "and pass them to Query.filter()"
        )

    def __repr__(self) -> str:
        return f"<dbplugins condition {self.describe()}>"


class Compare(Condition):
    """``column <op> value`` (or ``column <op> other column`` of the same model)."""

    __slots__ = ("column", "op", "value", "table")

    def __init__(self, column: ColumnExpr, op: str, value: Any) -> None:
        self.column = column
        self.op = op
        self.value = value
        self.table = column.table

    def shape(self) -> Shape:
        c = self.column
        if self.op in ("is null", "is not null"):
            return ("null", c.name, self.op)
        if isinstance(self.value, ColumnExpr):
            return ("cols", c.name, self.op, self.value.name)
        if self.op in ("in", "not in"):
            # no typmod: never truncates
            return ("any", c.name, self.op, self.table.columns[c.name].type.cast_type)
        if self.op == "between":
            return ("between", c.name)
        return ("cmp", c.name, self.op)

    def params(self, out: list[Any]) -> None:
        if self.op in ("is null", "is not null") or isinstance(self.value, ColumnExpr):
            return
        table, name = self.table, self.column.name
        if self.op in ("in", "not in"):
            out.append([filter_value(table, name, v) for v in self.value])
        elif self.op == "between":
            out.extend(filter_value(table, name, v) for v in self.value)
        else:
            out.append(filter_value(table, name, self.value))

    def describe(self) -> str:
        if self.op in ("is null", "is not null"):
            return f"{self.column.name} {self.op}"
        value = self.value.name if isinstance(self.value, ColumnExpr) else repr(self.value)
        return f"{self.column.name} {self.op} {value}"


class BoolOp(Condition):
    """``a AND b AND ...`` or ``a OR b OR ...``."""

    __slots__ = ("op", "parts", "table")

    def __init__(self, op: str, parts: Sequence[Condition]) -> None:
        self.op = op
        self.parts = tuple(parts)
        self.table = self.parts[0].table

    def shape(self) -> Shape:
        return (self.op, tuple(p.shape() for p in self.parts))

    def params(self, out: list[Any]) -> None:
        for p in self.parts:
            p.params(out)

    def describe(self) -> str:
        return "(" + f" {self.op.upper()} ".join(p.describe() for p in self.parts) + ")"


class Not(Condition):
    """``NOT (a)``."""

    __slots__ = ("part", "table")

    def __init__(self, part: Condition) -> None:
        self.part = part
        self.table = part.table

    def shape(self) -> Shape:
        return ("not", self.part.shape())

    def params(self, out: list[Any]) -> None:
        self.part.params(out)

    def describe(self) -> str:
        return f"NOT {self.part.describe()}"


def _conditions(items: Iterable[Any], what: str) -> list[Condition]:
    out: list[Condition] = []
    for item in items:
        if not isinstance(item, Condition):
            raise QueryError(
                f"{what}() takes column conditions such as Object.ndet > 3, "
                f"got {type(item).__name__} {item!r}"
            )
        out.append(item)
    if not out:
        raise QueryError(f"{what}() needs at least one condition")
    table = out[0].table
    for c in out[1:]:
        _same_model(table, c.table, what)
    return out


def _same_model(table: Table, other: Table, what: str) -> None:
    if other is not table:
        raise QueryError(
            f"{what}: conditions on models {table.name!r} and {other.name!r} cannot be combined "
            "(dbplugins queries one model at a time: no joins)",
            model=table.name,
        )


def and_(*conditions: Any) -> Condition:
    """All of ``conditions`` (SQL ``AND``); ``and_(a)`` is ``a``."""
    parts = _conditions(conditions, "and_")
    return parts[0] if len(parts) == 1 else BoolOp("and", parts)


def or_(*conditions: Any) -> Condition:
    """Any of ``conditions`` (SQL ``OR``); ``or_(a)`` is ``a``."""
    parts = _conditions(conditions, "or_")
    return parts[0] if len(parts) == 1 else BoolOp("or", parts)


def not_(condition: Any) -> Condition:
    """The negation of ``condition`` (SQL ``NOT``): rows where it is NULL do not match either, as in SQL."""
    return Not(_conditions([condition], "not_")[0])


class OrderExpr:
    """One ``ORDER BY`` item: a column, ascending or descending, NULLs first or last
    (or PostgreSQL's default)."""

    __slots__ = ("column", "descending", "nulls")

    def __init__(self, column: ColumnExpr, descending: bool = False, nulls: str | None = None) -> None:
        self.column = column
        self.descending = descending
        self.nulls = nulls

    def nulls_first(self) -> OrderExpr:
        return OrderExpr(self.column, self.descending, "first")

    def nulls_last(self) -> OrderExpr:
        return OrderExpr(self.column, self.descending, "last")

    def __repr__(self) -> str:
        nulls = f" NULLS {self.nulls.upper()}" if self.nulls else ""
        return f"<dbplugins order {self.column.name} {'DESC' if self.descending else 'ASC'}{nulls}>"


class ColumnExpr:
    """A column of a model, as an SQL expression: what ``Object.oid`` is on the class."""

    __slots__ = ("cls", "table", "name", "sql_type", "is_array")

    def __init__(self, cls: type, table: Table, name: str) -> None:
        self.cls = cls
        self.table = table
        self.name = name
        self.sql_type = table.columns[name].sql_type
        self.is_array = table.columns[name].is_array

    # The descriptor protocol (non-data: an instance's own value in its __dict__ always wins).
    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        # An instance built without this field (object.__new__ without __init__): no value, as a plain class.
        raise AttributeError(f"{type(instance).__name__!r} object has no attribute {self.name!r}")

    def __set_name__(self, owner: type, name: str) -> None:  # pragma: no cover - set explicitly
        pass

    def __repr__(self) -> str:
        return f"<dbplugins column {self.table.name}.{self.name}>"

    __hash__ = object.__hash__

    # -- comparisons ---------------------------------------------------------------------------------------

    def _compare(self, op: str, value: Any) -> Compare:
        if isinstance(value, ColumnExpr):
            _same_model(self.table, value.table, f"comparing {self.name!r} with {value.name!r}")
            return Compare(self, op, value)
        if isinstance(value, (Condition, OrderExpr)):
            raise QueryError(f"cannot compare column {self.name!r} with {value!r}", model=self.table.name)
        if value is None:
            if op == "=":
                return Compare(self, "is null", None)
            if op == "!=":
                return Compare(self, "is not null", None)
            raise QueryError(
                f"column {self.name!r} {op} None: compare with None only through ==, != or .is_(None)",
                model=self.table.name,
                column=self.name,
            )
        if isinstance(value, (list, tuple, set, frozenset)) and not self.is_array and op in ("=", "!="):
            raise QueryError(
                f"column {self.name!r} {op} a {type(value).__name__}: "
                "use .in_(values) to match any of several",
                model=self.table.name,
                column=self.name,
            )
        return Compare(self, op, value)

    def __eq__(self, other: Any) -> Compare:  # type: ignore[override]
        return self._compare("=", other)

    def __ne__(self, other: Any) -> Compare:  # type: ignore[override]
        return self._compare("!=", other)

    def __lt__(self, other: Any) -> Compare:
        return self._compare("<", other)

    def __le__(self, other: Any) -> Compare:
        return self._compare("<=", other)

    def __gt__(self, other: Any) -> Compare:
        return self._compare(">", other)

    def __ge__(self, other: Any) -> Compare:
        return self._compare(">=", other)

    def _values(self, values: Any, op: str) -> list[Any]:
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
            raise QueryError(
                f"{self.name}.{op}() needs a list of values, got {type(values).__name__}",
                model=self.table.name,
                column=self.name,
            )
        if self.is_array:
            raise QueryError(
                f"{op}() is not supported on array column {self.name!r}",
                model=self.table.name,
                column=self.name,
            )
        out = list(values)
        if any(v is None for v in out):
            raise QueryError(
                f"{self.name}.{op}() got None among its values: NULL never matches IN; use .is_(None)",
                model=self.table.name,
                column=self.name,
            )
        return out

    def in_(self, values: Iterable[Any]) -> Compare:
        """``column = ANY(values)``: one bound array, whatever the number of values
        (an empty list matches none)."""
        return Compare(self, "in", self._values(values, "in_"))

    def not_in(self, values: Iterable[Any]) -> Compare:
        """``column <> ALL(values)`` (rows where the column is NULL do not match, as in SQL)."""
        return Compare(self, "not in", self._values(values, "not_in"))

    notin_ = not_in

    def _pattern(self, op: str, pattern: Any) -> Compare:
        if not isinstance(pattern, str):
            raise QueryError(
                f"{self.name}: {op.upper()} needs a str pattern, got {type(pattern).__name__}",
                model=self.table.name,
                column=self.name,
            )
        return Compare(self, op, pattern)

    def like(self, pattern: str) -> Compare:
        return self._pattern("like", pattern)

    def ilike(self, pattern: str) -> Compare:
        return self._pattern("ilike", pattern)

    def not_like(self, pattern: str) -> Compare:
        return self._pattern("not like", pattern)

    notlike = not_like

    def not_ilike(self, pattern: str) -> Compare:
        return self._pattern("not ilike", pattern)

    notilike = not_ilike

    def is_(self, value: None) -> Compare:
        """``column IS NULL`` (only None may be given)."""
        if value is not None:
            raise QueryError(f"{self.name}.is_() takes only None", model=self.table.name, column=self.name)
        return Compare(self, "is null", None)

    def is_not(self, value: None) -> Compare:
        """``column IS NOT NULL`` (only None may be given)."""
        if value is not None:
            raise QueryError(f"{self.name}.is_not() takes only None", model=self.table.name, column=self.name)
        return Compare(self, "is not null", None)

    isnot = is_not

    def between(self, low: Any, high: Any) -> Compare:
        """``column BETWEEN low AND high`` (both ends included)."""
        if low is None or high is None:
            raise QueryError(
                f"{self.name}.between() needs two values, got {low!r} and {high!r}",
                model=self.table.name,
                column=self.name,
            )
        return Compare(self, "between", (low, high))

    # -- ordering -------------------------------------------------------------------------------------------

    def desc(self) -> OrderExpr:
        return OrderExpr(self, True)

    def asc(self) -> OrderExpr:
        return OrderExpr(self, False)

    def nulls_first(self) -> OrderExpr:
        return OrderExpr(self, False, "first")

    def nulls_last(self) -> OrderExpr:
        return OrderExpr(self, False, "last")


class Columns:
    """The column expressions of a model by attribute: ``cols(Object).oid`` is ``Object.oid``, typed.

    Type checkers see ``Object.oid`` as the field's type (``str``), so ``Object.oid.in_(oids)`` type-checks
    only with a ``# type: ignore``; ``cols(Object).oid.in_(oids)`` is a :class:`ColumnExpr` for them too.
    """

    __slots__ = ("_model", "_table")

    def __init__(self, model: type) -> None:
        from .._types.schema import table_of

        self._model = model
        self._table = table_of(model)

    def __getattr__(self, name: str) -> ColumnExpr:
        if name.startswith("__") or name not in self._table.columns:
            from .._types.rows import check_columns

            check_columns(self._table, [name], what="column")
        installed = self._model.__dict__.get(name)
        return installed if isinstance(installed, ColumnExpr) else ColumnExpr(self._model, self._table, name)

    def __repr__(self) -> str:
        return f"<dbplugins columns of {self._table.name}>"


def cols(model: type) -> Columns:
    """The typed column namespace of ``model``: ``cols(Object).ndet > 3`` (see :class:`Columns`)."""
    return Columns(model)


def install_columns(cls: type, table: Table) -> None:
    """Put a :class:`ColumnExpr` on ``cls`` for each column (after ``@dataclass`` processed it).

    Classes with ``__slots__`` are left alone (their fields are slot descriptors already).
    """
    from .._session.compat import install_query_property

    if "__slots__" not in cls.__dict__:
        for name in table.columns:
            setattr(cls, name, ColumnExpr(cls, table, name))
    install_query_property(cls)
