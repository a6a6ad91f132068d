"""Fixtures for the Citus tests: a local coordinator + 2 workers on 127.0.0.1, per test module.

* ``citus_cluster``: the running :class:`dbplugins.citus.LocalCluster`, its data in a temporary directory
  under /tmp (not pytest's tmp_path: every pytest session that starts takes the other-users bits off its
  parent, and the servers may run as another account), destroyed at the end of the module. Without Citus
  (``DBP_CITUS_PG_BIN``, default the system PostgreSQL 15) every test using it is skipped with a one-line
  reason; with ``DBP_REQUIRE_CITUS=1`` (CI) such a skip is reported as a failure.
* ``citus_dsn``: the coordinator's database, emptied and given the distributed built-in schema
  (``create_db(distributed=True)``); ``citus_empty_dsn``: the same database, emptied.
* ``citus_db``: an ``SQLConnection`` on ``citus_dsn``.

Tests are marked ``@pytest.mark.citus``; the marker is what the ``DBP_REQUIRE_CITUS`` hook looks for.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pluggy
import psycopg
import pytest
from psycopg import sql

REQUIRE_CITUS = os.environ.get("DBP_REQUIRE_CITUS", "") not in ("", "0")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "citus: needs a local Citus cluster (skipped without Citus; fails under DBP_REQUIRE_CITUS=1)",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_CITUS and report.skipped and item.get_closest_marker("citus") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"DBP_REQUIRE_CITUS=1, but this Citus test was skipped: {reason}"


def reset_database(dsn: str) -> None:
    """Drop every table of the coordinator's current schema (distributed ones with their shards)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
                "AND c.relkind IN ('r', 'p')"
            )
        ]
        if names:
            conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
                    sql.SQL(", ").join(map(sql.Identifier, names))
                )
            )


@pytest.fixture(scope="module")
def citus_cluster() -> Iterator[Any]:
    """A coordinator and two workers on loopback ports, started once per test module and removed after it (so
    the three servers do not sit beside the rest of the suite)."""
    from dbplugins.citus import LocalCluster, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"no local Citus cluster: {reason}")
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="dbp-citus-")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def citus_empty_dsn(citus_cluster: Any) -> str:
    """The coordinator's database, with no tables."""
    dsn = str(citus_cluster.dsn())
    reset_database(dsn)
    return dsn


@pytest.fixture
def citus_dsn(citus_empty_dsn: str) -> str:
    """The coordinator's database with the built-in schema, distributed as the models declare."""
    from dbplugins import SQLConnection

    db = SQLConnection()
    db.connect(dsn=citus_empty_dsn, min_size=1, max_size=1)
    try:
        db.create_db(distributed=True)
    finally:
        db.close()
    return citus_empty_dsn


@pytest.fixture
def citus_db(citus_dsn: str) -> Iterator[Any]:
    """An ``SQLConnection`` on ``citus_dsn``."""
    from dbplugins import SQLConnection

    db = SQLConnection()
    db.connect(dsn=citus_dsn, min_size=1, max_size=4, timeout=30)
    try:
        yield db
    finally:
        db.close()
