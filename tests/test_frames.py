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

from dbplugins import Column, DbpError, SQLConnection, cols, model
from dbplugins._query.frames import FrameParts, frame_layout, plain_frame
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


@model("tf_strict", primary_key=["sid"])
@dataclass
class Strict:
    """NOT NULL numeric columns: packed bare, without a coalesce or a NULL flag."""

    sid: Annotated[int, Column("integer")]
    dbl: Annotated[float, Column("double precision")]
    rl: Annotated[float, Column("real")]
    small: Annotated[int, Column("smallint")]
    big: Annotated[int, Column("bigint")]
    flag: bool
    label: str


@model("tf_drift", primary_key=["did"])
@dataclass
class Drift:
    """A model that no longer matches its table (see DDL): NOT NULL columns that hold NULL, an ``integer`` and
    a ``real`` whose live columns are ``bigint`` and ``double precision``."""

    did: int
    num: Annotated[int, Column("integer")]
    rl: Annotated[float, Column("real")]
    flag: bool
    dbl: Annotated[float, Column("double precision")]


DDL = """
CREATE TABLE tf_strict (sid integer PRIMARY KEY, dbl double precision NOT NULL, rl real NOT NULL,
                        small smallint NOT NULL, big bigint NOT NULL, flag boolean NOT NULL,
                        label varchar NOT NULL);
CREATE TABLE tf_drift (did integer PRIMARY KEY, num bigint, rl double precision, flag boolean, dbl text);
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
    parts = FrameParts(len(columns), packed=False)
    parts.add(rows)
    return plain_frame(pd, table_of(Row), columns, parts)


def same(got: Any, want: Any) -> None:
    """Equal frames, dtypes included, and the same sign of every zero."""
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    for name in want.columns:
        if want[name].dtype == np.float64:
            assert (np.signbit(got[name].to_numpy()) == np.signbit(want[name].to_numpy())).all(), name


def test_the_packed_columns_are_the_numeric_and_boolean_ones() -> None:
    layout = dict(frame_layout(table_of(Row), ALL, distinct=False))
    ints = {"rid": "i", "small": "in", "num": "in", "big": "in"}  # rid is the NOT NULL key: no NULL flag
    assert layout == {**ints, "dbl": "fn", "rl": "fn", "flag": "bn"}
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


def test_not_null_columns_are_packed_bare_with_the_same_values(fdb: SQLConnection) -> None:
    assert dict(frame_layout(table_of(Strict), tuple(table_of(Strict).columns), distinct=False)) == {
        "sid": "i",
        "dbl": "f",
        "rl": "f",
        "small": "i",
        "big": "i",
        "flag": "b",
    }
    fdb.execute("TRUNCATE tf_strict")
    values = [
        (math.nan, -0.0, -(2**15), -(2**63), True),
        (-0.0, math.inf, 2**15 - 1, 2**63 - 1, False),
        (5e-324, 3.4028234663852886e38, 0, 2**53 + 1, True),
    ]
    fdb.query(Strict).bulk_insert(
        [Strict(i, d, r, sm, b, f, f"é{i}") for i, (d, r, sm, b, f) in enumerate(values)]
    )
    fdb.current_session().commit()
    df = fdb.query(Strict).order_by(cols(Strict).sid).to_dataframe()
    with fdb.__dict__["_test_plain"].cursor(binary=True) as cur:
        rows = cur.execute("SELECT * FROM tf_strict ORDER BY sid").fetchall()
    parts = FrameParts(7, packed=False)
    parts.add(rows)
    same(df, plain_frame(pd, table_of(Strict), tuple(table_of(Strict).columns), parts))
    assert [str(t) for t in df.dtypes] == ["int64", "float64", "float64", "int64", "int64", "bool", "str"]
    assert df["big"].tolist() == [-(2**63), 2**63 - 1, 2**53 + 1] and np.signbit(df["dbl"][1])


def test_a_model_that_no_longer_matches_its_table_reads_the_values_as_stored(fdb: SQLConnection) -> None:
    """NOT NULL in the model, NULL in the table: the packed row is NULL, and the frame is read plainly; an
    ``integer`` stored as ``bigint`` keeps its 64-bit value, a ``real`` stored as ``double precision`` its
    double."""
    fdb.execute("TRUNCATE tf_drift")
    fdb.execute(
        "INSERT INTO tf_drift VALUES (1, 9007199254740993, 0.1, true, 'x'), (2, NULL, NULL, NULL, NULL)"
    )
    numeric = (cols(Drift).did, cols(Drift).num, cols(Drift).rl, cols(Drift).flag)
    df = fdb.query(*numeric).order_by(cols(Drift).did).to_dataframe()
    assert df["did"].tolist() == [1, 2]
    assert df["num"][0] == 9007199254740993.0 and math.isnan(df["num"][1])  # a NULL: float64, as plainly
    assert df["rl"][0] == 0.1 and math.isnan(df["rl"][1])
    assert df["flag"].tolist() == [True, None]
    without_null = fdb.query(*numeric).filter(cols(Drift).did == 1).to_dataframe()
    assert without_null["num"].tolist() == [9007199254740993] and str(without_null["num"].dtype) == "int64"
    assert without_null["rl"].tolist() == [0.1]


def test_an_error_midway_through_the_stream_is_raised_and_the_session_goes_on(fdb: SQLConnection) -> None:
    """The live ``dbl`` column is text: the row that does not cast fails the read after the first chunks have
    arrived. The error is raised, nothing is returned, and the connection serves the next read."""
    from dbplugins._query.results import STREAM_CHUNK

    fdb.execute("TRUNCATE tf_drift")
    n = STREAM_CHUNK * 3
    fdb.execute(
        "INSERT INTO tf_drift SELECT i, i, i, true, CASE WHEN i = %s THEN 'not a number' ELSE i::text END "
        "FROM generate_series(1, %s) AS i",
        (n - 10, n),
    )
    query = fdb.query(cols(Drift).did, cols(Drift).dbl).order_by(cols(Drift).did)
    with pytest.raises(DbpError, match="not a number"):
        query.to_dataframe()
    assert fdb.query(Drift).count() == n
    df = query.filter(cols(Drift).did < n - 10).to_dataframe()
    assert df["did"].tolist() == list(range(1, n - 10)) and df["dbl"].tolist() == [
        float(i) for i in range(1, n - 10)
    ]


def test_a_result_of_many_chunks_keeps_its_order_limit_and_offset(fdb: SQLConnection) -> None:
    from dbplugins._query.results import STREAM_CHUNK

    n = STREAM_CHUNK * 2 + 7
    store(fdb, [{"dbl": i / 7, "num": (i * 7919) % n, "label": f"r{i}"} for i in range(n)])
    df = fdb.query(Row).order_by(R.num.desc()).to_dataframe()
    assert df["num"].tolist() == sorted(((i * 7919) % n for i in range(n)), reverse=True)
    assert df["label"].tolist() == [f"r{i}" for i in df["rid"].tolist()]
    assert df["dbl"].tolist() == [i / 7 for i in df["rid"].tolist()]
    page = fdb.query(R.rid, R.label).order_by(R.rid).limit(STREAM_CHUNK + 5).offset(STREAM_CHUNK - 3)
    got = page.to_dataframe()
    assert got["rid"].tolist() == list(range(STREAM_CHUNK - 3, 2 * STREAM_CHUNK + 2))
    same(got, reference(fdb, ("rid", "label"), tail=f"LIMIT {STREAM_CHUNK + 5} OFFSET {STREAM_CHUNK - 3}"))


def test_a_frame_read_inside_a_transaction_sees_its_uncommitted_rows(fdb: SQLConnection) -> None:
    fdb.execute("TRUNCATE tf_row")
    fdb.current_session().commit()
    with pytest.raises(RuntimeError), fdb.transaction():
        fdb.query(Row).bulk_insert([{"rid": i, "num": i} for i in range(1500)])
        assert fdb.query(R.num).to_dataframe()["num"].sum() == sum(range(1500))
        raise RuntimeError("roll back")
    assert len(fdb.query(Row).to_dataframe()) == 0
