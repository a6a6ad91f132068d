"""``to_dataframe()`` fetches the numeric and boolean columns packed into one ``bytea`` per row: the frame
must be exactly the one built from the plain values (the same dtypes, the same values bit for bit: NaN, ±inf,
-0.0, NULL, the limits of every integer type), whatever the mix of columns, order, limit or filter."""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbplugins import Column, SQLConnection, cols, model
from dbplugins._query.frames import frame_layout, plain_frame
from dbplugins._types.schema import table_of

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")


@model("tf_row", primary_key=["rid"])
@dataclass
class Row:
    rid: Annotated[int, Column("bigint")]
    dbl: Annotated[float | None, Column("double precision")] = None
    rl: Annotated[float | None, Column("real")] = None
    small: Annotated[int | None, Column("smallint")] = None
    num: Annotated[int | None, Column("integer")] = None
    big: Annotated[int | None, Column("bigint")] = None
    flag: Annotated[bool | None, Column("boolean")] = None
    label: Annotated[str | None, Column("varchar")] = None
    amount: Annotated[Decimal | None, Column("numeric(10,2)")] = None
    tags: Annotated[list[int] | None, Column("integer[]")] = None


@model("tf_text", primary_key=["tid"])
@dataclass
class TextRow:
    """A column psycopg reads only as text (``timetz``): the whole result, packed part included, is text."""

    tid: int
    at: Annotated[datetime.time | None, Column("timetz")] = None
    val: Annotated[float | None, Column("double precision")] = None


DDL = """
CREATE TABLE tf_text (tid integer PRIMARY KEY, at timetz, val double precision);
CREATE TABLE tf_row (rid bigint PRIMARY KEY, dbl double precision, rl real, small smallint, num integer,
                     big bigint, flag boolean, label varchar, amount numeric(10,2), tags integer[]);
"""
R = cols(Row)
ALL = tuple(table_of(Row).columns)

_DOUBLES = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, -1.7976931348623157e308]),
)
_REALS = st.one_of(
    st.none(), st.floats(width=32, allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0])
)


def _ints(bits: int) -> st.SearchStrategy[int | None]:
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return st.one_of(st.none(), st.integers(lo, hi), st.sampled_from([lo, hi, 0, -1]))


ROW = st.fixed_dictionaries(
    {
        "dbl": _DOUBLES,
        "rl": _REALS,
        "small": _ints(16),
        "num": _ints(32),
        "big": _ints(64),
        "flag": st.one_of(st.none(), st.booleans()),
        "label": st.one_of(st.none(), st.text(max_size=5).filter(lambda t: "\x00" not in t)),
        "tags": st.one_of(st.none(), st.lists(st.integers(-5, 5), max_size=3)),
    }
)


@pytest.fixture
def fdb(module_db: SQLConnection, module_dsn: str) -> Iterator[SQLConnection]:
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE tf_row")
        module_db.__dict__["_test_plain"] = conn  # the reference reads, in binary as the plain path fetches
        yield module_db
        del module_db.__dict__["_test_plain"]


def store(db: SQLConnection, rows: list[dict[str, Any]]) -> None:
    db.execute("TRUNCATE tf_row")
    db.query(Row).bulk_insert([{"rid": i, **r} for i, r in enumerate(rows)])


def reference(db: SQLConnection, columns: tuple[str, ...], where: str = "", tail: str = "") -> Any:
    """The frame of the plain values, fetched by psycopg in binary (as reads fetch them) without packing.

    (Binary matters for ``real``: the binary loader widens the float4 exactly, 67108872.0; the text format
    gives its shortest decimal form, read back as 67108870.0.)
    """
    select = ", ".join(f'"{c}"' for c in columns)
    conn: psycopg.Connection[Any] = db.__dict__["_test_plain"]
    assert db.session is not None
    db.session.commit()  # the rows stored through db are visible to the reference connection
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(f"SELECT {select} FROM tf_row {where} ORDER BY rid {tail}").fetchall()  # noqa: S608
    return plain_frame(pd, table_of(Row), columns, rows)


def same(got: Any, want: Any) -> None:
    """Equal frames, dtypes included, and the same sign of every zero."""
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    for name in want.columns:
        if want[name].dtype == np.float64:
            assert (np.signbit(got[name].to_numpy()) == np.signbit(want[name].to_numpy())).all(), name


def test_the_packed_columns_are_the_numeric_and_boolean_ones() -> None:
    layout = dict(frame_layout(table_of(Row), ALL, distinct=False))
    ints = {"rid": "i8", "small": "i8", "num": "i8", "big": "i8"}
    assert layout == {**ints, "dbl": "f8", "rl": "f4", "flag": "b"}
    assert frame_layout(table_of(Row), ALL, distinct=True) == ()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, min_size=1, max_size=12))
def test_every_value_lands_in_the_frame_as_without_packing(
    fdb: SQLConnection, rows: list[dict[str, Any]]
) -> None:
    store(fdb, rows)
    same(fdb.query(Row).order_by(R.rid).to_dataframe(), reference(fdb, ALL))


def test_hostile_values_of_every_packed_type(fdb: SQLConnection) -> None:
    rows: list[dict[str, Any]] = [
        {"dbl": math.nan, "rl": -0.0, "small": -(2**15), "num": 2**31 - 1, "big": -(2**63), "flag": True},
        {"dbl": -0.0, "rl": math.inf, "small": 2**15 - 1, "num": -(2**31), "big": 2**63 - 1, "flag": False},
        {"dbl": math.inf, "rl": math.nan, "small": 0, "num": 0, "big": 2**53 + 1, "flag": None},
        {"dbl": None, "rl": None, "small": None, "num": None, "big": None, "flag": None, "label": "x"},
    ]
    store(fdb, rows)
    df = fdb.query(Row).order_by(R.rid).to_dataframe()
    same(df, reference(fdb, ALL))
    assert np.signbit(df["dbl"][1]) and np.signbit(df["rl"][0]) and math.isnan(df["dbl"][0])
    assert str(df["small"].dtype) == "float64" and df["flag"].tolist() == [True, False, None, None]
    without_nulls = fdb.query(Row).filter(R.rid < 2).order_by(R.rid).to_dataframe()
    assert str(without_nulls["big"].dtype) == "int64"
    assert without_nulls["big"].tolist() == [-(2**63), 2**63 - 1]
    assert str(without_nulls["flag"].dtype) == "bool"


def test_projections_order_limit_and_distinct(fdb: SQLConnection) -> None:
    store(fdb, [{"dbl": i / 3, "num": i % 3, "flag": i % 2 == 0, "label": f"l{i % 4}"} for i in range(30)])
    packed_only = fdb.query(R.num, R.dbl).order_by(R.rid).limit(7).offset(3).to_dataframe()
    same(packed_only, reference(fdb, ("num", "dbl"), tail="LIMIT 7 OFFSET 3"))
    plain_only = fdb.query(R.label).order_by(R.rid).to_dataframe()
    same(plain_only, reference(fdb, ("label",)))
    mixed = fdb.query(R.label, R.flag, R.rid).filter(R.num == 1).order_by(R.dbl.desc()).to_dataframe()
    assert mixed["rid"].tolist() == sorted((i for i in range(30) if i % 3 == 1), reverse=True)
    assert list(mixed.columns) == ["label", "flag", "rid"]
    distinct = fdb.query(R.num, R.flag).distinct().order_by(R.num, R.flag).to_dataframe()
    assert distinct.values.tolist() == [[0, False], [0, True], [1, False], [1, True], [2, False], [2, True]]


def test_an_empty_result_keeps_the_columns(fdb: SQLConnection) -> None:
    df = fdb.query(R.dbl, R.label).filter(R.rid > 100).to_dataframe()
    assert list(df.columns) == ["dbl", "label"] and len(df) == 0


def test_a_result_fetched_as_text_unpacks_the_same(fdb: SQLConnection) -> None:
    at = datetime.time(1, 2, 3, tzinfo=datetime.timezone.utc)
    fdb.query(TextRow).bulk_insert([{"tid": 1, "at": at, "val": -0.0}, {"tid": 2, "val": None}])
    df = fdb.query(TextRow).order_by(cols(TextRow).tid).to_dataframe()
    assert df["tid"].tolist() == [1, 2] and df["at"].tolist()[0] == at and df["at"].tolist()[1] is None
    assert np.signbit(df["val"][0]) and math.isnan(df["val"][1])
