"""get_or_create and get_or_create_many: results, round trips, errors, transactions, hostile values, races."""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Optional

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.rows import dict_row

from dbplugins import (
    Column,
    ConstraintError,
    DataError,
    DbpError,
    MissingValueError,
    QueryError,
    SQLConnection,
    UnknownColumnError,
    model,
)


@model("gc_obj", primary_key=["oid"])
@dataclass
class GObj:
    oid: str
    ndet: int
    note: Optional[str] = None  # noqa: UP045 - Optional[...], the annotation style of the documented models
    extra: Optional[dict[str, Any]] = None  # noqa: UP045 - jsonb


@model("gc_det", primary_key=["candid", "oid"])
@dataclass
class GDet:
    candid: Annotated[int, Column("bigint")]
    oid: str
    mag: float
    fid: Optional[int] = None  # noqa: UP045


@model("gc_user", primary_key=["uid"], unique=[("email",)])
@dataclass
class GUser:
    uid: Annotated[int, Column("bigint")]
    email: str
    name: Optional[str] = None  # noqa: UP045


@model("gc_tax", primary_key=["name", "version"])
@dataclass
class GTax:
    name: str
    version: str
    classes: list[str]
    weights: Optional[list[float]] = None  # noqa: UP045


@model("gc_text", primary_key=["k"])
@dataclass
class GText:
    k: str
    txt: Optional[str] = None  # noqa: UP045


@model("gc_race", primary_key=["oid"])
@dataclass
class RaceObj:
    oid: str
    ndet: int


DDL = """
CREATE TABLE gc_obj (oid varchar PRIMARY KEY, ndet integer NOT NULL, note varchar, extra jsonb);
CREATE TABLE gc_det (candid bigint, oid varchar, mag double precision NOT NULL, fid integer,
                     PRIMARY KEY (candid, oid));
CREATE TABLE gc_user (uid bigint PRIMARY KEY, email varchar NOT NULL UNIQUE, name varchar);
CREATE TABLE gc_tax (name varchar, version varchar, classes varchar[] NOT NULL, weights double precision[],
                     PRIMARY KEY (name, version));
CREATE TABLE gc_text (k varchar PRIMARY KEY, txt varchar);
CREATE TABLE gc_race (oid varchar PRIMARY KEY, ndet integer NOT NULL);
"""
TABLES = "gc_obj, gc_det, gc_user, gc_tax, gc_text, gc_race"


@pytest.fixture
def tdb(module_db: SQLConnection, module_dsn: str) -> Iterator[SQLConnection]:
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES}")
    module_db.create_session()
    yield module_db
    module_db.end_session()


def other_count(dsn: str, table: str) -> int:
    """Rows of ``table`` as another connection sees them (what is committed)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements executed from now on (one entry per round trip to the server)."""
    seen: list[str] = []
    original = psycopg.Cursor.execute

    def execute(self: psycopg.Cursor[Any], query: Any, params: Any = None, **kwargs: Any) -> Any:
        seen.append(str(query))
        return original(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    return seen


# -- get_or_create -------------------------------------------------------------------------------------------


def test_creates_then_gets(tdb: SQLConnection, module_dsn: str) -> None:
    obj, created = tdb.query(GObj).get_or_create(filter_by={"oid": "ZTF1"}, ndet=3, note="first")
    assert created and obj == GObj(oid="ZTF1", ndet=3, note="first")
    again, created = tdb.query(GObj).get_or_create(filter_by={"oid": "ZTF1"}, ndet=99, note="ignored")
    assert not created and again == obj  # kwargs are not applied to an existing row, as in db-plugins
    assert other_count(module_dsn, "gc_obj") == 1  # persisted on return: another connection sees it


def test_one_statement_for_a_new_key_and_for_an_existing_one(
    tdb: SQLConnection, statements: list[str]
) -> None:
    q = tdb.query(GObj)
    assert q.get_or_create(filter_by={"oid": "a"}, ndet=1)[1]
    assert len(statements) == 1 and statements[0].startswith("WITH ins AS (INSERT")
    statements.clear()
    assert not q.get_or_create(filter_by={"oid": "a"}, ndet=1)[1]
    assert len(statements) == 1 and statements[0].startswith("WITH ins AS (INSERT")


def test_filter_by_wins_over_kwargs(tdb: SQLConnection) -> None:
    obj, created = tdb.query(GObj).get_or_create(filter_by={"oid": "a", "ndet": 2}, ndet=7)
    assert created and obj.ndet == 2


def test_unbound_and_positional_forms(tdb: SQLConnection) -> None:
    obj, created = tdb.query().get_or_create(model=GObj, filter_by={"oid": "a"}, ndet=1)
    assert created
    obj2, created = tdb.query().get_or_create(GObj, {"oid": "a"})
    assert not created and obj2 == obj
    with pytest.raises(QueryError, match="no model"):
        tdb.query().get_or_create(filter_by={"oid": "a"})
    with pytest.raises(QueryError, match="filter_by="):
        tdb.query(GObj).filter_by(oid="a").get_or_create(filter_by={"oid": "a"})


def test_composite_key(tdb: SQLConnection) -> None:
    q = tdb.query(GDet)
    det, created = q.get_or_create(filter_by={"candid": 10, "oid": "a"}, mag=18.5)
    assert created and det.mag == 18.5
    _, created = q.get_or_create(filter_by={"candid": 10, "oid": "b"}, mag=1.0)
    assert created
    det, created = q.get_or_create(filter_by={"candid": 10, "oid": "a"}, mag=0.0)
    assert not created and det.mag == 18.5
    big = 2**62
    det, created = q.get_or_create(filter_by={"candid": big, "oid": "a"}, mag=1.0)
    assert created and det.candid == big


def test_missing_not_null_value_names_the_column(
    tdb: SQLConnection, module_dsn: str, statements: list[str]
) -> None:
    with pytest.raises(MissingValueError, match="'ndet'") as info:
        tdb.query(GObj).get_or_create(filter_by={"oid": "a"})
    assert (info.value.column, info.value.model) == ("ndet", "gc_obj")
    with pytest.raises(MissingValueError, match="'mag'"):
        tdb.query(GDet).get_or_create(filter_by={"candid": 1, "oid": "a"}, mag=None)
    assert other_count(module_dsn, "gc_obj") == 0
    assert not any(s.startswith("INSERT") for s in statements)  # never tried to insert


def test_existing_row_is_returned_without_the_values_an_insert_needs(tdb: SQLConnection) -> None:
    tdb.query(GDet).get_or_create(filter_by={"candid": 1, "oid": "a"}, mag=2.0)
    # db-plugins allowed this: only the key, no values for the NOT NULL columns
    det, created = tdb.query(GDet).get_or_create(filter_by={"candid": 1, "oid": "a"})
    assert not created and det.mag == 2.0


def test_unknown_keys_raise(tdb: SQLConnection) -> None:
    with pytest.raises(UnknownColumnError, match="'nope'"):
        tdb.query(GObj).get_or_create(filter_by={"nope": 1}, ndet=1)
    with pytest.raises(UnknownColumnError, match="'nope'"):
        tdb.query(GObj).get_or_create(filter_by={"oid": "a"}, ndet=1, nope=2)


@pytest.mark.parametrize("filter_by", [None, {}, [("oid", "=", "a")], "oid"])
def test_filter_by_must_be_a_non_empty_dict(tdb: SQLConnection, filter_by: Any) -> None:
    with pytest.raises(QueryError, match="needs filter_by"):
        tdb.query(GObj).get_or_create(filter_by=filter_by, oid="a", ndet=1)


def test_existing_key_with_other_values_is_an_error_not_none(tdb: SQLConnection) -> None:
    tdb.query(GObj).get_or_create(filter_by={"oid": "a"}, ndet=1)
    # db-plugins returned (None, False) here
    with pytest.raises(ConstraintError, match="exists but does not match") as info:
        tdb.query(GObj).get_or_create(filter_by={"oid": "a", "ndet": 2})
    assert info.value.constraint == "gc_obj_pkey"
    obj, created = tdb.query(GObj).get_or_create(filter_by={"oid": "a", "ndet": 1})
    assert not created and obj.ndet == 1


def test_filter_on_a_unique_key(tdb: SQLConnection, statements: list[str]) -> None:
    q = tdb.query(GUser)
    user, created = q.get_or_create(filter_by={"email": "a@x"}, uid=1, name="A")
    assert created and len(statements) == 1 and 'ON CONFLICT ("email")' in statements[0]
    user, created = q.get_or_create(filter_by={"email": "a@x"}, uid=2)
    assert not created and user.uid == 1
    with pytest.raises(ConstraintError, match="gc_user_pkey") as info:
        q.get_or_create(filter_by={"email": "b@x", "name": "B"}, uid=1)  # uid 1 taken, by a@x
    assert info.value.constraint == "gc_user_pkey"


def test_filter_without_a_key_looks_first(tdb: SQLConnection, statements: list[str]) -> None:
    q = tdb.query(GUser)
    q.get_or_create(filter_by={"email": "a@x"}, uid=1, name="A")
    statements.clear()
    user, created = q.get_or_create(filter_by={"name": "A"}, uid=5, email="other@x")
    assert not created and user.uid == 1 and [s.split()[0] for s in statements] == ["SELECT"]
    user, created = q.get_or_create(filter_by={"name": "B"}, uid=5, email="b@x")
    assert created and user.uid == 5
    user, created = q.get_or_create(filter_by={"name": None}, uid=6, email="c@x")
    assert created and user.name is None
    user, created = q.get_or_create(filter_by={"name": None}, uid=7, email="d@x")
    assert not created and user.uid == 6


def test_inside_an_explicit_transaction_nothing_persists_early(tdb: SQLConnection, module_dsn: str) -> None:
    with pytest.raises(RuntimeError):
        with tdb.transaction():
            _, created = tdb.query(GObj).get_or_create(filter_by={"oid": "a"}, ndet=1)
            assert created and other_count(module_dsn, "gc_obj") == 0
            assert tdb.query(GObj).check_exists(filter_by={"oid": "a"})  # the transaction sees it
            raise RuntimeError("abort")
    assert other_count(module_dsn, "gc_obj") == 0
    with tdb.transaction():
        tdb.query(GObj).get_or_create(filter_by={"oid": "a"}, ndet=1)
        tdb.query(GObj).get_or_create(filter_by={"oid": "b"}, ndet=1)
    assert other_count(module_dsn, "gc_obj") == 2


def test_failure_inside_a_transaction_leaves_it_usable(tdb: SQLConnection, module_dsn: str) -> None:
    with tdb.transaction():
        tdb.query(GObj).get_or_create(filter_by={"oid": "a"}, ndet=1)
        with pytest.raises(DataError, match="'ndet'.*out of range for integer") as info:
            tdb.query(GObj).get_or_create(filter_by={"oid": "b"}, ndet=2**40)
        assert info.value.column == "ndet" and info.value.row is None
        tdb.query(GObj).get_or_create(filter_by={"oid": "c"}, ndet=1)
    assert other_count(module_dsn, "gc_obj") == 2


def test_commits_the_sessions_pending_update(tdb: SQLConnection, module_dsn: str) -> None:
    obj, _ = tdb.query(GObj).get_or_create(filter_by={"oid": "a"}, ndet=1)
    tdb.query().update(obj, {"ndet": 5})  # opens the session's transaction
    tdb.query(GObj).get_or_create(filter_by={"oid": "b"}, ndet=1)  # db-plugins: get_or_create commits
    assert not tdb.session.in_transaction  # type: ignore[union-attr]
    with psycopg.connect(module_dsn) as other:
        assert other.execute("SELECT ndet FROM gc_obj WHERE oid = 'a'").fetchone() == (5,)


def test_a_configure_hook_changing_the_row_factory_does_not_matter(
    tdb: SQLConnection, module_dsn: str
) -> None:
    """The pooled connections' row_factory is the caller's business (configure=): the library reads the rows
    of its own statements with a row factory of its own."""

    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.row_factory = dict_row

    db = SQLConnection()
    db.connect(dsn=module_dsn, configure=configure, min_size=1, max_size=1)
    try:
        for created in (True, False):
            obj, was_created = db.query(GObj).get_or_create(filter_by={"oid": "rf"}, ndet=3)
            assert (obj, was_created) == (GObj(oid="rf", ndet=3), created)
        many = db.query(GObj).get_or_create_many([{"oid": "rf", "ndet": 3}, {"oid": "rg", "ndet": 4}])
        assert many == [(GObj(oid="rf", ndet=3), False), (GObj(oid="rg", ndet=4), True)]
        assert db.query(GObj).count() == 2
        assert db.query(GObj).find_one(filter_by={"oid": "rg"}) == GObj(oid="rg", ndet=4)
        assert [o.oid for o in db.query(GObj).order_by("oid").all()] == ["rf", "rg"]
    finally:
        db.close()


def test_nul_byte_is_a_data_error_naming_the_column(tdb: SQLConnection, module_dsn: str) -> None:
    with pytest.raises(DataError, match="'note'") as info:
        tdb.query(GObj).get_or_create(filter_by={"oid": "a"}, ndet=1, note="bad\x00value")
    assert info.value.column == "note" and info.value.model == "gc_obj"
    with pytest.raises(DataError, match="'oid'"):
        tdb.query(GObj).get_or_create(filter_by={"oid": "\x00"}, ndet=1)
    assert other_count(module_dsn, "gc_obj") == 0
    assert tdb.query(GObj).get_or_create(filter_by={"oid": "a"}, ndet=1)[1]  # the session is fine


def test_json_and_array_values(tdb: SQLConnection) -> None:
    extra = {"a": [1, 2.5, None], "b": {"c": "é\n"}}
    obj, created = tdb.query(GObj).get_or_create(filter_by={"oid": "a"}, ndet=1, extra=extra)
    assert created and obj.extra == extra
    found = tdb.query(GObj).find_one(filter_by={"extra": extra})
    assert found is not None and found.oid == "a"
    tax, created = tdb.query(GTax).get_or_create(
        filter_by={"name": "lc", "version": "1"}, classes=["SN", "AGN"], weights=[0.5, 1e-300]
    )
    assert created and tax.classes == ["SN", "AGN"] and tax.weights == [0.5, 1e-300]
    assert tdb.query(GTax).get_or_create(filter_by={"name": "lc", "version": "1"}, classes=[])[0] == tax


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00")))
def test_text_round_trips_exactly(tdb: SQLConnection, value: str) -> None:
    inst, _ = tdb.query(GText).get_or_create(filter_by={"k": value}, txt=value)
    assert inst.k == value and inst.txt == value
    found = tdb.query(GText).find_one(filter_by={"k": value})
    assert found is not None and found.txt == value
    ((many, _),) = tdb.query(GText).get_or_create_many([{"k": value, "txt": "other"}])
    assert many.txt == value


@pytest.mark.parametrize("bad", ["\ud800", "ok\udfffok"], ids=["lone-high", "lone-low"])
def test_lone_surrogate_is_a_data_error_naming_the_column(tdb: SQLConnection, bad: str) -> None:
    with pytest.raises(DataError, match="surrogate") as info:
        tdb.query(GText).get_or_create(filter_by={"k": "s"}, txt=bad)
    assert info.value.column == "txt"
    with pytest.raises(DataError, match="surrogate") as info:
        tdb.query(GText).get_or_create_many([{"k": "s1", "txt": "fine"}, {"k": "s2", "txt": bad}])
    assert (info.value.column, info.value.row) == ("txt", 1)
    assert tdb.query(GText).count() == 0


# -- get_or_create_many --------------------------------------------------------------------------------------


def test_many_mixed_new_and_existing_in_input_order(tdb: SQLConnection, statements: list[str]) -> None:
    q = tdb.query(GObj)
    q.get_or_create(filter_by={"oid": "b"}, ndet=20)
    q.get_or_create(filter_by={"oid": "d"}, ndet=40)
    statements.clear()
    rows = [{"oid": k, "ndet": i} for i, k in enumerate("abcde")]
    result = q.get_or_create_many(rows)
    assert [(o.oid, o.ndet, c) for o, c in result] == [
        ("a", 0, True),
        ("b", 20, False),
        ("c", 2, True),
        ("d", 40, False),
        ("e", 4, True),
    ]
    assert len(statements) == 2  # one INSERT ... RETURNING, one SELECT for the keys that existed
    statements.clear()
    assert all(not c for _, c in q.get_or_create_many(rows))
    assert len(statements) == 2
    statements.clear()
    assert all(c for _, c in q.get_or_create_many([{"oid": "x", "ndet": 1}, {"oid": "y", "ndet": 1}]))
    assert len(statements) == 1


def test_many_duplicates_first_occurrence_wins(tdb: SQLConnection) -> None:
    rows = [
        {"oid": "a", "ndet": 1},
        {"oid": "b", "ndet": 2},
        {"oid": "a", "ndet": 3},
        {"oid": "a", "ndet": 4},
    ]
    result = tdb.query(GObj).get_or_create_many(rows)
    assert [(o.oid, o.ndet, c) for o, c in result] == [
        ("a", 1, True),
        ("b", 2, True),
        ("a", 1, False),
        ("a", 1, False),
    ]


def test_many_accepts_instances_generators_and_model_argument(tdb: SQLConnection) -> None:
    rows = (GObj(oid=f"o{i}", ndet=i) for i in range(3))
    result = tdb.query().get_or_create_many(rows, model=GObj)
    assert [c for _, c in result] == [True, True, True]
    assert tdb.query(GObj).get_or_create_many([]) == []
    with pytest.raises(DbpError, match="not a GObj"):
        tdb.query(GObj).get_or_create_many([GDet(candid=1, oid="a", mag=1.0)])


def test_many_rows_with_different_columns(tdb: SQLConnection) -> None:
    rows = [{"oid": "a", "ndet": 1}, {"oid": "b", "ndet": 2, "note": "n"}, {"oid": "c", "ndet": 3}]
    result = tdb.query(GObj).get_or_create_many(rows)
    assert [(o.oid, o.note, c) for o, c in result] == [("a", None, True), ("b", "n", True), ("c", None, True)]


def test_many_in_several_batches(tdb: SQLConnection, statements: list[str]) -> None:
    rows = [{"oid": f"k{i:03d}", "ndet": i} for i in range(10)]
    tdb.query(GObj).get_or_create_many(rows[:4])
    statements.clear()
    result = tdb.query(GObj).get_or_create_many(rows, batch_size=3)
    assert [c for _, c in result] == [False] * 4 + [True] * 6
    assert [o.oid for o, _ in result] == [r["oid"] for r in rows]
    assert len(statements) == 4 + 2  # 4 batches, 2 with existing keys
    with pytest.raises(QueryError, match="batch_size"):
        tdb.query(GObj).get_or_create_many(rows, batch_size=0)


def test_many_with_a_composite_key_and_a_unique_key(tdb: SQLConnection) -> None:
    dets = [{"candid": c, "oid": o, "mag": 1.0 * c} for c in (2, 1) for o in ("a", "b")]
    result = tdb.query(GDet).get_or_create_many(dets + dets[:1])
    assert [((d.candid, d.oid), c) for d, c in result] == [
        ((2, "a"), True),
        ((2, "b"), True),
        ((1, "a"), True),
        ((1, "b"), True),
        ((2, "a"), False),
    ]
    users = [{"uid": 1, "email": "a@x"}, {"uid": 2, "email": "b@x"}]
    tdb.query(GUser).get_or_create_many(users)
    result = tdb.query(GUser).get_or_create_many([{"uid": 9, "email": "b@x"}], key=["email"])
    assert [(u.uid, c) for u, c in result] == [(2, False)]


def test_many_key_must_contain_a_unique_key(tdb: SQLConnection) -> None:
    with pytest.raises(QueryError, match="primary key"):
        tdb.query(GUser).get_or_create_many([{"uid": 1, "email": "a@x", "name": "n"}], key=["name"])
    with pytest.raises(QueryError, match="list of column names"):
        tdb.query(GUser).get_or_create_many([{"uid": 1, "email": "a@x"}], key="uid")


def test_many_key_with_other_values_is_an_error(tdb: SQLConnection) -> None:
    tdb.query(GObj).get_or_create_many([{"oid": "a", "ndet": 1}])
    rows = [{"oid": "z", "ndet": 0}, {"oid": "a", "ndet": 2}]
    with pytest.raises(ConstraintError, match="exists but does not match") as info:
        tdb.query(GObj).get_or_create_many(rows, key=["oid", "ndet"])
    assert info.value.row == 1
    result = tdb.query(GObj).get_or_create_many([{"oid": "a", "ndet": 1}], key=["oid", "ndet"])
    assert [c for _, c in result] == [False]


def test_many_array_columns_take_the_values_form(tdb: SQLConnection, statements: list[str]) -> None:
    tdb.query(GTax).get_or_create(filter_by={"name": "a", "version": "1"}, classes=["X"])
    statements.clear()
    rows = [
        {"name": "a", "version": "1", "classes": ["ignored"]},
        {"name": "b", "version": "1", "classes": ["SN", 'A"GN', "\\", "NULL", ""], "weights": [1.5, None]},
        {"name": "c", "version": "2", "classes": []},
        {"name": "b", "version": "1", "classes": ["dup"]},
    ]
    result = tdb.query(GTax).get_or_create_many(rows)
    assert [(t.name, t.classes, c) for t, c in result] == [
        ("a", ["X"], False),
        ("b", ["SN", 'A"GN', "\\", "NULL", ""], True),
        ("c", [], True),
        ("b", ["SN", 'A"GN', "\\", "NULL", ""], False),
    ]
    assert result[1][0].weights == [1.5, None]
    assert len(statements) == 2 and "VALUES" in statements[0]


def test_many_errors_name_the_row(tdb: SQLConnection, module_dsn: str) -> None:
    q = tdb.query(GObj)
    with pytest.raises(MissingValueError, match="row 1") as missing:
        q.get_or_create_many([{"oid": "a", "ndet": 1}, {"oid": "b"}])
    assert (missing.value.row, missing.value.column) == (1, "ndet")
    with pytest.raises(UnknownColumnError, match="row 0"):
        q.get_or_create_many([{"oid": "a", "ndet": 1, "bogus": 1}])
    with pytest.raises(DataError) as nul:
        q.get_or_create_many([{"oid": "a", "ndet": 1}, {"oid": "b", "ndet": 1, "note": "x\x00"}])
    assert (nul.value.row, nul.value.column) == (1, "note")
    with pytest.raises(DataError, match="out of range") as big:
        q.get_or_create_many([{"oid": "a", "ndet": 1}, {"oid": "b", "ndet": 2**40}])
    assert (big.value.row, big.value.column) == (1, "ndet") and "'ndet'" in str(big.value)
    with pytest.raises(MissingValueError, match="'email'.*row 0"):
        tdb.query(GUser).get_or_create_many([{"uid": 1, "email": None}], key=["email"])
    assert other_count(module_dsn, "gc_obj") == 0  # nothing of a failed batch is written


def test_many_inside_a_transaction(tdb: SQLConnection, module_dsn: str) -> None:
    with pytest.raises(RuntimeError):
        with tdb.transaction():
            tdb.query(GObj).get_or_create_many(
                [{"oid": "a", "ndet": 1}, {"oid": "b", "ndet": 1}], batch_size=1
            )
            raise RuntimeError("abort")
    assert other_count(module_dsn, "gc_obj") == 0


# -- races: 8 processes, each with its own SQLConnection -----------------------------------------------------

KEYS = [f"ZTF{i:04d}" for i in range(200)]


def _race_worker(dsn: str, seed: int, mode: str, barrier: Any, results: Any) -> None:
    """Run in a child process: get_or_create every key in a shuffled order; report the keys created here."""
    keys = list(KEYS)
    random.Random(seed).shuffle(keys)
    created: list[str] = []
    error = None
    db = SQLConnection()
    try:
        db.connect(dsn=dsn, min_size=1, max_size=1)
        barrier.wait(timeout=60)
        if mode == "one":
            for k in keys:
                obj, was_created = db.query(RaceObj).get_or_create(filter_by={"oid": k}, ndet=seed)
                assert obj.oid == k
                if was_created:
                    created.append(k)
        else:
            for start in range(0, len(keys), 25):
                batch = keys[start : start + 25]
                batch = batch + batch[:3]  # duplicates inside the batch too
                result = db.query(RaceObj).get_or_create_many([{"oid": k, "ndet": seed} for k in batch])
                assert [o.oid for o, _ in result] == batch
                created.extend(k for k, (_, c) in zip(batch, result, strict=True) if c)
    except BaseException as exc:  # report everything: the parent asserts nothing was raised
        error = f"{type(exc).__name__}: {exc}"
    finally:
        db.close()
    results.put((seed, created, error))


@pytest.mark.parametrize("mode", ["one", "many"])
def test_eight_processes_race_on_the_same_keys(tdb: SQLConnection, module_dsn: str, mode: str) -> None:
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with pool threads
    barrier = ctx.Barrier(8)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_race_worker, args=(module_dsn, seed, mode, barrier, results)) for seed in range(8)
    ]
    for p in procs:
        p.start()
    reports = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    errors = [(seed, err) for seed, _, err in reports if err]
    assert not errors
    created = [k for _, keys, _ in reports for k in keys]
    assert sorted(created) == KEYS  # exactly one created=True per key
    with psycopg.connect(module_dsn) as conn:
        rows = conn.execute("SELECT oid, ndet FROM gc_race").fetchall()
    assert len(rows) == 200
    winners = {k: seed for seed, keys, _ in reports for k in keys}
    assert all(winners[oid] == ndet for oid, ndet in rows)  # the stored row is the creator's
