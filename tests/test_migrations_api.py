"""The migrations Python API (``dbplugins.migrations``): the workflow of ``dbp`` without click, on a real
server.

Each call takes the database (DSN, config dict, settings or a connected ``SQLConnection``) and a migrations
directory, returns what it wrote or applied, and raises a ``DbpError`` subclass with a one-line message.
"""

from __future__ import annotations

import doctest
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dbplugins import (
    Column,
    ConfigurationError,
    ConnectionFailedError,
    DbpError,
    MigrationError,
    SQLConnection,
    migrations,
    model,
)
from dbplugins._sqlfiles import package_migrations_dir
from dbplugins.cli import cli
from dbplugins.config import from_dsn
from dbplugins.migrations import RollbackNotConfirmed

pytestmark = pytest.mark.timeout(180)


@model("api_watch", primary_key=["wid"])
@dataclass
class Watch:
    wid: Annotated[int, Column("bigint")]
    name: str


@model("api_watch", primary_key=["wid"])
@dataclass
class WatchV2:  # the same table, one column more
    wid: Annotated[int, Column("bigint")]
    name: str
    note: str | None = None


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_the_whole_workflow_without_the_cli(empty_dsn: str, tmp_path: Path) -> None:
    mdir = tmp_path / "migrations"
    init = migrations.initdb(empty_dsn)
    assert init.created and init.marked >= 1 and len(init.tables) == 17
    assert "object" in tables(empty_dsn)
    again = migrations.initdb(empty_dsn)
    assert not again.created and again.marked == 0

    assert not migrations.make_migrations(empty_dsn, migrations_dir=mdir).changed  # built-in models only
    draft = migrations.make_migrations(empty_dsn, models=[Watch], migrations_dir=mdir, name="add-watch")
    assert draft.changed and [op.kind for op in draft.operations] == ["add_table"]
    assert draft.path is not None and draft.path.parent == mdir.resolve() and draft.path.is_file()
    assert draft.id is not None and draft.id.endswith("add-watch")
    assert 'CREATE TABLE "api_watch"' in draft.sql and draft.sql == draft.path.read_text()
    assert 'DROP TABLE "api_watch"' in draft.rollback_sql
    assert draft.depends == tuple(m.id for m in migrations.status(empty_dsn).applied)  # the built-in head
    assert "api_watch" not in tables(empty_dsn)  # written, not applied

    status = migrations.status(empty_dsn, migrations_dir=mdir)
    assert [m.id for m in status.pending] == [draft.id] and len(status) == len(status.applied) + 1
    with pytest.raises(
        MigrationError, match=r"1 migration\(s\) not applied yet .*add-watch.*run `dbp migrate`"
    ):
        migrations.make_migrations(empty_dsn, models=[Watch], migrations_dir=mdir)
    assert sorted(p.name for p in mdir.iterdir()) == sorted([draft.path.name, f"{draft.id}.rollback.sql"])

    preview = migrations.migrate(empty_dsn, migrations_dir=mdir, dry_run=True)
    assert preview.dry_run and preview.applied == [] and preview.pending == [draft.id]
    assert 'CREATE TABLE "api_watch"' in preview.sql and "api_watch" not in tables(empty_dsn)
    done = migrations.migrate(empty_dsn, migrations_dir=mdir)
    assert done.applied == [draft.id] and "api_watch" in tables(empty_dsn)
    assert migrations.migrate(empty_dsn, migrations_dir=mdir).applied == []
    assert not migrations.make_migrations(
        empty_dsn, models=[Watch], migrations_dir=mdir, dry_run=True
    ).changed

    # A model change: dry run first (nothing written), then the file.
    change = migrations.make_migrations(empty_dsn, models=[WatchV2], migrations_dir=mdir, dry_run=True)
    assert change.changed and change.path is None and 'ADD COLUMN "note"' in change.sql
    assert len(list(mdir.iterdir())) == 2

    plan = migrations.rollback(empty_dsn, migrations_dir=mdir, dry_run=True)
    assert plan.dry_run and plan.ids == [draft.id]
    assert plan.needs_confirmation and plan.steps[0].reasons == ("drops table api_watch",)
    with pytest.raises(RollbackNotConfirmed, match="drops table api_watch"):
        migrations.rollback(empty_dsn, migrations_dir=mdir)  # refused by default: it drops a table
    assert "api_watch" in tables(empty_dsn)
    undone = migrations.rollback(empty_dsn, migrations_dir=mdir, allow_destructive=True, expect=plan.ids)
    assert undone.ids == [draft.id] and not undone.dry_run and "api_watch" not in tables(empty_dsn)
    assert [m.id for m in migrations.status(empty_dsn, migrations_dir=mdir).pending] == [draft.id]


def test_rollback_with_a_stale_plan_undoes_nothing(empty_dsn: str, tmp_path: Path) -> None:
    migrations.initdb(empty_dsn)
    plan = migrations.rollback(empty_dsn, migrations_dir=tmp_path, dry_run=True)
    with pytest.raises(MigrationError, match="changed since the rollback was planned"):
        migrations.rollback(empty_dsn, migrations_dir=tmp_path, allow_destructive=True, expect=["other"])
    with pytest.raises(MigrationError, match="count or to, not both"):
        migrations.rollback(empty_dsn, count=1, to="x")
    with pytest.raises(MigrationError, match="count must be at least 1, not 0"):
        migrations.rollback(empty_dsn, count=0, dry_run=True)
    with pytest.raises(MigrationError, match="no applied migration matches 'nope'"):
        migrations.rollback(empty_dsn, to="nope", dry_run=True)
    assert plan.steps[0].builtin and "object" in tables(empty_dsn)


def test_every_kind_of_target(dsn: str, db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = conninfo_to_dict(dsn)
    config = {"ENGINE": "postgresql", "HOST": params["host"], "PORT": params["port"], "USER": params["user"],
              "PASSWORD": params.get("password", ""), "DB_NAME": params["dbname"]}
    expected = [m.id for m in migrations.status(dsn)]
    for target in (dsn, from_dsn(dsn), db, config):
        assert [m.id for m in migrations.status(target, migrations_dir=tmp_path)] == expected
    monkeypatch.setenv("DBP_DSN", dsn)
    assert [m.id for m in migrations.status()] == expected  # None: the environment, as dbp
    with pytest.raises(ConfigurationError, match="not connected"):
        migrations.status(SQLConnection())
    with pytest.raises(ConfigurationError, match="cannot connect with a int"):
        migrations.status(42)  # type: ignore[arg-type]


def test_models_and_directories_are_checked(dsn: str, tmp_path: Path) -> None:
    assert migrations.models_of([Watch, Watch])[-1] is Watch and migrations.models_of(Watch)[-1] is Watch
    assert Watch in migrations.models_of([__name__])  # module names, as settings.py MODELS
    with pytest.raises(ConfigurationError, match="neither a module nor a class declared with @model"):
        migrations.models_of([int])
    with pytest.raises(ConfigurationError, match="cannot import module 'no_such_models_module'"):
        migrations.models_of(["no_such_models_module"])
    with pytest.raises(MigrationError, match="refusing to write into .*built-in migrations"):
        migrations.make_migrations(dsn, models=[Watch], migrations_dir=package_migrations_dir())
    (tmp_path / "afile").write_text("")
    with pytest.raises(MigrationError, match="is a file, not a directory"):
        migrations.migrate(dsn, migrations_dir=tmp_path / "afile")


def test_the_docstring_examples_run() -> None:
    import dbplugins.migrations.api as api

    result = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- connections: within connect_timeout, one line naming the target and the server's reason -----------------

PASSWORD = "mig-S3cret/pw"
ROLE = f"dbp_mig_fail_{os.getpid()}"


@pytest.fixture(scope="module")
def role_dsn(server_dsn: str) -> Iterator[str]:
    """A DSN for a role that must authenticate with ``PASSWORD`` (the embedded server asks it for SCRAM)."""
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(PASSWORD))
        )
    try:
        yield make_conninfo(server_dsn, user=ROLE, password=PASSWORD)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CALLS: dict[str, Callable[[str, Path], object]] = {
    "status": lambda t, d: migrations.status(t, migrations_dir=d),
    "migrate": lambda t, d: migrations.migrate(t, migrations_dir=d),
    "migrate-dry-run": lambda t, d: migrations.migrate(t, migrations_dir=d, dry_run=True),
    "make_migrations": lambda t, d: migrations.make_migrations(t, migrations_dir=d),
    "rollback": lambda t, d: migrations.rollback(t, migrations_dir=d, allow_destructive=True),
    "initdb": lambda t, d: migrations.initdb(t),
    "break_lock": lambda t, d: migrations.break_lock(t),
}


def failure(call: str, target: str, tmp_path: Path) -> str:
    with pytest.raises(ConnectionFailedError) as info:
        CALLS[call](target, tmp_path)
    err = info.value
    assert isinstance(err, DbpError) and isinstance(err.__cause__, psycopg.OperationalError)
    text = str(err)
    assert "\n" not in text and PASSWORD not in text and "S3cret" not in text and "********" not in text
    return text


@pytest.mark.parametrize("call", list(CALLS))
def test_a_wrong_password_names_the_target_and_the_reason(call: str, role_dsn: str, tmp_path: Path) -> None:
    params = conninfo_to_dict(role_dsn)
    wrong = make_conninfo(role_dsn, password="wrong-" + PASSWORD)
    text = failure(call, wrong, tmp_path)
    assert text.startswith(f"cannot connect to database {params['dbname']!r} as user {ROLE!r} on ")
    assert f"on {params['host']} port {params['port']}" in text
    assert f'password authentication failed for user "{ROLE}"' in text and "wrong-" not in text


@pytest.mark.parametrize("call", ["status", "migrate", "initdb"])
def test_a_refused_port_names_the_target(call: str, tmp_path: Path) -> None:
    port = free_tcp_port()
    text = failure(call, f"host=127.0.0.1 port={port} user=alerce dbname=ztf password={PASSWORD}", tmp_path)
    assert text.startswith(f"cannot connect to database 'ztf' as user 'alerce' on 127.0.0.1 port {port}: ")
    assert "Connection refused" in text


def test_migration_connections_carry_a_connect_timeout(dsn: str) -> None:
    from dbplugins.migrations._yoyo import _backend, connect

    settings = from_dsn(dsn)
    with connect(settings) as conn:
        assert conninfo_to_dict(conn.info.dsn).get("connect_timeout") == "10"  # SQLConnection's default
    with _backend(settings) as backend:
        assert conninfo_to_dict(backend.connection.info.dsn).get("connect_timeout") == "10"
    with connect(from_dsn(make_conninfo(dsn, connect_timeout=3))) as conn:  # the DSN's own wins
        assert conninfo_to_dict(conn.info.dsn).get("connect_timeout") == "3"


@pytest.mark.parametrize(
    "args", [["migrate", "--list"], ["migrate"], ["make_migrations", "--check"], ["initdb"]]
)
def test_the_commands_print_the_same_line(args: list[str], role_dsn: str, tmp_path: Path) -> None:
    wrong = make_conninfo(role_dsn, password="wrong-" + PASSWORD)
    where = ["--migrations-dir", str(tmp_path)] if args[0] != "initdb" else []
    result = CliRunner().invoke(cli, [*args, "--dsn", wrong, *where])
    assert result.exit_code == 1, result.output
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("Error: ")]
    assert line.startswith(
        f"Error: cannot connect to database '{conninfo_to_dict(role_dsn)['dbname']}' as user"
    )
    assert f'password authentication failed for user "{ROLE}"' in line
    assert PASSWORD not in result.output and "wrong-" not in result.output
