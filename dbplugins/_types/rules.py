"""The value rules of the column-type layer: one converter per kind of column, and the readers of text.

Private to :mod:`dbplugins._types.column`, which compiles them into one ``ColumnType`` per column. Each
converter takes a Python value and returns the value to store
(``None`` for NULL) or raises :class:`Refused` saying why.
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

from psycopg.types.json import _JsonWrapper

Convert = Callable[[Any], Any]

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


_INT_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
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
            raise Refused(
                "contains a lone surrogate (not valid Unicode), which UTF-8 cannot encode"
            ) from None
        return v

    return convert


def _instance(
    types: tuple[type, ...], sql: str, *, refuse: tuple[type, ...] = (), aware: bool | None = None
) -> Convert:
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
        if isinstance(v, _JsonWrapper):  # psycopg's Json / Jsonb, given by the caller or bound already
            v = v.obj
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


# -- text (CSV fields, JSON strings) -------------------------------------------------------------------------

# PostgreSQL's boolean input (boolin): any prefix of true/false/yes/no, on/off ("of"), 1/0. Read the same
# here, so that dbp load's COPY path (the server reads the text) and its Python path give one answer for every
# field.
_TRUE = frozenset({"t", "tr", "tru", "true", "1", "y", "ye", "yes", "on"})
_FALSE = frozenset({"f", "fa", "fal", "fals", "false", "0", "n", "no", "of", "off"})


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


# Non-decimal integer literals, as PostgreSQL 16+ reads them in integer and numeric input ("0x1F", "-0o17",
# "0b101").
_PREFIXED_INT = re.compile(r"[+-]?0[xXoObB][0-9a-fA-F_]+")
# glibc strtod (PostgreSQL's float input) also reads hexadecimal floats and "nan(chars)".
_HEX_FLOAT = re.compile(r"[+-]?0[xX][0-9a-fA-F.]+(?:[pP][+-]?[0-9]+)?")
_NAN_CHARS = re.compile(r"[+-]?nan\([0-9A-Za-z_]*\)", re.IGNORECASE)
_INFINITY = re.compile(r"[+-]?inf(?:inity)?", re.IGNORECASE)


def _text_int(text: str) -> Any:
    body = text.strip()
    try:
        return int(body)
    except ValueError:
        if _PREFIXED_INT.fullmatch(body):
            return int(body, 0)
        # "1001.0" (pandas writes an int column with a gap as floats): the column decides
        return _text_float(body)


def _text_float(text: str) -> Any:
    """A float from text as PostgreSQL reads it; a finite number beyond double's range stays a Decimal
    (refused by the column, never read as infinity)."""
    body = text.strip()
    try:
        value = float(body)
    except ValueError:
        if _HEX_FLOAT.fullmatch(body):
            return float.fromhex(body)
        if _NAN_CHARS.fullmatch(body):
            return math.nan
        raise
    if math.isinf(value) and not _INFINITY.fullmatch(body):
        return decimal.Decimal(body)
    return value


def _text_numeric(text: str) -> decimal.Decimal:
    body = text.strip()
    try:
        return decimal.Decimal(body)
    except decimal.InvalidOperation:
        if _PREFIXED_INT.fullmatch(body):
            return decimal.Decimal(int(body, 0))
        raise ValueError(f"not a number: {body!r}") from None


_FROM_TEXT: dict[str, Callable[[str], Any]] = {
    "smallint": _text_int,
    "integer": _text_int,
    "bigint": _text_int,
    "double precision": _text_float,
    "real": _text_float,
    "numeric": _text_numeric,
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


