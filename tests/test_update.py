"""update(instance, values): UPDATE ... WHERE <pk> RETURNING inside the session's transaction."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import FrozenInstanceError, dataclass
from typing import Any, Optional

import psycopg
import pytest

from dbplugins import (
    DbpError,
    MissingValueError,
    NoResultFound,
    QueryError,
    SQLConnection,
    UnknownColumnError,
    model,
)


@model("tu_obj", primary_key=["oid"])
@dataclass
class UObj:
    oid: str
    ndet: int
    lastmjd: Optional[float] = None  # noqa: UP045 - Optional[...], the annotation style of the documented models
    meta: Optional[dict[str, Any]] = None  # noqa: UP045


@model("tu_pair", primary_key=["a", "b"])
@dataclass(frozen=True)
class UPair:
    a: str
    b: int
    v: Optional[str] = None  # noqa: UP045


@model("tu_nopk", primary_key=[])
@dataclass
class UNoPk:
    x: int


DDL = """
CREATE TABLE tu_obj (oid varchar PRIMARY KEY, ndet integer NOT NULL, lastmjd double precision, meta jsonb);
CREATE TABLE tu_pair (a varchar, b integer, v varchar, PRIMARY KEY (a, b));
CREATE TABLE tu_nopk (x integer);
"""


@pytest.fixture
def tdb(module_db: SQLConnection, module_dsn: str) -> Iterator[SQLConnection]:
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE tu_obj, tu_pair, tu_nopk")
        conn.execute("INSERT INTO tu_obj (oid, ndet) VALUES ('a', 1), ('b', 2)")
        conn.execute("INSERT INTO tu_pair (a, b, v) VALUES ('a', 1, 'x')")
    module_db.create_session()
    yield module_db
    module_db.end_session()


def committed(dsn: str, query: str) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
    return row[0] if row else None


def get(db: SQLConnection, oid: str) -> UObj:
    obj = db.query(UObj).get(oid)
    assert isinstance(obj, UObj)
    return obj


def test_update_returns_the_instance_refreshed_in_place(tdb: SQLConnection) -> None:
    obj = get(tdb, "a")
    result = tdb.query().update(obj, {"lastmjd": 12345, "ndet": 7})
    assert result is obj  # db-plugins users keep using the object they passed
    assert (obj.lastmjd, obj.ndet) == (12345.0, 7)
    assert isinstance(obj.lastmjd, float)  # refreshed from RETURNING: the stored value and type


def test_update_is_durable_on_commit(tdb: SQLConnection, module_dsn: str) -> None:
    obj = tdb.query(UObj).update(get(tdb, "a"), {"lastmjd": 1.5})
    assert tdb.session.in_transaction  # type: ignore[union-attr]
    assert committed(module_dsn, "SELECT lastmjd FROM tu_obj WHERE oid = 'a'") is None  # not yet
    assert get(tdb, "a").lastmjd == 1.5  # the session reads its own write
    tdb.session.commit()  # type: ignore[union-attr]
    assert not tdb.session.in_transaction  # type: ignore[union-attr]
    assert committed(module_dsn, "SELECT lastmjd FROM tu_obj WHERE oid = 'a'") == 1.5
    assert obj.lastmjd == 1.5


def test_rollback_undoes_it(tdb: SQLConnection, module_dsn: str) -> None:
    tdb.query().update(get(tdb, "a"), {"ndet": 10})
    tdb.query().update(get(tdb, "b"), {"ndet": 20})
    tdb.session.rollback()  # type: ignore[union-attr]
    assert get(tdb, "a").ndet == 1 and get(tdb, "b").ndet == 2
    assert committed(module_dsn, "SELECT sum(ndet) FROM tu_obj") == 3


def test_update_inside_an_explicit_transaction(tdb: SQLConnection, module_dsn: str) -> None:
    with tdb.transaction():
        tdb.query().update(get(tdb, "a"), {"ndet": 5})
        with pytest.raises(DbpError, match="inside 'with db.transaction\\(\\)'"):
            tdb.session.commit()  # type: ignore[union-attr]
    assert committed(module_dsn, "SELECT ndet FROM tu_obj WHERE oid = 'a'") == 5
    with pytest.raises(RuntimeError):
        with tdb.transaction():
            tdb.query().update(get(tdb, "a"), {"ndet": 6})
            raise RuntimeError
    assert committed(module_dsn, "SELECT ndet FROM tu_obj WHERE oid = 'a'") == 5


def test_unknown_columns_raise_before_any_sql(tdb: SQLConnection, module_dsn: str) -> None:
    obj = get(tdb, "a")
    with pytest.raises(UnknownColumnError, match="'ndett'") as info:
        tdb.query().update(obj, {"ndet": 3, "ndett": 4})
    assert (info.value.model, info.value.column) == ("tu_obj", "ndett")
    with pytest.raises(UnknownColumnError):
        tdb.query().update(obj, {"ndet = 0; DROP TABLE tu_obj; --": 1})
    assert not tdb.session.in_transaction  # type: ignore[union-attr]
    assert obj.ndet == 1
    assert committed(module_dsn, "SELECT count(*) FROM tu_obj") == 2


def test_a_row_that_does_not_exist_raises(tdb: SQLConnection) -> None:
    with pytest.raises(NoResultFound, match="oid='zz'"):
        tdb.query().update(UObj(oid="zz", ndet=1), {"ndet": 2})
    obj = get(tdb, "a")
    tdb.query(UObj).filter_by(oid="a").delete()
    with pytest.raises(DbpError):
        tdb.query().update(obj, {"ndet": 2})


def test_composite_key_and_frozen_instances(tdb: SQLConnection) -> None:
    pair = tdb.query(UPair).get(("a", 1))
    assert pair is not None
    new = tdb.query().update(pair, {"v": "y"})
    assert new == UPair(a="a", b=1, v="y") and pair.v == "x"  # frozen: a new instance comes back
    with pytest.raises(FrozenInstanceError):
        pair.v = "z"  # type: ignore[misc,unused-ignore]
    moved = tdb.query().update(new, {"b": 2})  # the key itself may change
    assert (moved.a, moved.b) == ("a", 2) and tdb.query(UPair).get(("a", 1)) is None


def test_values_are_bound_and_typed(tdb: SQLConnection) -> None:
    obj = get(tdb, "a")
    tdb.query().update(obj, {"meta": {"k": ["v", 1]}, "lastmjd": None})
    assert obj.meta == {"k": ["v", 1]} and obj.lastmjd is None
    tdb.query().update(obj, {"meta": None})
    assert obj.meta is None
    evil = "x'; UPDATE tu_obj SET ndet = 0; --"
    tdb.query(UObj).update(obj, {"meta": {"evil": evil}})
    assert get(tdb, "b").ndet == 2 and obj.meta == {"evil": evil}


def test_no_values_is_a_no_op(tdb: SQLConnection) -> None:
    obj = get(tdb, "a")
    assert tdb.query().update(obj, {}) is obj
    assert not tdb.session.in_transaction  # type: ignore[union-attr]


def test_bad_arguments(tdb: SQLConnection) -> None:
    obj = get(tdb, "a")
    with pytest.raises(QueryError, match="dict"):
        tdb.query().update(obj, [("ndet", 1)])  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="cannot run on model=UObj"):
        tdb.query(UPair).update(obj, {"ndet": 1})
    with pytest.raises(MissingValueError, match="'oid'"):
        tdb.query().update(UObj(oid=None, ndet=1), {"ndet": 2})  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="primary key"):
        tdb.query().update(UNoPk(x=1), {"x": 2})
    with pytest.raises(DbpError, match="not a model"):
        tdb.query().update({"oid": "a"}, {"ndet": 1})


def test_a_failed_update_makes_commit_raise_not_lose_silently(tdb: SQLConnection, module_dsn: str) -> None:
    tdb.query().update(get(tdb, "a"), {"ndet": 100})
    with pytest.raises(MissingValueError):  # the server refuses it: the transaction is aborted
        tdb.query().update(get(tdb, "b"), {"ndet": None})
    # PostgreSQL would answer COMMIT with ROLLBACK: the first update is gone, and commit() must say so.
    with pytest.raises(DbpError, match="nothing was committed"):
        tdb.session.commit()  # type: ignore[union-attr]
    assert not tdb.session.in_transaction  # type: ignore[union-attr]
    assert committed(module_dsn, "SELECT ndet FROM tu_obj WHERE oid = 'a'") == 1
    tdb.query().update(get(tdb, "a"), {"ndet": 101})  # the session works again
    tdb.session.commit()  # type: ignore[union-attr]
    assert committed(module_dsn, "SELECT ndet FROM tu_obj WHERE oid = 'a'") == 101


def test_db_plugins_documented_flow(tdb: SQLConnection, module_dsn: str) -> None:
    obj, created = tdb.query(UObj).get_or_create(filter_by={"oid": "new"}, ndet=1)
    assert created
    obj = tdb.query().update(obj, {"lastmjd": 12345})
    tdb.session.commit()  # type: ignore[union-attr]
    assert committed(module_dsn, "SELECT lastmjd FROM tu_obj WHERE oid = 'new'") == 12345.0
