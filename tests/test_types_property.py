"""One rule set on every path: a value is stored identically by every write path, or refused by all of them.

For each supported column type, hypothesis generates values (hostile ones included: fractional and integral
floats, NaN, ±inf, values beyond the type's range, too long text, NUL bytes, lone surrogates, naive and aware
datetimes, tuples for arrays, bools for numbers...) and writes each through ``bulk_insert`` in its three
modes, ``get_or_create``, ``get_or_create_many`` and ``update``, and through ``dbp load`` of a CSV file (its
COPY path where it applies, and its Python path with ``DBP_LOAD_FAST=0``) and of a JSON-lines file. Then
either every path stored the same thing (read back from the server), or every path raised the same
``DbpError`` class naming the column (and row 0 for batches).

A file holds text: a value goes into it as a writer would put it (``repr`` of a float, ISO 8601 for datetimes,
``\\x`` hex for bytes, JSON for documents and arrays, an empty field for NaN outside float columns). Where the
text does not say the value's Python type (the string ``"5"`` for an integer column, ``0`` for a boolean), the
file paths are compared with each other only; a value no file can hold (a lone surrogate in CSV, a ``set``)
skips them.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import os
import tempfile
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from dbplugins import Column, DbpError, model
from dbplugins._load.files import load_into
from dbplugins._load.loadcopy import ENV
from dbplugins._types.schema import table_of

# column -> (declared type, strategy of values)
_INTS = st.one_of(
    st.integers(-(2**64), 2**64),
    st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**15, 2**63, -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**40), 2**40).map(float),  # integral floats: pandas' int column with a gap
    st.booleans(),
    st.decimals(allow_nan=True, places=1, min_value=-(10**6), max_value=10**6),
    st.text(max_size=3),
)
_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e300, -1e300, 3.4028235e38, 3.5e38, 1e-50, 1e-40, 5e-324, 0.0, -0.0]),
    st.integers(-(2**70), 2**70),
    st.sampled_from([10**400, decimal.Decimal("1e400"), decimal.Decimal("-1e400"), decimal.Decimal("0.1")]),
    st.booleans(),
    st.text(max_size=3),
)
_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=8)
_TEXTS = st.one_of(
    _TEXT,
    st.sampled_from(["a\x00b", "\ud800", "12345", "123456", "ab   ", "   ", ""]),
    st.integers(-5, 5),
    st.just(math.nan),
)
_UTC = datetime.timezone.utc
_ZONES = st.sampled_from([_UTC, datetime.timezone(datetime.timedelta(hours=-5, minutes=-30))])
_DATETIMES = st.one_of(
    st.datetimes(min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30)),
    st.datetimes(
        min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30), timezones=_ZONES
    ),
    st.dates(),
    st.just(math.nan),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
_JSONS = st.one_of(
    _JSON,
    st.tuples(st.integers(), _TEXT),
    st.sampled_from([math.nan, [math.nan], {"a": math.inf}, {1, 2}, decimal.Decimal("1.5")]),
)

COLUMNS: dict[str, tuple[str, st.SearchStrategy[Any]]] = {
    "small": ("smallint", _INTS),
    "num": ("integer", _INTS),
    "big": ("bigint", _INTS),
    "dbl": ("double precision", _FLOATS),
    "rl": ("real", _FLOATS),
    "price": ("numeric(10,2)", st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**9), max_value=10**9, places=3),
        st.sampled_from([decimal.Decimal("NaN"), decimal.Decimal("Infinity"), decimal.Decimal("99999999.995"),
                         decimal.Decimal("99999999.994"), decimal.Decimal("-1e8")]),
        st.floats(min_value=-1e9, max_value=1e9) | st.just(math.nan),
        st.integers(-(10**9), 10**9),
        st.booleans(),
    )),
    "amount": ("numeric", st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**20), max_value=10**20),
        st.sampled_from([decimal.Decimal("NaN"), decimal.Decimal("-Infinity"), decimal.Decimal("1e-300")]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(),
    )),
    "short": ("varchar(5)", _TEXTS),
    "code": ("char(3)", _TEXTS),
    "body": ("text", _TEXTS),
    "flag": ("boolean", st.one_of(st.booleans(), st.sampled_from([0, 1, "t", math.nan]))),
    "at": ("timestamp(3)", _DATETIMES),
    "at_tz": ("timestamptz", _DATETIMES),
    "day": ("date", _DATETIMES),
    "clock_tz": ("timetz", st.one_of(st.times(), st.times(timezones=_ZONES), st.just(math.nan))),
    "doc": ("json", _JSONS),
    "docb": ("jsonb", _JSONS),
    "key": ("uuid", st.one_of(st.uuids(), st.uuids().map(str), st.sampled_from(["not-a-uuid", 5]))),
    "blob": ("bytea", st.one_of(st.binary(max_size=8), st.binary(max_size=8).map(bytearray), _TEXT)),
    "counts": ("integer[]", st.one_of(
        st.lists(st.one_of(st.none(), _INTS), max_size=4),
        st.lists(st.integers(-5, 5), max_size=4).map(tuple),
        st.just(math.nan), st.integers(),
    )),
    "names": ("varchar(3)[]", st.one_of(
        st.lists(st.one_of(st.none(), _TEXTS), max_size=3),
        st.lists(_TEXT, max_size=3).map(tuple),
        _TEXT,
    )),
}


@model("t_prop", primary_key=["id"])
@dataclass
class Prop:
    id: int
    small: Annotated[object | None, Column("smallint")] = None
    num: Annotated[object | None, Column("integer")] = None
    big: Annotated[object | None, Column("bigint")] = None
    dbl: Annotated[object | None, Column("double precision")] = None
    rl: Annotated[object | None, Column("real")] = None
    price: Annotated[object | None, Column("numeric(10,2)")] = None
    amount: Annotated[object | None, Column("numeric")] = None
    short: Annotated[object | None, Column("varchar(5)")] = None
    code: Annotated[object | None, Column("char(3)")] = None
    body: Annotated[object | None, Column("text")] = None
    flag: Annotated[object | None, Column("boolean")] = None
    at: Annotated[object | None, Column("timestamp(3)")] = None
    at_tz: Annotated[object | None, Column("timestamptz")] = None
    day: Annotated[object | None, Column("date")] = None
    clock_tz: Annotated[object | None, Column("timetz")] = None
    doc: Annotated[object | None, Column("json")] = None
    docb: Annotated[object | None, Column("jsonb")] = None
    key: Annotated[object | None, Column("uuid")] = None
    blob: Annotated[object | None, Column("bytea")] = None
    counts: Annotated[object | None, Column("integer[]")] = None
    names: Annotated[object | None, Column("varchar(3)[]")] = None


_DDL = sql.SQL("CREATE TABLE t_prop (id integer PRIMARY KEY, {})").format(
    sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, (t, _) in COLUMNS.items()
    )
)


# -- values as file text -------------------------------------------------------------------------------------

_NO: Any = object()  # no file can hold the value
_NULL: Any = object()  # a missing value (NaN outside float columns)


def _kind(column: str) -> tuple[str, bool]:
    ctype = table_of(Prop).columns[column].type
    return ctype.kind, ctype.array


def _scalar_text(kind: str, value: Any) -> tuple[Any, bool]:
    """(the text of a value in a column of ``kind``, whether the text says the value's type), or
    (_NO, False)."""
    if isinstance(value, float) and math.isnan(value):
        return ("NaN" if kind == "float" else _NULL, True)  # pandas writes an empty field for a missing value
    if isinstance(value, bool):
        return ("true" if value else "false", kind in ("bool", "int", "float", "numeric"))
    if isinstance(value, float):
        text = {math.inf: "Infinity", -math.inf: "-Infinity"}.get(value, repr(value))
        return text, kind in ("int", "float", "numeric")
    if isinstance(value, (int, decimal.Decimal)):
        return str(value), kind in ("int", "float", "numeric")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return _NO, False
        return value, kind in ("text", "uuid")
    if isinstance(value, datetime.datetime):
        return value.isoformat(), kind in ("timestamp", "timestamptz", "date")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat(), kind in ("date", "time", "timetz")
    if isinstance(value, uuid.UUID):
        return str(value), kind == "uuid"
    if isinstance(value, (bytes, bytearray)):
        return "\\x" + bytes(value).hex(), kind == "bytes"
    return _NO, False


def _csv_field(column: str, value: Any) -> tuple[str | None, bool]:
    """(the CSV field for ``value``, quoted where needed, whether it is faithful); (None, False): no CSV."""
    kind, array = _kind(column)
    if isinstance(value, float) and math.isnan(value) and (array or kind != "float"):
        return "", True
    if array or kind == "json":
        if (
            array
            and isinstance(value, (list, tuple))
            and any(isinstance(v, str) for v in value)
            and kind != "text"
        ):
            return None, False  # "5" in an integer array: the JSON text reads it as 5
        if array and isinstance(value, str):
            return None, False
        try:
            text = json.dumps(list(value) if array and isinstance(value, tuple) else value, default=_no_json)
        except (TypeError, ValueError):
            return None, False
        faithful = True
    else:
        text, faithful = _scalar_text(kind, value)
        if text is _NO:
            return None, False
        if text is _NULL:
            return "", True  # an unquoted empty field
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None, False
    return '"' + text.replace('"', '""') + '"', faithful


def _no_json(o: Any) -> Any:
    raise TypeError(type(o).__name__)


_JSON_STRINGS = ("timestamp", "timestamptz", "date", "time", "timetz", "bytes", "numeric")


def _json_field(column: str, value: Any) -> tuple[Any, bool]:
    """(the JSON value for ``value``, whether it is faithful); (_NO, False): no JSON."""
    kind, array = _kind(column)
    if isinstance(value, (datetime.date, datetime.time, uuid.UUID, bytes, bytearray, decimal.Decimal)):
        if array or isinstance(value, decimal.Decimal) and kind != "numeric":
            return _NO, False
        text, faithful = _scalar_text(kind, value)
        return (None if text is _NULL else text), faithful
    if isinstance(value, str) and not array and kind in _JSON_STRINGS:
        return value, False  # read as a date, bytes... by dbp load, refused as a str by the other paths
    try:
        json.dumps(value, default=_no_json)
    except (TypeError, ValueError):
        return _NO, False
    return value, True


def _write_file(directory: str, ident: int, column: str, value: Any, fmt: str) -> str | None:
    if fmt == "csv":
        field, _ = _csv_field(column, value)
        if field is None:
            return None
        path = os.path.join(directory, f"v{ident}.csv")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(f"id,{column}\n{ident},{field}\n")
        return path
    doc, _ = _json_field(column, value)
    if doc is _NO:
        return None
    path = os.path.join(directory, f"v{ident}.jsonl")
    with open(path, "w", encoding="ascii") as f:
        f.write(json.dumps({"id": ident, column: doc}) + "\n")
    return path


def _load(db: Any, directory: str, path: str, ident: int, column: str, value: Any) -> None:
    fmt = "jsonl" if path == "load:json" else "csv"
    file = _write_file(directory, ident, column, value, "json" if fmt == "jsonl" else "csv")
    assert file is not None
    previous = os.environ.get(ENV)
    os.environ[ENV] = "0" if path == "load:csv-python" else "auto"
    try:
        load_into(db, table_of(Prop), file, fmt, "ignore")
    finally:
        if previous is None:
            del os.environ[ENV]
        else:
            os.environ[ENV] = previous


def _write(db: Any, path: str, ident: int, column: str, value: Any, directory: str = "") -> None:
    q = db.query(Prop)
    if path.startswith("load:"):
        _load(db, directory, path, ident, column, value)
    elif path.startswith("bulk_insert"):
        q.bulk_insert([{"id": ident, column: value}], on_conflict=path.split(":")[1])
    elif path == "get_or_create":
        q.get_or_create(filter_by={"id": ident}, **{column: value})
    elif path == "get_or_create_many":
        q.get_or_create_many([{"id": ident, column: value}])
    else:
        instance, _ = q.get_or_create(filter_by={"id": ident})
        try:
            db.query().update(instance, {column: value})
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise


PATHS = [
    "bulk_insert:error",
    "bulk_insert:ignore",
    "bulk_insert:update",
    "get_or_create",
    "get_or_create_many",
    "update",
]
BATCH_PATHS = {
    "bulk_insert:error",
    "bulk_insert:ignore",
    "bulk_insert:update",
    "get_or_create_many",
    "load:csv",
    "load:csv-python",
    "load:json",
}


def _outcome(db: Any, path: str, ident: int, column: str, value: Any, directory: str = "") -> tuple[str, Any]:
    try:
        _write(db, path, ident, column, value, directory)
    except DbpError as exc:
        assert exc.column == column, f"{path}: {exc!r} does not name column {column!r}"
        if path in BATCH_PATHS:
            assert exc.row == 0, f"{path}: {exc!r} does not name row 0"
        return "refused", type(exc).__name__
    stored = db.execute(
        sql.SQL("SELECT {} FROM t_prop WHERE id = %s").format(sql.Identifier(column)).as_string(None), [ident]
    )
    return "stored", repr(stored[0][0])


@pytest.fixture
def prop_db(db: Any) -> Any:
    db.execute(_DDL.as_string(None))
    return db


@pytest.mark.parametrize("column", list(COLUMNS))
def test_every_path_stores_the_same_or_refuses_the_same(prop_db: Any, column: str) -> None:
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(value=COLUMNS[column][1])
    def check(value: Any) -> None:
        prop_db.execute("TRUNCATE t_prop")
        outcomes = {path: _outcome(prop_db, path, n, column, value) for n, path in enumerate(PATHS, start=1)}
        assert len(set(outcomes.values())) == 1, f"{column} <- {value!r}: {outcomes}"
        directory = tempfile.mkdtemp(prefix="dbp_prop_")
        files: dict[str, tuple[str, Any]] = {}
        csv_field, csv_faithful = _csv_field(column, value)
        if csv_field is not None:
            for n, path in enumerate(("load:csv", "load:csv-python"), start=len(PATHS) + 1):
                files[path] = _outcome(prop_db, path, n, column, value, directory)
            assert files["load:csv"] == files["load:csv-python"], (
                f"{column} <- {value!r} ({csv_field}): {files}"
            )
            if not csv_faithful:
                files.clear()
        doc, json_faithful = _json_field(column, value)
        if doc is not _NO and json_faithful:
            files["load:json"] = _outcome(prop_db, "load:json", len(PATHS) + 3, column, value, directory)
        for f in os.listdir(directory):
            os.unlink(os.path.join(directory, f))
        os.rmdir(directory)
        every = {**outcomes, **files}
        assert len(set(every.values())) == 1, (
            f"{column} <- {value!r} (csv {csv_field}, json {doc!r}): {every}"
        )

    check()

