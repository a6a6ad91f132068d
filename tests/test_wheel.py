"""The built wheel carries sql/ and migrations/: `dbp initdb` works from an install without the source
tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_initdb_runs_without_the_source_tree(empty_dsn: str, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("dbplugins-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "dbplugins/_sql/schema/12_detection.sql" in names
    assert any(n.startswith("dbplugins/_migrations/") and n.endswith(".rollback.sql") for n in names)
    assert "dbplugins/py.typed" in names

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("DBP_DSN", None)
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import dbplugins, dbplugins._sqlfiles as s; print(dbplugins.__file__, s.sql_dir())",
        ],
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert str(target) in where and str(ROOT) not in where
    result = subprocess.run(
        [sys.executable, "-m", "dbplugins.cli", "initdb", "--dsn", empty_dsn],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with psycopg.connect(empty_dsn) as conn:
        row = conn.execute(
            "select count(*) from pg_tables where schemaname = 'public' and tablename in "
            "('object', 'detection', 'non_detection', 'dataquality', 'reference')"
        ).fetchone()
    assert row == (5,)
