"""SQLConnection and sessions: pooling, units of work, scoping, and recovery from a lost server."""

from __future__ import annotations

import pickle
import threading
import time
from typing import Any

import psycopg
import pytest

from dbplugins import (
    ConnectionError,
    ConstraintError,
    DbpError,
    PoolTimeoutError,
    ScopedSession,
    Session,
    SQLConnection,
    UnknownColumnError,
)


def count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select count(*) from t").fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def tdsn(empty_dsn: str) -> str:
    with psycopg.connect(empty_dsn) as conn:
        conn.execute("create table t (id int primary key, v text)")
    return empty_dsn


@pytest.fixture
def conn(tdsn: str) -> Any:
    db = SQLConnection()
    db.connect(dsn=tdsn, min_size=1, max_size=3, timeout=5)
    yield db
    db.close()


def checked_out(db: SQLConnection) -> int:
    assert db.pool is not None
    stats = db.pool.get_stats()
    return int(stats.get("pool_size", 0)) - int(stats.get("pool_available", 0))


def test_connect_with_dsn_and_context_manager(tdsn: str) -> None:
    with SQLConnection(tdsn) as db:
        assert db.execute("select 1") == [(1,)]
        assert isinstance(db.session, Session)
    assert db.pool is None and db.session is None


def test_session_holds_no_connection_while_idle(tdsn: str) -> None:
    conn = SQLConnection()
    conn.connect(dsn=tdsn, min_size=2, max_size=2)  # fixed size: no background growth to blur the count
    assert conn.pool is not None
    conn.pool.wait()
    conn.execute("insert into t values (1, 'a')")
    assert checked_out(conn) == 0
    session = conn.current_session()
    session.begin()
    assert session.in_transaction and checked_out(conn) == 1
    session.commit()
    assert not session.in_transaction and checked_out(conn) == 0
    conn.close()


def test_commit_and_rollback(conn: SQLConnection, tdsn: str) -> None:
    session = conn.current_session()
    session.begin()
    conn.execute("insert into t values (1, 'a')")
    assert conn.execute("select count(*) from t") == [(1,)]  # visible inside the transaction
    assert count(tdsn) == 0  # not outside
    session.rollback()
    assert count(tdsn) == 0
    session.begin()
    conn.execute("insert into t values (2, 'b')")
    assert conn.session is not None
    conn.session.commit()
    assert count(tdsn) == 1


def test_transaction_block_commits_rolls_back_and_nests(conn: SQLConnection, tdsn: str) -> None:
    with conn.transaction():
        conn.execute("insert into t values (1, 'a')")
    assert count(tdsn) == 1
    with pytest.raises(RuntimeError), conn.transaction():
        conn.execute("insert into t values (2, 'b')")
        raise RuntimeError("boom")
    assert count(tdsn) == 1
    with conn.transaction():
        conn.execute("insert into t values (3, 'c')")
        with pytest.raises(ConstraintError), conn.transaction():  # savepoint
            conn.execute("insert into t values (3, 'dup')")
        conn.execute("insert into t values (4, 'd')")
    assert count(tdsn) == 3
    with pytest.raises(DbpError, match="inside"), conn.transaction():
        assert conn.session is not None
        conn.session.commit()


def test_errors_are_wrapped_and_chained(conn: SQLConnection) -> None:
    conn.execute("insert into t values (1, 'a')")
    with pytest.raises(ConstraintError) as info:
        conn.execute("insert into t values (1, 'a')")
    assert info.value.constraint == "t_pkey"
    assert isinstance(info.value.__cause__, psycopg.errors.UniqueViolation)
    with pytest.raises(UnknownColumnError):
        conn.execute("select nope from t")
    # The borrowed connection went back clean: the session still works.
    assert conn.execute("select count(*) from t") == [(1,)]


def test_errors_pickle_with_their_fields() -> None:
    err = ConstraintError("dup", model="t", column="id", row=3, sqlstate="23505", constraint="t_pkey")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ConstraintError
    assert (back.message, back.model, back.column, back.row, back.sqlstate, back.constraint) == (
        "dup", "t", "id", 3, "23505", "t_pkey"
    )


def test_scoped_sessions_are_per_thread(tdsn: str) -> None:
    db = SQLConnection()
    db.connect(dsn=tdsn, use_scoped=True, max_size=4)
    try:
        assert isinstance(db.session, ScopedSession)
        seen: dict[str, Session] = {}

        def work(name: str) -> None:
            seen[name] = db.current_session()
            with db.transaction():
                db.execute("insert into t values (%s, %s)", (len(name), name))

        threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "bb", "ccc")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({id(s) for s in seen.values()}) == 3
        assert db.current_session() not in seen.values()
        assert count(tdsn) == 3
        first = db.current_session()
        db.session.remove()
        assert db.current_session() is not first
    finally:
        db.close()


def test_scope_func_and_plain_session_sharing(tdsn: str) -> None:
    scope = {"key": "request-1"}
    db = SQLConnection()
    db.connect(dsn=tdsn, create_session=False)
    db.create_session(use_scoped=True, scope_func=lambda: scope["key"])
    s1 = db.current_session()
    scope["key"] = "request-2"
    assert db.current_session() is not s1
    scope["key"] = "request-1"
    assert db.current_session() is s1
    db.create_session(use_scoped=False)
    plain = db.current_session()
    other: list[Session] = []
    t = threading.Thread(target=lambda: other.append(db.current_session()))
    t.start()
    t.join()
    assert other == [plain]
    db.end_session()
    with pytest.raises(DbpError, match="no session"):
        db.current_session()
    db.close()


def test_pool_exhaustion_is_a_clear_timeout(tdsn: str) -> None:
    db = SQLConnection()
    db.connect(dsn=tdsn, min_size=1, max_size=1, timeout=0.5, use_scoped=True)
    try:
        db.current_session().begin()  # this thread holds the only connection
        errors: list[BaseException] = []

        def other() -> None:
            try:
                db.execute("select 1")
            except BaseException as exc:
                errors.append(exc)

        start = time.monotonic()
        t = threading.Thread(target=other)
        t.start()
        t.join(10)
        assert time.monotonic() - start < 5
        assert len(errors) == 1 and isinstance(errors[0], PoolTimeoutError)
        assert isinstance(errors[0], ConnectionError)
        db.current_session().rollback()
        assert db.execute("select 1") == [(1,)]  # the pool serves again
    finally:
        db.close()


def test_unknown_pool_option_and_sqlalchemy_arguments(tdsn: str) -> None:
    with pytest.raises(DbpError, match="unknown pool option"):
        SQLConnection().connect(dsn=tdsn, pool_size=3)
    with pytest.raises(DbpError, match="SQLAlchemy"):
        SQLConnection(engine=object())


def test_terminated_backends_are_replaced(conn: SQLConnection, tdsn: str, server_dsn: str) -> None:
    conn.execute("select 1")
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        dbname = psycopg.conninfo.conninfo_to_dict(tdsn)["dbname"]
        admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = %s and pid <> pg_backend_pid()",
            (dbname,),
        )
    time.sleep(0.2)
    assert conn.execute("select 2") == [(2,)]


def test_pool_recovers_after_server_restart(private_server: Any) -> None:
    dsn = private_server.dsn()
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("drop table if exists r")
        admin.execute("create table r (id int primary key)")
    db = SQLConnection()
    db.connect(dsn=dsn, min_size=2, max_size=4, timeout=3, reconnect_timeout=60)
    try:
        db.execute("insert into r values (1)")
        private_server.stop("immediate")  # a real crash-style stop, not a proxy
        start = time.monotonic()
        with pytest.raises(ConnectionError):
            db.execute("insert into r values (2)")
        assert time.monotonic() - start < 10  # bounded by the pool timeout, not a hang
        private_server.start()
        private_server.wait_ready()
        deadline = time.monotonic() + 30
        while True:  # the first call may still meet a connection that died with the server
            try:
                db.execute("insert into r values (3)")
                break
            except ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert db.execute("select id from r order by id") == [(1,), (3,)]
    finally:
        db.close()
        private_server.start()


def test_callers_configure_runs_and_sessions_keep_working(tdsn: str) -> None:
    seen: list[int] = []

    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.autocommit = False  # a careless callback must not break the sessions' transaction handling
        conn.execute("SET application_name = 'dbp-configured'")
        seen.append(1)

    db = SQLConnection()
    db.connect(dsn=tdsn, configure=configure, min_size=1, max_size=1)
    try:
        assert db.execute("show application_name") == [("dbp-configured",)]
        with db.transaction():
            db.execute("insert into t values (1, 'a')")
        assert count(tdsn) == 1 and seen
    finally:
        db.close()
