"""The yoyo side: connection URLs yoyo understands, status without side effects, and rollback bookkeeping."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from yoyo.connections import parse_uri

import dbplugins.migrations
from dbplugins.config import ConnectionSettings, from_dsn
from dbplugins.migrations import runner


def test_url_carries_socket_host_port_and_odd_names_through_yoyo() -> None:
    cs = ConnectionSettings(
        {"host": "/tmp/run dir", "port": "5433", "user": "us@r", "password": "p@ss/w:rd", "dbname": "my db"}
    )
    uri = parse_uri(cs.url())
    assert (uri.username, uri.password, uri.hostname, uri.port) == ("us@r", "p@ss/w:rd", None, None)
    # yoyo passes the query arguments to psycopg.connect as keywords, overriding the (empty) path
    assert uri.args == {"host": "/tmp/run dir", "port": "5433", "dbname": "my db"}
    tcp = parse_uri(ConnectionSettings({"host": "db.example.org", "port": "5432", "dbname": "ztf"}).url())
    assert (tcp.hostname, tcp.port, tcp.database, tcp.args) == ("db.example.org", 5432, "ztf", {})


@pytest.fixture
def odd_dsn(server_dsn: str) -> Iterator[str]:
    name = f"dbp odd-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield from_dsn(server_dsn).with_dbname(name).conninfo
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_migrate_a_database_whose_name_needs_quoting(odd_dsn: str, tmp_path: Path) -> None:
    cs = from_dsn(odd_dsn)
    assert [m.applied for m in runner.status(cs, None)] == [False]
    applied = runner.apply(cs, None)
    assert applied and all(m.applied for m in runner.status(cs, None))
    undone = dbplugins.migrations.rollback(cs, migrations_dir=tmp_path, count=5, allow_destructive=True)
    assert undone.ids == applied[::-1]
    with psycopg.connect(odd_dsn) as conn:
        assert conn.execute("SELECT to_regclass('object')").fetchone() == (None,)


def test_status_creates_nothing(empty_dsn: str) -> None:
    runner.status(from_dsn(empty_dsn), None)
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
