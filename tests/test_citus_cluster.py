"""``dbp cluster start|status|stop|destroy``: the local Citus cluster as a command (docs/cli.md,
docs/scaling.md).

The test that starts a cluster needs Citus (``DBP_CITUS_PG_BIN``, default the system PostgreSQL 15): without
it, it skips with one line, and ``DBP_REQUIRE_CITUS=1`` turns that skip into a failure. The others run
everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from dbplugins.cli import cli


def run(*args: str, env: dict[str, str], module: str = "dbplugins.cli") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, timeout=240
    )


def test_without_citus_start_says_what_is_missing_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBP_EMBEDDED_DIR", str(tmp_path))
    monkeypatch.setenv("DBP_CITUS_PG_BIN", str(tmp_path / "no-postgres"))
    result = CliRunner().invoke(cli, ["cluster", "start"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: cannot start a local Citus cluster: no PostgreSQL server binaries in "
        f"{tmp_path / 'no-postgres'} (set DBP_CITUS_PG_BIN)\n"
    )
    assert not (tmp_path / "citus").exists()


def test_status_of_no_cluster_and_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBP_EMBEDDED_DIR", str(tmp_path))
    status = CliRunner().invoke(cli, ["cluster", "status"])
    assert (status.exit_code, status.output) == (1, f"not running ({tmp_path.resolve() / 'citus'})\n")
    assert CliRunner().invoke(cli, ["cluster", "bogus"]).exit_code == 2
    assert CliRunner().invoke(cli, ["cluster"]).exit_code in (0, 2)  # click prints the group's help
    help_text = CliRunner().invoke(cli, ["cluster", "--help"]).output
    for command in ("start", "status", "stop", "destroy"):
        assert command in help_text


@pytest.mark.citus
def test_dbp_cluster_starts_reports_stops_restarts_and_destroys() -> None:
    from dbplugins.citus import unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"no local Citus cluster: {reason}")
    # Not under pytest's tmp_path: every pytest session that starts (anyone's) takes the other-users bits off
    # /tmp/pytest-of-<user>, and the servers may run as another account.
    root = Path(tempfile.mkdtemp(prefix="dbp-cluster-cmd-"))
    env = {**os.environ, "DBP_EMBEDDED_DIR": str(root)}
    try:
        started = run("cluster", "start", env=env)
        assert started.returncode == 0, started.stderr
        dsn = started.stdout.strip()
        assert started.stdout == dsn + "\n"  # the DSN alone on stdout: DBP_DSN="$(dbp cluster start)"
        assert "ready" in started.stderr and str(root / "citus") in started.stderr
        assert f"passfile={root / 'citus' / 'passfile'}" in dsn
        assert "password" not in dsn.replace("passfile", "")
        with psycopg.connect(dsn) as conn:
            assert len(conn.execute("SELECT * FROM citus_get_active_worker_nodes()").fetchall()) == 2

        status = run("cluster", "status", env=env)
        assert (status.returncode, status.stdout) == (0, f"running: {dsn}\n")
        # python -m dbplugins.citus: the same command
        alias = run("status", env=env, module="dbplugins.citus")
        assert (alias.returncode, alias.stdout) == (0, status.stdout)

        stopped = run("cluster", "stop", env=env)
        assert (stopped.returncode, stopped.stdout) == (0, "stopped\n")
        down = run("cluster", "status", env=env)
        assert (down.returncode, down.stdout) == (1, f"not running ({root / 'citus'})\n")
        again = run("cluster", "start", env=env)
        assert (again.returncode, again.stdout.strip()) == (0, dsn)  # restarted on the same ports
    finally:
        destroyed = run("cluster", "destroy", env=env)
    assert (destroyed.returncode, destroyed.stdout) == (0, f"removed {root / 'citus'}\n")
    assert not (root / "citus").exists()
    shutil.rmtree(root, ignore_errors=True)
