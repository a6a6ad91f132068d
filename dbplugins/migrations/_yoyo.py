"""The yoyo plumbing shared by :mod:`.runner` and :mod:`.rollback`: reading migrations, the backend, its lock,
bounded lock waits, and one-line errors that name the failing statement."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from .._session.connection import DEFAULT_CONNECT_TIMEOUT
from .._session.pool import failure_message
from .._sqlfiles import package_migrations_dir
from ..config import ConnectionSettings
from ..errors import ConnectionFailedError, MigrationError
from .locks import LOCK_NOT_AVAILABLE, LockWatch, with_lock_timeout

#: Seconds ``migrate`` waits for another process's lock. yoyo's default is 10 s; a slow migration (an index
#: build on a large table) holds the lock longer than that, and the waiters should wait rather than fail.
DEFAULT_LOCK_TIMEOUT = 300.0

_BREAK_LOCK_HINT = (
    "if no migration is running (a crashed process left the lock), clear it with: dbp migrate break-lock"
)


def migration_dirs(user_dir: Path | None) -> list[Path]:
    """The built-in migrations directory, then ``user_dir`` if it exists and is a different directory."""
    builtin = package_migrations_dir().resolve()
    dirs = [builtin]
    if user_dir is not None and user_dir.is_dir() and user_dir.resolve() != builtin:
        dirs.append(user_dir.resolve())
    return dirs


def load(user_dir: Path | None) -> Any:
    """The yoyo ``MigrationList`` of the built-in and the user's migrations (built-in first)."""
    from yoyo import read_migrations
    from yoyo.exceptions import BadMigration, MigrationConflict

    try:
        migrations = read_migrations(*[str(d) for d in migration_dirs(user_dir)])
        for m in migrations:
            m.load()  # resolves -- depends: now, so a bad reference fails here with the file's name
    except MigrationConflict as exc:
        raise MigrationError(f"two migrations share the id {exc.args[0]!r}") from exc
    except BadMigration as exc:
        raise MigrationError(f"bad migration: {' '.join(str(a) for a in exc.args)}") from exc
    return migrations


def _is_builtin(path: str | Path) -> bool:
    return Path(path).resolve().parent == package_migrations_dir().resolve()


def with_connect_timeout(settings: ConnectionSettings) -> ConnectionSettings:
    """``settings`` with libpq's ``connect_timeout`` (10 s, as ``SQLConnection.connect``) unless they set one.

    Without it libpq waits for the operating system's TCP timeout (minutes) on a host that drops packets. It
    travels in the parameters, so the connections yoyo opens (from :meth:`ConnectionSettings.url`) get it too.
    """
    if "connect_timeout" in settings.params:
        return settings
    timeout = str(max(1, round(DEFAULT_CONNECT_TIMEOUT)))
    return ConnectionSettings({**settings.params, "connect_timeout": timeout}, settings.source)


def connect(settings: ConnectionSettings) -> psycopg.Connection[Any]:
    """An autocommit connection, made within ``connect_timeout``; a failure becomes a
    ``ConnectionFailedError`` whose one line names host, port, database and user and the server's reason
    (never the password), as ``SQLConnection.connect`` raises."""
    try:
        return psycopg.connect(with_connect_timeout(settings).conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        raise ConnectionFailedError(failure_message(settings, exc)) from exc


def _applied_hashes(settings: ConnectionSettings) -> set[str]:
    """The hashes yoyo recorded, with one query and without creating yoyo's tables."""
    with connect(settings) as conn:
        row = conn.execute("SELECT to_regclass('_yoyo_migration') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return set()
        return {r[0] for r in conn.execute("SELECT migration_hash FROM _yoyo_migration").fetchall()}


# -- yoyo backend, lock and error reporting ------------------------------------------------------------------


def _backend(settings: ConnectionSettings) -> Any:
    from yoyo import get_backend

    try:
        # the URL carries every libpq option (lock_timeout, application_name, connect_timeout) to the
        # connections yoyo opens
        return get_backend(with_connect_timeout(settings).url("postgresql+psycopg"))
    except psycopg.OperationalError as exc:  # the connection itself: the same line as SQLConnection.connect
        raise ConnectionFailedError(failure_message(settings, exc)) from exc
    except psycopg.Error as exc:
        raise MigrationError(f"cannot open {settings.safe_dsn}: {_one_line(exc)}") from exc


Notify = Callable[[str], None]


def _announce_holder(backend: Any, notify: Notify | None) -> None:
    """If another process holds the lock, say so before waiting (a stale lock would otherwise look like a
    hang)."""
    if notify is None:
        return
    try:
        row = backend.connection.execute("SELECT pid, ctime FROM yoyo_lock").fetchone()
    except psycopg.Error:
        return
    if row:
        notify(
            f"waiting for the migration lock held by process {row[0]} since {row[1]:%Y-%m-%d %H:%M:%S} UTC; "
            f"{_BREAK_LOCK_HINT}"
        )


@contextlib.contextmanager
def _locked(backend: Any, timeout: float, notify: Notify | None = None) -> Iterator[None]:
    """yoyo's lock, with its LockTimeout turned into a message that names our command to clear a stale
    lock."""
    from yoyo.exceptions import LockTimeout

    _announce_holder(backend, notify)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(backend.lock(timeout=timeout))
        except LockTimeout as exc:
            holder = str(exc).split(" (run yoyo", 1)[0]
            raise MigrationError(
                f"another migration holds the lock ({holder}); waited {timeout:g} s; {_BREAK_LOCK_HINT}"
            ) from None
        yield


class _StatementTracker(logging.Handler):
    """Remembers the statement yoyo executes last (it logs each at DEBUG), to name it when one fails."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statement: str | None = None
        self.step: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg if isinstance(record.msg, str) else ""
        if "executing" in msg and record.args:
            arg = record.args[0] if isinstance(record.args, tuple) else record.args
            self.statement = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
        elif ("applying step" in msg or "rolling back step" in msg) and isinstance(record.args, tuple):
            self.step = int(str(record.args[0]))
            self.statement = None


@contextlib.contextmanager
def _tracking() -> Iterator[_StatementTracker]:
    logger = logging.getLogger("yoyo.migrations")
    tracker = _StatementTracker()
    old_level = logger.level
    logger.addHandler(tracker)
    logger.setLevel(logging.DEBUG)
    # yoyo's DEBUG records must not reach the root logger's handlers (a user's logging config would print
    # them).
    old_propagate = logger.propagate
    logger.propagate = False
    try:
        yield tracker
    finally:
        logger.removeHandler(tracker)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def _one_line(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    lines = str(exc).strip().splitlines()
    text = primary or (lines[0] if lines else type(exc).__name__)
    return " ".join(text.split())


def _statement_head(stmt: str | None) -> str:
    if not stmt:
        return "?"
    lines = [ln.strip() for ln in stmt.strip().splitlines() if ln.strip() and not ln.strip().startswith("--")]
    head = " ".join(lines)
    return head if len(head) <= 160 else head[:157] + "..."


# -- operations ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _bounded(
    settings: ConnectionSettings, lock_timeout: float
) -> Iterator[tuple[ConnectionSettings, LockWatch]]:
    """Settings whose connections wait at most ``lock_timeout`` s per lock, and a watch naming any blocker."""
    tag = LockWatch.new_tag()
    # poll often enough to see a wait that lock_timeout cuts short
    with LockWatch(settings, tag, interval=max(0.01, min(0.1, lock_timeout / 5))) as watch:
        yield with_lock_timeout(settings, lock_timeout, tag), watch


def _failure(
    exc: BaseException, what: str, where: str, tracker: _StatementTracker, watch: LockWatch, timeout: float
) -> MigrationError:
    """The one-line error for a migration (or rollback) whose statement failed; names the blocker on a
    timeout."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == LOCK_NOT_AVAILABLE:
        blocker = watch.blocker
        who = (
            blocker.describe()
            + f"; end that transaction, or stop it with SELECT pg_terminate_backend({blocker.pid})"
            if blocker is not None
            else "the session holding the lock could not be identified"
        )
        return MigrationError(
            f"{what}: gave up after waiting {timeout:g} s for a lock at {where} "
            f"({_statement_head(tracker.statement)!r}): {who}",
            sqlstate=sqlstate,
        )
    return MigrationError(
        f"{what} failed at {where}: {_statement_head(tracker.statement)!r}: {_one_line(exc)}",
        sqlstate=sqlstate,
    )
