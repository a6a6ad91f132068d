"""Secrets: with DEBUG logging on everywhere, a password full of URL and DSN syntax never shows.

A role with a password containing ``@:/#%`` (and a quote, a backslash and a space) is created on the private
server, whose ``pg_hba.conf`` makes every role but ``postgres`` authenticate with a SCRAM password, so the
password really is sent. Then connect (URL, key/value DSN, db-plugins config dict, environment), queries,
get_or_create, get_or_create_many, bulk_insert, update, every kind of error (constraint, unknown column, bad
value, bad password, unreachable server, malformed DSN, failed migration) and the ``dbp`` CLI (success,
failure, ``--verbose``, ``settings.py``, ``DBP_DSN``) run, and the password is looked for, raw and escaped, in
every log record (message, arguments, formatted traceback), every exception (message, repr, the whole chain of
causes) and all CLI output.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from sample_rows import detection_row, object_row

from dbplugins import DbpError, SQLConnection
from dbplugins.models import Detection, Object

from .conftest import admin, ensure_running, exc_chain

FRAGMENT = "Xq7S3cr3t"  # alphanumeric: it survives any escaping, so finding it anywhere is a leak
PASSWORD = f"{FRAGMENT}@:/#%x'y\\z w"
WRONG = f"Wr0ngPw{FRAGMENT[::-1]}@:/#%"
ROLE = "dbp_secret_role"
LOGGERS = ["", "dbplugins", "psycopg", "psycopg.pool", "yoyo", "yoyo.migrations"]


def forms(secret: str) -> list[str]:
    fragment = FRAGMENT if secret == PASSWORD else secret[:10]
    return sorted({secret, quote(secret, safe=""), quote(secret), secret.replace("'", "\\'"), fragment})


def leaks(text: str) -> list[str]:
    return [f for s in (PASSWORD, WRONG) for f in forms(s) if f in text]


def assert_clean(text: str, where: str) -> None:
    found = leaks(text)
    assert not found, f"secret {found!r} in {where}: {text[:2000]}"


def assert_clean_exception(exc: BaseException) -> None:
    for e in exc_chain(exc):
        assert_clean(str(e), f"str({type(e).__name__})")
        assert_clean(repr(e), f"repr({type(e).__name__})")
        assert_clean(repr(e.args), f"{type(e).__name__}.args")
    assert_clean("".join(traceback.format_exception(exc)), "the formatted traceback with its causes")


def expect_error(call: Callable[[], Any], kind: type[BaseException] = DbpError) -> BaseException:
    try:
        call()
    except kind as exc:
        assert_clean_exception(exc)
        return exc
    raise AssertionError(f"{call} did not raise {kind.__name__}")


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog
    for record in caplog.get_records("setup") + caplog.get_records("call"):
        assert_clean(record.getMessage(), f"log record {record.name}")
        assert_clean(repr(record.args), f"log record args {record.name}")
        if record.exc_info and record.exc_info[1] is not None:
            assert_clean_exception(record.exc_info[1])
    assert_clean(caplog.text, "the formatted log")


@pytest.fixture
def role(private_server: Any) -> Iterator[str]:
    ensure_running(private_server)
    with admin(private_server.dsn()) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(PASSWORD))
        )
    yield ROLE
    ensure_running(private_server)
    with admin(private_server.dsn()) as conn:
        for (db,) in conn.execute(
            "SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = %s)",
            (ROLE,),
        ).fetchall():
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))


def as_role(superuser_dsn: str, password: str = PASSWORD) -> dict[str, str]:
    params = conninfo_to_dict(superuser_dsn)
    return {**{k: str(v) for k, v in params.items()}, "user": ROLE, "password": password}


def url_of(p: dict[str, str]) -> str:
    return (
        f"postgresql://{quote(p['user'], safe='')}:{quote(p['password'], safe='')}@/{p['dbname']}"
        f"?host={quote(p['host'], safe='')}&port={p['port']}"
    )


@pytest.fixture
def secret_dsns(role: str, make_private_database: Callable[..., str]) -> dict[str, dict[str, str]]:
    """Databases owned by the role: one with the built-in schema (tables granted), one empty (for
    migrations)."""
    schema_db = make_private_database("schema", owner=role)
    with admin(schema_db) as conn:
        conn.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
    return {"schema": as_role(schema_db), "empty": as_role(make_private_database("empty", owner=role))}


def exercise(db: SQLConnection, n: int, way: str) -> None:
    """Every kind of call and error on a connected SQLConnection."""
    assert db.execute("SELECT current_user") == [(ROLE,)], way
    for shown in (repr(db), str(db.settings), repr(db.settings), repr(db.pool), repr(db.session)):
        assert_clean(shown, f"a repr ({way})")
    q = db.query(Object)
    obj, created = q.get_or_create(filter_by={"oid": f"s{n}"}, ndet=1)
    assert created
    assert [c for _, c in q.get_or_create_many([object_row(f"s{n}"), object_row(f"t{n}")])] == [False, True]
    assert db.query(Detection).bulk_insert([detection_row(n, f"s{n}")]) == 1
    db.query().update(obj, {"ndet": 2})
    assert db.session is not None
    db.session.commit()
    assert q.find(filter_by={"oid": f"s{n}"}).total == 1
    expect_error(lambda: db.query(Detection).bulk_insert([detection_row(n, f"s{n}")], on_conflict="error"))
    expect_error(lambda: q.find(filter_by={"password": PASSWORD}))
    expect_error(lambda: q.get_or_create(filter_by={"oid": "x\x00"}))
    expect_error(lambda: db.execute("SELECT * FROM no_such_table"))


def test_library_never_shows_the_password(
    secret_dsns: dict[str, dict[str, str]], debug_logs: pytest.LogCaptureFixture, private_server: Any
) -> None:
    p = secret_dsns["schema"]
    config = {
        "ENGINE": "postgresql",
        "HOST": p["host"],
        "PORT": p["port"],
        "USER": p["user"],
        "PASSWORD": p["password"],
        "DB_NAME": p["dbname"],
    }
    ways: dict[str, Callable[[SQLConnection], None]] = {
        "url": lambda db: db.connect(dsn=url_of(p), max_size=2, timeout=3),
        "keyword DSN": lambda db: db.connect(dsn=make_conninfo(**p), max_size=2, timeout=3),
        "config dict": lambda db: db.connect(config=config, max_size=2, timeout=3),
    }
    for n, (way, connect) in enumerate(ways.items()):
        db = SQLConnection()
        connect(db)
        try:
            exercise(db, n, way)
        finally:
            db.close()

    # The wrong password, a server that is not there, a DSN libpq cannot parse: errors, and no secret in them.
    # (connect() itself fails now, with ConnectionFailedError: it opens one connection before the pool.)
    expect_error(lambda: SQLConnection().connect(dsn=url_of({**p, "password": WRONG}), max_size=1, timeout=2))
    expect_error(
        lambda: SQLConnection().connect(dsn=url_of({**p, "host": "/nonexistent/socket/dir"}), timeout=1)
    )
    expect_error(lambda: SQLConnection().connect(dsn=url_of(p) + "&no_such_option=1"))
    expect_error(lambda: SQLConnection().connect(dsn=f"host={p['host']} passwd={PASSWORD} dbname=x"))
    expect_error(lambda: SQLConnection().connect(dsn=f"postgresql://{ROLE}:{PASSWORD}@/x?host=/tmp"))

    # The server stops under a connected pool with the password in its DSN.
    db = SQLConnection()
    db.connect(dsn=url_of(p), max_size=2, timeout=2)
    try:
        db.execute("SELECT 1")
        private_server.stop("immediate")
        expect_error(lambda: db.execute("SELECT 1"))
        expect_error(lambda: db.query(Detection).bulk_insert([detection_row(99, "s0")]))
    finally:
        ensure_running(private_server)
        db.close()

    # A failing migration, in process.
    from dbplugins.config import from_dsn
    from dbplugins.migrations import runner

    e = secret_dsns["empty"]
    mdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"dbp-secret-{os.getpid()}"
    mdir.mkdir(exist_ok=True)
    (mdir / "0001_bad.sql").write_text(f"-- depends: {runner.heads(None)[0]}\nSELECT 1/0;\n")
    try:
        expect_error(lambda: runner.apply(from_dsn(url_of(e)), mdir))
    finally:
        for f in mdir.iterdir():
            f.unlink()
        mdir.rmdir()
    assert debug_logs.records, "DEBUG logging captured nothing: the check would be vacuous"


# -- the CLI -------------------------------------------------------------------------------------------------

_DEBUG_CLI = (
    "import logging, sys; logging.basicConfig(level=logging.DEBUG); from dbplugins.cli import main; main()"
)


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", _DEBUG_CLI, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    assert_clean(result.stdout + result.stderr, f"the output of dbp {' '.join(a[:20] for a in args)}")
    return result


def test_cli_never_shows_the_password(secret_dsns: dict[str, dict[str, str]], tmp_path: Path) -> None:
    e = secret_dsns["empty"]
    url = url_of(e)
    mdir = tmp_path / "migrations"
    mdir.mkdir()
    assert cli("migrate", "--list", "--dsn", url, "--migrations-dir", str(mdir)).returncode == 0
    assert cli("initdb", "--dsn", url).returncode == 0
    assert cli("migrate", "--dsn", url, "--migrations-dir", str(mdir)).returncode == 0
    assert (
        cli(
            "make_migrations", "--check", "--dsn", make_conninfo(**e), "--migrations-dir", str(mdir)
        ).returncode
        == 0
    )
    assert cli("migrate", "--dry-run", env={"DBP_DSN": url}).returncode == 0
    # settings.py with db-plugins' keys
    config = {
        "ENGINE": "postgresql",
        "HOST": e["host"],
        "PORT": e["port"],
        "USER": e["user"],
        "PASSWORD": e["password"],
        "DB_NAME": e["dbname"],
    }
    (tmp_path / "settings.py").write_text(f"DB_CONFIG = {{'SQL': {config!r}}}\n")
    assert cli("migrate", "--list", "--settings_path", str(tmp_path)).returncode == 0
    # Failures, with and without --verbose.
    (mdir / "0001_bad.sql").write_text("-- depends: 20261128_01_dbp01-initial-schema\nSELECT 1/0;\n")
    for verbose in ([], ["--verbose"]):
        failed = cli("migrate", *verbose, "--dsn", url, "--migrations-dir", str(mdir))
        assert failed.returncode == 1 and "division by zero" in failed.stderr
        wrong = cli("migrate", *verbose, "--dsn", url_of({**e, "password": WRONG}))
        assert wrong.returncode == 1 and "password authentication failed" in wrong.stderr, wrong.stderr
        malformed = cli("initdb", *verbose, "--dsn", url + "&no_such_option=1")
        assert malformed.returncode in (1, 2)
        settings_run = cli("make_migrations", *verbose, "--settings_path", str(tmp_path))
        assert settings_run.returncode == 1
    assert "Traceback" in cli("migrate", "--verbose", "--dsn", url, "--migrations-dir", str(mdir)).stderr
