"""Migrations under faults, through the ``dbp`` command as a deployment would run it (subprocesses, exit
codes).

* 4 ``dbp migrate`` started together apply each migration exactly once (a migration's own side effect, not
  just yoyo's bookkeeping, is counted) and all exit 0;
* a migration that fails half-way leaves the schema exactly as it was and the migration pending, and the
  message names the file and the failing statement; fixed, it applies;
* the lock left by a ``dbp migrate`` killed with SIGKILL is reported, naming the dead process and the command
  that clears it; that command works, and ``migrate`` then succeeds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .conftest import admin, other_backends, sizes, wait_until

Result = subprocess.CompletedProcess[str]


def dbp(*args: str, timeout: float = 90) -> Result:
    return subprocess.run(
        [sys.executable, "-m", "dbplugins.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def dbp_start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dbplugins.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def builtin_head() -> str:
    from dbplugins.migrations.runner import heads

    (head,) = heads(None)
    return head


def write(directory: Path, name: str, body: str, depends: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.sql").write_text(f"-- depends: {depends}\n{body}\n")
    return name


def schema_snapshot(dsn: str) -> list[tuple[Any, ...]]:
    """Every table, column (type, nullability), constraint and index of the public schema."""
    with admin(dsn) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name NOT LIKE '%%yoyo%%' ORDER BY 1, 2"
        ).fetchall()
        constraints = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
        ).fetchall()
        indexes = conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"
        ).fetchall()
    return [*columns, *constraints, *indexes]


def applied_ids(dsn: str) -> list[str]:
    with admin(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT migration_id FROM _yoyo_migration ORDER BY 1")]


def one_error_line(result: Result) -> str:
    """The CLI's failure output: exit 1, one ``Error:`` line, no traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# -- 4 concurrent migrates -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rounds", sizes(1, 10))
def test_four_concurrent_migrates_apply_each_migration_once(
    make_database: Any, tmp_path: Path, rounds: int
) -> None:
    head = builtin_head()
    mdir = tmp_path / "migrations"
    first = write(
        mdir,
        "0001_counter",
        "CREATE TABLE applied_log (name text NOT NULL);\n"
        "INSERT INTO applied_log VALUES ('0001');\n"
        "SELECT pg_sleep(0.5);",  # widen the window in which the others arrive
        head,
    )
    second = write(
        mdir,
        "0002_more",
        "ALTER TABLE object ADD COLUMN watch int;\nINSERT INTO applied_log VALUES ('0002');",
        first,
    )
    third = write(
        mdir,
        "0003_index",
        "CREATE INDEX ix_object_watch ON object (watch);\nINSERT INTO applied_log VALUES ('0003');",
        second,
    )
    for _ in range(rounds):
        dsn = make_database("empty")
        procs = [dbp_start("migrate", "--dsn", dsn, "--migrations-dir", str(mdir)) for _ in range(4)]
        outputs = [p.communicate(timeout=120) for p in procs]
        for p, (out, err) in zip(procs, outputs, strict=True):
            assert p.returncode == 0, (out, err)
            assert "Traceback" not in err
        with admin(dsn) as conn:
            log = conn.execute("SELECT name, count(*) FROM applied_log GROUP BY 1 ORDER BY 1").fetchall()
            applies = conn.execute(
                "SELECT migration_id, count(*) FROM _yoyo_log WHERE operation = 'apply' GROUP BY 1 ORDER BY 1"
            ).fetchall()
        assert log == [("0001", 1), ("0002", 1), ("0003", 1)]
        assert applies == [(m, 1) for m in sorted([head, first, second, third])]
        assert applied_ids(dsn) == sorted([head, first, second, third])
        # Exactly one process did the work; the others found nothing left.
        assert sum("Applied 4 migration(s)" in out for out, _ in outputs) == 1, outputs
        assert sum("Nothing to apply" in out for out, _ in outputs) == 3, outputs


# -- a migration that fails half-way -------------------------------------------------------------------------


def test_a_migration_failing_half_way_changes_nothing_and_stays_pending(
    empty_dsn: str, tmp_path: Path
) -> None:
    mdir = tmp_path / "migrations"
    assert dbp("migrate", "--dsn", empty_dsn, "--migrations-dir", str(mdir)).returncode == 0  # built-in ones
    before = schema_snapshot(empty_dsn)
    before_ids = applied_ids(empty_dsn)
    good = write(mdir, "0001_good", "CREATE TABLE good_table (id int PRIMARY KEY);", builtin_head())
    body = (
        "CREATE TABLE half_a (id int PRIMARY KEY);\n"
        "ALTER TABLE object ADD COLUMN half_col int;\n"
        "CREATE INDEX ix_half ON object (half_col);\n"
        "INSERT INTO half_a VALUES (1);\n"
        "SELECT 1 / (SELECT count(*) - 1 FROM half_a);\n"  # division by zero, after four statements succeeded
        "CREATE TABLE half_b (id int);"
    )
    bad = write(mdir, "0002_half", body, good)

    result = dbp("migrate", "--dsn", empty_dsn, "--migrations-dir", str(mdir))
    line = one_error_line(result)
    assert "0002_half" in line and "division by zero" in line and "SELECT 1 / (SELECT count(*)" in line, line
    assert "pending" in line, line

    # The good migration before it stays applied; the bad one left nothing behind.
    assert applied_ids(empty_dsn) == sorted([*before_ids, good])
    after = schema_snapshot(empty_dsn)
    assert [x for x in after if x not in before] == [x for x in after if x[0] == "good_table"]
    assert all(x in after for x in before)
    listing = dbp("migrate", "--list", "--dsn", empty_dsn, "--migrations-dir", str(mdir))
    assert listing.returncode == 0 and f"[ ] {bad}" in listing.stdout and f"[X] {good}" in listing.stdout

    # Fixed, it applies completely.
    (mdir / f"{bad}.sql").write_text((mdir / f"{bad}.sql").read_text().replace("count(*) - 1", "count(*)"))
    fixed = dbp("migrate", "--dsn", empty_dsn, "--migrations-dir", str(mdir))
    assert fixed.returncode == 0, fixed.stderr
    with admin(empty_dsn) as conn:
        assert conn.execute("SELECT to_regclass('half_b') IS NOT NULL, count(*) FROM half_a").fetchone() == (
            True,
            1,
        )


# -- a stale lock --------------------------------------------------------------------------------------------


def test_a_stale_lock_from_a_killed_migrate_is_reported_with_the_command_that_clears_it(
    empty_dsn: str, tmp_path: Path
) -> None:
    mdir = tmp_path / "migrations"
    assert dbp("migrate", "--dsn", empty_dsn, "--migrations-dir", str(mdir)).returncode == 0
    with admin(empty_dsn) as conn:
        conn.execute("CREATE TABLE gate (id int)")
    name = write(
        mdir,
        "0001_blocked",
        "INSERT INTO gate VALUES (1);\nCREATE TABLE after_gate (id int);",
        builtin_head(),
    )

    holder = psycopg.connect(empty_dsn)
    try:
        holder.execute("LOCK TABLE gate IN ACCESS EXCLUSIVE MODE")  # the migration will wait on it
        proc = dbp_start("migrate", "--dsn", empty_dsn, "--migrations-dir", str(mdir))

        def blocked() -> bool:
            return any(q and "INSERT INTO gate" in q for _, _, q in other_backends(empty_dsn))

        wait_until(blocked, 60, "the migration to block inside the lock")
        with admin(empty_dsn) as conn:
            assert conn.execute("SELECT pid FROM yoyo_lock").fetchone() == (proc.pid,)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        holder.rollback()
        holder.close()
    # The orphaned backend finds its client gone and rolls the migration back; the lock row stays behind.
    wait_until(lambda: not [b for b in other_backends(empty_dsn) if b[1] != "idle"], 20, "the orphan to end")
    with admin(empty_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM gate").fetchone() == (0,)
        assert conn.execute("SELECT pid FROM yoyo_lock").fetchone() == (proc.pid,)

    start = time.monotonic()
    result = dbp("migrate", "--dsn", empty_dsn, "--migrations-dir", str(mdir), "--lock-timeout", "2")
    assert time.monotonic() - start < 60  # reported, not waited on forever
    line = one_error_line(result)
    output = result.stdout + result.stderr
    assert str(proc.pid) in output, output  # names the process that held it
    match = re.search(r"dbp migrate break-lock", output)
    assert match, output
    # The command it names clears the lock; migrate then applies the migration, once.
    cleared = dbp(*match.group(0).split()[1:], "--dsn", empty_dsn)
    assert cleared.returncode == 0, cleared.stderr
    done = dbp("migrate", "--dsn", empty_dsn, "--migrations-dir", str(mdir))
    assert done.returncode == 0, done.stderr
    assert name in applied_ids(empty_dsn) and "lock" in line
    with admin(empty_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM gate").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM yoyo_lock").fetchone() == (0,)
