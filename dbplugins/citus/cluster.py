"""A local Citus cluster for development and tests: a coordinator and workers on 127.0.0.1.

    dbp cluster start     # prints the coordinator's DSN; data under ./.dbp/citus
    dbp cluster stop      # also: status, destroy (python -m dbplugins.citus is the same command)

The servers come from a Citus-enabled PostgreSQL (``DBP_CITUS_PG_BIN``, default
``/usr/lib/postgresql/15/bin``). Each node listens on 127.0.0.1 only (no Unix socket) and asks every client
for a password (scram-sha-256): a random one made at initialisation and kept in ``<root>/passfile`` (mode
0600), which the DSN names with libpq's ``passfile=`` rather than carrying the secret, and which the nodes use
to reach each other (``PGPASSFILE``). The ports are chosen free at initialisation and kept in
``<root>/cluster.json``, so a restart reuses them.

PostgreSQL refuses to run as root; as root the servers run as the unprivileged ``embedded_postgres`` system
user, as the embedded server does (``dbplugins.embedded``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from ..embedded import directory_lock, pg_ctl_start, pg_ctl_stop
from ..errors import ConfigurationError

__all__ = ["LocalCluster", "pg_bin", "unavailable_reason", "default_cluster_dir"]

_SUPERUSER = "postgres"
_DBNAME = "dbp"
_SERVER_USER = "embedded_postgres"  # the embedded server's user: one unprivileged account for both
# Per node. max_prepared_transactions: Citus commits a write that touched several workers with two-phase
# commit. citus.shard_count 8 (Citus's default is 32): a 2-core development machine creates and scans fewer
# shards; a production cluster chooses its own (docs/scaling.md).
_SETTINGS = {
    "shared_preload_libraries": "'citus'",
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "300",
    "max_prepared_transactions": "300",
    "shared_buffers": "128MB",
    "log_min_messages": "warning",
    "citus.shard_count": "8",
}


def pg_bin() -> Path:
    """The PostgreSQL binaries to run: ``$DBP_CITUS_PG_BIN`` or the system PostgreSQL 15."""
    return Path(os.environ.get("DBP_CITUS_PG_BIN") or "/usr/lib/postgresql/15/bin")


def default_cluster_dir() -> Path:
    """Where ``dbp cluster`` keeps its cluster: ``$DBP_EMBEDDED_DIR/citus`` or ``./.dbp/citus``."""
    return Path(os.environ.get("DBP_EMBEDDED_DIR") or Path.cwd() / ".dbp").resolve() / "citus"


def _pkglibdir(bindir: Path) -> Path:
    pg_config = bindir / "pg_config"
    if pg_config.exists():
        out = subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    return bindir.parent / "lib"


def unavailable_reason(bindir: Path | None = None) -> str | None:
    """Why a local cluster cannot start here (one line), or ``None`` when PostgreSQL and Citus are
    installed."""
    bindir = bindir or pg_bin()
    if not (bindir / "postgres").exists() or not (bindir / "pg_ctl").exists():
        return f"no PostgreSQL server binaries in {bindir} (set DBP_CITUS_PG_BIN)"
    if not (_pkglibdir(bindir) / "citus.so").exists():
        return f"Citus is not installed into the PostgreSQL of {bindir} (see docs/scaling.md)"
    return None


def _server_user() -> str | None:
    """The account the servers run as: ``None`` (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "-s", "/bin/false", _SERVER_USER], check=True, capture_output=True, timeout=60
        )
    return _SERVER_USER


def _as_server_user() -> dict[str, Any]:
    """``subprocess.run`` options that run a command as the server account: its user *and* its groups (with
    the user alone the process keeps group root, whose permission bits then apply to root-owned
    directories)."""
    user = _server_user()
    return {} if user is None else {"user": user, "group": user, "extra_groups": []}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _traversable(path: Path) -> None:
    """Let the server account reach ``path``: o+x on every parent (as the embedded server does)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


@dataclass
class LocalCluster:
    """A coordinator plus ``workers`` workers under ``root``. ``start()`` initialises the first time;
    idempotent."""

    root: Path
    workers: int = 2
    bindir: Path = field(default_factory=pg_bin)

    @property
    def _state_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def passfile(self) -> Path:
        return self.root / "passfile"

    def _state(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self._state_file.read_text())
        except FileNotFoundError:
            return None
        return state

    @property
    def ports(self) -> list[int]:
        """The coordinator's port, then the workers'."""
        state = self._state()
        if state is None:
            raise ConfigurationError(f"no Citus cluster initialised in {self.root}")
        return [int(p) for p in state["ports"]]

    def _pgdata(self, node: int) -> Path:
        return self.root / f"node{node}"

    def dsn(self, node: int = 0, dbname: str = _DBNAME) -> str:
        """A libpq DSN for ``node`` (0: the coordinator). The password stays in the passfile it names."""
        return make_conninfo(
            host="127.0.0.1",
            port=self.ports[node],
            user=_SUPERUSER,
            dbname=dbname,
            passfile=str(self.passfile),
            connect_timeout=10,
        )

    # -- processes -------------------------------------------------------------------------------------------

    def _run(self, exe: str, *args: str, timeout: float = 120) -> None:
        # HOME: libpq in the servers (node-to-node connections) must not look for our ~/.postgresql.
        env = {**os.environ, "PGPASSFILE": str(self.passfile), "HOME": str(self.root)}
        try:
            subprocess.run(
                [str(self.bindir / exe), *args],
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                **_as_server_user(),
                env=env,
                cwd=self.root,
            )
        except subprocess.CalledProcessError as exc:
            raise ConfigurationError(
                f"Citus cluster: {exe} failed (exit {exc.returncode}): {(exc.stderr or exc.stdout).strip()}"
            ) from exc

    def _running(self, node: int) -> bool:
        result = subprocess.run(
            [str(self.bindir / "pg_ctl"), "status", "-D", str(self._pgdata(node))],
            capture_output=True,
            **_as_server_user(),
            timeout=30,
            cwd=self.root,
        )
        return result.returncode == 0

    def is_running(self) -> bool:
        """Whether every node's server runs."""
        return self._state() is not None and all(self._running(n) for n in range(self.workers + 1))

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return directory_lock(self.root)

    def _own(self, path: Path) -> None:
        user = _server_user()
        if user is not None:
            shutil.chown(path, user, user)

    def _initdb(self) -> list[int]:
        for n in range(self.workers + 1):  # a half-done earlier attempt: start over
            shutil.rmtree(self._pgdata(n), ignore_errors=True)
        _traversable(self.root)
        self._own(self.root)
        password = secrets.token_urlsafe(24)
        self.passfile.write_text(f"*:*:*:{_SUPERUSER}:{password}\n")
        self.passfile.chmod(0o600)
        self._own(self.passfile)
        pwfile = self.root / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        self._own(pwfile)
        ports = [_free_port() for _ in range(self.workers + 1)]
        try:
            for n, port in enumerate(ports):
                pgdata = self._pgdata(n)
                self._run(
                    "initdb",
                    "-D",
                    str(pgdata),
                    "-U",
                    _SUPERUSER,
                    "--encoding=UTF8",
                    "--locale=C",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                )
                (pgdata / "pg_hba.conf").write_text("host all all 127.0.0.1/32 scram-sha-256\n")
                with open(pgdata / "postgresql.conf", "a") as fh:
                    fh.write("\n# dbplugins local Citus cluster\n")
                    for key, value in {**_SETTINGS, "port": str(port)}.items():
                        fh.write(f"{key} = {value}\n")
        finally:
            pwfile.unlink()
        return ports

    def _setup_citus(self) -> None:
        """On every node the ``dbp`` database with the extension; the coordinator learns its workers."""
        for n in range(self.workers + 1):
            with psycopg.connect(self.dsn(n, "postgres"), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {_DBNAME}")
            with psycopg.connect(self.dsn(n), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
        with psycopg.connect(self.dsn(0), autocommit=True) as conn:
            conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (self.ports[0],))
            for port in self.ports[1:]:
                conn.execute("SELECT citus_add_node('127.0.0.1', %s)", (port,))

    def start(self) -> LocalCluster:
        """Initialise (the first time) and start every node, then wait until the coordinator answers."""
        reason = unavailable_reason(self.bindir)
        if reason is not None:
            raise ConfigurationError(f"cannot start a local Citus cluster: {reason}")
        with self._lock():
            fresh = self._state() is None
            if fresh:
                ports = self._initdb()
                # dsn() reads the ports from the state file; a failed setup removes it, so the next start()
                # initialises again from scratch.
                self._state_file.write_text(json.dumps({"ports": ports, "dbname": _DBNAME}))
            try:
                for n in range(self.workers + 1):
                    if not self._running(n):
                        self._run(*pg_ctl_start(self._pgdata(n)), timeout=90)
                if fresh:
                    self._setup_citus()
            except BaseException:
                if fresh:
                    self._stop_nodes("immediate")
                    self._state_file.unlink(missing_ok=True)
                raise
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the coordinator accepts connections (``DbpError`` after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ConfigurationError(
                        f"the Citus coordinator did not answer in {timeout:g} s: {exc}"
                    ) from exc
                time.sleep(0.2)

    def _stop_nodes(self, mode: str) -> None:
        for n in range(self.workers + 1):
            if self._pgdata(n).exists() and self._running(n):
                self._run(*pg_ctl_stop(self._pgdata(n), mode), timeout=90)

    def stop(self, mode: str = "fast") -> None:
        """Stop every node that runs (``mode`` as pg_ctl's). The data stays for the next ``start()``."""
        with self._lock():
            self._stop_nodes(mode)

    def destroy(self) -> None:
        """Stop the nodes and delete the cluster's directory."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
