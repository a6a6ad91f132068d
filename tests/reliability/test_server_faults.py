"""Server faults: the PostgreSQL server really stops (``pg_ctl stop -m immediate``) or kills our backends.

Every test runs on ``private_server``, this test run's own embedded server, and leaves it running. The
guarantees:

* calls made while the server is down raise a ``dbplugins.ConnectionError`` within the pool timeout (no hang);
* the same ``SQLConnection`` (the same pool object) serves again once the server is back, without being
  recreated;
* nothing partial is committed: a COPY cut by the crash leaves no row, and a worker that retries its failed
  batches (``on_conflict="ignore"``, ``get_or_create``) ends with exactly the expected rows, none lost or
  doubled;
* after ``pg_terminate_backend`` on every pooled connection, the very next call succeeds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sample_rows import detection_row, object_row

from dbplugins import ConnectionError, DbpError, SQLConnection
from dbplugins.models import Detection, Object

from .conftest import (
    ADMIN_APP,
    admin,
    assert_pool_healthy,
    count,
    dbname_of,
    ensure_running,
    other_backends,
    scalar,
    sizes,
    wait_until,
)

POOL_TIMEOUT = 2.0
# "Did not hang": a failing call returns within the pool timeout plus this much (connect attempts, pg_ctl
# noise).
SLACK = 8.0


@pytest.fixture
def fdb(private_dsn: str, private_server: Any) -> Iterator[SQLConnection]:
    """An SQLConnection on the private server with a short pool timeout; the server is running afterwards."""
    db = SQLConnection()
    db.connect(dsn=private_dsn, min_size=2, max_size=4, timeout=POOL_TIMEOUT, reconnect_timeout=300)
    assert db.pool is not None
    db.pool.wait(10)
    try:
        yield db
    finally:
        ensure_running(private_server)
        db.close()


def timed(call: Callable[[], Any]) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - the caller inspects it
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


def retry(call: Callable[[], Any], deadline: float, failures: list[tuple[type[BaseException], float]]) -> Any:
    """Call until it succeeds; every failure must be a ConnectionError that did not hang."""
    while True:
        start = time.monotonic()
        try:
            return call()
        except DbpError as exc:
            took = time.monotonic() - start
            assert isinstance(exc, ConnectionError), f"not a connection error: {type(exc).__name__}: {exc}"
            assert took < POOL_TIMEOUT + SLACK, f"a call hung {took:.1f} s during the outage"
            failures.append((type(exc), took))
            assert time.monotonic() < deadline, "the pool did not recover in time"
            time.sleep(0.05)


# -- calls during an outage ----------------------------------------------------------------------------------


def test_every_call_fails_fast_while_down_and_the_same_pool_recovers(
    fdb: SQLConnection, private_server: Any, private_dsn: str
) -> None:
    pool = fdb.pool
    obj, created = fdb.query(Object).get_or_create(filter_by={"oid": "before"}, ndet=1)
    assert created
    assert fdb.query(Detection).bulk_insert([detection_row(1, "before")]) == 1

    private_server.stop("immediate")
    calls: dict[str, Callable[[], Any]] = {
        "execute": lambda: fdb.execute("SELECT 1"),
        "get_or_create": lambda: fdb.query(Object).get_or_create(filter_by={"oid": "down"}, ndet=1),
        "get_or_create_many": lambda: fdb.query(Object).get_or_create_many([object_row("down2")]),
        "bulk_insert": lambda: fdb.query(Detection).bulk_insert([detection_row(2, "before")]),
        "find": lambda: fdb.query(Object).find(filter_by={"oid": "before"}, paginate=False),
        "update": lambda: fdb.query().update(obj, {"ndet": 5}),
    }
    for name, call in calls.items():
        exc, took = timed(call)
        assert isinstance(exc, ConnectionError), f"{name} raised {type(exc).__name__}: {exc}"
        assert took < POOL_TIMEOUT + SLACK, f"{name} hung for {took:.1f} s"
        if fdb.current_session().in_transaction:  # update opens the session transaction: give it back
            fdb.current_session().rollback()

    ensure_running(private_server)
    failures: list[tuple[type[BaseException], float]] = []
    deadline = time.monotonic() + 40
    assert retry(lambda: fdb.execute("SELECT 2"), deadline, failures) == [(2,)]
    assert fdb.pool is pool  # recovered in place, not recreated
    assert fdb.query(Object).get_or_create(filter_by={"oid": "after"}, ndet=1)[1] is True
    assert fdb.query(Detection).bulk_insert([detection_row(3, "after")]) == 1
    # Nothing written during the outage; everything written around it.
    assert count(private_dsn, "object") == 2 and count(private_dsn, "detection") == 2
    assert scalar(private_dsn, "SELECT ndet FROM object WHERE oid = 'before'") == 1
    assert_pool_healthy(fdb, private_dsn)


@pytest.mark.parametrize("rows", sizes(20_000, 300_000))
def test_crash_in_the_middle_of_a_copy_commits_nothing(
    fdb: SQLConnection, private_server: Any, private_dsn: str, rows: int
) -> None:
    fdb.query(Object).get_or_create(filter_by={"oid": "copy"})
    half = rows // 2

    def crashing() -> Iterator[dict[str, Any]]:
        for i in range(rows):
            if i == half:
                private_server.stop("immediate")  # the COPY is streaming: the server dies under it
            yield detection_row(i, "copy")

    exc, took = timed(lambda: fdb.query(Detection).bulk_insert(crashing()))
    assert isinstance(exc, ConnectionError), f"{type(exc).__name__}: {exc}"
    assert took < 120
    ensure_running(private_server)
    failures: list[tuple[type[BaseException], float]] = []
    deadline = time.monotonic() + 40
    retry(lambda: fdb.execute("SELECT 1"), deadline, failures)
    assert count(private_dsn, "detection") == 0  # all or nothing: the first half did not survive
    # The retried batch lands exactly once.
    assert fdb.query(Detection).bulk_insert(detection_row(i, "copy") for i in range(rows)) == rows
    assert fdb.query(Detection).bulk_insert(detection_row(i, "copy") for i in range(rows)) == 0
    assert count(private_dsn, "detection") == rows
    assert_pool_healthy(fdb, private_dsn)


def test_crash_inside_an_explicit_transaction_rolls_back(
    fdb: SQLConnection, private_server: Any, private_dsn: str
) -> None:
    with pytest.raises(ConnectionError), fdb.transaction():
        fdb.query(Object).get_or_create(filter_by={"oid": "tx1"})
        fdb.query(Detection).bulk_insert([detection_row(1, "tx1")])
        private_server.stop("immediate")
        fdb.query(Object).get_or_create(filter_by={"oid": "tx2"})
    assert not fdb.current_session().in_transaction
    ensure_running(private_server)
    retry(lambda: fdb.execute("SELECT 1"), time.monotonic() + 40, [])
    assert count(private_dsn, "object") == 0 and count(private_dsn, "detection") == 0
    with fdb.transaction():
        fdb.query(Object).get_or_create(filter_by={"oid": "tx1"})
        fdb.query(Detection).bulk_insert([detection_row(1, "tx1")])
    assert count(private_dsn, "object") == 1 and count(private_dsn, "detection") == 1
    assert_pool_healthy(fdb, private_dsn)


# -- an ingestion worker that retries through outages ------------------------------------------------------


OBJECTS_PER_BATCH = 5
DETECTIONS_PER_BATCH = 200


def batch(b: int) -> tuple[list[str], list[dict[str, Any]]]:
    oids = [f"ZTF{b:05d}o{k}" for k in range(OBJECTS_PER_BATCH)]
    dets = [detection_row(b * 10_000 + j, oids[j % OBJECTS_PER_BATCH]) for j in range(DETECTIONS_PER_BATCH)]
    return oids, dets


@pytest.mark.parametrize(("batches", "outages"), sizes((40, 2), (1500, 8)))
def test_retrying_worker_loses_and_duplicates_nothing_across_restarts(
    fdb: SQLConnection, private_server: Any, private_dsn: str, batches: int, outages: int
) -> None:
    """Outages alternate: one lands inside a COPY (the row generator stops the server half-way through the
    batch), the next between calls (a thread stops it while the worker runs get_or_create). The worker retries
    whatever fails until it succeeds; the thread restarts the server once the worker has met the outage
    twice."""
    pool = fdb.pool
    done = 0
    failures: list[tuple[type[BaseException], float]] = []
    created = 0
    inserted = 0
    stop_at = [batches * (k + 1) // (outages + 1) for k in range(outages)]
    in_copy = set(stop_at[0::2])
    crashed: set[int] = set()
    down = threading.Event()
    seen_at_stop = [0]
    fault_errors: list[BaseException] = []
    finished = threading.Event()

    def stop() -> None:
        seen_at_stop[0] = len(failures)
        private_server.stop("immediate")
        down.set()

    def faults() -> None:
        try:
            for at in stop_at:
                if at not in in_copy:
                    while done < at and not finished.is_set():
                        time.sleep(0.01)
                    if not finished.is_set():
                        stop()
                while not down.is_set() and not finished.is_set():
                    time.sleep(0.01)
                if finished.is_set():
                    return
                limit = time.monotonic() + 6  # down until the worker met it twice, or a bounded while
                while len(failures) < seen_at_stop[0] + 2 and time.monotonic() < limit:
                    time.sleep(0.02)
                ensure_running(private_server)
                down.clear()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            fault_errors.append(exc)

    def rows_of(b: int, dets: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for i, row in enumerate(dets):
            if b in in_copy and b not in crashed and i == len(dets) // 2:
                crashed.add(b)
                stop()  # the COPY is half sent
            yield row

    thread = threading.Thread(target=faults, daemon=True)
    thread.start()
    deadline = time.monotonic() + (50 if batches < 100 else 1200)
    try:
        for b in range(batches):
            oids, dets = batch(b)
            for oid in oids:

                def create(oid: str = oid) -> tuple[Object, bool]:
                    return fdb.query(Object).get_or_create(filter_by={"oid": oid}, ndet=1)

                _, was_created = retry(create, deadline, failures)
                created += bool(was_created)

            def insert(b: int = b, dets: list[dict[str, Any]] = dets) -> int:
                return fdb.query(Detection).bulk_insert(rows_of(b, dets), on_conflict="ignore")

            inserted += retry(insert, deadline, failures)
            done = b + 1
    finally:
        finished.set()
        thread.join(60)
        ensure_running(private_server)
    assert not fault_errors, fault_errors
    assert crashed == in_copy and len(failures) >= 2 * outages, (crashed, failures)
    assert fdb.pool is pool

    # Exactly the expected rows: none lost, none doubled.
    expected_oids = {oid for b in range(batches) for oid in batch(b)[0]}
    expected_dets = {(d["candid"], d["oid"]) for b in range(batches) for d in batch(b)[1]}
    with admin(private_dsn) as conn:
        oids = [r[0] for r in conn.execute("SELECT oid FROM object").fetchall()]
        stored_dets = [(r[0], r[1]) for r in conn.execute("SELECT candid, oid FROM detection").fetchall()]
    assert len(oids) == len(set(oids)) and set(oids) == expected_oids
    assert len(stored_dets) == len(set(stored_dets)) and set(stored_dets) == expected_dets
    # What the worker was told adds up: a call that failed after its commit reached the server can hide at
    # most its own rows, and nothing is reported twice.
    assert created <= len(expected_oids) and inserted <= len(expected_dets)
    assert created >= len(expected_oids) - len(failures)
    assert inserted >= len(expected_dets) - DETECTIONS_PER_BATCH * len(failures)
    assert_pool_healthy(fdb, private_dsn)


# -- killed backends -----------------------------------------------------------------------------------------


def terminate_all(dsn: str) -> int:
    """Terminate every client backend of the database; wait for those to exit; return how many there were.

    Only the terminated ones are waited for: the pool may already be opening new connections in the background
    (to replace ones it found broken), and those are not the test's business here.
    """
    with admin(dsn) as conn:
        rows = conn.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            " AND application_name IS DISTINCT FROM %s",  # not the tests' own (admin) connections
            (dbname_of(dsn), ADMIN_APP),
        ).fetchall()
    terminated = {int(r[0]) for r in rows}

    def exited() -> bool:
        return not terminated & {pid for pid, _, _ in other_backends(dsn)}

    wait_until(exited, 10, "the terminated backends to exit")
    return len(terminated)


@pytest.mark.parametrize("rounds", sizes(3, 40))
def test_terminating_every_pooled_backend_then_the_next_call_succeeds(private_dsn: str, rounds: int) -> None:
    db = SQLConnection()
    db.connect(dsn=private_dsn, min_size=4, max_size=4, timeout=POOL_TIMEOUT)
    try:
        assert db.pool is not None
        pool = db.pool
        for r in range(rounds):
            pool.wait(10)
            assert terminate_all(private_dsn) == 4
            # No retry loop: the very next call of each kind must succeed.
            obj, created = db.query(Object).get_or_create(filter_by={"oid": f"t{r}"}, ndet=1)
            assert created
            assert terminate_all(private_dsn) >= 1
            assert db.query(Detection).bulk_insert([detection_row(r, f"t{r}")]) == 1
            terminate_all(private_dsn)
            assert [c for _, c in db.query(Object).get_or_create_many([object_row(f"t{r}")])] == [False]
            terminate_all(private_dsn)
            db.query().update(obj, {"ndet": 2})
            db.current_session().commit()
            terminate_all(private_dsn)
            assert len(db.query(Object).find(filter_by={"oid": f"t{r}"}, paginate=False)) == 1
        assert count(private_dsn, "object") == rounds and count(private_dsn, "detection") == rounds
        assert scalar(private_dsn, "SELECT count(*) FROM object WHERE ndet = 2") == rounds
        assert db.pool is pool
        assert_pool_healthy(db, private_dsn)
    finally:
        db.close()


def test_backend_killed_inside_a_transaction_raises_then_the_session_recovers(private_dsn: str) -> None:
    db = SQLConnection()
    db.connect(dsn=private_dsn, min_size=2, max_size=2, timeout=POOL_TIMEOUT)
    try:
        session = db.current_session()
        session.begin()  # an implicit transaction: only commit() or rollback() ends it
        db.execute("INSERT INTO object (oid) VALUES ('k1')")
        obj = db.query(Object).find_one(filter_by={"oid": "k1"})
        db.query().update(obj, {"ndet": 3})
        assert session.in_transaction
        terminate_all(private_dsn)
        with pytest.raises(ConnectionError):
            db.execute("SELECT 1")
        session.rollback()  # on a dead connection: must not raise, must give the connection back
        assert count(private_dsn, "object") == 0
        assert db.query(Object).get_or_create(filter_by={"oid": "k1"})[1] is True
        assert count(private_dsn, "object") == 1
        assert_pool_healthy(db, private_dsn)
    finally:
        db.close()
