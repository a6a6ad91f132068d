"""Statements with an array parameter (``in_``) are planned with their values on every execution.

psycopg prepares a statement from its fifth execution on, and PostgreSQL then moves a prepared statement to
a generic plan, made without the parameter values: for ``col = ANY($1)`` such a plan compares every row with
each element of the array in turn (a 1,000-oid read of 100,000 detections went from 18 ms to 600 ms of server
time). These tests look at what the one pooled connection has prepared after many executions.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dbplugins import SQLConnection, cols
from dbplugins.models import Object

REPEAT = 12  # more than psycopg's prepare threshold (5) plus PostgreSQL's custom-plan tries (5)


@pytest.fixture
def one_conn(dsn: str) -> Iterator[SQLConnection]:
    """A pool of exactly one connection: every statement below runs on it."""
    db = SQLConnection()
    db.connect(dsn=dsn, min_size=1, max_size=1, timeout=10)
    db.query(Object).bulk_insert([{"oid": f"ZTF{i:03d}", "ndet": i} for i in range(20)])
    try:
        yield db
    finally:
        db.close()


def prepared(db: SQLConnection) -> list[str]:
    return [str(r[0]) for r in db.execute("SELECT statement FROM pg_prepared_statements")]


def test_reads_by_an_in_list_are_never_prepared(one_conn: SQLConnection) -> None:
    db, o = one_conn, cols(Object)
    oids = [f"ZTF{i:03d}" for i in range(0, 20, 2)]
    for _ in range(REPEAT):
        assert len(db.query(Object).filter(o.oid.in_(oids)).all()) == 10
        assert db.query(Object).filter(o.oid.in_(oids)).count() == 10
        assert db.query(Object).filter(o.oid.not_in(oids)).first() is not None
        assert len(db.query(o.oid, o.ndet).filter(o.oid.in_(oids)).all()) == 10
        assert db.query(Object).filter(o.oid.in_(["nothing"])).delete() == 0
    statements = prepared(db)
    assert not [s for s in statements if "ANY(" in s or "ALL(" in s], statements


def test_reads_by_one_value_keep_psycopgs_prepared_statements(one_conn: SQLConnection) -> None:
    """The per-object read stays prepared: planning it again each time would cost more than it runs."""
    db, o = one_conn, cols(Object)
    for _ in range(REPEAT):
        assert len(db.query(Object).filter(o.oid == "ZTF001").all()) == 1
    assert [s for s in prepared(db) if '"oid" = $1' in s]
