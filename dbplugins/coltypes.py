"""The column-type layer: one object per column that every read and write path shares.

A :class:`ColumnType` is compiled once from a column's declared (or introspected) SQL type. It owns:

- the canonical PostgreSQL spelling of the type (``format_type``'s, so DDL, introspection and the migration diff
  compare like with like): :func:`canonical_type`;
- what Python values the column accepts and how each becomes the value stored (:meth:`ColumnType.convert`), with
  the range and length checks; the same rules on every path (COPY, bound parameters, filters, ``dbp load``);
- the value to bind as a parameter (:meth:`ColumnType.param`), the type name psycopg dumps for COPY
  (:attr:`ColumnType.copy_type`) and the unconstrained type for ``::casts`` (:attr:`ColumnType.cast_type`);
- reading CSV and JSON text as column values (:meth:`ColumnType.from_text`, :meth:`ColumnType.from_json`);
- the default applied when a row leaves the column out (:attr:`ColumnType.default_sql`, :attr:`ColumnType.default`).

    >>> t = ColumnType.compile("n", "int4")
    >>> t.sql_type, t.convert(1001.0)
    ('integer', 1001)
    >>> t.convert(1.5)
    Traceback (most recent call last):
    ...
    dbplugins.coltypes.Refused: a fractional number (1.5) is not an integer
    >>> ColumnType.compile("s", "varchar(3)").convert(float("nan")) is None
    True
    >>> canonical_type("timestamp(3)"), canonical_type("char(3)[]"), canonical_type("decimal(10, 2)")
    ('timestamp(3) without time zone', 'character(3)[]', 'numeric(10,2)')
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import numbers
import re
import struct
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["ColumnType", "Refused", "canonical_type", "is_missing"]

Convert = Callable[[Any], Any]

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
_TYPE_RE = re.compile(r"^(?P<base>[a-z_][a-z0-9_ ]*?)\s*(?:\((?P<mod>[0-9 ,]*)\))?\s*(?P<zone>(?:with|without) time zone)?$")


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
    """PostgreSQL's ``format_type`` spelling of ``sql_type`` (``varchar(5)[]`` -> ``character varying(5)[]``)."""
    base, mod, dims = _split(sql_type)
    if mod is None:
        name = base
    elif base in _ZONED:
        head, zone = _ZONED[base]
        name = f"{head}({mod}){zone}"
    else:
        name = f"{base}({mod})"
    return name + "[]" * dims


# -- values -------------------------------------------------------------------------------------------------


class Refused(ValueError):
    """A value the column cannot store; the message says why (the caller adds model, column and row)."""


def is_missing(value: Any) -> bool:
    """pandas' missing markers ``pd.NA`` and ``NaT`` (recognised by type name: pandas is not imported)."""
    return type(value).__name__ in ("NAType", "NaTType")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value  # noqa: PLR0124 - the NaN test


_INT_RANGES = {"smallint": (-(2**15), 2**15 - 1), "integer": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}
_FLOAT4 = struct.Struct("!f")


def _int(low: int, high: int, sql: str) -> Convert:
    def convert(v: Any) -> Any:
        t = type(v)
        if t is not int:
            if t is bool or _is_numpy_bool(t):
                raise Refused(f"a bool ({v!r}) is not an integer")
            if isinstance(v, numbers.Integral):
                v = int(v)
            elif isinstance(v, (float, decimal.Decimal)) or _is_numpy_float(t):
                if isinstance(v, decimal.Decimal) and v.is_snan():
                    raise Refused("a signalling NaN is not an integer")
                if v != v:  # noqa: PLR0124 - NaN: pandas' missing marker
                    return None
                if not math.isfinite(float(v)) or isinstance(v, decimal.Decimal) and v.is_infinite():
                    raise Refused(f"{v!r} is not an integer")
                if v != int(v):
                    raise Refused(f"a fractional number ({v!r}) is not an integer")
                v = int(v)
            else:
                raise Refused(f"{sql} expected, got {t.__name__} {_short(v)}")
        if not low <= v <= high:
            raise Refused(f"{v} is out of range for {sql} [{low}, {high}]")
        return v

    return convert


def _float(real: bool) -> Convert:
    sql = "real" if real else "double precision"

    def convert(v: Any) -> Any:
        t = type(v)
        if t is not float:
            if t is bool or _is_numpy_bool(t):
                raise Refused(f"a bool ({v!r}) is not a number")
            if isinstance(v, (numbers.Real, decimal.Decimal)):
                try:
                    f = float(v)
                except OverflowError:
                    raise Refused(f"{_short(v)} is out of range for {sql}") from None
                infinite = v.is_infinite() if isinstance(v, decimal.Decimal) else math.isinf(v)
                if math.isinf(f) and not infinite:
                    raise Refused(f"{_short(v)} is out of range for {sql}")
                v = f
            else:
                raise Refused(f"{sql} expected, got {t.__name__} {_short(v)}")
        if real and math.isfinite(v):
            try:
                (narrow,) = _FLOAT4.unpack(_FLOAT4.pack(v))
            except OverflowError:
                raise Refused(f"{v!r} is out of range for real (about ±3.4028235e38)") from None
            if narrow == 0.0 and v != 0.0:
                raise Refused(f"{v!r} is too small for real (it would be stored as 0)")
        return v

    return convert


def _numeric(precision: int | None, scale: int) -> Convert:
    limit = decimal.Decimal(10) ** (precision - scale) if precision is not None else None
    quantum = decimal.Decimal(1).scaleb(-scale)

    def convert(v: Any) -> Any:
        t = type(v)
        if t is not decimal.Decimal:
            if t is bool or _is_numpy_bool(t):
                raise Refused(f"a bool ({v!r}) is not a number")
            if isinstance(v, numbers.Integral):
                v = decimal.Decimal(int(v))
            elif isinstance(v, float) or _is_numpy_float(t):
                if v != v:  # noqa: PLR0124 - NaN: pandas' missing marker
                    return None
                v = decimal.Decimal(repr(float(v)))  # the shortest repr: 0.1 stays 0.1
            else:
                raise Refused(f"numeric expected, got {t.__name__} {_short(v)}")
        if v.is_snan():
            raise Refused("a signalling NaN cannot be stored")
        if limit is not None and not v.is_nan():
            if v.is_infinite():
                raise Refused(f"{v} does not fit numeric({precision},{scale})")
            with decimal.localcontext() as ctx:
                ctx.prec = max(ctx.prec, len(v.as_tuple().digits) + scale + 2)
                rounded = v.quantize(quantum, rounding=decimal.ROUND_HALF_UP)
            if abs(rounded) >= limit:
                raise Refused(f"{_short(v)} does not fit numeric({precision},{scale})")
        return v

    return convert


def _text(length: int | None, sql: str) -> Convert:
    def convert(v: Any) -> Any:
        if type(v) is not str:
            if isinstance(v, str):
                v = str(v)
            elif _is_nan(v) or _is_numpy_float(type(v)) and v != v:  # noqa: PLR0124
                return None
            else:
                raise Refused(f"{sql} expected, got {type(v).__name__} {_short(v)}")
        if length is not None and len(v) > length:
            raise Refused(f"a text of {len(v)} characters is too long for {sql} (never truncated)")
        if "\x00" in v:
            raise Refused("contains a NUL (0x00) character, which PostgreSQL text cannot store")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused("contains a lone surrogate (not valid Unicode), which UTF-8 cannot encode") from None
        return v

    return convert


def _instance(types: tuple[type, ...], sql: str, *, refuse: tuple[type, ...] = (), aware: bool | None = None) -> Convert:
    def convert(v: Any) -> Any:
        if not isinstance(v, types) or isinstance(v, refuse):
            if _is_nan(v):
                return None
            raise Refused(f"{sql} expected, got {type(v).__name__} {_short(v)}")
        if aware is not None and (v.utcoffset() is not None) != aware:  # type: ignore[attr-defined]
            need = "a timezone-aware" if aware else "a naive (timezone-less)"
            raise Refused(f"{sql} takes {need} value, got {_short(v)}")
        return v

    return convert


def _timetz(v: Any) -> Any:
    if isinstance(v, datetime.time) and v.tzinfo is not None and v.utcoffset() is not None:
        return v
    if _is_nan(v):
        return None
    raise Refused(f"time with time zone takes a timezone-aware time, got {type(v).__name__} {_short(v)}")


def _boolean(v: Any) -> Any:
    if type(v) is bool:
        return v
    if _is_numpy_bool(type(v)):
        return bool(v)
    if _is_nan(v):
        return None
    raise Refused(f"boolean expected, got {type(v).__name__} {_short(v)}")


def _uuid(v: Any) -> Any:
    if isinstance(v, uuid.UUID):
        return v
    if isinstance(v, str):
        try:
            return uuid.UUID(v)
        except ValueError:
            raise Refused(f"{_short(v)} is not a UUID") from None
    if _is_nan(v):
        return None
    raise Refused(f"uuid expected, got {type(v).__name__} {_short(v)}")


def _json(binary: bool) -> Convert:
    def convert(v: Any) -> Any:
        if _is_nan(v):
            return None
        if type(v) is tuple:
            v = list(v)
        if not isinstance(v, (dict, list, str, int, float, bool)):
            raise Refused(f"a JSON value (dict, list, str, number, bool) expected, got {type(v).__name__}")
        try:
            json.dumps(v, allow_nan=False, default=_json_default)
        except (TypeError, ValueError) as exc:
            raise Refused(f"is not valid JSON: {exc}") from None
        if binary and _has_nul(v):
            raise Refused("contains a NUL (\\u0000) character, which jsonb cannot store")
        return v

    return convert


def _has_nul(v: Any) -> bool:
    if isinstance(v, str):
        return "\x00" in v
    if isinstance(v, dict):
        return any(_has_nul(k) or _has_nul(x) for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return any(_has_nul(x) for x in v)
    return False


def _json_default(o: Any) -> Any:
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def _is_numpy_bool(t: type) -> bool:
    return t.__name__ in ("bool_", "bool") and getattr(t, "__module__", "") == "numpy"


def _is_numpy_float(t: type) -> bool:
    return t.__name__.startswith("float") and getattr(t, "__module__", "") == "numpy"


def _any(v: Any) -> Any:
    return v


# -- text (CSV fields, JSON strings) --------------------------------------------------------------------------

_TRUE = frozenset({"t", "true", "1", "y", "yes", "on"})
_FALSE = frozenset({"f", "false", "0", "n", "no", "off"})


def _text_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("not a boolean (t/true/1/yes or f/false/0/no)")


def _text_bytes(text: str) -> bytes:
    body = text.strip()
    return bytes.fromhex(body[2:] if body.startswith("\\x") else body)


def _text_int(text: str) -> Any:
    body = text.strip()
    try:
        return int(body)
    except ValueError:
        return float(body)  # "1001.0" (pandas writes an int column with a gap as floats): the column decides


_FROM_TEXT: dict[str, Callable[[str], Any]] = {
    "smallint": _text_int,
    "integer": _text_int,
    "bigint": _text_int,
    "double precision": float,
    "real": float,
    "numeric": lambda s: decimal.Decimal(s.strip()),
    "boolean": _text_bool,
    "timestamp without time zone": lambda s: datetime.datetime.fromisoformat(s.strip()),
    "timestamp with time zone": lambda s: datetime.datetime.fromisoformat(s.strip()),
    "date": lambda s: datetime.date.fromisoformat(s.strip()),
    "time without time zone": lambda s: datetime.time.fromisoformat(s.strip()),
    "time with time zone": lambda s: datetime.time.fromisoformat(s.strip()),
    "bytea": _text_bytes,
    "uuid": lambda s: uuid.UUID(s.strip()),
    "json": json.loads,
    "jsonb": json.loads,
}
# In JSON lines these types arrive as strings; the others are used as JSON gives them.
_JSON_STRINGS = frozenset(
    {"timestamp without time zone", "timestamp with time zone", "date", "time without time zone",
     "time with time zone", "bytea", "uuid", "numeric"}
)


def _parse_pg_array(body: str) -> list[str | None]:
    """The elements of a one-dimensional array literal's body (between the braces)."""
    items: list[str | None] = []
    i, n = 0, len(body)
    while i < n:
        while i < n and body[i] == " ":
            i += 1
        if i < n and body[i] == '"':
            i += 1
            out = []
            while i < n and body[i] != '"':
                if body[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(body[i])
                i += 1
            if i >= n:
                raise ValueError("unterminated quoted array element")
            items.append("".join(out))
            i += 1
            while i < n and body[i] == " ":
                i += 1
        else:
            start = i
            while i < n and body[i] != ",":
                i += 1
            raw = body[start:i].strip()
            items.append(None if raw.upper() == "NULL" else raw)
        if i < n:
            if body[i] != ",":
                raise ValueError(f"unexpected {body[i]!r} in array literal")
            i += 1
            if i == n:
                raise ValueError("array literal ends with a comma")
    return items


# -- the column type ----------------------------------------------------------------------------------------

_KINDS = {
    "smallint": "int", "integer": "int", "bigint": "int", "real": "float", "double precision": "float",
    "numeric": "numeric", "character varying": "text", "character": "text", "text": "text", "boolean": "bool",
    "timestamp without time zone": "timestamp", "timestamp with time zone": "timestamptz", "date": "date",
    "time without time zone": "time", "time with time zone": "timetz", "interval": "interval", "bytea": "bytes",
    "json": "json", "jsonb": "json", "uuid": "uuid",
}
# The types values of which COPY sends as they are, per kind (anything else takes convert(), the slow path).
_FAST = {
    "int": (int,), "float": (float,), "numeric": (decimal.Decimal,), "text": (str,), "bool": (bool,),
    # datetimes: psycopg's binary dumpers refuse a naive value for timestamptz and an aware one for timestamp (and
    # for timetz a naive time), and the encoding error is then diagnosed by convert(): no per-row check needed.
    "timestamp": (datetime.datetime,), "timestamptz": (datetime.datetime,), "date": (datetime.date,), "time": (),
    "timetz": (datetime.time,),
    "interval": (datetime.timedelta,), "bytes": (bytes,), "json": (dict, list), "uuid": (uuid.UUID,),
}
# The name of the type psycopg dumps for COPY, where the canonical base is not one it knows a binary dumper for.
_COPY_NAMES = {"character": "text"}
# Unconstrained names for ::casts (a cast to varchar(5) would truncate; to "character", cut to one letter).
_CAST_NAMES = {"character": "bpchar"}
_CONSTANT_DEFAULT = re.compile(r"^\(*('(?:[^']|'')*'|-?[0-9.]+(?:e[-+]?[0-9]+)?|true|false)\)*(?:::[a-z ]+(?:\([0-9, ]*\))?)?$", re.I)


class ColumnType:
    """Everything about the values of one column: compiled once, shared by every path (see the module doc)."""

    __slots__ = ("name", "sql_type", "base", "kind", "array", "nullable", "length", "default_sql", "default",
                 "has_default", "fast", "trusted", "struct_code", "copy_type", "cast_type", "_scalar", "_text")

    def __init__(self, name: str, sql_type: str, *, nullable: bool = True, default: str | None = None) -> None:
        self.name = name
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
        # Exact types convert() and param() return unchanged, without a value check (what is left to check, the
        # server refuses: a NUL byte, a numeric(p,s) overflow): bound parameters skip the call for them.
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
    def compile(cls, name: str, sql_type: str, *, nullable: bool = True, default: str | None = None) -> ColumnType:
        """The column type of column ``name`` declared as ``sql_type``."""
        return cls(name, sql_type, nullable=nullable, default=default)

    def _constant(self, default: str | None) -> Any:
        """The Python value of a constant default (``'new'``, ``0``, ``'x'::character varying``), else _SERVER."""
        if default is None:
            return None
        text = default.strip()
        m = _CONSTANT_DEFAULT.match(text)
        if m is None or self.array:
            return _SERVER
        literal = m.group(1)
        try:
            if literal.startswith("'"):
                body = literal[1:-1].replace("''", "'")
                return self.from_text(body)
            return self.from_text(literal)
        except (Refused, ValueError):
            return _SERVER

    @property
    def server_default(self) -> bool:
        """True when the default is an expression only the server can evaluate (``now()``, ``nextval(...)``)."""
        return self.default is _SERVER

    def convert(self, value: Any) -> Any:
        """The value to store for ``value``: ``None`` for NULL; raises :class:`Refused` saying why not.

        Integral floats become ints in integer columns, NaN / ``pd.NA`` / ``NaT`` become NULL outside float columns,
        tuples become lists; nothing is rounded, truncated or turned into infinity.
        """
        if value is None or is_missing(value):
            return None
        if not self.array:
            return self._scalar(value)
        if not isinstance(value, (list, tuple)):
            if _is_nan(value):
                return None
            raise Refused(f"{self.sql_type} expected (a list or tuple), got {type(value).__name__} {_short(value)}")
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
