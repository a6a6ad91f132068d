"""A connection that cannot be made fails in ``connect()``, at once, saying why: never a pool timeout.

Every case runs against the real embedded server (or a port / host where there is none). ``connect_timeout``
is small so that a regression shows up as a failure, not as a 30 s hang, and pytest-timeout bounds each test.
"""

from __future__ import annotations

import os
import pickle
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dbplugins import ConfigurationError, ConnectionError, ConnectionFailedError, DbpError, SQLConnection
from dbplugins.cli import cli

pytestmark = pytest.mark.timeout(120)

PASSWORD = "s3cret-P@ss/word"
ROLE = f"dbp_conn_fail_{os.getpid()}"


@pytest.fixture(scope="module")
def role_dsn(server_dsn: str) -> Iterator[str]:
    """A DSN for a role that must authenticate with ``PASSWORD`` (the embedded server asks it for SCRAM)."""
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(PASSWORD))
        )
    dsn = make_conninfo(server_dsn, user=ROLE, password=PASSWORD)
    try:
        yield dsn
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))


def failure(dsn: str | None = None, **kwargs: Any) -> ConnectionFailedError:
    """Connect, expect ``ConnectionFailedError``, check what every such error promises, return it."""
    db = SQLConnection()
    with pytest.raises(ConnectionFailedError) as info:
        db.connect(dsn=dsn, connect_timeout=2, **kwargs)
    err = info.value
    assert isinstance(err, ConnectionError) and isinstance(err, DbpError)
    assert isinstance(err.__cause__, psycopg.OperationalError)  # the psycopg error is chained
    assert "\n" not in str(err)  # one line
    assert PASSWORD not in str(err) and "s3cret" not in str(err)
    assert "PoolTimeout" not in str(err) and "no database connection became free" not in str(err)
    assert db.pool is None and db.session is None  # nothing left half-open
    return err


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_wrong_password_names_target_and_reason(role_dsn: str) -> None:
    params = conninfo_to_dict(role_dsn)
    with psycopg.connect(role_dsn) as conn:  # the right password works: the failure below is the password's
        assert conn.execute("select current_user").fetchone() == (ROLE,)
    err = failure(make_conninfo(role_dsn, password="wrong-" + PASSWORD))
    text = str(err)
    assert f'password authentication failed for user "{ROLE}"' in text
    assert f"database {params['dbname']!r}" in text
    assert f"user {ROLE!r}" in text
    assert f"on {params['host']} port {params['port']}" in text
    assert "wrong-" not in text


def test_wrong_password_from_a_config_dict(role_dsn: str) -> None:
    params = conninfo_to_dict(role_dsn)
    config = {
        "ENGINE": "postgresql",
        "HOST": params["host"],
        "USER": ROLE,
        "PASSWORD": "not-" + PASSWORD,
        "PORT": params["port"],
        "DB_NAME": params["dbname"],
    }
    db = SQLConnection()
    with pytest.raises(ConnectionFailedError, match="password authentication failed") as info:
        db.connect(config, connect_timeout=2)
    assert "not-" not in str(info.value) and PASSWORD not in str(info.value)
    # The right password through the same dict connects, and queries work.
    with SQLConnection({**config, "PASSWORD": PASSWORD}) as ok:
        assert ok.execute("select current_user") == [(ROLE,)]


def test_unknown_database(server_dsn: str) -> None:
    err = failure(make_conninfo(server_dsn, dbname="dbp_no_such_database"))
    assert 'database "dbp_no_such_database" does not exist' in str(err)
    assert "database 'dbp_no_such_database'" in str(err)


def test_refused_tcp_port() -> None:
    port = free_tcp_port()
    err = failure(f"host=127.0.0.1 port={port} user=alerce dbname=ztf")
    assert "Connection refused" in str(err)
    assert f"on 127.0.0.1 port {port}" in str(err)
    assert "database 'ztf' as user 'alerce'" in str(err)


def test_no_server_on_the_socket(server_dsn: str, tmp_path: Path) -> None:
    err = failure(make_conninfo(server_dsn, host=str(tmp_path)))
    assert "No such file or directory" in str(err)
    assert str(tmp_path) in str(err)


def test_unresolvable_host() -> None:
    err = failure("host=dbp-no-such-host.invalid port=5432 user=alerce dbname=ztf")
    assert "dbp-no-such-host.invalid" in str(err)
    assert "resolve" in str(err) or "translate host name" in str(err)


def test_bad_sslmode(server_dsn: str) -> None:
    err = failure(make_conninfo(server_dsn, sslmode="always"))
    assert 'invalid sslmode value: "always"' in str(err)


def test_bad_sslmode_from_a_config_dict(server_dsn: str) -> None:
    params = conninfo_to_dict(server_dsn)
    config = {
        "DSN": server_dsn,
        "SSLMODE": "sometimes",
    }  # db-plugins style upper case works for libpq options
    db = SQLConnection()
    with pytest.raises(ConnectionFailedError, match='invalid sslmode value: "sometimes"'):
        db.connect(config, connect_timeout=2)
    assert params  # the DSN itself is fine: it is the option that fails


def test_environment_source_is_named(server_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBP_DSN", make_conninfo(server_dsn, dbname="dbp_no_such_database"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    err = failure()
    assert "settings from env:DBP_DSN" in str(err)


def test_not_a_dsn_says_what_is_wrong() -> None:
    with pytest.raises(ConfigurationError, match='missing "=" after "not"'):
        SQLConnection().connect(dsn="not a dsn")


def test_error_pickles(server_dsn: str) -> None:
    err = failure(make_conninfo(server_dsn, dbname="dbp_no_such_database"))
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ConnectionFailedError and str(back) == str(err)


def test_a_good_connection_still_connects_and_pools(dsn: str) -> None:
    """The probe is closed again and the pool serves as before."""
    with SQLConnection() as db:
        pass
    db = SQLConnection()
    db.connect(dsn=dsn, connect_timeout=2, min_size=1, max_size=2)
    try:
        assert db.execute("select 1") == [(1,)]
        assert db.pool is not None and isinstance(db.pool.kwargs, dict)
        assert db.pool.kwargs.get("connect_timeout") == 2
    finally:
        db.close()


def test_password_changed_after_connect_names_the_cause(server_dsn: str) -> None:
    """The first query after the pool lost its connections and cannot make new ones says why, not
    'timeout'."""
    role = f"dbp_conn_rotated_{os.getpid()}"
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(PASSWORD))
        )
    db = SQLConnection()
    try:
        db.connect(
            dsn=make_conninfo(server_dsn, user=role, password=PASSWORD), min_size=1, max_size=1, timeout=2
        )
        assert db.execute("select current_user") == [(role,)]
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("ALTER ROLE {} PASSWORD 'rotated'").format(sql.Identifier(role)))
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
            )
            # pg_terminate_backend only signals: wait until the backend is gone, so the pooled connection is
            # visibly dead (else the next query may still start on it and fail as a lost connection instead).
            for _ in range(200):  # at most ~10 s
                if admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,)
                ).fetchone() == (0,):
                    break
                time.sleep(0.05)
        with pytest.raises(ConnectionFailedError) as info:
            db.execute("select 1")
        text = str(info.value)
        assert f'password authentication failed for user "{role}"' in text
        assert "no pooled connection within 2 s" in text
        assert isinstance(info.value.__cause__, psycopg.OperationalError)
        assert PASSWORD not in text
    finally:
        db.close()
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_probe_connects_as_the_pool_will(dsn: str) -> None:
    """Same connection class and keywords as the pool's (a class may fetch a token, say), no clash on
    autocommit."""
    calls: list[dict[str, Any]] = []

    class Mine(psycopg.Connection[Any]):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            calls.append(kwargs)
            return super().connect(conninfo, **kwargs)

    db = SQLConnection()
    db.connect(dsn=dsn, connection_class=Mine, kwargs={"autocommit": False}, min_size=1, max_size=1)
    try:
        assert calls and calls[0]["autocommit"] is True and calls[0]["connect_timeout"] == 10
        with db.current_session().connection() as conn:
            assert isinstance(conn, Mine) and conn.autocommit  # the pool's configure still sets autocommit
    finally:
        db.close()


# -- the CLI: one Error line, exit 1 -------------------------------------------------------------------------


def test_dbp_load_with_a_wrong_password(role_dsn: str, tmp_path: Path) -> None:
    data = tmp_path / "objects.csv"
    data.write_text("oid\nZTF20a\n")
    wrong = make_conninfo(role_dsn, password="wrong-" + PASSWORD)
    result = CliRunner().invoke(cli, ["load", "object", str(data), "--dsn", wrong, "--silent"])
    assert result.exit_code == 1, result.output
    assert f'password authentication failed for user "{ROLE}"' in result.output
    assert "cannot connect to database" in result.output
    assert "wrong-" not in result.output and PASSWORD not in result.output
    assert "PoolTimeout" not in result.output


def test_dbp_load_with_an_invalid_dsn(tmp_path: Path) -> None:
    data = tmp_path / "objects.csv"
    data.write_text("oid\nZTF20a\n")
    result = CliRunner().invoke(cli, ["load", "object", str(data), "--dsn", "not a dsn", "--silent"])
    assert result.exit_code == 1, result.output
    assert 'invalid DSN from argument: missing "=" after "not" in connection info string' in result.output
