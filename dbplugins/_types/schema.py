"""Table definitions read from dataclasses: the single source of truth of the schema.

A model is a plain ``@dataclass`` decorated with :func:`model`::

    >>> from dataclasses import dataclass
    >>> from typing import Annotated, Optional
    >>> @model("watchlist", primary_key=["wid"], indexes=[Index("ix_watchlist_name", ["name"])])
    ... @dataclass
    ... class Watchlist:
    ...     wid: Annotated[int, Column("bigint")]
    ...     name: str
    ...     note: Optional[str] = None
    >>> table_of(Watchlist).columns["wid"].sql_type
    'bigint'

The same :class:`Table` structure is built by the catalog introspection of ``dbplugins.migrations``, so the
migration differ compares like with like.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import sys
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import ConfigurationError
from .column import ColumnType, canonical_type

__all__ = [
    "Column",
    "Index",
    "ForeignKey",
    "ColumnDef",
    "Table",
    "Schema",
    "model",
    "table_of",
    "registered_models",
    "canonical_type",
]

T = TypeVar("T")

# Python annotation -> SQL type (the defaults listed in docs/types.md).
_PY_TYPES: dict[Any, str] = {
    str: "character varying",
    int: "integer",
    float: "double precision",
    bool: "boolean",
    datetime.datetime: "timestamp without time zone",
    datetime.date: "date",
    bytes: "bytea",
    dict: "jsonb",
}


@dataclass(frozen=True)
class Column:
    """Per-column options, given with ``Annotated[T, Column(...)]``.

    ``sql_type`` overrides the type derived from the annotation; ``references="table.column"`` adds a foreign
    key named ``<table>_<column>_fkey``; ``index=True`` adds a btree index ``ix_<table>_<column>``.
    """

    sql_type: str | None = None
    index: bool = False
    unique: bool = False
    default: str | None = None
    references: str | None = None


@dataclass(frozen=True)
class Index:
    """A named index over ``columns`` (``using`` btree or hash; ``where`` makes it partial)."""

    name: str
    columns: tuple[str, ...] | list[str]
    using: str = "btree"
    where: str | None = None
    unique: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "using", self.using.lower())
        if self.where is not None:
            object.__setattr__(self, "where", normalize_predicate(self.where))


@dataclass(frozen=True)
class ForeignKey:
    """A (possibly composite) foreign key ``columns -> ref_table(ref_columns)``."""

    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "ref_columns", tuple(self.ref_columns))


@dataclass(frozen=True)
class ColumnDef:
    """One column as the database sees it: canonical type, nullability, server default."""

    name: str
    sql_type: str
    nullable: bool
    default: str | None = None
    python_type: Any = None

    def __post_init__(self) -> None:
        # One spelling everywhere (DDL, introspection, diff): PostgreSQL's format_type().
        object.__setattr__(self, "sql_type", canonical_type(self.sql_type))

    @property
    def is_array(self) -> bool:
        return self.sql_type.endswith("[]")

    @functools.cached_property
    def type(self) -> ColumnType:
        """The compiled column type: accepted values, checks and converters (see
        :mod:`dbplugins._types.column`)."""
        return ColumnType(self.name, self.sql_type, nullable=self.nullable, default=self.default)


@dataclass
class Table:
    """A table: ordered columns, primary key, foreign keys, unique constraints and indexes."""

    name: str
    columns: dict[str, ColumnDef]
    primary_key: tuple[str, ...]
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    unique: list[tuple[str, ...]] = field(default_factory=list)
    cls: type | None = None
    # Names the catalog reports (introspection fills them; declared tables use PostgreSQL's default names), so
    # a generated migration drops a constraint under the name it really has.
    pk_constraint: str | None = None
    unique_names: dict[tuple[str, ...], str] = field(default_factory=dict)
    # Citus (DESIGN.md §7): hash-distributed by this column, colocated with that table; or a reference table.
    distribute_by: str | None = None
    colocate_with: str | None = None
    reference: bool = False

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    @property
    def pk_name(self) -> str:
        """The primary key constraint's name: as introspected, else PostgreSQL's default ``<table>_pkey``."""
        return self.pk_constraint or f"{self.name}_pkey"

    def unique_name(self, columns: tuple[str, ...]) -> str:
        """The name of the unique constraint over ``columns`` (PostgreSQL's default
        ``<table>_<cols>_key``)."""
        return self.unique_names.get(tuple(columns)) or f"{self.name}_{'_'.join(columns)}_key"

    def column(self, name: str) -> ColumnDef:
        return self.columns[name]


@dataclass
class Schema:
    """A set of tables by name (what the differ compares)."""

    tables: dict[str, Table] = field(default_factory=dict)

    @classmethod
    def from_models(cls, models: Iterable[type]) -> Schema:
        schema = cls()
        for m in models:
            t = table_of(m)
            if t.name in schema.tables and schema.tables[t.name].cls is not m:
                raise ConfigurationError(f"two models declare table {t.name!r}", model=t.name)
            schema.tables[t.name] = t
        return schema


def normalize_predicate(text: str) -> str:
    """Lower-case, single-spaced, outer parentheses stripped: a comparable form of an index predicate."""
    t = " ".join(text.strip().split())
    while t.startswith("(") and t.endswith(")") and _balanced(t[1:-1]):
        t = t[1:-1].strip()
    return t


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


_REGISTRY: dict[str, type] = {}


def registered_models() -> list[type]:
    """Every class decorated with :func:`model` so far, in declaration order."""
    return list(_REGISTRY.values())


def _merge_columns(first: Column | None, second: Column) -> Column:
    """Combine two ``Column`` options: what ``second`` sets (non-default) wins over ``first``."""
    if first is None:
        return second
    changed = {
        f.name: getattr(second, f.name)
        for f in dataclasses.fields(Column)
        if getattr(second, f.name) != f.default
    }
    return dataclasses.replace(first, **changed)


def _unwrap(annotation: Any) -> tuple[Any, bool, Column | None]:
    """Split an annotation into (python type, nullable, Column options).

    Accepts ``Annotated[T | None, Column(...)]`` as well as ``Annotated[T, Column(...)] | None`` (so an alias
    such as ``big = Annotated[int, Column("bigint")]`` can be written ``big | None``), and merges several
    ``Column`` extras (``Annotated[big, Column(references=...)]`` keeps the bigint type).
    """
    col: Column | None = None
    nullable = False
    for _ in range(2):  # Annotated outside, then possibly again inside Optional
        if typing.get_origin(annotation) is typing.Annotated:
            base, *extras = typing.get_args(annotation)
            for extra in extras:
                if isinstance(extra, Column):
                    col = _merge_columns(col, extra)
            annotation = base
        origin = typing.get_origin(annotation)
        if origin is typing.Union or origin is types.UnionType:
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            nullable = nullable or len(args) < len(typing.get_args(annotation))
            annotation = args[0] if len(args) == 1 else annotation
    return annotation, nullable, col


def _sql_type_for(py_type: Any, where: str) -> str:
    if py_type in _PY_TYPES:
        return _PY_TYPES[py_type]
    origin = typing.get_origin(py_type)
    if origin in (list, tuple, Sequence) and typing.get_args(py_type):
        inner = typing.get_args(py_type)[0]
        return _sql_type_for(inner, where) + "[]"
    if origin is dict:
        return "jsonb"
    raise ConfigurationError(f"{where}: no SQL type for annotation {py_type!r}; give Column(sql_type=...)")


def model(
    name: str,
    *,
    primary_key: Sequence[str],
    indexes: Sequence[Index] = (),
    foreign_keys: Sequence[ForeignKey] = (),
    unique: Sequence[Sequence[str]] = (),
    distribute_by: str | None = None,
    colocate_with: str | None = None,
    reference: bool = False,
) -> Callable[[type[T]], type[T]]:
    """Declare a dataclass as the model of table ``name``.

    Column types come from the annotations (``str`` varchar, ``int`` integer, ``float`` double precision,
    ``bool``, ``datetime`` timestamp, ``date``, ``bytes`` bytea, ``list[str]`` varchar[], ``dict`` jsonb;
    ``Optional[...]`` allows NULL). Primary key columns are always NOT NULL.

    On a Citus cluster ``distribute_by="oid", colocate_with="object"`` hash-distributes the table by that
    column (with that table's shards), ``reference=True`` copies it to every node;
    plain PostgreSQL ignores both.
    """

    # The names visible where the model is declared, so string annotations (``from __future__ import
    # annotations``) resolve for models declared inside functions, tests and doctests too.
    caller = sys._getframe(1)
    namespace = {**caller.f_globals, **caller.f_locals}

    def decorate(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls):
            raise ConfigurationError(f"@model({name!r}) must wrap a @dataclass (put @dataclass below @model)")
        module = sys.modules.get(cls.__module__)
        hints = typing.get_type_hints(
            cls, globalns=vars(module) if module else None, localns=namespace, include_extras=True
        )
        columns: dict[str, ColumnDef] = {}
        idx = list(indexes)
        fks = list(foreign_keys)
        uniq = [tuple(u) for u in unique]
        for f in dataclasses.fields(cls):
            py_type, nullable, col = _unwrap(hints[f.name])
            where = f"model {name!r}, column {f.name!r}"
            sql_type = canonical_type(col.sql_type) if col and col.sql_type else _sql_type_for(py_type, where)
            if f.name in primary_key:
                nullable = False
            columns[f.name] = ColumnDef(
                f.name, sql_type, nullable, default=col.default if col else None, python_type=py_type
            )
            if col is not None:
                if col.references:
                    ref_table, _, ref_col = col.references.partition(".")
                    if not ref_col:
                        raise ConfigurationError(f"{where}: references must be 'table.column'")
                    fks.append(ForeignKey(f"{name}_{f.name}_fkey", (f.name,), ref_table, (ref_col,)))
                if col.index:
                    idx.append(Index(f"ix_{name}_{f.name}", [f.name]))
                if col.unique:
                    uniq.append((f.name,))
        for key in primary_key:
            if key not in columns:
                raise ConfigurationError(
                    f"model {name!r}: primary key column {key!r} is not a field", model=name
                )
        for ix in idx:
            for c in ix.columns:
                if c not in columns:
                    raise ConfigurationError(f"model {name!r}: index {ix.name!r} names unknown column {c!r}")
        if (distribute_by is not None and (reference or distribute_by not in columns)) or (
            colocate_with is not None and distribute_by is None
        ):
            raise ConfigurationError(
                f"model {name!r}: distribute_by={distribute_by!r} must name a column "
                "(colocate_with needs it; reference=True excludes it)",
                model=name,
            )
        table = Table(
            name=name,
            columns=columns,
            primary_key=tuple(primary_key),
            foreign_keys=fks,
            indexes=idx,
            unique=uniq,
            cls=cls,
            distribute_by=distribute_by,
            colocate_with=colocate_with,
            reference=reference,
        )
        cls.__table__ = table  # type: ignore[attr-defined]
        cls.__tablename__ = name  # type: ignore[attr-defined]
        # Column expressions on the class (Object.oid), installed after @dataclass so its defaults stay
        # intact.
        from .._query.expressions import install_columns

        install_columns(cls, table)
        _REGISTRY[f"{cls.__module__}.{cls.__qualname__}"] = cls
        return cls

    return decorate


def table_of(model_cls: Any) -> Table:
    """The :class:`Table` of a model class (or instance);
    ``DbpError`` if it was not declared with ``@model``."""
    cls = model_cls if isinstance(model_cls, type) else type(model_cls)
    table = getattr(cls, "__table__", None)
    if not isinstance(table, Table):
        raise ConfigurationError(
            f"{cls.__name__} is not a model: declare it with @model(...) over @dataclass"
        )
    return table
