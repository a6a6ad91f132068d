"""One rule set on every path: a value is stored identically by every write path, or refused by all of them.

For each supported column type, hypothesis generates values (hostile ones included: fractional and integral
floats, NaN, ±inf, values beyond the type's range, too long text, NUL bytes, lone surrogates, naive and aware
datetimes, tuples for arrays, bools for numbers...) and writes each through ``bulk_insert`` in its three modes,
``get_or_create``, ``get_or_create_many`` and ``update``. Then either every path stored the same thing (read back
from the server), or every path raised the same ``DbpError`` class naming the column (and row 0 for batches).

``dbp load`` joins at merge time through ``ColumnType.from_text`` / ``from_json`` (see dbplugins/coltypes.py).
"""

from __future__ import annotations

import datetime
import decimal
import math
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from dbplugins import Column, DbpError, model

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
    sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, (t, _) in COLUMNS.items())
)


def _write(db: Any, path: str, ident: int, column: str, value: Any) -> None:
    q = db.query(Prop)
    if path.startswith("bulk_insert"):
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


PATHS = ["bulk_insert:error", "bulk_insert:ignore", "bulk_insert:update", "get_or_create", "get_or_create_many",
         "update"]
BATCH_PATHS = {"bulk_insert:error", "bulk_insert:ignore", "bulk_insert:update", "get_or_create_many"}


def _outcome(db: Any, path: str, ident: int, column: str, value: Any) -> tuple[str, Any]:
    try:
        _write(db, path, ident, column, value)
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

    check()

