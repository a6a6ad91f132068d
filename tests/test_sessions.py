"""Sessions and transactions under the interleavings issue 13 found: threads that end, rollback() inside a
block, a block after an uncommitted update(), a generator that reads while bulk_insert streams, sockets above
fd 1024."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from dbplugins import DbpError, SQLConnection
from dbplugins.models import Object

# -- helpers -------------------------------------------------------------------------------------------------


def committed(dsn: str, oid: str) -> int | None:
    """``ndet`` of object ``oid`` as another connection sees it (committed data), None when the row is
    absent."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT ndet FROM object WHERE oid = %s", (oid,)).fetchone()
    return None if row is None else int(row[0])


def oids(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT oid FROM object ORDER BY oid")]


def idle_in_transaction(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def run_in_thread(target: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Run ``target`` in a new thread; return its result or raise its exception; fail (never hang) on a
    hang."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = target()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"hung: the call did not return within {timeout:.0f} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


@pytest.fixture
def scoped(dsn: str) -> Iterator[SQLConnection]:
    db = SQLConnection()
    db.connect(dsn=dsn, use_scoped=True, min_size=1, max_size=4, timeout=10)
    db.query(Object).bulk_insert([{"oid": o, "ndet": 1} for o in ("A", "B", "C")])
    try:
        yield db
    finally:
        db.close()


def obj(db: SQLConnection, oid: str) -> Object:
    found: Object = db.query(Object).filter_by(oid=oid).one()
    return found


# -- 1. scoped sessions belong to one live thread ------------------------------------------------------------


def test_a_thread_that_ends_uncommitted_leaves_nothing_to_the_next_thread(
    scoped: SQLConnection, dsn: str
) -> None:
    """Thread 1 updates A and ends without committing; thread 2 updates B and commits. Only B is committed,
    and no connection stays "idle in transaction" (Python reuses thread idents: a registry keyed by them
    handed thread 1's open transaction to thread 2, which committed A with B)."""
    idents: list[int] = []

    def first() -> None:
        idents.append(threading.get_ident())
        scoped.query().update(obj(scoped, "A"), {"ndet": 111})
        assert scoped.current_session().in_transaction

    def second() -> None:
        idents.append(threading.get_ident())
        assert not scoped.current_session().in_transaction
        scoped.query().update(obj(scoped, "B"), {"ndet": 222})
        scoped.session.commit()  # type: ignore[union-attr]

    run_in_thread(first)
    assert idle_in_transaction(dsn) == 0  # rolled back when the thread ended (before join() returned)
    run_in_thread(second)
    assert committed(dsn, "A") == 1
    assert committed(dsn, "B") == 222
    assert idle_in_transaction(dsn) == 0


def test_many_short_threads_return_their_connections(scoped: SQLConnection, dsn: str) -> None:
    """More threads than pooled connections (4), each ending inside an uncommitted transaction: every one gets
    a connection, because each ended thread gave its own back."""
    for n in range(12):
        run_in_thread(lambda n=n: scoped.query().update(obj(scoped, "C"), {"ndet": 1000 + n}))  # type: ignore[misc]
    assert committed(dsn, "C") == 1
    assert idle_in_transaction(dsn) == 0


def test_a_thread_sees_its_own_session_while_others_run(scoped: SQLConnection, dsn: str) -> None:
    """Two live threads: each one's uncommitted update is its own; one commits, the other rolls back."""
    updated = threading.Barrier(2, timeout=60)

    def worker(oid: str, value: int, keep: bool) -> None:
        scoped.query().update(obj(scoped, oid), {"ndet": value})
        updated.wait()  # both transactions open at once
        if keep:
            scoped.session.commit()  # type: ignore[union-attr]
        else:
            scoped.session.rollback()  # type: ignore[union-attr]

    threads = [
        threading.Thread(target=worker, args=("A", 5, True)),
        threading.Thread(target=worker, args=("B", 6, False)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert committed(dsn, "A") == 5 and committed(dsn, "B") == 1


def test_scope_func_sessions_are_per_value(dsn: str) -> None:
    scope = ["x"]
    db = SQLConnection()
    db.connect(dsn=dsn, use_scoped=True, scope_func=lambda: scope[0], min_size=1, max_size=4, timeout=10)
    try:
        db.query(Object).bulk_insert([{"oid": "A", "ndet": 1}])
        db.query().update(obj(db, "A"), {"ndet": 7})
        scope[0] = "y"
        assert not db.current_session().in_transaction
        scope[0] = "x"
        assert db.current_session().in_transaction
        db.session.remove()  # type: ignore[union-attr]
        assert committed(dsn, "A") == 1 and idle_in_transaction(dsn) == 0
    finally:
        db.close()


# -- 2. nothing inside a transaction block commits or rolls back on its own ----------------------------------


def test_rollback_inside_a_block_is_refused_and_the_block_stays_transactional(
    db: SQLConnection, dsn: str
) -> None:
    """The issue's sequence: the refused rollback() changes nothing, the rest of the block stays in it, and
    the exception at the end undoes all of it (B and C used to be stored: the block ran on in autocommit)."""
    q = db.query(Object)
    with pytest.raises(RuntimeError, match="boom"), db.transaction():
        q.get_or_create(filter_by={"oid": "A"})
        with pytest.raises(DbpError, match=r"rollback\(\) inside 'with db.transaction\(\)'"):
            db.session.rollback()  # type: ignore[union-attr]
        q.get_or_create(filter_by={"oid": "B"})
        q.bulk_insert([{"oid": "C"}])
        raise RuntimeError("boom")
    assert oids(dsn) == []
    assert not db.current_session().in_transaction


def test_a_refused_rollback_leaves_the_block_to_commit_everything(db: SQLConnection, dsn: str) -> None:
    q = db.query(Object)
    with db.transaction():
        q.get_or_create(filter_by={"oid": "A"})
        with pytest.raises(DbpError):
            db.session.rollback()  # type: ignore[union-attr]
        with pytest.raises(DbpError):
            db.session.close()  # type: ignore[union-attr]
        with pytest.raises(DbpError):
            db.session.commit()  # type: ignore[union-attr]
        q.get_or_create(filter_by={"oid": "B"})
        assert oids(dsn) == []  # nothing committed inside the block
    assert oids(dsn) == ["A", "B"]


def test_rollback_inside_a_nested_block_is_refused_too(db: SQLConnection, dsn: str) -> None:
    with pytest.raises(DbpError), db.transaction():
        db.query(Object).get_or_create(filter_by={"oid": "A"})
        with db.transaction():
            db.session.rollback()  # type: ignore[union-attr]
    assert oids(dsn) == []


# -- 3. a block after an uncommitted update() ----------------------------------------------------------------


@pytest.fixture
def stored(db: SQLConnection) -> SQLConnection:
    db.query(Object).bulk_insert([{"oid": o, "ndet": 1} for o in ("A", "B")])
    return db


def test_a_block_after_an_uncommitted_update_commits_at_its_end(stored: SQLConnection, dsn: str) -> None:
    """The block joins the open implicit transaction and commits it with its own writes (it used to become a
    savepoint that committed nothing)."""
    stored.query().update(obj(stored, "A"), {"ndet": 10})
    with stored.transaction():
        stored.query().update(obj(stored, "B"), {"ndet": 20})
        stored.query(Object).bulk_insert([{"oid": "N", "ndet": 30}])
        assert committed(dsn, "B") == 1
    assert (committed(dsn, "A"), committed(dsn, "B"), committed(dsn, "N")) == (10, 20, 30)
    assert not stored.current_session().in_transaction
    assert idle_in_transaction(dsn) == 0


def test_a_failed_block_after_an_uncommitted_update_undoes_only_itself(
    stored: SQLConnection, dsn: str
) -> None:
    stored.query().update(obj(stored, "A"), {"ndet": 10})
    with pytest.raises(RuntimeError), stored.transaction():
        stored.query().update(obj(stored, "B"), {"ndet": 20})
        raise RuntimeError("boom")
    session = stored.current_session()
    assert session.in_transaction  # the earlier update is still pending, as before the block
    assert obj(stored, "A").ndet == 10 and obj(stored, "B").ndet == 1
    session.rollback()
    assert committed(dsn, "A") == 1 and committed(dsn, "B") == 1


# -- 5. a generator that reads while bulk_insert streams -----------------------------------------------------


def _copies(db: SQLConnection) -> Iterator[dict[str, Any]]:
    for o in db.query(Object).iter_keyset(per_page=1):
        yield {"oid": o.oid + "_c"}


def _created(db: SQLConnection) -> Iterator[dict[str, Any]]:
    for n in range(5):
        found, _ = db.query(Object).get_or_create(filter_by={"oid": f"G{n}"})
        yield {"oid": found.oid + "_c"}


@pytest.mark.parametrize("source", [_copies, _created], ids=["iter_keyset", "get_or_create"])
@pytest.mark.parametrize("on_conflict", ["ignore", "error", "update"])
def test_a_generator_reading_the_session_inside_a_block_raises_at_once(
    stored: SQLConnection, dsn: str, source: Callable[[SQLConnection], Iterator[Any]], on_conflict: str
) -> None:
    """Inside a transaction the COPY holds the session's connection: a read from the generator used to wait
    for its lock forever. Now a DbpError says why and what to do, and the block writes nothing."""

    def load() -> None:
        with stored.transaction():
            stored.query(Object).bulk_insert(source(stored), on_conflict=on_conflict)  # type: ignore[arg-type]

    with pytest.raises(DbpError, match=r"streaming rows into a COPY.*list\(") as info:
        run_in_thread(load)
    assert "bulk_insert into 'object'" in str(info.value)
    assert oids(dsn) == ["A", "B"]
    assert idle_in_transaction(dsn) == 0
    # The advice works: read first, then load inside the block.
    with stored.transaction():
        stored.query(Object).bulk_insert(list(source(stored)), on_conflict=on_conflict)  # type: ignore[arg-type]
    assert len(oids(dsn)) > 2


def test_a_generator_reading_the_session_outside_a_transaction_works(stored: SQLConnection, dsn: str) -> None:
    """Outside a transaction the reads borrow another pooled connection."""
    assert run_in_thread(lambda: stored.query(Object).bulk_insert(_copies(stored))) == 2
    assert oids(dsn) == ["A", "A_c", "B", "B_c"]


# -- 6. sockets whose file descriptor is 1024 or more --------------------------------------------------------

HIGH_FD_SCRIPT = textwrap.dedent(
    """
    import os, resource, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1500
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    keep = []
    fd = os.open(os.devnull, os.O_RDONLY)
    while fd < 1100:  # a worker with many open files: every new socket lands above select()'s limit of 1024
        keep.append(fd)
        fd = os.dup(fd)
    keep.append(fd)
    from dbplugins import SQLConnection
    from dbplugins.models import Object
    db = SQLConnection()
    db.connect(dsn=sys.argv[1], min_size=1, max_size=2, timeout=10)
    obj, created = db.query(Object).get_or_create(filter_by={"oid": "FD"}, ndet=1)
    assert created
    with db.pool.connection() as conn:
        assert conn.fileno() >= 1024, conn.fileno()
    assert db.query(Object).bulk_insert({"oid": f"F{i}"} for i in range(5000)) == 5000
    assert db.query(Object).bulk_insert({"oid": f"F{i}"} for i in range(4000, 9000)) == 4000
    assert db.query(Object).count() == 9001
    db.close()
    print("ok")
    """
)


def test_sockets_above_fd_1024_work(dsn: str) -> None:
    """``select.select`` refuses descriptors >= 1024: every pooled connection was judged dead
    (PoolTimeoutError) and bulk_insert leaked a ValueError. Run in a child process whose sockets all land
    above 1100."""
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 1200:
        pytest.skip("the hard limit of open files is below 1200")
    done = subprocess.run(
        [sys.executable, "-c", HIGH_FD_SCRIPT, dsn], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
