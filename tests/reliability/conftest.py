"""Fixtures and helpers of the reliability suite.

* ``DBP_SOAK=1`` (``make soak``) selects the long versions: tests marked ``@pytest.mark.soak`` are skipped
  unless it is set, so a plain ``pytest`` / ``make test`` runs only the short, bounded versions.
* ``private_dsn``: a fresh database with the built-in schema on ``private_server``, the test run's own
  embedded server, which fault tests may stop (``-m immediate``) and restart. The shared server of
  ``server_dsn`` is never stopped: other people's tests run on it.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

HERE = Path(__file__).resolve().parent
SOAK = os.environ.get("DBP_SOAK", "") not in ("", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SOAK:
        return
    skip = pytest.mark.skip(reason="long version: run it with `make soak` (DBP_SOAK=1)")
    for item in items:
        if item.get_closest_marker("soak") is not None and HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)


def sizes(short: Any, long: Any) -> list[Any]:
    """``@pytest.mark.parametrize`` values: the short version, and the long one marked ``soak``.

    A tuple is spread over several argument names.
    """
    s = short if isinstance(short, tuple) else (short,)
    g = long if isinstance(long, tuple) else (long,)
    return [pytest.param(*s, id="short"), pytest.param(*g, id="soak", marks=pytest.mark.soak)]


# -- plain helpers -------------------------------------------------------------------------------------------


def dbname_of(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["dbname"])


#: The application_name of the tests' own connections, which the backend queries below leave out: a backend
#: whose client has just closed can still be listed for a moment while it exits.
ADMIN_APP = "dbp-test-admin"


def admin(dsn: str) -> psycopg.Connection[Any]:
    """A plain psycopg connection in autocommit, outside the library under test."""
    return psycopg.connect(dsn, autocommit=True, application_name=ADMIN_APP)


def scalar(dsn: str, query: Any, params: Any = None) -> Any:
    with admin(dsn) as conn:
        row = conn.execute(query, params).fetchone()
        assert row is not None
        return row[0]


def count(dsn: str, table: str) -> int:
    return int(scalar(dsn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))))


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def other_backends(dsn: str) -> list[tuple[int, str | None, str | None]]:
    """(pid, state, query) of every client backend on ``dsn``'s database, the tests' own left out."""
    with admin(dsn) as conn:
        rows = conn.execute(
            "SELECT pid, state, query FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' AND application_name IS DISTINCT FROM %s",
            (dbname_of(dsn), ADMIN_APP),
        ).fetchall()
    return [(int(r[0]), r[1], r[2]) for r in rows]


def no_open_transactions(dsn: str, exclude: Collection[int] = ()) -> bool:
    """True when no backend of the database sits in a transaction (a half-done COPY or a leaked BEGIN)."""
    return all(state in (None, "idle") for pid, state, _ in other_backends(dsn) if pid not in exclude)


def checked_out(db: Any) -> int:
    """Connections the pool has lent and not got back."""
    stats = db.pool.get_stats()
    return int(stats.get("pool_size", 0)) - int(stats.get("pool_available", 0))


def assert_pool_healthy(db: Any, dsn: str, exclude: Collection[int] = ()) -> None:
    """Nothing lent out, nobody waiting, no backend stuck in a transaction, and a round trip works.

    ``exclude``: backend pids of the test's own foreign connections (a lock holder).
    """
    assert db.session is None or not db.current_session().in_transaction
    # A connection the pool is still opening counts in pool_size: after an outage its next attempt can be 16 s
    # or more away (psycopg_pool's reconnection backoff doubles from 1 s), so 10 s was too short on a loaded
    # machine.
    wait_until(lambda: checked_out(db) == 0, 60, "the pool to get every connection back")
    assert int(db.pool.get_stats().get("requests_waiting", 0)) == 0
    wait_until(lambda: no_open_transactions(dsn, exclude), 10, "no backend left inside a transaction")
    assert db.execute("SELECT 1") == [(1,)]


def exc_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it was raised from or during (``__cause__`` / ``__context__``)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


# -- the private server's databases --------------------------------------------------------------------------


def ensure_running(server: Any) -> None:
    server.start()
    server.wait_ready()


@pytest.fixture(scope="session")
def private_template(private_server: Any) -> Iterator[str]:
    """A template database with the built-in schema on the private server."""
    from dbplugins._sqlfiles import schema_script

    name = f"dbp_rel_tpl_{os.getpid()}"
    ensure_running(private_server)
    with admin(private_server.dsn()) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    with psycopg.connect(private_server.dsn(name)) as conn:
        conn.execute(schema_script().encode())
    yield name
    with contextlib.suppress(Exception):
        ensure_running(private_server)
        with admin(private_server.dsn()) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def make_private_database(private_server: Any, private_template: str) -> Iterator[Callable[..., str]]:
    """Factory: a fresh database on the private server (``"schema"`` or ``"empty"``), dropped afterwards."""
    created: list[str] = []

    def make(kind: str = "schema", owner: str | None = None) -> str:
        ensure_running(private_server)
        name = f"dbp_rel_{uuid.uuid4().hex[:12]}"
        template = private_template if kind == "schema" else "template0"
        stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        )
        if owner:
            stmt += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        with admin(private_server.dsn()) as conn:
            conn.execute(stmt)
        created.append(name)
        return str(private_server.dsn(name))

    yield make
    ensure_running(private_server)  # a fault test may have left it stopped
    with admin(private_server.dsn()) as conn:
        for name in created:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def private_dsn(make_private_database: Callable[..., str]) -> str:
    """A fresh database with the built-in schema on the private (stoppable) server."""
    return make_private_database("schema")
