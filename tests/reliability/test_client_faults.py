"""Client faults: a failing input iterable, a process killed mid-COPY, statement and lock timeouts, pool
exhaustion.

Each fault leaves nothing half-written (zero rows of the failed call), the pool healthy (every connection
back, no backend left in a transaction, the next call works) and surfaces a clear ``DbpError`` (or the
caller's own error).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from sample_rows import detection_row, object_row

from dbplugins import ConnectionError, DbpError, PoolTimeoutError, SQLConnection
from dbplugins.models import Detection, Object

from .conftest import (
    HERE,
    admin,
    assert_pool_healthy,
    count,
    exc_chain,
    other_backends,
    sizes,
    wait_until,
)


class Boom(Exception):
    """The caller's own failure, raised by its row iterable."""


def connect(dsn: str, **options: Any) -> SQLConnection:
    db = SQLConnection()
    db.connect(dsn=dsn, **{"min_size": 1, "max_size": 4, "timeout": 5.0, **options})
    return db


@pytest.fixture
def cdb(dsn: str) -> Iterator[SQLConnection]:
    db = connect(dsn)
    try:
        yield db
    finally:
        db.close()


def raising_rows(n: int, oid: str) -> Iterator[dict[str, Any]]:
    for i in range(n + 10):
        if i == n:
            raise Boom(f"input broke at row {i}")
        yield detection_row(i, oid)


def assert_caller_error(exc: BaseException | None) -> None:
    """The iterable's own exception comes back: as itself, or as a DbpError raised from it."""
    assert exc is not None, "bulk_insert swallowed the iterable's exception"
    assert isinstance(exc, (Boom, DbpError)), f"{type(exc).__name__}: {exc}"
    assert any(isinstance(e, Boom) for e in exc_chain(exc)), "the caller's exception is lost from the chain"


def public_tables(dsn: str) -> set[str]:
    with admin(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


# -- the input fails -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fail_at", sizes(30_000, 500_000))
@pytest.mark.parametrize("mode", ["ignore", "error", "update"])
def test_iterable_raising_at_row_n_leaves_zero_rows(
    cdb: SQLConnection, dsn: str, fail_at: int, mode: Literal["ignore", "error", "update"]
) -> None:
    cdb.query(Object).get_or_create(filter_by={"oid": "boom"})
    tables = public_tables(dsn)
    exc: BaseException | None = None
    try:
        # Small chunks: several whole chunks have gone to the server before the input breaks.
        cdb.query(Detection).bulk_insert(raising_rows(fail_at, "boom"), on_conflict=mode, chunk_size=5000)
    except BaseException as e:  # noqa: BLE001
        exc = e
    assert_caller_error(exc)
    assert count(dsn, "detection") == 0
    assert public_tables(dsn) == tables  # no staging table left behind
    assert_pool_healthy(cdb, dsn)
    assert cdb.query(Detection).bulk_insert(detection_row(i, "boom") for i in range(1000)) == 1000


def test_iterable_raising_inside_a_transaction_undoes_only_that_call(cdb: SQLConnection, dsn: str) -> None:
    with cdb.transaction():
        cdb.query(Object).get_or_create(filter_by={"oid": "a"})
        with pytest.raises((Boom, DbpError)):
            cdb.query(Detection).bulk_insert(raising_rows(5000, "a"))
        cdb.query(Object).get_or_create(filter_by={"oid": "b"})
        cdb.query(Detection).bulk_insert([detection_row(1, "b")])
    assert count(dsn, "object") == 2 and count(dsn, "detection") == 1
    assert_pool_healthy(cdb, dsn)


# -- the process dies ----------------------------------------------------------------------------------------

_CHILD = r"""
import sys, time
from dbplugins import SQLConnection
from dbplugins.models import Detection
from sample_rows import detection_row

dsn, pause_at = sys.argv[1], int(sys.argv[2])
db = SQLConnection()
db.connect(dsn=dsn, min_size=1, max_size=1)

def rows():
    for i in range(pause_at * 2):
        if i == pause_at:
            print("streaming", flush=True)
            time.sleep(600)  # the parent kills us here, in the middle of the COPY
        yield detection_row(i, "kill")

db.query(Detection).bulk_insert(rows(), chunk_size=5000)  # several chunks done before the pause
print("finished", flush=True)
"""


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the child did not report in time"
    return proc.stdout.readline().strip()


@pytest.mark.parametrize("pause_at", sizes(22_500, 500_000))
def test_process_killed_mid_copy_leaves_nothing_and_the_server_healthy(
    cdb: SQLConnection, dsn: str, pause_at: int
) -> None:
    cdb.query(Object).get_or_create(filter_by={"oid": "kill"})
    tables = public_tables(dsn)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, dsn, str(pause_at)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert read_line(proc, 120 if pause_at > 100_000 else 45) == "streaming"

        def copying() -> bool:
            return any(
                state == "active" and (q or "").lstrip().upper().startswith("COPY")
                for _, state, q in other_backends(dsn)
            )

        wait_until(copying, 10, "the child's COPY to show in pg_stat_activity")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    # The server notices the lost client, aborts the COPY and ends the backend.
    wait_until(lambda: not [b for b in other_backends(dsn) if b[1] != "idle"], 15, "the orphaned COPY to end")
    assert count(dsn, "detection") == 0
    assert public_tables(dsn) == tables
    with admin(dsn) as conn, conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '2s'")
        conn.execute("LOCK TABLE detection, object IN ACCESS EXCLUSIVE MODE")  # no lock left behind
    assert cdb.query(Detection).bulk_insert(detection_row(i, "kill") for i in range(pause_at)) == pause_at
    assert count(dsn, "detection") == pause_at
    assert_pool_healthy(cdb, dsn)


# -- statement_timeout and lock_timeout ----------------------------------------------------------------------


def with_options(dsn: str, options: str) -> str:
    return make_conninfo(dsn, options=options)


def assert_clear(exc: BaseException | None, sqlstate: str, words: str, bound: float, took: float) -> DbpError:
    assert isinstance(exc, DbpError), f"{type(exc).__name__}: {exc}"
    assert not isinstance(exc, ConnectionError), f"a timeout is not a lost connection: {exc!r}"
    assert exc.sqlstate == sqlstate, (exc.sqlstate, str(exc))
    assert words in str(exc).lower(), str(exc)
    assert took < bound, f"took {took:.1f} s"
    return exc


def run(call: Callable[[], Any]) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        call()
    except BaseException as exc:  # noqa: BLE001
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


def slow_rows(n: int, oid: str, pause_at: int, pause: float) -> Iterator[dict[str, Any]]:
    for i in range(n):
        if i == pause_at:
            time.sleep(pause)
        yield detection_row(i, oid)


def test_statement_timeout_from_the_dsn(dsn: str) -> None:
    db = connect(with_options(dsn, "-c statement_timeout=300"))
    try:
        assert db.execute("SHOW statement_timeout") == [("300ms",)]
        exc, took = run(lambda: db.execute("SELECT pg_sleep(10)"))
        assert_clear(exc, "57014", "statement timeout", 8, took)
        assert_pool_healthy(db, dsn)
        db.query(Object).get_or_create(filter_by={"oid": "st"})
        # A COPY whose input stalls past the timeout is cancelled and writes nothing.
        exc, took = run(lambda: db.query(Detection).bulk_insert(slow_rows(3000, "st", 1000, 1.0)))
        assert_clear(exc, "57014", "statement timeout", 30, took)
        assert count(dsn, "detection") == 0
        assert_pool_healthy(db, dsn)
        assert db.query(Detection).bulk_insert(detection_row(i, "st") for i in range(3000)) == 3000
    finally:
        db.close()


@pytest.mark.parametrize("scope", ["SET LOCAL", "SET"])
def test_statement_timeout_set_in_a_transaction(cdb: SQLConnection, dsn: str, scope: str) -> None:
    cdb.query(Object).get_or_create(filter_by={"oid": "st"})
    exc: BaseException | None = None
    start = time.monotonic()
    try:
        with cdb.transaction():
            cdb.query(Detection).bulk_insert([detection_row(-1, "st")])
            cdb.execute(f"{scope} statement_timeout = '200ms'")
            cdb.query(Detection).bulk_insert(slow_rows(3000, "st", 1000, 1.0))
    except BaseException as e:  # noqa: BLE001
        exc = e
    assert_clear(exc, "57014", "statement timeout", 30, time.monotonic() - start)
    assert count(dsn, "detection") == 0  # the whole transaction is undone
    assert_pool_healthy(cdb, dsn)
    # The setting died with the transaction: no pooled connection carries it.
    assert cdb.pool is not None
    for _ in range(cdb.pool.max_size):
        assert cdb.execute("SHOW statement_timeout") == [("0",)]


@pytest.fixture
def holder(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A foreign connection that takes locks the library must wait for."""
    conn = psycopg.connect(dsn)
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


@pytest.mark.parametrize("how", ["dsn", "SET LOCAL"])
def test_lock_timeout(dsn: str, holder: psycopg.Connection[Any], how: str) -> None:
    db = connect(with_options(dsn, "-c lock_timeout=300") if how == "dsn" else dsn)
    try:
        obj, _ = db.query(Object).get_or_create(filter_by={"oid": "held"}, ndet=1)
        before = (count(dsn, "object"), count(dsn, "detection"))

        def guarded(call: Callable[[], Any]) -> Callable[[], Any]:
            if how == "dsn":
                return call

            def in_tx() -> Any:
                with db.transaction():
                    db.execute("SET LOCAL lock_timeout = '300ms'")
                    return call()

            return in_tx

        holder.execute("LOCK TABLE object, detection IN ACCESS EXCLUSIVE MODE")
        calls: dict[str, Callable[[], Any]] = {
            "get_or_create": lambda: db.query(Object).get_or_create(filter_by={"oid": "new"}),
            "get_or_create_many": lambda: db.query(Object).get_or_create_many(
                [object_row("n1"), object_row("n2")]
            ),
            "bulk_insert": lambda: db.query(Detection).bulk_insert(
                detection_row(i, "held") for i in range(5000)
            ),
            "find": lambda: db.query(Object).find(filter_by={"oid": "held"}, paginate=False),
        }
        for call in calls.values():
            exc, took = run(guarded(call))
            assert_clear(exc, "55P03", "lock", 10, took)
            assert_pool_healthy(db, dsn, exclude=[holder.info.backend_pid])
        holder.rollback()

        holder.execute("SELECT * FROM object WHERE oid = 'held' FOR UPDATE")  # a row lock, for update()

        def update() -> None:
            db.query().update(obj, {"ndet": 99})
            db.current_session().commit()

        exc, took = run(guarded(update))
        assert_clear(exc, "55P03", "lock", 10, took)
        db.current_session().rollback()
        holder.rollback()

        assert (count(dsn, "object"), count(dsn, "detection")) == before  # nothing half-written
        assert_pool_healthy(db, dsn)
        for call in calls.values():  # the locks are gone: everything works again
            guarded(call)()
        update()
        assert count(dsn, "detection") == 5000
        held = db.query(Object).find_one(filter_by={"oid": "held"})
        assert held is not None and held.ndet == 99
    finally:
        db.close()


# -- pool exhaustion -----------------------------------------------------------------------------------------


def hold(db: SQLConnection, taken: threading.Barrier, release: threading.Event) -> None:
    """Hold a pooled connection (this thread's session transaction) until released."""
    session = db.current_session()
    session.begin()
    taken.wait(10)
    release.wait(30)
    session.rollback()


@pytest.mark.parametrize("rounds", sizes(3, 50))
def test_pool_exhaustion_raises_pool_timeout_and_the_pool_recovers(dsn: str, rounds: int) -> None:
    db = SQLConnection()
    db.connect(dsn=dsn, min_size=1, max_size=2, timeout=0.5, use_scoped=True)
    try:
        db.query(Object).get_or_create(filter_by={"oid": "px"})
        obj = db.query(Object).find_one(filter_by={"oid": "px"})

        def calls_of_round(r: int) -> dict[str, Callable[[], Any]]:
            return {
                "execute": lambda: db.execute("SELECT 1"),
                "get_or_create": lambda: db.query(Object).get_or_create(filter_by={"oid": f"p{r}"}),
                "get_or_create_many": lambda: db.query(Object).get_or_create_many([object_row(f"q{r}")]),
                "bulk_insert": lambda: db.query(Detection).bulk_insert([detection_row(r, "px")]),
                "find": lambda: db.query(Object).find(filter_by={"oid": "px"}, paginate=False),
                "update": lambda: db.query().update(obj, {"ndet": 7}),
            }

        for r in range(rounds):
            taken = threading.Barrier(3)
            release = threading.Event()
            holders = [threading.Thread(target=hold, args=(db, taken, release)) for _ in range(2)]
            for t in holders:
                t.start()
            taken.wait(10)
            try:
                for name, call in calls_of_round(r).items():
                    exc, took = run(call)
                    assert isinstance(exc, PoolTimeoutError), f"{name}: {type(exc).__name__}: {exc}"
                    assert took < 5, f"{name} waited {took:.1f} s on a 0.5 s pool timeout"
                    db.current_session().rollback()
            finally:
                release.set()
                for t in holders:
                    t.join(10)
            assert count(dsn, "object") == 1 and count(dsn, "detection") == 0
            assert_pool_healthy(db, dsn)
        assert db.query(Object).get_or_create(filter_by={"oid": "after"})[1] is True
        assert db.query(Detection).bulk_insert([detection_row(1, "after")]) == 1
        assert db.pool is not None and db.pool.get_stats().get("pool_size", 0) <= 2
    finally:
        db.close()
