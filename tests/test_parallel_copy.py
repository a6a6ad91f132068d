"""bulk_insert(parallel=N): N COPY streams, all-or-nothing with prepared transactions, resumable without them.

Two servers: the test server (the embedded one allows prepared transactions:
``max_prepared_transactions = 16``) and ``cluster``, a throwaway server of this module started from the same
binaries in a temporary directory, whose ``max_prepared_transactions`` a test sets (0: the path without
prepared transactions; 16: the restart test, and every 2PC test when the test server itself does not allow
prepared transactions, see the ``dsn`` fixture).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.conninfo import make_conninfo

from dbplugins import (
    ConnectionError,
    ConstraintError,
    DataError,
    DbpError,
    SQLConnection,
    UnknownColumnError,
    model,
)
from dbplugins._copy import parallel_call as pcall
from dbplugins._copy import parallel_stream as pstream
from dbplugins.models import Detection, Object

STREAMS = 3


def det(candid: int, oid: str, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "candid": candid, "oid": oid, "mjd": 59000.0 + candid, "fid": 1, "pid": 1.0, "isdiffpos": 1,
        "ra": 10.0, "dec": -5.0, "magpsf": 18.0, "sigmapsf": 0.1, "corrected": False, "dubious": False,
        "has_stamp": True, "step_id_corr": "corr-1.0",
    }
    row.update(extra)
    return row


def stream_of(oid: str, n: int = STREAMS) -> int:
    """The stream a row of key ``oid`` is dealt to (the engine's own rule, in this process)."""
    return hash(oid) % n


def oids_of_stream(stream: int, count: int, prefix: str = "o", n: int = STREAMS) -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < count:
        oid = f"{prefix}{i}"
        if stream_of(oid, n) == stream:
            out.append(oid)
        i += 1
    return out


def scalar(dsn: str, query: str, params: Any = None) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
        return row[0] if row else None


def prepared(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        query = "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"
        return [r[0] for r in conn.execute(query).fetchall()]


def objects(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT oid, ndet, meanra, step_id_corr FROM object ORDER BY oid").fetchall()


def connected(dsn: str, max_size: int = 5) -> SQLConnection:
    db = SQLConnection()
    db.connect(dsn=dsn, min_size=1, max_size=max_size, timeout=10)
    return db


@pytest.fixture
def dsn(make_database: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database with the built-in schema on a server that allows prepared transactions.

    The test server's (the embedded one sets max_prepared_transactions = 16); when it does not allow them (a
    server started before that setting, or a DBP_TEST_DSN server), a database on this module's own
    ``cluster``.
    """
    main = str(make_database("schema"))
    if int(scalar(main, "SHOW max_prepared_transactions")) >= STREAMS:
        yield main
        return
    cluster: Cluster = request.getfixturevalue("cluster")
    cluster.allow_prepared(16)
    name = f"dbp_pc_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster.server.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE pcopy_tpl").format(sql.Identifier(name)))
    try:
        yield make_conninfo(cluster.server.dsn(), dbname=name)
    finally:
        with psycopg.connect(cluster.server.dsn(), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db2(dsn: str) -> Iterator[SQLConnection]:
    """A connection (a pool of up to 5) to ``dsn``, a fresh database on a server with prepared
    transactions."""
    db = connected(dsn)
    try:
        yield db
    finally:
        db.close()


def test_the_embedded_server_allows_prepared_transactions(private_server: Any) -> None:
    """dbplugins/embedded.py's settings: a server it starts allows the streams' prepared transactions."""
    assert int(scalar(private_server.dsn(), "SHOW max_prepared_transactions")) >= 16


# -- a throwaway server whose max_prepared_transactions the tests choose -------------------------------------


class Cluster:
    """A server of this module's own (an EmbeddedServer in a temporary directory) with one schema database."""

    def __init__(self) -> None:
        from dbplugins._sqlfiles import schema_script
        from dbplugins.embedded import EmbeddedServer

        # Not under pytest's tmp_path: see tests/conftest.py's private_server (the server's user must traverse
        # it).
        self.top = Path(tempfile.mkdtemp(prefix="dbp-pcopy-pg-"))
        self.server = EmbeddedServer(self.top)
        self.server.start()
        self.server.wait_ready()
        self.dsn = make_conninfo(self.server.dsn(), dbname="pcopy")
        with psycopg.connect(self.server.dsn(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE pcopy_tpl")  # the built-in schema, never used: a template
            with psycopg.connect(
                make_conninfo(self.server.dsn(), dbname="pcopy_tpl"), autocommit=True
            ) as conn:
                conn.execute(schema_script().encode())
            admin.execute("CREATE DATABASE pcopy TEMPLATE pcopy_tpl")

    def allow_prepared(self, n: int) -> None:
        """Set max_prepared_transactions (a restart when it changes)."""
        if int(scalar(self.server.dsn(), "SHOW max_prepared_transactions")) == n:
            return
        with psycopg.connect(self.server.dsn(), autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER SYSTEM SET max_prepared_transactions = {}").format(sql.Literal(str(n)))
            )
        self.restart()

    def restart(self) -> None:
        self.server.stop("fast")
        self.server.start()
        self.server.wait_ready()

    def reset(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE object CASCADE")
            conn.execute("DROP TRIGGER IF EXISTS poison ON object")
            conn.execute("DROP FUNCTION IF EXISTS poison()")
            conn.execute("DROP SEQUENCE IF EXISTS poison_seq")

    def close(self) -> None:
        self.server.stop("immediate")
        shutil.rmtree(self.top, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def no2pc(cluster: Cluster) -> Iterator[tuple[SQLConnection, str]]:
    """(db, dsn) on a server without prepared transactions (max_prepared_transactions = 0)."""
    cluster.allow_prepared(0)
    cluster.reset()
    db = connected(cluster.dsn)
    try:
        yield db, cluster.dsn
    finally:
        db.close()


# -- arguments and refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2", None], ids=repr)
def test_parallel_must_be_an_integer_of_at_least_one(db: Any, bad: Any) -> None:
    with pytest.raises(DbpError, match=r"parallel must be an integer >= 1 .*got") as info:
        db.query(Object).bulk_insert([{"oid": "a"}], parallel=bad)
    assert info.value.model == "object"
    assert db.execute("SELECT count(*) FROM object") == [(0,)]


def test_parallel_one_is_the_single_stream(db: Any) -> None:
    assert db.query(Object).bulk_insert([{"oid": f"o{i}"} for i in range(10)], parallel=1) == 10
    assert db.execute("SELECT count(DISTINCT xmin::text) FROM object") == [(1,)]


def test_refused_inside_a_transaction_block(db2: SQLConnection) -> None:
    with pytest.raises(DbpError, match=r"cannot run inside an open transaction.*use parallel=1"):
        with db2.transaction():
            db2.query(Object).bulk_insert([{"oid": f"o{i}"} for i in range(10)], parallel=2)
    assert db2.execute("SELECT count(*) FROM object") == [(0,)]


def test_refused_with_pending_session_work(db2: SQLConnection) -> None:
    db2.query(Object).bulk_insert([{"oid": "x", "ndet": 1}])
    obj = db2.query(Object).get("x")
    db2.query().update(obj, {"ndet": 2})  # an implicit transaction is now open
    with pytest.raises(DbpError, match=r"cannot run inside an open transaction"):
        db2.query(Object).bulk_insert([{"oid": f"o{i}"} for i in range(10)], parallel=2)
    db2.current_session().rollback()
    assert db2.execute("SELECT count(*) FROM object") == [(1,)]


def test_refused_beyond_the_pool_size(db2: SQLConnection) -> None:
    with pytest.raises(DbpError, match=r"needs 9 connections at once and the pool holds at most 5"):
        db2.query(Object).bulk_insert([{"oid": "a"}], parallel=9)


def test_error_mode_without_prepared_transactions_is_refused(no2pc: tuple[SQLConnection, str]) -> None:
    db, dsn = no2pc
    with pytest.raises(DbpError, match=r'on_conflict="error"\) needs prepared transactions.*max_prepared_tr'):
        db.query(Object).bulk_insert([{"oid": f"o{i}"} for i in range(10)], on_conflict="error", parallel=2)
    assert scalar(dsn, "SELECT count(*) FROM object") == 0
    # parallel=1 still works there
    assert db.query(Object).bulk_insert([{"oid": "a"}], on_conflict="error") == 1


# -- the streams really run, and duplicates of a key keep their order ----------------------------------------


@pytest.mark.parametrize("mode", ["ignore", "error", "update"])
def test_rows_spread_over_the_streams_and_land_once(db2: SQLConnection, dsn: str, mode: Any) -> None:
    rows = [{"oid": f"o{i}", "ndet": i} for i in range(6000)]
    assert db2.query(Object).bulk_insert(rows, on_conflict=mode, parallel=STREAMS) == 6000
    assert db2.execute("SELECT count(*), sum(ndet) FROM object") == [(6000, sum(range(6000)))]
    # One transaction per stream wrote them (each stream's COPY is its own transaction).
    assert db2.execute("SELECT count(DISTINCT xmin::text) FROM object") == [(STREAMS,)]
    assert prepared(dsn) == []


def test_a_generator_and_instances(db2: SQLConnection) -> None:
    def gen() -> Iterator[Any]:
        for i in range(5000):
            yield Object(oid=f"o{i}", ndet=i) if i % 2 else {"oid": f"o{i}", "ndet": i}

    assert db2.query(Object).bulk_insert(gen(), parallel=2) == 5000
    assert db2.execute("SELECT count(*), sum(ndet) FROM object") == [(5000, sum(range(5000)))]


def far_apart_duplicates() -> list[dict[str, Any]]:
    """Rows where each key of ``dups`` appears at positions thousands of rows apart, with different values:
    dealt in batches in turn they would fall into different streams."""
    rows: list[dict[str, Any]] = []
    for rnd in range(3):
        for i in range(3000):
            rows.append({"oid": f"k{i}", "ndet": rnd * 10_000 + i})
    return rows


def test_ignore_keeps_the_first_occurrence_across_streams(db2: SQLConnection) -> None:
    db2.query(Object).bulk_insert([{"oid": "k5", "ndet": -1}])  # an existing key is skipped, as ever
    assert db2.query(Object).bulk_insert(far_apart_duplicates(), parallel=STREAMS) == 2999
    got = dict(db2.execute("SELECT oid, ndet FROM object"))
    assert got == {f"k{i}": (-1 if i == 5 else i) for i in range(3000)}


def test_update_keeps_the_last_occurrence_across_streams(db2: SQLConnection) -> None:
    db2.query(Object).bulk_insert([{"oid": "k5", "ndet": -1, "meanra": 1.5}])
    db2.query(Object).bulk_insert(far_apart_duplicates(), on_conflict="update", parallel=STREAMS)
    got = {r[0]: (r[1], r[2]) for r in db2.execute("SELECT oid, ndet, meanra FROM object")}
    assert got == {f"k{i}": (20_000 + i, 1.5 if i == 5 else None) for i in range(3000)}


def test_error_mode_duplicate_in_the_input_raises_and_writes_nothing(db2: SQLConnection, dsn: str) -> None:
    with pytest.raises(ConstraintError, match=r"object_pkey"):
        db2.query(Object).bulk_insert(far_apart_duplicates(), on_conflict="error", parallel=STREAMS)
    assert db2.execute("SELECT count(*) FROM object") == [(0,)]
    assert prepared(dsn) == []


def test_staging_under_prepared_transactions_leaves_no_table(db2: SQLConnection, dsn: str) -> None:
    db2.query(Object).bulk_insert([{"oid": f"k{i}"} for i in range(0, 3000, 7)])  # forces the staging path
    db2.query(Object).bulk_insert(far_apart_duplicates(), parallel=STREAMS)
    db2.query(Object).bulk_insert(far_apart_duplicates(), on_conflict="update", parallel=STREAMS)
    tables = scalar(dsn, "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_dbp\\_pcopy%'")
    assert tables == 0
    assert db2.execute("SELECT count(*) FROM object") == [(3000,)]


# -- a stream failing ----------------------------------------------------------------------------------------


def rows_with_bad_row_in_stream(stream: int, position: int, total_per_stream: int) -> tuple[list[Any], int]:
    """Detection-free object rows, each stream getting ``total_per_stream``; the row at ``position`` of stream
    ``stream`` has a fractional ndet (refused). Returns the rows and the bad row's index in the input."""
    keys = [oids_of_stream(s, total_per_stream, prefix=f"s{s}-") for s in range(STREAMS)]
    rows: list[dict[str, Any]] = []
    bad_index = -1
    for j in range(total_per_stream):
        for s in range(STREAMS):
            if s == stream and j == position:
                bad_index = len(rows)
                rows.append({"oid": keys[s][j], "ndet": 2.5})
            else:
                rows.append({"oid": keys[s][j], "ndet": j})
    return rows, bad_index


def test_bad_value_midway_in_stream_two_writes_nothing_and_names_the_input_row(
    db2: SQLConnection, dsn: str
) -> None:
    rows, bad = rows_with_bad_row_in_stream(stream=1, position=4000, total_per_stream=6000)
    assert bad == 4000 * STREAMS + 1
    with pytest.raises(DataError) as info:
        db2.query(Object).bulk_insert(rows, parallel=STREAMS)
    err = info.value
    assert (err.model, err.column, err.row) == ("object", "ndet", bad)
    assert f"[model 'object', column 'ndet', row {bad}]" in str(err)
    assert "stream 2 failed; nothing was written" in str(err)
    assert db2.execute("SELECT count(*) FROM object") == [(0,)]
    assert prepared(dsn) == []
    # The connection is usable and a corrected retry lands exactly once.
    rows[bad]["ndet"] = 3
    assert db2.query(Object).bulk_insert(rows, parallel=STREAMS) == len(rows)
    assert db2.query(Object).bulk_insert(rows, parallel=STREAMS) == 0


def test_server_error_midway_names_the_input_row(db2: SQLConnection, dsn: str) -> None:
    rows: list[dict[str, Any]] = [{"oid": f"o{i}", "step_id_corr": "s"} for i in range(9000)]
    rows[7001]["step_id_corr"] = "a\x00b"  # refused by the server, which names the COPY line
    with pytest.raises(DataError) as info:
        db2.query(Object).bulk_insert(rows, parallel=STREAMS)
    assert (info.value.row, info.value.column) == (7001, "step_id_corr")
    assert "row 7001]" in str(info.value)
    assert db2.execute("SELECT count(*) FROM object") == [(0,)]
    assert prepared(dsn) == []


def test_foreign_key_violation_names_the_constraint(db2: SQLConnection, dsn: str) -> None:
    db2.query(Object).bulk_insert([{"oid": "a"}, {"oid": "b"}, {"oid": "c"}])
    rows = [det(i, "abc"[i % 3]) for i in range(9000)]
    rows[7001] = det(7001, "missing")  # checked by the server at the end of the COPY: no row is named
    with pytest.raises(ConstraintError) as info:
        db2.query(Detection).bulk_insert(rows, parallel=STREAMS)
    assert info.value.constraint == "detection_oid_fkey"
    assert db2.execute("SELECT count(*) FROM detection") == [(0,)]
    assert prepared(dsn) == []


def test_unknown_key_midway(db2: SQLConnection) -> None:
    rows: list[dict[str, Any]] = [{"oid": f"o{i}"} for i in range(5000)]
    rows[3333] = {"oid": "x", "nope": 1}
    with pytest.raises(UnknownColumnError) as info:
        db2.query(Object).bulk_insert(rows, parallel=2)
    assert info.value.row == 3333 and "row 3333]" in str(info.value)
    assert db2.execute("SELECT count(*) FROM object") == [(0,)]


POISON_FUNCTION = """
CREATE OR REPLACE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- With prepared transactions: wait (bounded) until the other streams have prepared, then fail.
    IF {wait} THEN
        FOR i IN 1..200 LOOP
            EXIT WHEN (SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()) >= {others};
            PERFORM pg_sleep(0.05);
        END LOOP;
    END IF;
    IF nextval('poison_seq') = 1 THEN
        RAISE EXCEPTION 'poisoned row %', NEW.oid USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
DROP SEQUENCE IF EXISTS poison_seq;
CREATE SEQUENCE poison_seq;
DROP TRIGGER IF EXISTS poison ON object;
CREATE CONSTRAINT TRIGGER poison AFTER INSERT ON object DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.oid = '{oid}') EXECUTE FUNCTION poison();
"""  # noqa: E501 - one line of the PL/pgSQL body above is 111 columns; rewrapping would change the SQL text


def poison(dsn: str, oid: str, *, wait_for_others: bool) -> None:
    """A deferred trigger that fails the transaction inserting ``oid`` when it ends (PREPARE or COMMIT),
    once."""
    text = POISON_FUNCTION.format(wait="true" if wait_for_others else "false", others=STREAMS - 1, oid=oid)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(text.encode())


def test_a_stream_failing_after_the_others_prepared_rolls_them_back(db2: SQLConnection, dsn: str) -> None:
    rows = [{"oid": f"o{i}", "ndet": i} for i in range(3000)]
    victim = oids_of_stream(2, 1)[0]
    poison(dsn, victim, wait_for_others=True)
    with pytest.raises(ConstraintError, match=r"poisoned row") as info:
        db2.query(Object).bulk_insert(rows, parallel=STREAMS)
    assert "stream 3 failed; nothing was written" in str(info.value)
    assert prepared(dsn) == []
    assert db2.execute("SELECT count(*) FROM object") == [(0,)]
    # the trigger fails once: the same call again lands everything, once
    assert db2.query(Object).bulk_insert(rows, parallel=STREAMS) == 3000
    assert db2.execute("SELECT count(*), sum(ndet) FROM object") == [(3000, sum(range(3000)))]


def backends_copying(dsn: str) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND query LIKE 'COPY%'"
        ).fetchall()
    return [r[0] for r in rows]


def test_a_killed_stream_fails_the_call_and_leaves_nothing(db2: SQLConnection, dsn: str) -> None:
    consumed = 0
    killed: list[int] = []

    def endless() -> Iterator[dict[str, Any]]:
        nonlocal consumed
        i = 0
        while True:  # an input that never ends: only the failure can end the call
            if i == 20_000:
                deadline = time.monotonic() + 20
                while len(pids := backends_copying(dsn)) < STREAMS and time.monotonic() < deadline:
                    time.sleep(0.05)  # every stream has rows; give the last one time to start its COPY
                assert len(pids) == STREAMS
                killed.append(pids[1])
                scalar(dsn, "SELECT pg_terminate_backend(%s)", (pids[1],))
            consumed = i
            yield {"oid": f"o{i}", "ndet": i}
            i += 1

    with pytest.raises(ConnectionError) as info:
        db2.query(Object).bulk_insert(endless(), parallel=STREAMS)
    assert "nothing was written" in str(info.value)
    assert killed
    # The producer stopped soon after: bounded queues, no read-ahead of the (endless) input.
    assert consumed < 20_000 + STREAMS * (pstream._QUEUE_BATCHES + 2) * pstream._BATCH + 10_000
    assert prepared(dsn) == []
    assert db2.execute("SELECT count(*) FROM object") == [(0,)]
    # The pool replaced the dead connection: the next parallel call works.
    assert db2.query(Object).bulk_insert(({"oid": f"o{i}"} for i in range(5000)), parallel=STREAMS) == 5000


def test_the_callers_iterable_raising_rolls_everything_back(db2: SQLConnection, dsn: str) -> None:
    def failing() -> Iterator[dict[str, Any]]:
        for i in range(10_000):
            yield {"oid": f"o{i}"}
        raise ValueError("the input broke")

    with pytest.raises(ValueError, match="the input broke"):
        db2.query(Object).bulk_insert(failing(), parallel=STREAMS)
    assert db2.execute("SELECT count(*) FROM object") == [(0,)]
    assert prepared(dsn) == []


def test_server_restart_mid_call_then_the_retry_lands_once(cluster: Cluster) -> None:
    cluster.allow_prepared(16)
    cluster.reset()
    db = connected(cluster.dsn)
    restarted = threading.Event()

    def restarting() -> Iterator[dict[str, Any]]:
        for i in range(40_000):
            if i == 15_000:
                cluster.server.stop("immediate")
                cluster.server.start()
                restarted.set()
            yield {"oid": f"o{i}", "ndet": i}

    try:
        with pytest.raises(ConnectionError):
            db.query(Object).bulk_insert(restarting(), parallel=STREAMS)
        assert restarted.is_set()
        cluster.server.wait_ready()
        assert prepared(cluster.dsn) == []
        assert scalar(cluster.dsn, "SELECT count(*) FROM object") == 0
        rows = [{"oid": f"o{i}", "ndet": i} for i in range(40_000)]
        assert db.query(Object).bulk_insert(rows, parallel=STREAMS) == 40_000
        assert db.query(Object).bulk_insert(rows, parallel=STREAMS) == 0
    finally:
        db.close()


# -- without prepared transactions ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["ignore", "update"])
def test_without_prepared_transactions_a_failed_commit_is_resumable(
    no2pc: tuple[SQLConnection, str], mode: Any
) -> None:
    db, dsn = no2pc
    rows = [{"oid": f"o{i}", "ndet": i} for i in range(3000)]
    victim = oids_of_stream(STREAMS - 1, 1)[0]  # its stream commits last: the others have committed by then
    poison(dsn, victim, wait_for_others=False)
    with pytest.raises(ConstraintError, match=r"poisoned row") as info:
        db.query(Object).bulk_insert(rows, on_conflict=mode, parallel=STREAMS)
    message = str(info.value)
    assert f"{STREAMS - 1} of its streams had committed" in message
    assert "running the same call again completes it" in message
    landed = scalar(dsn, "SELECT count(*) FROM object")
    assert 0 < landed < 3000  # really partial
    # The same call again completes it: every row exactly once.
    again = db.query(Object).bulk_insert(rows, on_conflict=mode, parallel=STREAMS)
    if mode == "ignore":
        assert again == 3000 - landed
    assert db.execute("SELECT count(*), sum(ndet), count(DISTINCT oid) FROM object") == [
        (3000, sum(range(3000)), 3000)
    ]
    assert prepared(dsn) == []


def test_without_prepared_transactions_a_failure_while_working_commits_nothing(
    no2pc: tuple[SQLConnection, str],
) -> None:
    db, dsn = no2pc
    rows, bad = rows_with_bad_row_in_stream(stream=2, position=3000, total_per_stream=5000)
    with pytest.raises(DataError) as info:
        db.query(Object).bulk_insert(rows, parallel=STREAMS)
    assert info.value.row == bad and "nothing was written" in str(info.value)
    assert scalar(dsn, "SELECT count(*) FROM object") == 0
    rows[bad]["ndet"] = 1
    assert db.query(Object).bulk_insert(rows, on_conflict="update", parallel=STREAMS) == len(rows)
    assert db.query(Object).bulk_insert(rows, parallel=STREAMS) == 0


def test_without_prepared_transactions_duplicates_keep_their_order(no2pc: tuple[SQLConnection, str]) -> None:
    db, _dsn = no2pc
    db.query(Object).bulk_insert(far_apart_duplicates(), parallel=STREAMS)
    assert dict(db.execute("SELECT oid, ndet FROM object")) == {f"k{i}": i for i in range(3000)}
    db.query(Object).bulk_insert(far_apart_duplicates(), on_conflict="update", parallel=STREAMS)
    assert dict(db.execute("SELECT oid, ndet FROM object")) == {f"k{i}": 20_000 + i for i in range(3000)}


# -- parallel=1 and parallel=3 agree -------------------------------------------------------------------------

_ROWS = st.lists(
    st.fixed_dictionaries(
        {"oid": st.sampled_from([f"p{i}" for i in range(12)])},
        optional={
            "ndet": st.one_of(st.none(), st.integers(-5, 5)),
            "meanra": st.one_of(st.none(), st.floats(0, 10, allow_nan=False)),
            "step_id_corr": st.one_of(st.none(), st.sampled_from(["a", "b"])),
        },
    ),
    max_size=30,
)
_EXISTING = st.lists(st.sampled_from([f"p{i}" for i in range(12)]), unique=True, max_size=5)


@pytest.mark.parametrize("mode", ["ignore", "error", "update"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_ROWS, existing=_EXISTING)
def test_property_parallel_gives_the_table_of_one_stream(
    db2: SQLConnection, dsn: str, mode: Any, rows: list[dict[str, Any]], existing: list[str]
) -> None:
    def load(parallel: int) -> tuple[Any, list[tuple[Any, ...]]]:
        db2.execute("TRUNCATE object CASCADE")
        db2.query(Object).bulk_insert([{"oid": o, "ndet": 100, "meanra": 99.0} for o in existing])
        try:
            result: Any = db2.query(Object).bulk_insert(rows, on_conflict=mode, parallel=parallel)
        except DbpError as exc:
            result = type(exc)
        return result, objects(dsn)

    one, table_one = load(1)
    many, table_many = load(STREAMS)
    assert table_many == table_one
    if mode != "update":  # "update" counts a key once per run of rows naming the same columns, per stream
        assert many == one
    assert prepared(dsn) == []


def test_stream_of_is_the_engines_rule() -> None:
    """The helpers above predict the dealing: check them against the engine's own key function."""
    from dbplugins._copy.checker import _checker
    from dbplugins._types.schema import table_of

    key = pcall._key_function(_checker(table_of(Object)))
    assert key is not None
    for oid in (f"x{i}" for i in range(100)):
        assert key({"oid": oid}) % STREAMS == stream_of(oid)
        assert key(Object(oid=oid)) % STREAMS == stream_of(oid)
    assert key({"ndet": 1}) == 0  # no key: stream 0, whose checker names the error
    assert key(uuid.uuid4()) == 0
    # detection's key (candid, oid) is dealt by oid, its foreign key to object: an object's rows meet in a
    # stream
    assert pcall._deal_columns(table_of(Detection)) == ("oid",)
    dkey = pcall._key_function(_checker(table_of(Detection)))
    assert dkey is not None and dkey(det(1, "x")) == dkey(det(2, "x")) == hash("x")


def test_an_objects_detections_land_in_one_transaction(db2: SQLConnection) -> None:
    oids = [f"o{i}" for i in range(40)]
    db2.query(Object).bulk_insert([{"oid": o} for o in oids])
    rows = [det(i, oids[i % 40]) for i in range(8000)]
    assert db2.query(Detection).bulk_insert(rows, parallel=STREAMS) == 8000
    per_oid = db2.execute("SELECT oid, count(DISTINCT xmin::text) FROM detection GROUP BY oid")
    assert len(per_oid) == 40 and all(n == 1 for _, n in per_oid)
    assert db2.execute("SELECT count(DISTINCT xmin::text) FROM detection") == [(STREAMS,)]


def test_a_table_without_primary_key_gets_batches_in_turn(db2: SQLConnection) -> None:
    @model("pcopy_nokey", primary_key=[])
    @dataclass
    class NoKey:
        name: str
        n: int

    db2.execute("CREATE TABLE pcopy_nokey (name varchar NOT NULL, n integer NOT NULL)")
    rows = [{"name": "a", "n": i} for i in range(3 * pstream._BATCH + 5)]
    assert db2.query(NoKey).bulk_insert(rows, parallel=STREAMS) == len(rows)
    assert db2.execute("SELECT count(*), sum(n), count(DISTINCT xmin::text) FROM pcopy_nokey") == [
        (len(rows), sum(range(len(rows))), STREAMS)
    ]
    with pytest.raises(DbpError, match="needs a primary key"):
        db2.query(NoKey).bulk_insert(rows, on_conflict="update", parallel=STREAMS)
    rows[pstream._BATCH + 7] = {"name": None, "n": 1}
    with pytest.raises(DbpError) as info:
        db2.query(NoKey).bulk_insert(rows, parallel=STREAMS)
    assert info.value.row == pstream._BATCH + 7 and info.value.column == "name"


def test_a_users_model_with_quoted_names_through_staging(db2: SQLConnection) -> None:
    @model("PCopy Weird", primary_key=["Id"])
    @dataclass
    class Weird:
        Id: int
        select: str | None = None

    db2.execute('CREATE TABLE "PCopy Weird" ("Id" integer PRIMARY KEY, "select" varchar)')
    q = db2.query(Weird)
    assert q.bulk_insert([{"Id": i, "select": "x"} for i in range(0, 6000, 2)], parallel=2) == 3000
    assert q.bulk_insert([{"Id": i} for i in range(6000)], parallel=2) == 3000  # staging: keys exist
    assert q.bulk_insert(
        [{"Id": i, "select": "y"} for i in range(0, 6000, 3)], on_conflict="update", parallel=2
    )
    got = dict(db2.execute('SELECT "Id", "select" FROM "PCopy Weird"'))
    assert got == {i: ("y" if i % 3 == 0 else "x" if i % 2 == 0 else None) for i in range(6000)}


def test_a_blocked_stream_stalls_the_reading_of_the_input(db2: SQLConnection, dsn: str) -> None:
    """A key held uncommitted by another session blocks one stream's COPY on the server: the input is then
    read only a bounded way ahead (the stream's queue fills and the dealing waits), not to its end."""
    total = 400_000
    consumed = 0
    stalled_at: list[int] = []

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal consumed
        for i in range(total):
            consumed = i
            yield {"oid": f"o{i}"}

    holder = psycopg.connect(dsn)
    holder.execute("INSERT INTO object (oid) VALUES ('o0')")  # o0's stream waits for this transaction

    def watch() -> None:
        """Wait for the reading to stall (no progress for 1 s), note where, then let the blocked stream go."""
        try:
            last, still = -1, 0.0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and consumed < total - 1:
                time.sleep(0.1)
                still = still + 0.1 if consumed == last else 0.0
                last = consumed
                if still >= 1.0 and consumed > 0:
                    stalled_at.append(consumed)
                    break
        finally:
            holder.rollback()
            holder.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert db2.query(Object).bulk_insert(rows(), on_conflict="error", parallel=STREAMS) == total
    finally:
        watcher.join()
    assert stalled_at and stalled_at[0] < 150_000, stalled_at
    assert db2.execute("SELECT count(*) FROM object") == [(total,)]
    assert prepared(dsn) == []


def test_a_stream_waiting_for_a_lock_gives_up_naming_it(
    db2: SQLConnection, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every wait is bounded: a stream waits at most _STREAM_LOCK_WAIT for a lock, then the call fails."""
    monkeypatch.setattr(pstream, "_STREAM_LOCK_WAIT", "1s")
    with psycopg.connect(dsn) as holder:  # holds o0 uncommitted until the end of the block
        holder.execute("INSERT INTO object (oid) VALUES ('o0')")
        for mode in ("ignore", "update"):
            with pytest.raises(DbpError, match="lock timeout"):
                db2.query(Object).bulk_insert(({"oid": f"o{i}"} for i in range(20_000)), on_conflict=mode,
                                              parallel=STREAMS)
        holder.rollback()
    assert db2.execute("SELECT count(*) FROM object") == [(0,)]
    assert prepared(dsn) == []
