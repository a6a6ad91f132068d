"""Hostile input (hypothesis): names that are not columns, values at the limits of their types, hostile
identifiers.

* A filter key, row key, update key, ordering or column name that is not a column of the model (quotes,
  semicolons, unicode, whitespace, empty) raises ``UnknownColumnError`` naming it, before any SQL runs: no
  statement reaches a cursor and no connection is borrowed from the pool (both are spied on), and the table is
  intact afterwards.
* Arbitrary text, NaN / ±inf / -0.0 / subnormal floats, integers at the limits of smallint / integer / bigint,
  bytes, arrays, jsonb and timestamps round-trip exactly through bulk_insert (binary COPY), get_or_create,
  get_or_create_many and update.
* NUL bytes and out-of-range integers get a ``DataError`` naming the column (and the row, for batches);
  nothing is written.
* A model whose table and column names need quoting (``My "Table"``, ``select``, ``a;b`` ...) works end to
  end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional
from unittest import mock

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from sample_rows import detection_row, object_row

from dbplugins import ConstraintError, DataError, SQLConnection, UnknownColumnError
from dbplugins._types.schema import Column, model, table_of
from dbplugins.models import Detection, Object

from .conftest import admin, count, sizes

# Examples per hypothesis test: the short version, and the long one of `make soak`.
EXAMPLES = sizes(60, 1000)
HYPO = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

OBJECT_COLUMNS = frozenset(table_of(Object).columns)
DETECTION_COLUMNS = frozenset(table_of(Detection).columns)

# -- creating a model's table with DDL composed here (not by the library under test) -------------------------


def create_table(dsn: str, cls: type) -> None:
    table = table_of(cls)
    parts: list[sql.Composable] = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(c.name),
            sql.SQL(c.sql_type),  # a type name of our own test model
            sql.SQL("") if c.nullable else sql.SQL(" NOT NULL"),
        )
        for c in table.columns.values()
    ]
    parts.append(
        sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, table.primary_key)))
    )
    with admin(dsn) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(table.name), sql.SQL(", ").join(parts))
        )


@pytest.fixture
def hdb(db: SQLConnection, dsn: str) -> SQLConnection:
    """The built-in schema with one object and one detection in it."""
    db.query(Object).get_or_create(filter_by={"oid": "keep"}, ndet=1)
    db.query(Detection).bulk_insert([detection_row(1, "keep")])
    return db


# -- "before any SQL": spies on every way a statement can leave the process ----------------------------------


class SqlAttempted(AssertionError):
    pass


@contextlib.contextmanager
def no_sql(db: SQLConnection) -> Iterator[None]:
    """Fail if a statement is executed or a connection borrowed while the block runs."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise SqlAttempted(f"SQL attempted: {args[1:2]!r}")

    assert db.pool is not None
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(db.pool, "getconn", refuse))
        for cls, name in [
            (psycopg.Cursor, "execute"),
            (psycopg.Cursor, "executemany"),
            (psycopg.Cursor, "copy"),
            (psycopg.Cursor, "stream"),
            (psycopg.Connection, "execute"),
        ]:
            stack.enter_context(mock.patch.object(cls, name, refuse))
        yield


@contextlib.contextmanager
def recorded_sql(statements: list[str]) -> Iterator[None]:
    """Record the text of every statement sent through a cursor while the block runs (and let it run)."""

    def recorder(original: Callable[..., Any]) -> Callable[..., Any]:
        def record(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            cur = self if isinstance(self, psycopg.Cursor) else self.cursor()
            text = query.as_string(cur) if isinstance(query, sql.Composable) else query
            statements.append(text.decode() if isinstance(text, bytes) else str(text))
            return original(self, query, *args, **kwargs)

        return record

    with contextlib.ExitStack() as stack:
        for cls, name in [
            (psycopg.Cursor, "execute"),
            (psycopg.Cursor, "copy"),
            (psycopg.Connection, "execute"),
        ]:
            stack.enter_context(mock.patch.object(cls, name, recorder(getattr(cls, name))))
        yield


def mentions(key: Any) -> Callable[[str], bool]:
    return lambda message: repr(key) in message or str(key) in message


HOSTILE = [
    'oid"; DROP TABLE object; --',
    "oid'; DELETE FROM object; --",
    'oid" = "oid',
    "oid;",
    "oid ",
    " oid",
    "OID",
    "Oid",
    "oïd",
    "ｏｉｄ",  # fullwidth
    "oid\u200b",  # zero-width space
    "oid\x00",
    "",
    "*",
    "1=1",
    "object.oid",
    '"oid"',
    "oid\n",
    "ndet) OR (1=1",
    "𝔬𝔦𝔡",
    "select",
    "candid",  # a column, but of another model
]
names = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40))


def not_a_column(columns: frozenset[str]) -> Callable[[str], bool]:
    return lambda k: k not in columns


@pytest.mark.parametrize(
    "case",
    [
        "get_or_create filter_by",
        "get_or_create kwargs",
        "unbound get_or_create",
        "find dict",
        "find triples",
        "filter_by",
        "filter",
        "order_by",
        "columns",
        "check_exists",
        "delete",
        "update",
        "get_or_create_many",
        "get_or_create_many key",
        "bulk_insert",
    ],
)
@pytest.mark.parametrize("examples", EXAMPLES)
def test_names_that_are_not_columns_are_rejected_before_any_sql(
    hdb: SQLConnection, dsn: str, case: str, examples: int
) -> None:
    obj = hdb.query(Object).find_one(filter_by={"oid": "keep"})
    cases: dict[str, Callable[[str], Any]] = {
        "get_or_create filter_by": lambda k: hdb.query(Object).get_or_create(filter_by={k: "x"}),
        "get_or_create kwargs": lambda k: hdb.query(Object).get_or_create(
            filter_by={"oid": "x"}, **as_kwargs(k, 1)
        ),
        "unbound get_or_create": lambda k: hdb.query().get_or_create(
            model=Object, filter_by={"oid": "x", k: 1}
        ),
        "find dict": lambda k: hdb.query(Object).find(filter_by={k: 1}, paginate=False),
        "find triples": lambda k: hdb.query(Object).find(filter_by=[(k, ">=", 1)]),
        "filter_by": lambda k: hdb.query(Object).filter_by({k: 1}).all(),
        "filter": lambda k: hdb.query(Object).filter(k, "in", [1, 2]).count(),
        "order_by": lambda k: hdb.query(Object).order_by(k).all(),
        "columns": lambda k: hdb.query(Object).columns("oid", k).all(),
        "check_exists": lambda k: hdb.query().check_exists(model=Object, filter_by={k: None}),
        "delete": lambda k: hdb.query(Object).filter_by({k: "keep"}).delete(),
        "update": lambda k: hdb.query().update(obj, {"ndet": 2, k: 1}),
        "get_or_create_many": lambda k: hdb.query(Object).get_or_create_many(
            [object_row("x1"), object_row("x2"), {**object_row("x3"), k: 1}]
        ),
        "get_or_create_many key": lambda k: hdb.query(Object).get_or_create_many([object_row("x1")], key=[k]),
        "bulk_insert": lambda k: hdb.query(Detection).bulk_insert(
            [detection_row(10, "keep"), detection_row(11, "keep"), {**detection_row(12, "keep"), k: 1}]
        ),
    }
    call = cases[case]
    columns = DETECTION_COLUMNS if case == "bulk_insert" else OBJECT_COLUMNS

    def usable(k: str) -> bool:
        if k in columns:
            return False
        if case == "get_or_create kwargs" and k in ("model", "filter_by"):
            # The method's own parameters, not extra columns: Python binds them before the library sees them
            # (hypothesis draws them from the source's string constants).
            return False
        if case == "order_by":  # "-ndet", "ndet desc" are valid orderings, not hostile names
            return not any(c in k for c in columns)
        return True

    baseline: list[str] = []
    if case == "bulk_insert":
        # bulk_insert streams: the bad row 2 is found while rows 0 and 1 are already on their way in the COPY,
        # so SQL does run. What must hold: no statement differs from those of a valid call (the name never
        # reaches SQL), and nothing is written (checked below).
        with recorded_sql(baseline):
            cases["bulk_insert"]("magap")  # a real (nullable) column: a valid call
        assert baseline and hdb.query(Detection).filter("candid", ">=", 10).delete() == 3
        hdb.current_session().commit()

    @settings(HYPO, max_examples=examples)
    @given(key=names.filter(usable))
    def check(key: str) -> None:
        statements: list[str] = []
        spy = recorded_sql(statements) if case == "bulk_insert" else no_sql(hdb)
        with spy, pytest.raises(UnknownColumnError) as info:
            call(key)
        assert set(statements) <= set(baseline), set(statements) - set(baseline)
        err = info.value
        assert err.model == ("detection" if case == "bulk_insert" else "object")
        if case == "order_by":  # named as parsed: "  x desc" is column "x"
            assert err.column is not None and err.column in key and err.column not in columns
            assert mentions(err.column)(str(err)), str(err)
        else:
            assert err.column == key, (err.column, key)
            assert mentions(key)(str(err)), str(err)
        if case in ("get_or_create_many", "bulk_insert"):
            assert err.row == 2 and "row 2" in str(err)

    check()
    assert not hdb.current_session().in_transaction
    hdb.current_session().rollback()
    assert count(dsn, "object") == 1 and count(dsn, "detection") == 1
    kept = hdb.query(Object).find_one(filter_by={"oid": "keep"})
    assert kept is not None and kept.ndet == 1


def test_the_no_sql_spy_does_catch_sql(hdb: SQLConnection) -> None:
    """The spy of the test above is not vacuous: a call that does run SQL trips it."""
    with no_sql(hdb), pytest.raises(SqlAttempted):
        hdb.query(Object).find(filter_by={"oid": "keep"}, paginate=False)
    with no_sql(hdb), pytest.raises(SqlAttempted):
        hdb.query(Detection).bulk_insert([detection_row(20, "keep")])


# -- values round-trip exactly -------------------------------------------------------------------------------

big = Annotated[int, Column("bigint")]
small = Annotated[int, Column("smallint")]


@model("rt_values", primary_key=["id"])
@dataclass
class RoundTrip:
    id: big
    txt: Optional[str] = None  # noqa: UP045 - the declaration API documents Optional
    dbl: Optional[float] = None  # noqa: UP045
    i8: Optional[big] = None  # noqa: UP045
    i4: Optional[int] = None  # noqa: UP045
    i2: Optional[small] = None  # noqa: UP045
    flag: Optional[bool] = None  # noqa: UP045
    arr: Optional[list[str]] = None  # noqa: UP045
    doc: Optional[dict[str, Any]] = None  # noqa: UP045
    raw: Optional[bytes] = None  # noqa: UP045
    ts: Optional[datetime.datetime] = None  # noqa: UP045


@pytest.fixture
def rdb(db: SQLConnection, dsn: str) -> SQLConnection:
    create_table(dsn, RoundTrip)
    return db


# codec="utf-8": every character but the surrogates (category Cs), which no text column can hold.
text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=200)
json_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
json_values = st.recursive(
    # No floats: jsonb keeps numbers as numeric, so 3.141063705594311e16 comes back as the int
    # 31410637055943110 (JSON semantics, not ours); doubles are covered by the double precision column.
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | json_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_text, inner, max_size=4),
    max_leaves=12,
)
values = st.fixed_dictionaries(
    {},
    optional={
        "txt": text,
        "dbl": st.floats(allow_nan=True, allow_infinity=True),
        "i8": st.integers(-(2**63), 2**63 - 1),
        "i4": st.integers(-(2**31), 2**31 - 1),
        "i2": st.integers(-(2**15), 2**15 - 1),
        "flag": st.booleans(),
        "arr": st.lists(st.none() | text, max_size=6),
        "doc": st.dictionaries(json_text, json_values, max_size=5),
        "raw": st.binary(max_size=2000),
        "ts": st.datetimes(),
    },
)


def same(a: Any, b: Any) -> bool:
    """Exact equality, with NaN equal to NaN and the sign of zero significant."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return type(a) is type(b) and a == b if not isinstance(a, (dict, list)) else a == b


def assert_stored(db: SQLConnection, row: dict[str, Any]) -> None:
    got = db.query(RoundTrip).find_one(filter_by={"id": row["id"]})
    assert got is not None
    for name in table_of(RoundTrip).columns:
        want, have = row.get(name), getattr(got, name)
        if isinstance(have, memoryview):
            have = bytes(have)
        assert same(want, have), f"{name}: stored {want!r}, read back {have!r}"


class Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


@pytest.mark.parametrize("examples", EXAMPLES)
def test_values_round_trip_exactly(rdb: SQLConnection, examples: int) -> None:
    next_id = Ids()

    @settings(HYPO, max_examples=examples)
    @given(batch=st.lists(values, min_size=1, max_size=4), update=values)
    def check(batch: list[dict[str, Any]], update: dict[str, Any]) -> None:
        # bulk_insert, binary COPY, in each conflict mode
        for mode in ("ignore", "error", "update"):
            rows = [{"id": next_id(), **v} for v in batch]
            assert rdb.query(RoundTrip).bulk_insert(rows, on_conflict=mode) == len(rows)
            for row in rows:
                assert_stored(rdb, row)
        # bulk_insert of dataclass instances
        rows = [{"id": next_id(), **v} for v in batch]
        assert rdb.query(RoundTrip).bulk_insert([RoundTrip(**r) for r in rows]) == len(rows)
        for row in rows:
            assert_stored(rdb, row)
        # get_or_create: what it returns and what it stored
        first = {"id": next_id(), **batch[0]}
        obj, created = rdb.query(RoundTrip).get_or_create(filter_by={"id": first["id"]}, **batch[0])
        assert created
        assert_stored(rdb, first)
        for name, value in first.items():
            have = getattr(obj, name)
            assert same(value, bytes(have) if isinstance(have, memoryview) else have), name
        # get_or_create_many
        rows = [{"id": next_id(), **v} for v in batch]
        results = rdb.query(RoundTrip).get_or_create_many(rows)
        assert [c for _, c in results] == [True] * len(rows)
        for row in rows:
            assert_stored(rdb, row)
        # update: what it returns and what it stored
        expected = {**first, **update}
        rdb.query().update(obj, update)
        rdb.current_session().commit()
        assert_stored(rdb, expected)
        for name, value in expected.items():
            have = getattr(obj, name)
            assert same(value, bytes(have) if isinstance(have, memoryview) else have), name

    check()


# -- NUL bytes and out-of-range values: a clear error, nothing written ---------------------------------------

BAD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "txt": st.builds(lambda a, b: a + "\x00" + b, text, text),
    "arr": st.builds(lambda a, b: [*a, "x\x00y", *b], st.lists(text, max_size=2), st.lists(text, max_size=2)),
    "i4": st.one_of(st.integers(2**31, 2**70), st.integers(-(2**70), -(2**31) - 1)),
    "i2": st.one_of(st.integers(2**15, 2**40), st.integers(-(2**40), -(2**15) - 1)),
    "i8": st.one_of(st.integers(2**63, 2**100), st.integers(-(2**100), -(2**63) - 1)),
}


def naming_problem(err: BaseException | None, column: str, row: int | None) -> str | None:
    """What is wrong with the error raised for a bad value in ``column`` of ``row`` (None: nothing)."""
    if not isinstance(err, DataError):
        return f"not a DataError: {type(err).__name__}: {err}"
    if err.column != column or not (repr(column) in str(err) or f'"{column}"' in str(err)):
        return f"does not name column {column!r}: column={err.column!r}, {err}"
    if row is not None and (err.row != row or f"row {row}" not in str(err)):
        return f"does not name row {row}: row={err.row!r}, {err}"
    return None


def raised(call: Callable[[], Any]) -> BaseException | None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - inspected by the caller
        return exc
    return None


@pytest.mark.parametrize("examples", EXAMPLES)
def test_nul_bytes_and_out_of_range_values_name_column_and_row(
    rdb: SQLConnection, dsn: str, examples: int
) -> None:
    next_id = Ids()
    q = rdb.query(RoundTrip)

    @settings(HYPO, max_examples=examples)
    @given(
        column=st.sampled_from(sorted(BAD_VALUES)),
        data=st.data(),
        good=st.lists(values, min_size=1, max_size=5),
        where=st.integers(0, 5),
    )
    def check(column: str, data: st.DataObject, good: list[dict[str, Any]], where: int) -> None:
        bad_value = data.draw(BAD_VALUES[column])
        at = min(where, len(good))
        rows = [{"id": next_id(), **v} for v in good]
        rows.insert(at, {"id": next_id(), column: bad_value})
        bad_kwargs: dict[str, Any] = {column: bad_value}

        def insert(mode: Literal["ignore", "error", "update"]) -> Callable[[], Any]:
            return lambda: q.bulk_insert(rows, on_conflict=mode)

        calls: dict[str, tuple[Callable[[], Any], int | None]] = {
            "bulk_insert(ignore)": (insert("ignore"), at),
            "bulk_insert(error)": (insert("error"), at),
            "bulk_insert(update)": (insert("update"), at),
            "get_or_create_many": (lambda: q.get_or_create_many(rows), at),
            "get_or_create": (lambda: q.get_or_create(filter_by={"id": rows[at]["id"]}, **bad_kwargs), None),
        }
        if (
            column == "txt"
        ):  # as a filter value only text with NUL is an error (a big int just matches nothing)
            calls["find"] = (lambda: q.find(filter_by={column: bad_value}, paginate=False), None)
        problems = []
        for name, (call, row) in calls.items():
            problem = naming_problem(raised(call), column, row)
            if problem:
                problems.append(f"{name}: {problem}")
            if count(dsn, "rt_values"):
                problems.append(f"{name}: wrote rows")
                rdb.execute("DELETE FROM rt_values")
        assert not rdb.current_session().in_transaction
        assert not problems, "\n".join(problems)

    check()
    # update of an existing row with a bad value: the error, the row unchanged
    obj, _ = q.get_or_create(filter_by={"id": 0}, txt="ok", i4=1)
    problems = []
    for column, bad in (
        ("txt", "a\x00b"),
        ("i4", 2**31),
        ("i2", -(2**15) - 1),
        ("i8", 2**63),
        ("arr", ["\x00"]),
    ):
        problem = naming_problem(
            raised(functools.partial(rdb.query().update, obj, {column: bad})), column, None
        )
        if problem:
            problems.append(f"update: {problem}")
        rdb.current_session().rollback()
    stored = q.find_one(filter_by={"id": 0})
    assert stored is not None
    assert (stored.txt, stored.i4, stored.i2, stored.i8, stored.arr) == ("ok", 1, None, None, None)
    assert not problems, "\n".join(problems)


# -- a model whose names all need quoting --------------------------------------------------------------------

HOSTILE_COLUMNS = ["select", "a;b", 'My "Col"', "ñandú", "x'); DROP TABLE object; --", "Mixed Case"]


def as_kwargs(name: str, value: Any) -> dict[str, Any]:
    """``**as_kwargs(name, 1)``: a keyword argument with a hostile name (a ``**{name: 1}`` literal could be
    the ``model`` parameter for a type checker)."""
    return {name: value}


def _hostile_model() -> type[Any]:
    annotations: dict[str, Any] = {
        "select": int,
        "a;b": Optional[str],  # noqa: UP045
        'My "Col"': Optional[float],  # noqa: UP045
        "ñandú": Optional[str],  # noqa: UP045
        "x'); DROP TABLE object; --": Optional[int],  # noqa: UP045
        "Mixed Case": Optional[list[str]],  # noqa: UP045
    }

    def __init__(self: Any, **kwargs: Any) -> None:  # noqa: N807 - field names are not Python identifiers
        for f in dataclasses.fields(type(self)):
            setattr(self, f.name, kwargs.get(f.name))

    namespace: dict[str, Any] = {"__annotations__": annotations, "__init__": __init__}
    namespace.update({name: None for name in list(annotations)[1:]})
    cls = type("Hostile", (), namespace)
    cls = dataclass(init=False, repr=False, eq=False)(cls)
    return model('My "Table"; DROP TABLE object; --', primary_key=["select"])(cls)


Hostile = _hostile_model()


def test_a_model_with_names_that_need_quoting_works_end_to_end(db: SQLConnection, dsn: str) -> None:
    create_table(dsn, Hostile)
    q = db.query(Hostile)
    a, b, c, d, e, f = HOSTILE_COLUMNS

    values: dict[str, Any] = {b: "one", c: 1.5, d: "ü", e: 7, f: ["x", "y"]}
    obj, created = q.get_or_create(filter_by={a: 1}, **values)
    assert created and getattr(obj, b) == "one" and getattr(obj, f) == ["x", "y"]
    assert q.get_or_create(filter_by={a: 1})[1] is False
    assert [cr for _, cr in q.get_or_create_many([{a: 1}, {a: 2, b: "two"}, {a: 3, e: 3}])] == [
        False,
        True,
        True,
    ]
    assert q.bulk_insert([{a: 4, b: "four"}, {a: 5, c: 5.0}]) == 2
    assert q.bulk_insert([{a: 4, b: "four"}, {a: 6, d: "six"}]) == 1  # "ignore": through the staging table
    assert q.bulk_insert([{a: 6, d: "SIX", f: ["s"]}], on_conflict="update") == 1
    with pytest.raises(ConstraintError):
        q.bulk_insert([{a: 6}], on_conflict="error")
    assert q.bulk_insert([Hostile(**{a: 7, b: "seven"})], on_conflict="error") == 1

    assert q.count() == 7
    assert [getattr(r, a) for r in q.filter(b, "is not null").order_by(f"-{a}").all()] == [7, 4, 2, 1]
    assert getattr(q.find_one(filter_by={d: "SIX"}), f) == ["s"]
    assert q.find(filter_by=[(e, ">", 5)], paginate=False)[0].__dict__[a] == 1
    assert q.columns(a, c).filter(c, "between", (1, 6)).order_by(a).all() == [(1, 1.5), (5, 5.0)]
    page = q.order_by(a).paginate(2, 3)
    assert [getattr(r, a) for r in page.items] == [4, 5, 6] and page.total == 7
    assert [getattr(r, a) for r in q.keyset(4).next().items] == [5, 6, 7]

    db.query().update(obj, {b: "uno", e: None})
    assert db.session is not None
    db.session.commit()
    stored = q.find_one(filter_by={a: 1})
    assert getattr(stored, b) == "uno" and getattr(stored, e) is None
    assert q.filter_by({b: "two"}).delete() == 1
    db.session.commit()
    assert q.count() == 6
    with pytest.raises(UnknownColumnError):
        q.find(filter_by={"a": 1})  # near misses are still unknown
    assert count(dsn, "object") == 0  # the built-in tables are intact
    with admin(dsn) as conn:
        assert conn.execute("SELECT to_regclass('object') IS NOT NULL").fetchone() == (True,)
