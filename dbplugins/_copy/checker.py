"""The row checker of the COPY engine: validation and conversion compiled once per table from its column
types, cached per row signature, so a row of a known shape costs a tuple build and a type check."""

from __future__ import annotations

import copy as copymod
import dataclasses
import operator
import struct
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from .._types.column import ColumnType, Refused
from .._types.rows import as_mapping, check_columns
from .._types.schema import Table
from ..errors import (
    ConfigurationError,
    DataError,
    DbpError,
    MissingValueError,
    context,
    refused_error,
)

# Signatures (tuples of value types) cached per table. Real inputs have a handful (which optional columns are
# None); the cap keeps memory constant against adversarial input.
_MAX_SIGNATURES = 4096


class _RowChecker:
    """Validation compiled once per table from its column types (``ColumnDef.type``, see
    dbplugins._types.column).

    The per-row work is a signature check (the tuple of value types): a signature whose every value is of a
    type the column's COPY dumper takes as is needs nothing more than the struct range check of the narrow
    integer columns; any other signature gets a ``fix`` that converts the odd columns with
    ``ColumnType.convert`` (integral floats into integers, NaN into NULL, tuples into lists...) or raises
    naming the column and row.
    """

    def __init__(self, table: Table, omitted: frozenset[str] = frozenset()) -> None:
        self.table = table
        # A COPY names the columns of one layout: every column but the server-default ones the rows leave out
        # (``omitted``), which the server then fills (see layout()).
        self.omitted = omitted
        cols = [c for c in table.columns.values() if c.name not in omitted]
        self.names: tuple[str, ...] = tuple(c.name for c in cols)
        self.ncols = len(cols)
        self.colset = frozenset(self.names)
        self.types: tuple[ColumnType, ...] = tuple(c.type for c in cols)
        self.nullable = tuple(c.nullable for c in cols)
        self.sql_types = tuple(c.sql_type for c in cols)
        self.pg_types = [_pg_type_name(t, table.name) for t in self.types]
        # Tuple builders without a per-column Python loop (itemgetter of one key returns a bare value).
        self.item_getter: Callable[[Any], tuple[Any, ...]]
        self.attr_getter: Callable[[Any], tuple[Any, ...]]
        if self.ncols > 1:
            self.item_getter = operator.itemgetter(*self.names)
            self.attr_getter = operator.attrgetter(*self.names)
        else:
            only = self.names[0]
            self.item_getter = lambda row: (row[only],)
            self.attr_getter = lambda row: (getattr(row, only),)
        self.cls = table.cls
        # Values for keys missing from a dict row: the column's SQL default (a constant, evaluated once by its
        # column type), else the dataclass field default, else None (NULL). A default only the server can
        # compute (now(), nextval(...), serial) is the server's to apply: a row that leaves such a column out
        # belongs to the layout without it, and goes in a COPY that does not name it.
        self.defaults: dict[str, Any] = {}
        self.factories: dict[str, Callable[[], Any]] = {}
        self.server_defaults: frozenset[str] = frozenset(
            c.name for c in table.columns.values() if c.type.server_default
        )
        # The server-default columns this layout names: a dict row must give each of them to belong to it.
        self.named_defaults: frozenset[str] | None = (self.server_defaults - omitted) or None
        # Where a model instance's values hold the server-default columns (values[k] for k in them), when this
        # layout names them all: an instance with None in one of them belongs to another layout.
        positions = [k for k, n in enumerate(self.names) if n in self.server_defaults]
        self.defaults_getter: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None
        if positions and not omitted:
            self.defaults_getter = (
                operator.itemgetter(*positions) if len(positions) > 1 else lambda v, k=positions[0]: (v[k],)
            )
        # The checkers of the other layouts, shared by all of them (compiled on first use).
        self.layouts: dict[frozenset[str], _RowChecker] = {omitted: self}
        fields = {f.name: f for f in dataclasses.fields(table.cls)} if table.cls is not None else {}
        for t in self.types:
            name = t.name
            f = fields.get(name)
            if t.has_default:
                self.defaults[name] = None if t.server_default else t.default
            elif f is not None and f.default_factory is not dataclasses.MISSING:
                self.factories[name] = f.default_factory
                self.defaults[name] = None
            elif f is not None and f.default is not dataclasses.MISSING:
                self.defaults[name] = f.default
            else:
                self.defaults[name] = None
        # signature -> what to do with rows of that signature (None: nothing to check)
        self.signatures: dict[tuple[type, ...], _SigPlan | None] = {}
        self.unknown = "error"  # or "ignore": keys that are not columns are dropped (see for_call)
        self.dropped: set[str] = set()

    def for_call(self, unknown: str, dropped: set[str] | None = None) -> _RowChecker:
        """This checker for one call: compiled parts and signature cache shared, the unknown-key mode its own
        (dropped keys are added to ``dropped``)."""
        if unknown == "error":
            return self
        call = copymod.copy(self)
        call.unknown = unknown
        call.dropped = dropped if dropped is not None else set()
        return call

    def layout(self, omitted: frozenset[str]) -> _RowChecker:
        """The checker of the rows that leave out the server-default columns ``omitted`` (this call's
        unknown-key mode)."""
        if omitted == self.omitted:
            return self
        found = self.layouts.get(omitted)
        if found is None:
            if len(self.layouts) >= _MAX_SIGNATURES:  # 2**n layouts of n columns: bounded all the same
                self.layouts.clear()
            found = _RowChecker(self.table, omitted)
            found.layouts = self.layouts
            self.layouts[omitted] = found
        return found.for_call(self.unknown, self.dropped)

    def layout_of(self, row: Any) -> frozenset[str]:
        """The server-default columns ``row`` leaves out: those a mapping has no key for; those a model
        instance (which cannot leave a field out) holds None in."""
        if not self.server_defaults:
            return frozenset()
        if isinstance(row, Mapping):
            return self.server_defaults.difference(row.keys())
        if dataclasses.is_dataclass(row) and not isinstance(row, type):
            return frozenset(n for n in self.server_defaults if getattr(row, n, None) is None)
        return frozenset()

    # -- turning a row into a tuple of column values -------------------------------------------------------

    def values_slow(self, row: Any, index: int) -> tuple[Any, ...]:
        """The general path: any Mapping, dicts with missing keys, model instances; raises for anything
        else, and :class:`_Layout` for a row that leaves out other server-default columns than this layout
        (the writer ends its COPY there, and the next one names that row's columns)."""
        if isinstance(row, Mapping):
            if self.unknown != "error":
                extra = [k for k in row if k not in self.table.columns]
                if extra:
                    self.dropped.update(map(str, extra))
            else:
                check_columns(self.table, row.keys(), what="key", row=index)
            mapping: Mapping[str, Any] = row
            if self.server_defaults:
                omitted = self.server_defaults.difference(row.keys())
                if omitted != self.omitted:
                    raise _Layout(omitted)
        else:
            mapping = as_mapping(self.table, row, index=index)
            if self.server_defaults:
                omitted = frozenset(n for n in self.server_defaults if mapping[n] is None)
                if omitted != self.omitted:
                    raise _Layout(omitted)
        out = []
        for name in self.names:
            if name in mapping:
                out.append(mapping[name])
            elif name in self.factories:
                out.append(self.factories[name]())
            else:
                out.append(self.defaults[name])
        return tuple(out)

    # -- type checks, cached per signature ---------------------------------------------------------------

    def check_signature(self, values: tuple[Any, ...], index: int) -> _SigPlan | None:
        """Compile (and remember) what rows of this row's signature need; check this row. Raises naming column
        and row."""
        sig = tuple(map(type, values))
        convert: list[int] = []
        lengths: list[tuple[int, int]] = []
        for k, t in enumerate(sig):
            ctype = self.types[k]
            if t is type(None):
                if not self.nullable[k]:
                    raise self._missing(k, index)
            elif t not in ctype.fast:
                convert.append(k)
            elif ctype.length is not None:
                lengths.append((k, ctype.length))
        plan = _SigPlan.build(self, sig, tuple(convert), tuple(lengths))
        if plan is not None and plan.fix is not None:
            plan.fix(values, index)  # raises for this row now, before the signature is remembered
        if len(self.signatures) >= _MAX_SIGNATURES:
            self.signatures.clear()
        self.signatures[sig] = plan
        return plan

    def convert(self, k: int, value: Any, index: int) -> Any:
        """``value`` for column ``k`` as its column type converts it; raises DataError / MissingValueError."""
        try:
            out = self.types[k].convert(value)
        except Refused as exc:
            raise self._refused(k, value, index, exc) from None
        if out is None and not self.nullable[k]:
            raise self._missing(k, index)
        return out

    def diagnose(self, values: tuple[Any, ...], index: int) -> DbpError | None:
        """The precise error for a row (every value through its column type), or None when all are good."""
        for k, value in enumerate(values):
            try:
                self.convert(k, value, index)
            except DbpError as exc:
                return exc
        return None

    # -- errors ---------------------------------------------------------------------------------------------

    def _missing(self, k: int, index: int) -> MissingValueError:
        name = self.names[k]
        return MissingValueError(
            f"bulk_insert: missing value for NOT NULL column {name!r}"
            + context(model=self.table.name, column=name, row=index),
            model=self.table.name,
            column=name,
            row=index,
        )

    def _refused(self, k: int, value: Any, index: int, exc: Exception) -> DataError:
        return refused_error(self.table.name, self.types[k], value, exc, row=index, action="bulk_insert")

    def _nul(self, k: int, index: int) -> DataError:
        return self._refused(
            k, "\x00", index, Refused("contains a NUL (0x00) character, which PostgreSQL text cannot store")
        )


class _Layout(Exception):  # noqa: N818 - a signal between the row writer and its loader, never raised out
    """A row leaves out another set of server-default columns (``omitted``) than the COPY in progress."""

    def __init__(self, omitted: frozenset[str]) -> None:
        super().__init__("another layout")
        self.omitted = omitted


class _SigPlan:
    """What rows of one signature need: the struct range check of the narrow integer columns given as ints
    (``pack(*getter(values))``, in C: psycopg's binary int2/int4 dumpers wrap out-of-range values silently),
    and ``fix`` converting the columns whose value type the COPY dumper does not take as is (and checking
    lengths)."""

    __slots__ = ("getter", "pack", "fix")

    def __init__(
        self,
        getter: Callable[[Any], tuple[Any, ...]] | None,
        pack: Callable[..., bytes] | None,
        fix: Callable[[tuple[Any, ...], int], tuple[Any, ...]] | None,
    ) -> None:
        self.getter = getter
        self.pack = pack
        self.fix = fix

    @classmethod
    def build(
        cls,
        check: _RowChecker,
        sig: tuple[type, ...],
        convert: tuple[int, ...],
        lengths: tuple[tuple[int, int], ...],
    ) -> _SigPlan | None:
        idx = [k for k, t in enumerate(check.types) if t.struct_code and sig[k] is int]
        getter = pack = None
        if idx:
            codes = "".join(str(check.types[k].struct_code) for k in idx)
            if len(idx) == 1:  # itemgetter of one index returns a bare value: repeat it to keep a tuple
                idx = idx * 2
                codes = codes * 2
            getter, pack = operator.itemgetter(*idx), struct.Struct("!" + codes).pack
        fix = None
        if convert or lengths:
            def fix(values: tuple[Any, ...], index: int) -> tuple[Any, ...]:
                out = list(values)
                for k in convert:
                    out[k] = check.convert(k, out[k], index)
                for k, n in lengths:
                    if len(out[k]) > n:
                        check.convert(k, out[k], index)  # raises: too long
                return tuple(out)
        if getter is None and fix is None:
            return None
        return cls(getter, pack, fix)


def _pg_type_name(ctype: ColumnType, table: str) -> str:
    """The name psycopg's type registry knows for the column's COPY format (typmods do not change it)."""
    try:
        psycopg.adapters.types.get_oid(ctype.copy_type)
    except KeyError:
        raise ConfigurationError(
            f"bulk_insert cannot COPY column {ctype.name!r}: psycopg knows no type {ctype.sql_type!r}"
            + context(model=table, column=ctype.name),
            model=table,
            column=ctype.name,
        ) from None
    return ctype.copy_type


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_CHECKERS: dict[int, tuple[Table, _RowChecker]] = {}


def _checker(table: Table) -> _RowChecker:
    entry = _CHECKERS.get(id(table))
    if entry is None or entry[0] is not table:
        entry = _CHECKERS[id(table)] = (table, _RowChecker(table))
    return entry[1]
