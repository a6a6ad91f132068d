"""Test fixtures: a real PostgreSQL for every test that touches data.

The server is the embedded one (``./.dbp``) unless ``DBP_TEST_DSN`` names another (it needs CREATEDB). Each
test gets a fresh database cloned from a template, which is cheap: ``empty_dsn`` is an empty database, ``dsn``
one with the built-in schema of ``sql/schema`` already created, ``db`` an ``SQLConnection`` connected to
``dsn``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import settings
from psycopg import sql
from psycopg.conninfo import make_conninfo

# Per-process template names: several pytest runs (or developers) may share one server.
# Tests that change directory (settings.py lookups, the CLI) must still find the one embedded server of this
# checkout, not start another under their temporary directory.
os.environ.setdefault("DBP_EMBEDDED_DIR", str(Path(__file__).resolve().parents[1] / ".dbp"))

# The local Citus cluster and the DBP_REQUIRE_CITUS hook (tests/citus_fixtures.py).
pytest_plugins = ["citus_fixtures"]

# `make test` (and so CI) seeds hypothesis from each test: the same code draws the same examples, so a red run
# is reproducible and a green one does not turn red on a later draw. `make soak` (DBP_SOAK=1) draws fresh
# examples each time, to go on finding new ones. Loaded here, before any test module builds its settings on
# top of the default.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("fresh", database=None)
settings.load_profile("fresh" if os.environ.get("DBP_SOAK") else "repeatable")

EMPTY_TEMPLATE = f"dbp_test_tpl_empty_{os.getpid()}"
SCHEMA_TEMPLATE = f"dbp_test_tpl_schema_{os.getpid()}"


def _server_dsn() -> str:
    explicit = os.environ.get("DBP_TEST_DSN")
    if explicit:
        return explicit
    from dbplugins.embedded import ensure_server

    server = ensure_server(announce=False)
    server.wait_ready()
    return server.dsn()


def admin_connect(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


def _drop(admin: psycopg.Connection[Any], name: str) -> None:
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _recreate(admin: psycopg.Connection[Any], name: str, template: str | None = None) -> None:
    _drop(admin, name)
    if template:
        # FILE_COPY clones a small template ~25% faster than the default WAL_LOG (0.24 s vs 0.32 s here).
        strategy = sql.SQL(" STRATEGY FILE_COPY" if admin.info.server_version >= 150000 else "")
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}{}").format(
                sql.Identifier(name), sql.Identifier(template), strategy
            )
        )
    else:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))


def pytest_report_header(config: pytest.Config) -> str:
    where = "DBP_TEST_DSN" if os.environ.get("DBP_TEST_DSN") else "embedded server"
    return f"dbplugins tests against the {where}"


@pytest.fixture(scope="session")
def server_dsn() -> str:
    """DSN of the maintenance database of the test server."""
    return _server_dsn()


@pytest.fixture(scope="session")
def _templates(server_dsn: str) -> Iterator[dict[str, str]]:
    from dbplugins._sqlfiles import schema_script

    with admin_connect(server_dsn) as admin:
        _recreate(admin, EMPTY_TEMPLATE)
        _recreate(admin, SCHEMA_TEMPLATE)
        with psycopg.connect(make_conninfo(server_dsn, dbname=SCHEMA_TEMPLATE), autocommit=False) as conn:
            script = schema_script()
            if script.strip():
                conn.execute(script.encode())  # our own files
            conn.commit()
    yield {"empty": EMPTY_TEMPLATE, "schema": SCHEMA_TEMPLATE}
    with admin_connect(server_dsn) as admin:
        for name in (EMPTY_TEMPLATE, SCHEMA_TEMPLATE):
            _drop(admin, name)


@pytest.fixture
def make_database(server_dsn: str, _templates: dict[str, str]) -> Iterator[Any]:
    """Factory: ``make_database(kind="empty"|"schema") -> dsn`` of a fresh database, dropped afterwards."""
    created: list[str] = []

    def make(kind: str = "schema") -> str:
        name = f"dbp_t_{uuid.uuid4().hex[:12]}"
        with admin_connect(server_dsn) as admin:
            _recreate(admin, name, _templates[kind])
        created.append(name)
        return make_conninfo(server_dsn, dbname=name)

    yield make
    with admin_connect(server_dsn) as admin:
        for name in created:
            _drop(admin, name)


@pytest.fixture(scope="module")
def module_dsn(request: pytest.FixtureRequest, server_dsn: str, _templates: dict[str, str]) -> Iterator[str]:
    """One database for a whole test module: the built-in schema plus the module's ``DDL`` string, if any.

    For modules of many small tests, where a fresh database per test (~0.3 s each) would dominate the run;
    such tests reset the rows they use themselves.
    """
    name = f"dbp_m_{uuid.uuid4().hex[:12]}"
    with admin_connect(server_dsn) as admin:
        _recreate(admin, name, _templates["schema"])
    dsn = make_conninfo(server_dsn, dbname=name)
    ddl = getattr(request.module, "DDL", "")
    if ddl:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(ddl)
    yield dsn
    with admin_connect(server_dsn) as admin:
        _drop(admin, name)


@contextlib.contextmanager
def _connected(dsn: str) -> Iterator[Any]:
    from dbplugins import SQLConnection

    conn = SQLConnection()
    conn.connect(dsn=dsn, min_size=1, max_size=4, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture(scope="module")
def module_db(module_dsn: str) -> Iterator[Any]:
    """An ``SQLConnection`` on ``module_dsn``, shared by the module's tests."""
    with _connected(module_dsn) as conn:
        yield conn


@pytest.fixture
def empty_dsn(make_database: Any) -> str:
    """A fresh, empty database."""
    return str(make_database("empty"))


@pytest.fixture
def dsn(make_database: Any) -> str:
    """A fresh database with the built-in schema (``sql/schema``) created."""
    return str(make_database("schema"))


@pytest.fixture
def db(dsn: str) -> Iterator[Any]:
    """An ``SQLConnection`` connected to a fresh database with the built-in schema."""
    with _connected(dsn) as conn:
        yield conn


@pytest.fixture(scope="session")
def private_server() -> Iterator[Any]:
    """An embedded server of this test session's own, which fault tests may stop, kill and restart."""
    import shutil
    import tempfile

    from dbplugins.embedded import EmbeddedServer

    # Not under tmp_path_factory: every pytest run on the machine resets /tmp/pytest-of-<user> to 0700, and
    # when we are root the server's own user must traverse the path (pg_ctl then failed with "Permission
    # denied").
    top = Path(tempfile.mkdtemp(prefix="dbp-private-pg-"))
    server = EmbeddedServer(top)
    server.start()
    server.wait_ready()
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(top, ignore_errors=True)
