"""Reads that run unprepared (an ``in_`` list) and ``to_dataframe()`` stream their rows: libpq's chunked
mode hands them over ``STREAM_CHUNK`` at a time while the server produces the rest, and each chunk is turned
into instances, rows or frame columns as it arrives. The results must be exactly those of a read fetched
whole: the same rows in the same order, across chunk boundaries, inside a transaction, after an error
midway, and without chunked mode (a libpq older than 17)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

import pytest
from psycopg import sql

from dbplugins import Column, DbpError, SQLConnection, cols, model
from dbplugins._query import results
from dbplugins._query.results import STREAM_CHUNK


@model("sr_item", primary_key=["iid"])
@dataclass
class Item:
    iid: int
    grp: int
    val: Annotated[float | None, Column("double precision")] = None
    label: str | None = None


@dataclass
class Checked:
    """A model with a ``__post_init__``: its instances are built by ``__init__``, chunk by chunk."""

    iid: int
    grp: int
    val: float | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        self.label = (self.label or "").upper()


model("sr_item", primary_key=["iid"])(Checked)

DDL = (
    "CREATE TABLE sr_item (iid integer PRIMARY KEY, grp integer NOT NULL, val double precision, label text);"
)
N = STREAM_CHUNK * 4 + 37
C = cols(Item)


@pytest.fixture(scope="module")
def sdb(module_db: SQLConnection) -> Iterator[SQLConnection]:
    module_db.execute("TRUNCATE sr_item")
    module_db.query(Item).bulk_insert(
        [
            Item(i, (i * 7919) % 97, None if i % 11 == 0 else i / 3, None if i % 13 == 0 else f"é{i}")
            for i in range(N)
        ]
    )
    module_db.current_session().commit()
    yield module_db


def whole(db: SQLConnection, sql: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in db.execute(sql)]


def test_an_in_read_of_many_chunks_is_the_read_fetched_whole(sdb: SQLConnection) -> None:
    groups = list(range(0, 97, 2))
    got = sdb.query(Item).filter(C.grp.in_(groups)).order_by(C.grp.desc(), C.iid).all()
    want = whole(sdb, "SELECT * FROM sr_item WHERE grp % 2 = 0 ORDER BY grp DESC, iid")
    assert len(want) > STREAM_CHUNK * 1.5
    assert [(x.iid, x.grp, x.val, x.label) for x in got] == want
    rows = sdb.query(C.label, C.iid).filter(C.grp.in_(groups)).order_by(C.grp.desc(), C.iid).all()
    assert [(r.label, r.iid) for r in rows] == [(w[3], w[0]) for w in want]
    checked = sdb.query(Checked).filter(cols(Checked).grp.in_(groups)).order_by(cols(Checked).iid).all()
    assert [c.label for c in checked] == [str(w[3] or "").upper() for w in sorted(want)]


def test_without_chunked_mode_the_results_are_the_same(
    sdb: SQLConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    groups = list(range(50))
    query = sdb.query(Item).filter(C.grp.in_(groups)).order_by(C.iid)
    streamed, frame = query.all(), query.to_dataframe()
    monkeypatch.setattr(results, "_chunked_rows", lambda: False)
    assert query.all() == streamed
    assert query.to_dataframe().equals(frame)


def test_an_error_midway_is_raised_and_the_connection_serves_the_next_read(sdb: SQLConnection) -> None:
    """``val / (iid - k)`` fails on the row ``iid = k``, after the first chunks have arrived."""
    view = "CREATE OR REPLACE VIEW sr_fails AS SELECT iid, grp, val / (iid - {}) AS val, label FROM sr_item"
    sdb.execute(sql.SQL(view).format(sql.Literal(N - 5)))
    sdb.current_session().commit()

    @model("sr_fails", primary_key=["iid"])
    @dataclass
    class Fails:
        iid: int
        grp: int
        val: float | None = None
        label: str | None = None

    query = sdb.query(Fails).filter(cols(Fails).grp.in_(list(range(97)))).order_by(cols(Fails).iid)
    with pytest.raises(DbpError, match="division by zero"):
        query.all()
    with pytest.raises(DbpError, match="division by zero"):
        query.to_dataframe()
    assert sdb.query(Item).count() == N
    assert len(sdb.query(Item).filter(C.grp.in_(list(range(97)))).all()) == N


def test_a_streamed_read_inside_a_transaction_sees_its_own_rows(sdb: SQLConnection) -> None:
    with pytest.raises(RuntimeError), sdb.transaction():
        sdb.query(Item).bulk_insert([Item(N + i, 1000, float(i)) for i in range(STREAM_CHUNK + 1)])
        got = sdb.query(Item).filter(C.grp.in_([1000])).order_by(C.iid).all()
        assert [x.iid for x in got] == list(range(N, N + STREAM_CHUNK + 1))
        raise RuntimeError("roll back")
    assert sdb.query(Item).filter(C.grp.in_([1000])).all() == []


def test_inside_a_pipeline_the_read_is_fetched_whole(sdb: SQLConnection) -> None:
    """psycopg cannot stream in pipeline mode: a read made there (a transaction's connection that the caller
    put in a pipeline) fetches its result whole, with the same rows."""
    query = sdb.query(Item).filter(C.grp.in_(list(range(97)))).order_by(C.iid)
    want = query.all()
    with sdb.transaction() as session, session.connection() as conn, conn.pipeline():
        assert query.all() == want
        assert query.to_dataframe()["iid"].tolist() == [x.iid for x in want]
