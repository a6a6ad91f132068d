"""The column-type layer: one object per column that every read and write path shares.

A :class:`ColumnType` is compiled once from a column's declared (or introspected) SQL type. It owns:

- the canonical PostgreSQL spelling of the type (``format_type``'s, so DDL, introspection and the migration
  diff compare like with like): :func:`canonical_type`;
- what Python values the column accepts and how each becomes the value stored (:meth:`ColumnType.convert`),
  with the range and length checks; the same rules on every path (COPY, bound parameters, filters,
  ``dbp load``);
- the value to bind as a parameter (:meth:`ColumnType.param`), the type name psycopg dumps for COPY
  (:attr:`ColumnType.copy_type`) and the unconstrained type for ``::casts`` (:attr:`ColumnType.cast_type`);
- reading CSV and JSON text as column values (:meth:`ColumnType.from_text`, :meth:`ColumnType.from_json`);
- the default applied when a row leaves the column out (:attr:`ColumnType.default_sql`,
  :attr:`ColumnType.default`).

    >>> t = ColumnType.compile("n", "int4")
    >>> t.sql_type, t.convert(1001.0)
    ('integer', 1001)
    >>> t.convert(1.5)
    Traceback (most recent call last):
    ...
    dbplugins._types.column.Refused: a fractional number (1.5) is not an integer
    >>> ColumnType.compile("s", "varchar(3)").convert(float("nan")) is None
    True
    >>> canonical_type("timestamp(3)"), canonical_type("char(3)[]"), canonical_type("decimal(10, 2)")
    ('timestamp(3) without time zone', 'character(3)[]', 'numeric(10,2)')
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
import uuid
from typing import Any

from .rules import (
    _FROM_TEXT,
    _INT_RANGES,
    _JSON_STRINGS,
    Convert,
    Refused,
    _any,
    _boolean,
    _float,
    _instance,
    _int,
    _is_nan,
    _json,
    _numeric,
    _parse_pg_array,
    _short,
    _text,
    _timetz,
    _uuid,
    is_missing,
)

__all__ = ["ColumnType", "Refused", "canonical_type", "is_missing"]

Refused.__module__ = __name__  # the public path, as psycopg does for its classes


# -- the canonical spelling ---------------------------------------------------------------------------------

# Base type (lower case, single-spaced, no typmod) -> format_type()'s spelling.
_ALIASES = {
    "varchar": "character varying",
    "char": "character",
    "bpchar": "character",
    "int": "integer",
    "int4": "integer",
    "int8": "bigint",
    "int2": "smallint",
    "float8": "double precision",
    "float": "double precision",
    "float4": "real",
    "bool": "boolean",
    "decimal": "numeric",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "time": "time without time zone",
    "timetz": "time with time zone",
}
# Types whose typmod format_type prints inside the name: "timestamp(3) without time zone".
_ZONED = {
    "timestamp without time zone": ("timestamp", " without time zone"),
    "timestamp with time zone": ("timestamp", " with time zone"),
    "time without time zone": ("time", " without time zone"),
    "time with time zone": ("time", " with time zone"),
}
_TYPE_RE = re.compile(
    r"^(?P<base>[a-z_][a-z0-9_ ]*?)\s*(?:\((?P<mod>[0-9 ,]*)\))?\s*(?P<zone>(?:with|without) time zone)?$"
)


def _split(sql_type: str) -> tuple[str, str | None, int]:
    """``(canonical base, typmod text or None, array dimensions)`` of a type name."""
    text = " ".join(sql_type.strip().lower().split())
    dims = 0
    while text.endswith("[]"):
        dims += 1
        text = text[:-2].strip()
    m = _TYPE_RE.match(text)
    if m is None:
        return text, None, dims
    base = m.group("base").strip()
    if m.group("zone"):
        base = f"{base} {m.group('zone')}"
    base = _ALIASES.get(base, base)
    mod = m.group("mod")
    mod = mod.replace(" ", "") if mod is not None else None
    if base == "character" and mod is None:
        mod = "1"  # char alone is char(1), as format_type prints it
    return base, mod, dims


def canonical_type(sql_type: str) -> str:
    """PostgreSQL's ``format_type`` spelling of ``sql_type`` (``varchar(5)[]`` ->
    ``character varying(5)[]``)."""
    if '"' in sql_type:  # a quoted name is case-sensitive (extra."Mood"): lower-casing it names another type
        return sql_type.strip()
    base, mod, dims = _split(sql_type)
    if mod is None:
        name = base
    elif base in _ZONED:
        head, zone = _ZONED[base]
        name = f"{head}({mod}){zone}"
    else:
        name = f"{base}({mod})"
    return name + "[]" * dims


# -- the column type ----------------------------------------------------------------------------------------

_KINDS = {
    "smallint": "int", "integer": "int", "bigint": "int", "real": "float", "double precision": "float",
    "numeric": "numeric", "character varying": "text", "character": "text", "text": "text", "boolean": "bool",
    "timestamp without time zone": "timestamp", "timestamp with time zone": "timestamptz", "date": "date",
    "time without time zone": "time", "time with time zone": "timetz", "interval": "interval",
    "bytea": "bytes", "json": "json", "jsonb": "json", "uuid": "uuid",
}
# The types values of which COPY sends as they are, per kind (anything else takes convert(), the slow path).
_FAST = {
    "int": (int,), "float": (float,), "numeric": (decimal.Decimal,), "text": (str,), "bool": (bool,),
    # datetimes: psycopg's binary dumpers refuse a naive value for timestamptz and an aware one for timestamp
    # (and for timetz a naive time), and the encoding error is then diagnosed by convert():
    # no per-row check needed.
    "timestamp": (datetime.datetime,), "timestamptz": (datetime.datetime,), "date": (datetime.date,),
    "time": (),
    "timetz": (datetime.time,),
    "interval": (datetime.timedelta,), "bytes": (bytes,), "json": (dict, list), "uuid": (uuid.UUID,),
}
# The name of the type psycopg dumps for COPY, where the canonical base is not one it knows a binary dumper
# for.
_COPY_NAMES = {"character": "text"}
# Unconstrained names for ::casts (a cast to varchar(5) would truncate; to "character", cut to one letter).
_CAST_NAMES = {"character": "bpchar"}
# A default that is a literal (optionally cast): evaluated here, so bulk_insert's COPY can send it.
_CONSTANT_DEFAULT = re.compile(
    r"^\(*('(?:[^']|'')*'|-?[0-9.]+(?:e[-+]?[0-9]+)?|true|false|null)\)*(?:::[a-z ]+(?:\([0-9, ]*\))?)?$",
    re.I,
)


# Types whose values the server generates: serial types (an integer column with a sequence default) and
# identity columns ("bigint generated by default as identity"). The column holds values of the integer type;
# its default is computed by the server, as for Column(default="nextval(...)").
_SERIALS = {
    "smallserial": "smallint", "serial2": "smallint", "serial": "integer", "serial4": "integer",
    "bigserial": "bigint", "serial8": "bigint",
}
_IDENTITY = re.compile(
    r"\s+generated\s+(?:always|by\s+default)\s+as\s+identity(?:\s*\(.*\))?\s*$", re.I | re.S
)
_GENERATED = "<generated by the server>"


def _value_type(sql_type: str) -> tuple[str, bool]:
    """``(the type of the values, whether the server generates them)`` of a declared type: ``serial`` ->
    ``("integer", True)``, ``bigint generated by default as identity`` -> ``("bigint", True)``."""
    text = _IDENTITY.sub("", sql_type)
    if text != sql_type:
        return text.strip(), True
    serial = _SERIALS.get(" ".join(sql_type.lower().split()))
    return (serial, True) if serial is not None else (sql_type, False)


class ColumnType:
    """Everything about the values of one column: compiled once, shared by every path (see the module doc)."""

    __slots__ = ("name", "sql_type", "base", "kind", "array", "nullable", "length", "default_sql", "default",
                 "has_default", "fast", "trusted", "struct_code", "copy_type", "cast_type", "_scalar",
                 "_text")

    def __init__(
        self, name: str, sql_type: str, *, nullable: bool = True, default: str | None = None
    ) -> None:
        self.name = name
        sql_type, generated = _value_type(sql_type)
        if generated and default is None:
            default = _GENERATED
        self.sql_type = canonical_type(sql_type)
        base, mod, dims = _split(sql_type)
        self.base = base
        self.array = dims > 0
        self.kind = _KINDS.get(base, "any")
        self.nullable = nullable
        self.length: int | None = None
        precision: int | None = None
        scale = 0
        if mod and mod.replace(",", "").isdigit():
            parts = [int(p) for p in mod.split(",")]
            if self.kind == "text":
                self.length = parts[0]
            elif self.kind == "numeric":
                precision, scale = parts[0], (parts[1] if len(parts) > 1 else 0)
        element = self.sql_type[:-2 * dims] if dims else self.sql_type
        scalar: Convert
        if self.kind == "int":
            scalar = _int(*_INT_RANGES[base], base)
        elif self.kind == "float":
            scalar = _float(base == "real")
        elif self.kind == "numeric":
            scalar = _numeric(precision, scale)
        elif self.kind == "text":
            scalar = _text(self.length, element)
        elif self.kind == "bool":
            scalar = _boolean
        elif self.kind in ("timestamp", "timestamptz"):
            scalar = _instance((datetime.datetime,), element, aware=self.kind == "timestamptz")
        elif self.kind == "date":
            scalar = _instance((datetime.date,), element, refuse=(datetime.datetime,))
        elif self.kind == "time":
            scalar = _instance((datetime.time,), element, aware=False)
        elif self.kind == "timetz":
            scalar = _timetz
        elif self.kind == "interval":
            scalar = _instance((datetime.timedelta,), element)
        elif self.kind == "bytes":
            scalar = _instance((bytes, bytearray, memoryview), element)
        elif self.kind == "json":
            scalar = _json(base == "jsonb")
        elif self.kind == "uuid":
            scalar = _uuid
        else:
            scalar = _any
        self._scalar = scalar
        self._text = _FROM_TEXT.get(base)
        # Exact types COPY may send untouched (with the struct range check of struct_code, the length check).
        fast = () if self.array else _FAST.get(self.kind, ())
        if self.kind == "float" and base == "real":
            fast = ()  # a double beyond real's range would become infinity: always checked
        if self.kind == "json":
            fast = ()  # NaN inside a document, tuples: checked
        self.fast: frozenset[type] = frozenset(fast) if self.kind != "any" else frozenset()
        self.struct_code = {"smallint": "h", "integer": "i"}.get(base) if not self.array else None
        # Exact types convert() and param() return unchanged, without a value check (what is left to check,
        # the server refuses: a NUL byte, a numeric(p,s) overflow): bound parameters skip the call for them.
        self.trusted: frozenset[type] = (
            frozenset() if self.kind in ("int", "text") and (self.length is not None or self.kind == "int")
            else self.fast - {datetime.datetime, datetime.time}
        )
        copy_base = _COPY_NAMES.get(base, base)
        self.copy_type = copy_base + ("[]" if self.array else "")
        self.cast_type = _CAST_NAMES.get(base, base) + ("[]" * dims)
        self.default_sql = default
        self.has_default = default is not None
        self.default = self._constant(default)

    @classmethod
    def compile(
        cls, name: str, sql_type: str, *, nullable: bool = True, default: str | None = None
    ) -> ColumnType:
        """The column type of column ``name`` declared as ``sql_type``."""
        return cls(name, sql_type, nullable=nullable, default=default)

    def _constant(self, default: str | None) -> Any:
        """The Python value of a constant default (``'new'``, ``0``, ``'x'::character varying``),
        else _SERVER."""
        if default is None:
            return None
        text = default.strip()
        m = _CONSTANT_DEFAULT.match(text)
        if m is None or self.array:
            return _SERVER
        literal = m.group(1)
        if literal.lower() == "null":
            return None
        try:
            if literal.startswith("'"):
                body = literal[1:-1].replace("''", "'")
                return self.from_text(body)
            return self.from_text(literal)
        except (Refused, ValueError):
            return _SERVER

    @property
    def server_default(self) -> bool:
        """True when the default is an expression only the server can evaluate (``now()``, ``nextval(...)``,
        a ``serial`` or identity column): a write that leaves the column out lets the server fill it."""
        return self.default is _SERVER

    def convert(self, value: Any) -> Any:
        """The value to store for ``value``: ``None`` for NULL; raises :class:`Refused` saying why not.

        Integral floats become ints in integer columns, NaN / ``pd.NA`` / ``NaT`` become NULL outside float
        columns, tuples become lists; nothing is rounded, truncated or turned into infinity.
        """
        if value is None or is_missing(value):
            return None
        if not self.array:
            return self._scalar(value)
        if not isinstance(value, (list, tuple)):
            if _is_nan(value):
                return None
            raise Refused(
                f"{self.sql_type} expected (a list or tuple), got {type(value).__name__} {_short(value)}"
            )
        scalar = self._scalar
        out: list[Any] = []
        for j, item in enumerate(value):
            if item is None or is_missing(item):
                out.append(None)
            elif isinstance(item, (list, tuple)):
                raise Refused("nested lists (multidimensional arrays) are not supported")
            else:
                try:
                    out.append(scalar(item))
                except Refused as exc:
                    raise Refused(f"element {j}: {exc}") from None
        return out

    def param(self, value: Any) -> Any:
        """``value`` converted and ready to bind as a query parameter (JSON wrapped for psycopg)."""
        value = self.convert(value)
        if value is None or self.kind != "json":
            return value
        from psycopg.types.json import Json, Jsonb

        wrap = Jsonb if self.base == "jsonb" else Json
        if self.array:
            return [None if v is None else wrap(v) for v in value]
        return wrap(value)

    def from_text(self, text: str) -> Any:
        """The value of a CSV field (or any text form) for this column, converted; raises ValueError.

        The hook of ``dbp load``: text -> Python -> :meth:`convert`, so a loaded value follows the same rules.
        """
        parse = self._text or str
        if not self.array:
            return self.convert(parse(text))
        body = text.strip()
        if body.startswith("["):
            items = json.loads(body)
            if not isinstance(items, list):
                raise ValueError("not a JSON list")
            return self.convert([parse(i) if isinstance(i, str) and self._text else i for i in items])
        if not (body.startswith("{") and body.endswith("}")):
            raise ValueError("not an array: give a JSON list [..] or a {..} literal")
        return self.convert([None if i is None else parse(i) for i in _parse_pg_array(body[1:-1])])

    def from_json(self, value: Any) -> Any:
        """The value of a JSON-lines field (as ``json.loads`` gave it) for this column, converted."""
        if isinstance(value, str) and self.base in _JSON_STRINGS and self._text is not None:
            value = self._text(value)
        elif self.array and isinstance(value, list) and self.base in _JSON_STRINGS and self._text is not None:
            value = [self._text(v) if isinstance(v, str) else v for v in value]
        elif self.array and isinstance(value, str):
            return self.from_text(value)
        return self.convert(value)

    def __repr__(self) -> str:
        return f"<ColumnType {self.name} {self.sql_type}>"


class _ServerDefault:
    def __repr__(self) -> str:
        return "<server default>"


_SERVER: Any = _ServerDefault()
