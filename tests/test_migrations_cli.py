"""``dbp`` driven as a Makefile would: subprocesses, exit codes and messages.

Each ``dbp`` call costs about half a second (a fresh interpreter), so the scenarios are few and each does a
lot.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from dbplugins._types.schema import Schema
from dbplugins.migrations import canonicalize, diff, introspect
from dbplugins.models import ALL_MODELS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "migrations.md"


def dbp(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dbplugins.cli ARGS`` in ``cwd``; never raises on a non-zero exit."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("DBP_DSN", "DATABASE_URL")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "dbplugins.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert result.returncode == code, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def _doc_example() -> tuple[dict[str, str], list[tuple[str, int]]]:
    """The files (python blocks headed ``# <name>.py``) and commands (the ``sh`` block) of the migrations
    guide.

    The guide is docs/migrations.md's section that starts at "## Example" and ends at the next level-2
    heading.
    """
    full = DOC.read_text()
    start = full.index("## Example")
    end = full.find("\n## ", start + 1)
    text = full[start : end if end != -1 else len(full)]
    files = {}
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        first = block.splitlines()[0]
        m = re.fullmatch(r"# (\w+\.py)", first.strip())
        if m:
            files[m.group(1)] = block
    (sh,) = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    commands = []
    for line in sh.splitlines():
        command, _, comment = line.partition("#")
        if command.strip():
            code = 1 if "exit 1" in comment else 0
            commands.append((command.strip(), code))
    return files, commands


def _schema(dsn: str) -> Schema:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return introspect(conn)


V2_MODELS = """
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Optional

from dbplugins import Column, Index, model


@model(
    "watchlist",
    primary_key=["wid"],
    indexes=[
        Index("ix_watchlist_name", ["name", "owner"]),
        Index("ix_watchlist_owner", ["owner"], using="hash"),
    ],
)
@dataclass
class Watchlist:
    wid: Annotated[int, Column("bigint")]
    name: str
    note: str                                                   # NULL -> NOT NULL
    rating: Optional[float] = None                              # score dropped, rating added
    owner: Annotated[Optional[str], Column(references="object.oid")] = None   # new column and foreign key


@model(
    "watchlist_event",
    primary_key=["eid"],
    indexes=[Index("ix_watchlist_event_kind", ["kind"], where="kind = 'alert'")],
)
@dataclass
class WatchlistEvent:
    eid: Annotated[int, Column("bigint")]
    wid: Annotated[int, Column("bigint", references="watchlist.wid")]
    kind: str
    at: datetime
"""


def test_documented_example_then_a_model_change(empty_dsn: str, tmp_path: Path) -> None:
    """The migrations guide's example verbatim, then v2 of the model: migrations written, applied, verified,
    rolled back."""
    files, commands = _doc_example()
    assert set(files) == {"settings.py", "watchlist_models.py"}
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    env = {"DBP_DSN": empty_dsn}  # overrides the example's DB_CONFIG, as documented
    outputs = []
    for command, code in commands:
        args = command.split()
        assert args[0] == "dbp"
        outputs.append(ok(dbp(*args[1:], cwd=tmp_path, env=env), code))
    assert "make_migrations" in outputs[0]  # initdb tells how to bring in MODELS
    assert "watchlist" in outputs[1]  # --check lists the changes
    written = sorted((tmp_path / "migrations").glob("*.sql"))
    (first,) = [p for p in written if not p.name.endswith(".rollback.sql")]
    assert first.name.endswith("-add-watchlist.sql") and len(written) == 2
    assert first.with_name(first.name.replace(".sql", ".rollback.sql")).is_file()
    assert "No changes" in outputs[4]
    assert re.search(r"\[X\] \S+-add-watchlist", outputs[5])
    v1 = _schema(empty_dsn)
    assert {"watchlist", "watchlist_target", "object"} <= set(v1.tables)
    assert not any(p.is_relative_to(ROOT / "migrations") for p in written)  # never inside the package

    # -- v2: add and drop columns and tables, nullability, indexes, foreign keys
    (tmp_path / "watchlist_models.py").write_text(V2_MODELS)
    ok(dbp("make_migrations", "--check", cwd=tmp_path, env=env), 1)
    assert len(list((tmp_path / "migrations").glob("*.sql"))) == 2  # --check wrote nothing
    dry = ok(dbp("make-migrations", "--dry-run", cwd=tmp_path, env=env))
    assert 'ALTER TABLE "watchlist" DROP COLUMN "score";' in dry and "-- DESTRUCTIVE" in dry
    made = dbp(
        "make-migrations", "--settings_path", str(tmp_path), "--name", "watchlist v2", cwd=ROOT, env=env
    )
    ok(made)
    assert "possible rename of watchlist.score to watchlist.rating" in made.stderr
    (v2_file,) = (tmp_path / "migrations").glob("*-watchlist-v2.sql")
    assert re.search(r"-- depends: \S+-add-watchlist\n", v2_file.read_text())
    ok(dbp("migrate", cwd=tmp_path, env=env))
    v2 = _schema(empty_dsn)
    wl = v2.tables["watchlist"]
    assert "watchlist_target" not in v2.tables and "watchlist_event" in v2.tables
    assert "score" not in wl.columns and wl.columns["rating"].sql_type == "double precision"
    assert wl.columns["note"].nullable is False
    ix = {i.name: i for i in wl.indexes}
    assert ix["ix_watchlist_name"].columns == ("name", "owner") and ix["ix_watchlist_owner"].using == "hash"
    fks = {(fk.columns, fk.ref_table) for fk in wl.foreign_keys}
    assert (("owner",), "object") in fks
    event_ix = v2.tables["watchlist_event"].indexes[0]
    assert event_ix.where is not None and "alert" in event_ix.where
    assert "No changes" in ok(dbp("make_migrations", "--check", cwd=tmp_path, env=env))  # converged

    # -- rollback of v2 gives v1 back
    refused = dbp("migrate", "rollback", "--count", "1", cwd=tmp_path, env=env)  # drops data: needs --yes
    ok(refused, 2)
    assert "drops table watchlist_event" in refused.stdout and "--yes" in refused.stderr
    assert _schema(empty_dsn) == v2  # nothing was undone
    out = ok(dbp("migrate", "rollback", "--count", "1", "--yes", cwd=tmp_path, env=env))
    assert "watchlist-v2" in out
    back = _schema(empty_dsn)
    assert diff(back, v1) == [] and diff(v1, back) == []
    listing = ok(dbp("migrate", "--list", cwd=tmp_path, env=env))
    assert re.search(r"\[ \] \S+-watchlist-v2", listing) and "1 pending" in listing


def _write(directory: Path, name: str, sql: str, depends: str = "") -> None:
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.sql").write_text(
        f"-- {name}\n-- depends: {depends}\n\n{textwrap.dedent(sql).strip()}\n"
    )


def _builtin_head() -> str:
    from dbplugins.migrations.runner import heads

    return heads(None)[0]


def test_concurrent_migrates_apply_each_migration_once(empty_dsn: str, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    head = _builtin_head()
    _write(migrations, "20260101_01_aaaaa-t1", "CREATE TABLE t1 (id integer PRIMARY KEY);", head)
    _write(migrations, "20260101_02_bbbbb-fill", "INSERT INTO t1 VALUES (1);", "20260101_01_aaaaa-t1")
    env = {k: v for k, v in os.environ.items() if k not in ("DBP_DSN", "DATABASE_URL")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dbplugins.cli", "migrate", "--dsn", empty_dsn],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert code == 0, f"{out}\n{err}"
        assert "Traceback" not in err
    assert sum("Applied 3 migration(s)" in out for _, out, _ in results) == 1
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM t1").fetchone() == (1,)
        per_migration = conn.execute(
            "SELECT migration_id, count(*) FROM _yoyo_log WHERE operation = 'apply' GROUP BY 1"
        ).fetchall()
        assert sorted(n for _, n in per_migration) == [1, 1, 1]
        assert conn.execute("SELECT count(*) FROM yoyo_lock").fetchone() == (0,)


def test_failing_migration_rolls_back_and_stays_pending(empty_dsn: str, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    _write(
        migrations,
        "20260101_01_ccccc-broken",
        """
        CREATE TABLE half_done (id integer);
        ALTER TABLE no_such_table ADD COLUMN x integer;
        """,
        _builtin_head(),
    )
    result = dbp("migrate", "--dsn", empty_dsn, cwd=tmp_path)
    ok(result, 1)
    err = result.stderr
    assert err.startswith("Error: migration 20260101_01_ccccc-broken failed at statement 2 of ")
    assert "20260101_01_ccccc-broken.sql" in err and "ALTER TABLE no_such_table" in err
    assert 'relation "no_such_table" does not exist' in err and "still pending" in err
    assert len(err.strip().splitlines()) == 1
    schema = _schema(empty_dsn)
    assert "half_done" not in schema.tables  # the whole migration was rolled back ...
    assert "object" in schema.tables  # ... the built-in one before it stays applied
    listing = ok(dbp("migrate", "--list", "--dsn", empty_dsn, cwd=tmp_path))
    assert "[ ] 20260101_01_ccccc-broken" in listing
    assert "Traceback" in dbp("migrate", "--dsn", empty_dsn, "--verbose", cwd=tmp_path).stderr


def test_stale_lock_names_the_command_that_clears_it(empty_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE yoyo_lock"
            " (locked integer DEFAULT 1 PRIMARY KEY, ctime timestamp, pid integer NOT NULL)"
        )
        conn.execute("INSERT INTO yoyo_lock VALUES (1, now(), 999999)")
    started = time.monotonic()
    result = dbp("migrate", "--dsn", empty_dsn, "--lock-timeout", "1", cwd=tmp_path)
    ok(result, 1)
    assert time.monotonic() - started < 30
    assert "waiting for the migration lock held by process 999999" in result.stderr  # said up front
    assert "Process 999999" in result.stderr and "dbp migrate break-lock" in result.stderr
    assert "Cleared" in ok(dbp("migrate", "break-lock", "--dsn", empty_dsn, cwd=tmp_path)).replace(
        "cleared", "Cleared"
    )
    assert "Applied 1" in ok(dbp("migrate", "--dsn", empty_dsn, cwd=tmp_path))


def test_settings_errors_are_one_line_without_secrets(server_dsn: str, tmp_path: Path) -> None:
    missing = dbp("migrate", "--settings_path", str(tmp_path / "nowhere"), cwd=tmp_path)
    ok(missing, 1)
    assert missing.stderr.strip() == f"Error: settings file not found: {tmp_path / 'nowhere' / 'settings.py'}"

    params = psycopg.conninfo.conninfo_to_dict(server_dsn)
    secret = "s3cr3t@/pw"
    (tmp_path / "settings.py").write_text(
        f"DB_CONFIG = {{'SQL': {{'ENGINE': 'postgresql', 'HOST': {params['host']!r}, "
        f"'PORT': {str(params.get('port', 5432))!r}, 'USER': 'dbp_nobody', 'PASSWORD': {secret!r}, "
        "'DB_NAME': 'postgres'}}\n"
    )
    failed = dbp("make_migrations", "--check", cwd=tmp_path)
    ok(failed, 1)
    assert failed.stderr.startswith("Error: ") and secret not in failed.stderr + failed.stdout
    verbose = dbp("initdb", "--verbose", cwd=tmp_path)
    assert verbose.returncode == 1 and secret not in verbose.stderr + verbose.stdout

    usage = dbp("migrate", "rollback", "--count", "0", cwd=tmp_path)
    assert usage.returncode == 2


def test_make_migrations_refuses_while_migrations_are_pending(empty_dsn: str, tmp_path: Path) -> None:
    result = dbp("make_migrations", "--dsn", empty_dsn, cwd=tmp_path)
    ok(result, 1)
    assert "run `dbp migrate` first" in result.stderr
    assert not (tmp_path / "migrations").exists()


def test_embedded_status(server_dsn: str, tmp_path: Path) -> None:
    if os.environ.get("DBP_TEST_DSN"):
        pytest.skip("tests run against an external server")
    result = dbp("embedded", "status", cwd=ROOT)
    assert ok(result).startswith("running: ")


def test_builtin_models_match_after_initdb(dsn: str) -> None:
    """No false positives on the original schema (in-process: the subprocess path is covered above)."""
    desired = Schema.from_models(ALL_MODELS)
    with psycopg.connect(dsn, autocommit=True) as conn:
        current = introspect(conn)
        assert diff(current, canonicalize(conn, desired, current)) == []
