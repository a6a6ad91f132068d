"""The embedded server lets no other local account in, and works from a directory whose path has a space.

The superuser is trusted on the server's Unix socket, so the socket's directory is the gate: mode 0700, owned
by the server's OS user. The refusal tests run a client as ``nobody`` and need root (to switch user); they are
skipped otherwise. Each test uses a server of its own module under a temporary directory named with a space.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dbplugins.embedded import _CONF_MARKER, EmbeddedServer, _bin_dir


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedServer]:
    # Not under pytest's tmp_path: any pytest run of the same user resets /tmp/pytest-of-<user> to 0700, and
    # the server's system user (when we are root) must traverse the path.
    top = Path(tempfile.mkdtemp(prefix="dbp embedded sec "))
    srv = EmbeddedServer(top / "server dir")
    srv.start()
    srv.wait_ready()
    try:
        yield srv
    finally:
        srv.stop("immediate")
        shutil.rmtree(top, ignore_errors=True)


def _as_other_user() -> list[str]:
    if os.geteuid() != 0:
        pytest.skip("switching to another OS user needs root")
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"]
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
    pytest.skip("neither runuser nor setpriv is installed")


def _psql(server: EmbeddedServer, prefix: list[str] = []) -> subprocess.CompletedProcess[str]:  # noqa: B006
    return subprocess.run(
        [*prefix, str(_bin_dir() / "psql"), server.dsn(), "-Atc", "SELECT current_user"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


def test_a_path_with_spaces_works(server: EmbeddedServer) -> None:
    assert " " in str(server.socket_dir)
    with psycopg.connect(server.dsn()) as conn:
        assert conn.execute("SHOW unix_socket_permissions").fetchone() == ("0700",)


def test_socket_directory_is_private(server: EmbeddedServer) -> None:
    mode = stat.S_IMODE(server.socket_dir.stat().st_mode)
    assert mode == 0o700, oct(mode)
    ours = (server.pgdata / "postgresql.conf").read_text().split(_CONF_MARKER)
    assert len(ours) == 2 and "unix_socket_permissions = 0700" in ours[1] and "0777" not in ours[1]


def test_another_os_user_is_refused(server: EmbeddedServer) -> None:
    prefix = _as_other_user()
    mine = _psql(server)
    assert mine.returncode == 0 and mine.stdout.strip() == "postgres", (
        mine.stderr
    )  # the same client works for us
    theirs = _psql(server, prefix)
    assert theirs.returncode != 0, theirs.stdout
    assert "Permission denied" in theirs.stderr, theirs.stderr


def test_an_old_data_directory_is_fixed_on_the_next_start(server: EmbeddedServer) -> None:
    prefix = _as_other_user()
    # What the old version left: a world-writable socket directory and socket, and 0777 in postgresql.conf.
    os.chmod(server.socket_dir, 0o777)
    for sock in server.socket_dir.glob(".s.PGSQL.*"):
        if not sock.name.endswith(".lock"):
            os.chmod(sock, 0o777)
    assert _psql(server, prefix).returncode == 0  # the hole this test is about, reproduced
    server.start()  # already running: start() still closes it
    assert _psql(server, prefix).returncode != 0

    conf = server.pgdata / "postgresql.conf"
    text = conf.read_text()
    old_block = (
        "max_connections = 300\nshared_buffers = 256MB\nlisten_addresses = ''\n"
        "unix_socket_permissions = 0777\nlog_min_messages = warning\n"
    )
    conf.write_text(text[: text.index(_CONF_MARKER)] + _CONF_MARKER + old_block)
    server.stop()
    server.start()
    server.wait_ready()
    ours = conf.read_text().split(_CONF_MARKER)
    assert len(ours) == 2 and "unix_socket_permissions = 0700" in ours[1] and "0777" not in ours[1]
    with psycopg.connect(server.dsn()) as c:
        assert c.execute("SHOW unix_socket_permissions").fetchone() == ("0700",)
    assert _psql(server, prefix).returncode != 0
    assert _psql(server).returncode == 0


def test_dbp_embedded_start_in_a_directory_with_a_space(server: EmbeddedServer) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DBP_DSN", "DATABASE_URL")}
    env["DBP_EMBEDDED_DIR"] = str(server.root)
    result = subprocess.run(
        [sys.executable, "-m", "dbplugins.cli", "embedded", "start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with psycopg.connect(result.stdout.strip()) as conn:  # psql "$(dbp embedded start)"
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_tightened_parent_does_not_hide_the_running_server(server: EmbeddedServer) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root runs the server as another user")
    os.chmod(server.root.parent, 0o700)  # what any pytest run does to /tmp/pytest-of-root
    assert server.is_running()  # else stop() would leave it running
