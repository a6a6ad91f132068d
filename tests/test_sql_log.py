"""The ``dbplugins.sql`` logger: each statement at DEBUG, with its row count and duration, never a bound
value.

Also here: an ``SQLConnection`` that is never closed exits quietly.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from dbplugins import ConstraintError, DataError, SQLConnection
from dbplugins._session.sqllog import LoggedCursor
from dbplugins.models import Object

SECRET = "ZTF-s3cret-value-7f3a"


def sql_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "dbplugins.sql"]


def assert_no_secret(records: list[logging.LogRecord], *secrets: str) -> None:
    for record in records:
        shown = record.getMessage() + repr(record.__dict__)
        for secret in secrets:
            assert secret not in shown, record.getMessage()


def test_statements_are_logged_without_values(db: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dbplugins.sql")
    obj, created = db.query(Object).get_or_create(filter_by={"oid": SECRET}, ndet=4)
    assert created
    inserted = db.query(Object).bulk_insert([{"oid": SECRET + "-2", "ndet": 1}, {"oid": SECRET + "-3"}])
    assert inserted == 2
    found = db.query(Object).find(filter_by={"oid": SECRET}, paginate=False)
    assert [o.oid for o in found] == [SECRET]

    records = sql_records(caplog)
    texts = [r.statement for r in records]  # type: ignore[attr-defined]
    # get_or_create: its INSERT ... ON CONFLICT, one row created
    upsert = [r for r in records if "INSERT" in r.statement and "ON CONFLICT" in r.statement]  # type: ignore[attr-defined]
    assert upsert and upsert[0].rowcount == 1  # type: ignore[attr-defined]
    # bulk_insert: a COPY, with the number of rows it copied
    copies = [r for r in records if r.sql_kind == "copy"]  # type: ignore[attr-defined]
    assert copies and any(r.statement.startswith("COPY") for r in copies), texts  # type: ignore[attr-defined]
    assert sum(max(r.rowcount, 0) for r in copies) >= 2  # type: ignore[attr-defined]
    # the query: a SELECT from object, one row
    selects = [r for r in records if r.statement.startswith("SELECT") and '"object"' in r.statement]  # type: ignore[attr-defined]
    assert selects and selects[-1].rowcount == 1  # type: ignore[attr-defined]
    for record in [*upsert, *copies, *selects]:
        assert "row" in record.getMessage()
    # the transaction around the COPY: commands psycopg sends itself
    commands = [r.statement for r in records if r.sql_kind == "command"]  # type: ignore[attr-defined]
    assert "BEGIN" in commands and "COMMIT" in commands
    for record in records:
        assert record.levelno == logging.DEBUG
        assert record.duration_ms >= 0  # type: ignore[attr-defined]
        assert record.getMessage().endswith(" ms")
    assert_no_secret(records, SECRET, "s3cret")


def test_transaction_blocks_and_savepoints(db: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dbplugins.sql")
    with db.transaction():
        db.execute("SELECT 1")
        with pytest.raises(DataError), db.transaction():
            db.execute("SELECT 1/0")
    texts = [r.statement for r in sql_records(caplog)]  # type: ignore[attr-defined]
    assert texts[0] == "BEGIN" and texts[-1] == "COMMIT"
    assert any(t.startswith("SAVEPOINT") for t in texts) and any(t.startswith("ROLLBACK TO") for t in texts)
    failed = [r.getMessage() for r in sql_records(caplog) if r.statement == "SELECT 1/0"]  # type: ignore[attr-defined]
    assert failed and "failed: DivisionByZero (SQLSTATE 22012)" in failed[0]


def test_failed_statement_logs_the_error_class_not_the_servers_message(
    db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    db.query(Object).bulk_insert([{"oid": SECRET}])
    caplog.set_level(logging.DEBUG, logger="dbplugins.sql")
    with pytest.raises(ConstraintError) as info:
        db.query(Object).bulk_insert([{"oid": SECRET}], on_conflict="error")
    assert SECRET in str(info.value) or "object" in str(info.value)  # the error itself may say which key
    records = sql_records(caplog)
    failed = [r for r in records if "failed: UniqueViolation (SQLSTATE 23505)" in r.getMessage()]
    assert failed, [r.getMessage() for r in records]
    assert_no_secret(records, SECRET, "s3cret")


def test_executemany_and_plain_execute(db: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dbplugins.sql")
    with db.session.connection() as conn:
        cur = conn.cursor()
        assert isinstance(cur, LoggedCursor)
        cur.executemany("INSERT INTO object (oid) VALUES (%s)", [(SECRET + "-a",), (SECRET + "-b",)])
    assert db.execute("SELECT count(*) FROM object WHERE oid LIKE %s", [SECRET + "%"]) == [(2,)]
    records = sql_records(caplog)
    many = [r for r in records if r.sql_kind == "executemany"]  # type: ignore[attr-defined]
    assert len(many) == 1 and many[0].statement == "INSERT INTO object (oid) VALUES (%s)"  # type: ignore[attr-defined]
    assert any(r.statement == "SELECT count(*) FROM object WHERE oid LIKE %s" for r in records)  # type: ignore[attr-defined]
    assert_no_secret(records, SECRET, "s3cret")


def test_nothing_is_logged_above_debug(db: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dbplugins.sql")
    db.query(Object).get_or_create(filter_by={"oid": SECRET})
    db.query(Object).bulk_insert([{"oid": SECRET + "-x"}])
    assert sql_records(caplog) == []


def test_a_callers_cursor_factory_wins(dsn: str) -> None:
    import psycopg

    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.cursor_factory = psycopg.ClientCursor

    with SQLConnection() as db:
        pass
    db = SQLConnection()
    db.connect(dsn=dsn, configure=configure, min_size=1, max_size=1)
    try:
        with db.current_session().connection() as conn:
            assert conn.cursor_factory is psycopg.ClientCursor
    finally:
        db.close()


# -- an SQLConnection nobody closes --------------------------------------------------------------------------

# The pool's last reference can fall in one of its own worker threads (here: while a slow configure= callback
# still runs there when the SQLConnection goes away), whose ConnectionPool.__del__ then tries to join itself.
UNCLOSED = """
import sys, time
from dbplugins import SQLConnection

def slow(conn):
    time.sleep(0.3)

def work():
    db = SQLConnection()
    db.connect(dsn=sys.argv[1], min_size=3, configure=slow)
    assert db.execute("select 1") == [(1,)]

work()
time.sleep(1)
keep = SQLConnection()
keep.connect(dsn=sys.argv[1], min_size=2)
keep.execute("select 2")
"""


@pytest.mark.timeout(120)
def test_unclosed_connection_exits_quietly(dsn: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(UNCLOSED), dsn],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


FORKED = """
import os, sys
from dbplugins import SQLConnection

db = SQLConnection()
db.connect(dsn=sys.argv[1], min_size=1, max_size=1)
before = db.execute("select pg_backend_pid()")
pid = os.fork()
if pid == 0:
    sys.exit(0)  # a normal exit: atexit handlers and finalizers run in the child
os.waitpid(pid, 0)
after = db.execute("select pg_backend_pid()")
assert before == after, (before, after)  # the child did not close the parent's connection
"""


@pytest.mark.timeout(120)
def test_forked_child_leaves_the_parents_connections_alone(dsn: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORKED), dsn], capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
