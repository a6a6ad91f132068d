"""``dbp`` is safe to script: confirmations, bounded lock waits, the built-in migrations, stdout, secrets.

Each scenario drives the real ``dbp`` in a subprocess (``python -m dbplugins.cli``), as a shell script would.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

import dbplugins.migrations
from dbplugins.config import from_dsn
from dbplugins.migrations import runner

ROOT = Path(__file__).resolve().parent.parent
BUILTIN = runner.heads(None)[0]  # the built-in initial schema


def dbp(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``dbp ARGS`` in ``cwd`` without a terminal; never raises on a non-zero exit."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("DBP_DSN", "DATABASE_URL", "DBP_EMBEDDED")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "dbplugins.cli", *args],
        cwd=cwd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert result.returncode == code, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def _write(directory: Path, name: str, sql: str, rollback: str | None, depends: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.sql").write_text(
        f"-- {name}\n-- depends: {depends}\n\n{textwrap.dedent(sql).strip()}\n"
    )
    if rollback is not None:
        (directory / f"{name}.rollback.sql").write_text(textwrap.dedent(rollback).strip() + "\n")


# -- rollback ------------------------------------------------------------------------------------------------


def test_rollback_of_the_builtin_schema_needs_yes(empty_dsn: str, tmp_path: Path) -> None:
    env = {"DBP_DSN": empty_dsn}
    ok(dbp("migrate", cwd=tmp_path, env=env))
    before = _tables(empty_dsn)
    assert len(before) >= 17

    refused = dbp("migrate", "rollback", "--count", "5", cwd=tmp_path, env=env)
    ok(refused, 2)  # no terminal, no --yes: a usage error, nothing done
    assert f"  - {BUILTIN} (built-in; drops table" in refused.stdout  # says what it would undo
    assert "--yes" in refused.stderr and "nothing was rolled back" in refused.stderr
    assert _tables(empty_dsn) == before

    for args in (("migrate", "rollback", "--dry-run"), ("migrate", "--dry-run", "rollback")):
        dry = ok(dbp(*args, cwd=tmp_path, env=env))
        assert "DROP TABLE IF EXISTS object;" in dry and BUILTIN in dry
        assert _tables(empty_dsn) == before

    done = ok(dbp("migrate", "rollback", "--count", "5", "--yes", cwd=tmp_path, env=env))
    assert BUILTIN in done and "Rolled back 1 migration(s)" in done
    assert "object" not in _tables(empty_dsn)


def _three_migrations(directory: Path) -> list[str]:
    names = ["20260101_01_aaaaa-t", "20260101_02_bbbbb-ix", "20260101_03_ccccc-ix2"]
    _write(
        directory, names[0], "CREATE TABLE t (id integer PRIMARY KEY, x integer);", "DROP TABLE t;", BUILTIN
    )
    _write(directory, names[1], "CREATE INDEX ix_t_x ON t (x);", "DROP INDEX ix_t_x;", names[0])
    _write(directory, names[2], "CREATE INDEX ix_t_x2 ON t (x, id);", "DROP INDEX ix_t_x2;", names[1])
    return names


def test_rollback_to_a_revision(empty_dsn: str, tmp_path: Path) -> None:
    names = _three_migrations(tmp_path / "migrations")
    env = {"DBP_DSN": empty_dsn}
    ok(dbp("migrate", cwd=tmp_path, env=env))

    both = dbp("migrate", "rollback", "--to", names[0], "--count", "1", cwd=tmp_path, env=env)
    assert both.returncode == 2 and "not both" in both.stderr
    unknown = dbp("migrate", "rollback", "--to", "20991231_nope", cwd=tmp_path, env=env)
    ok(unknown, 1)
    assert "no applied migration matches '20991231_nope'" in unknown.stderr

    # dropping indexes loses no data: no --yes needed
    out = ok(dbp("migrate", "rollback", "--to", names[0], cwd=tmp_path, env=env))
    assert out.index(names[2]) < out.index(names[1]) and "Rolled back 2 migration(s)" in out
    listing = ok(dbp("migrate", "--list", cwd=tmp_path, env=env))
    assert f"[X] {names[0]}" in listing and f"[ ] {names[1]}" in listing and f"[ ] {names[2]}" in listing
    assert "t" in _tables(empty_dsn)

    # the Python API says the same, and refuses what the CLI refuses
    cs = from_dsn(empty_dsn)
    (step,) = runner.plan_rollback(cs, tmp_path / "migrations")
    assert step.id == names[0] and step.reasons == ("drops table t",) and not step.builtin
    with pytest.raises(runner.RollbackNotConfirmed, match="drops table t"):
        dbplugins.migrations.rollback(cs, migrations_dir=tmp_path / "migrations")
    assert dbplugins.migrations.rollback(cs, migrations_dir=tmp_path / "migrations", dry_run=True).ids == [
        names[0]
    ]
    assert "t" in _tables(empty_dsn)


@pytest.mark.parametrize(
    "sql, reasons",
    [
        ("DROP TABLE IF EXISTS watchlist;", ("drops table watchlist",)),
        ("ALTER TABLE w DROP COLUMN note;", ("drops column note",)),
        ("ALTER TABLE w DROP note, DROP CONSTRAINT w_fk;", ("drops column note",)),  # COLUMN is optional
        ("DROP TYPE mood CASCADE;", ("drops with CASCADE",)),
        ("TRUNCATE w;", ("runs TRUNCATE",)),
        ("-- DROP TABLE x (a comment)\nDROP INDEX ix_w;\nALTER TABLE w ALTER COLUMN a DROP NOT NULL;", ()),
        ("ALTER TABLE w ALTER a DROP DEFAULT, DROP CONSTRAINT c;", ()),
    ],
)
def test_what_counts_as_destructive(sql: str, reasons: tuple[str, ...]) -> None:
    assert runner.destructive_reasons(sql) == reasons


def _run_on_terminal(args: list[str], env: dict[str, str], cwd: Path, answer: str) -> tuple[int, str]:
    """Run dbp with a pseudo-terminal as stdin and stdout, type ``answer`` at the prompt."""
    import pty

    controller, terminal = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if k not in ("DBP_DSN", "DATABASE_URL")} | env
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbplugins.cli", *args],
        cwd=cwd,
        env=full_env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
    )
    os.close(terminal)
    seen = b""
    answered = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1)
        if ready:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if not answered and b"[y/N]" in seen:
                os.write(controller, answer.encode() + b"\n")
                answered = True
        elif proc.poll() is not None:
            break
    os.close(controller)
    return proc.wait(timeout=30), seen.decode(errors="replace")


def test_rollback_asks_on_a_terminal(empty_dsn: str, tmp_path: Path) -> None:
    names = _three_migrations(tmp_path / "migrations")
    env = {"DBP_DSN": empty_dsn}
    ok(dbp("migrate", cwd=tmp_path, env=env))
    args = ["migrate", "rollback", "--to", BUILTIN]
    code, out = _run_on_terminal(args, env, tmp_path, "n")
    assert "[y/N]" in out and code == 1, out
    assert "drops table t" in out
    assert "t" in _tables(empty_dsn)
    code, out = _run_on_terminal(args, env, tmp_path, "y")
    assert code == 0 and "Rolled back 3 migration(s)" in out, out
    assert "t" not in _tables(empty_dsn) and "object" in _tables(empty_dsn)
    assert names[0] in out


# -- lock timeout --------------------------------------------------------------------------------------------


def test_lock_timeout_names_the_blocker_and_leaves_the_migration_pending(
    empty_dsn: str, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    name = "20260101_01_ddddd-t"
    _write(migrations, name, "CREATE TABLE t (id integer PRIMARY KEY);", "DROP TABLE t;", BUILTIN)
    env = {"DBP_DSN": empty_dsn}
    ok(dbp("migrate", cwd=tmp_path, env=env))
    _write(migrations, "20260101_02_eeeee-alter", "ALTER TABLE t ADD COLUMN extra integer;", None, name)

    with psycopg.connect(empty_dsn) as holder:  # a session with an open transaction that read t
        holder.execute("SELECT count(*) FROM t").fetchone()
        holder_pid = holder.info.backend_pid
        result = dbp("migrate", "--lock-timeout", "2", cwd=tmp_path, env=env, timeout=90)
        ok(result, 1)
        err = result.stderr
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith(
            "Error: migration 20260101_02_eeeee-alter: gave up after waiting 2 s for a lock"
        )
        assert "table t (AccessExclusiveLock wanted)" in err
        assert f"locked by process {holder_pid}" in err and "idle in transaction" in err
        assert "SELECT count(*) FROM t" in err and "still pending" in err
        holder.rollback()

    listing = ok(dbp("migrate", "--list", cwd=tmp_path, env=env))
    assert "[ ] 20260101_02_eeeee-alter" in listing
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM yoyo_lock").fetchone() == (0,)
    assert "Applied 1 migration(s)" in ok(dbp("migrate", "--lock-timeout", "5", cwd=tmp_path, env=env))


# -- make_migrations never writes into the built-in migrations -----------------------------------------------


def test_make_migrations_refuses_the_builtin_migrations_dir(empty_dsn: str, tmp_path: Path) -> None:
    env = {"DBP_DSN": empty_dsn}
    ok(dbp("initdb", cwd=tmp_path, env=env))
    before = sorted(p.name for p in (ROOT / "migrations").iterdir())
    for args, cwd in [
        ((), ROOT),  # the repository root: ./migrations is the built-in one
        (("--migrations-dir", str(ROOT / "migrations")), tmp_path),
    ]:
        result = dbp("make_migrations", "--name", "oops", *args, cwd=cwd, env=env)
        ok(result, 1)
        assert "refusing to write into" in result.stderr and "built-in migrations" in result.stderr
        assert "migrations/ beside your settings.py" in result.stderr
    assert sorted(p.name for p in (ROOT / "migrations").iterdir()) == before
    # reading is fine there: --check and --dry-run write nothing
    assert "No changes" in ok(dbp("make_migrations", "--check", cwd=ROOT, env=env))


# -- stdout, version, the embedded fallback ------------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    assert ok(dbp("--version", cwd=tmp_path)).strip() == f"dbp {version('dbplugins')}"


def test_embedded_start_prints_only_the_dsn(server_dsn: str, tmp_path: Path) -> None:
    if os.environ.get("DBP_TEST_DSN"):
        pytest.skip("tests run against an external server")
    result = dbp("embedded", "start", cwd=tmp_path)
    out = ok(result)
    assert len(out.splitlines()) == 1
    with psycopg.connect(out.strip()) as conn:  # psql "$(dbp embedded start)"
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert "ready" in result.stderr


def test_embedded_fallback_is_announced_and_can_be_turned_off(server_dsn: str, tmp_path: Path) -> None:
    if os.environ.get("DBP_TEST_DSN"):
        pytest.skip("tests run against an external server")
    used = dbp("migrate", "--list", cwd=tmp_path)
    ok(used)
    assert "using the embedded PostgreSQL" in used.stderr
    for value in ("0", "false"):
        off = dbp("migrate", "--list", cwd=tmp_path, env={"DBP_EMBEDDED": value})
        ok(off, 1)
        assert off.stderr.startswith("Error: no database configured") and off.stdout == ""
        assert "using the embedded" not in off.stderr


def test_the_library_honours_dbp_embedded_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dbplugins import SQLConnection
    from dbplugins.errors import ConfigurationError

    for var in ("DBP_DSN", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DBP_EMBEDDED", "0")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="^no database configured"):
        SQLConnection().connect()


# -- secrets -------------------------------------------------------------------------------------------------

SECRET = "hunter2-S3cr3t!"


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(
            'DB_CONFIG = {"SQL": {"ENGINE": "postgresql", "HOST": "localhost", "USER": "u", '
            f'"PASSWORD": "{SECRET}", "PORT": 5432, "DB_NAME": undefined_name}}}}\n',
            id="name-error-on-the-password-line",
        ),
        pytest.param(
            f'import os\nPASSWORD = "{SECRET}"\n'
            'raise RuntimeError("cannot log in with password " + PASSWORD)\n',
            id="message-holds-the-password",
        ),
        pytest.param(
            f'DSN = "postgresql://u:{SECRET.replace("!", "%21")}@localhost/db" +\n',
            id="syntax-error-on-a-url-with-a-password",
        ),
    ],
)
def test_no_command_prints_a_password_from_a_failing_settings_file(tmp_path: Path, source: str) -> None:
    (tmp_path / "settings.py").write_text(source)
    for args in (
        ["initdb"],
        ["initdb", "--verbose"],
        ["migrate", "--list", "-v"],
        ["make_migrations", "--check"],
    ):
        result = dbp(*args, cwd=tmp_path)
        assert result.returncode == 1, result
        text = result.stdout + result.stderr
        assert SECRET not in text and SECRET.replace("!", "%21") not in text, text
        assert "error while loading" in result.stderr
        if "-v" in args or "--verbose" in args:
            assert "Traceback" in result.stderr and "settings.py" in result.stderr


def test_dsn_password_never_printed(tmp_path: Path) -> None:
    dsn = "postgresql://someone:pa%40ss-w0rd@/nodb?host=/nonexistent-dir&connect_timeout=2"
    for args in (["migrate", "--list", "--dsn", dsn], ["migrate", "--list", "--dsn", dsn, "--verbose"]):
        result = dbp(*args, cwd=tmp_path)
        assert result.returncode == 1
        text = result.stdout + result.stderr
        assert "pa@ss-w0rd" not in text and "pa%40ss-w0rd" not in text, text
    verbose = dbp("initdb", "-v", cwd=tmp_path, env={"DBP_DSN": dsn})
    assert verbose.returncode == 1 and "pa@ss-w0rd" not in verbose.stderr + verbose.stdout
    assert re.search(r"^Error: ", verbose.stderr, flags=re.M)


def test_secrets_are_found_in_dsns_and_settings_files(tmp_path: Path) -> None:
    from dbplugins._session.redact import secrets_in_dsn, secrets_in_settings_file

    assert "p@ss/w:rd" in secrets_in_dsn("postgresql://u:p%40ss%2Fw%3Ard@host/db")
    assert "a b'c" in secrets_in_dsn(r"host=h password='a b\'c' dbname=d")
    assert "plain" in secrets_in_dsn("host=h password=plain")
    (tmp_path / "settings.py").write_text(
        'X = "not-a-secret"\nDB = {"PASSWORD": "pw-1", "HOST": "h"}\nDB_PASSWORD = \'pw\\\\2\'\n'
        'URL = "postgresql://u:pw-3@h/db"\nf(password="pw-4", user="u")\n'
    )
    found = secrets_in_settings_file(str(tmp_path))
    assert found == {"pw-1", "pw\\2", "pw-3", "pw-4"}
    (tmp_path / "settings.py").write_text('DB = {"PASSWORD": "pw-5", "HOST": "h",\n')  # does not tokenize
    assert secrets_in_settings_file(str(tmp_path)) == {"pw-5"}


def test_a_python_migration_needs_confirmation(empty_dsn: str, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "20260101_01_fffff-py.py").write_text(
        f'from yoyo import step\n__depends__ = {{"{BUILTIN}"}}\n'
        'steps = [step("CREATE TABLE p (id int)", "DROP TABLE p")]\n'
    )
    cs = from_dsn(empty_dsn)
    runner.apply(cs, migrations)
    (step,) = runner.plan_rollback(cs, migrations)
    assert step.needs_confirmation and step.reasons == ("runs Python rollback code",)
    with pytest.raises(runner.RollbackNotConfirmed):
        dbplugins.migrations.rollback(cs, migrations_dir=migrations)
    assert "p" in _tables(empty_dsn)
