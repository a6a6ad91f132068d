"""Apply, list and roll back yoyo migrations: the package's built-in ones, then the user's.

The built-in schema's migrations ship with the package (``migrations/`` in a checkout, ``dbplugins/_migrations``
in the wheel); a user's live beside their ``settings.py``. Both are read together, so a user migration can
``-- depends:`` on a built-in one.

Concurrency: :func:`apply` takes yoyo's lock and computes what to apply *inside* it (yoyo's ``apply_one`` does not
re-check, so computing it before the lock lets two booting workers apply the same migration twice). Several
``dbp migrate`` processes started together therefore apply each migration exactly once; the others wait for the
lock, find nothing left to do, and succeed.

Reading status (:func:`status`) uses one plain query and creates nothing, so ``make_migrations --check`` and
``migrate --list`` leave the database untouched.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from ..config import ConnectionSettings
from ..errors import ConnectionError, MigrationError
from ..sqlfiles import package_migrations_dir, schema_script

__all__ = [
    "MigrationInfo",
    "DEFAULT_LOCK_TIMEOUT",
    "migration_dirs",
    "load",
    "status",
    "pending",
    "heads",
    "apply",
    "rollback",
    "initdb",
    "break_lock",
    "pending_sql",
    "connect",
    "InitResult",
]

#: Seconds ``migrate`` waits for another process's lock. yoyo's default is 10 s; a slow migration (an index
#: build on a large table) holds the lock longer than that, and the waiters should wait rather than fail.
DEFAULT_LOCK_TIMEOUT = 300.0

_BREAK_LOCK_HINT = (
    "if no migration is running (a crashed process left the lock), clear it with: dbp migrate break-lock"
)


@dataclass(frozen=True)
class MigrationInfo:
    """One migration and whether the database has it."""

    id: str
    path: Path
    applied: bool
    builtin: bool


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


def connect(settings: ConnectionSettings) -> psycopg.Connection[Any]:
    """An autocommit connection; a failure becomes a ``ConnectionError`` naming the (masked) target."""
    try:
        return psycopg.connect(settings.conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        raise ConnectionError(f"cannot connect to {settings.safe_dsn}: {_one_line(exc)}") from exc


def _applied_hashes(settings: ConnectionSettings) -> set[str]:
    """The hashes yoyo recorded, with one query and without creating yoyo's tables."""
    with connect(settings) as conn:
        row = conn.execute("SELECT to_regclass('_yoyo_migration') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return set()
        return {r[0] for r in conn.execute("SELECT migration_hash FROM _yoyo_migration").fetchall()}


def status(settings: ConnectionSettings, user_dir: Path | None) -> list[MigrationInfo]:
    """Every known migration in application order, with whether it is applied."""
    from yoyo.migrations import topological_sort

    migrations = load(user_dir)
    applied = _applied_hashes(settings)
    return [
        MigrationInfo(m.id, Path(m.path), m.hash in applied, _is_builtin(m.path))
        for m in topological_sort(migrations)
    ]


def pending(settings: ConnectionSettings, user_dir: Path | None) -> list[MigrationInfo]:
    """The migrations not applied yet, in the order ``migrate`` would apply them."""
    return [m for m in status(settings, user_dir) if not m.applied]


def heads(user_dir: Path | None) -> list[str]:
    """Ids of the migrations nothing depends on: what a new migration must ``-- depends:`` on."""
    from yoyo.migrations import heads as yoyo_heads

    return sorted(m.id for m in yoyo_heads(load(user_dir)))


def pending_sql(settings: ConnectionSettings, user_dir: Path | None) -> str:
    """The SQL ``migrate`` would run, file by file (for ``migrate --dry-run``)."""
    out = []
    for m in pending(settings, user_dir):
        out.append(f"-- ===== {m.id} ({m.path}) =====\n{m.path.read_text(encoding='utf-8').rstrip()}\n")
    return "\n".join(out)


# -- yoyo backend, lock and error reporting ---------------------------------------------------------------------


def _backend(settings: ConnectionSettings) -> Any:
    from yoyo import get_backend

    try:
        return get_backend(settings.url("postgresql+psycopg"))
    except psycopg.Error as exc:
        raise MigrationError(f"cannot open {settings.safe_dsn}: {_one_line(exc)}") from exc


Notify = Callable[[str], None]


def _announce_holder(backend: Any, notify: Notify | None) -> None:
    """If another process holds the lock, say so before waiting (a stale lock would otherwise look like a hang)."""
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
    """yoyo's lock, with its LockTimeout turned into a message that names our command to clear a stale lock."""
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
    # yoyo's DEBUG records must not reach the root logger's handlers (a user's logging config would print them).
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


# -- operations -------------------------------------------------------------------------------------------------


def apply(
    settings: ConnectionSettings,
    user_dir: Path | None,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    notify: Notify | None = None,
) -> list[str]:
    """Apply every pending migration, under the lock; return the ids applied (empty: nothing to do).

    A migration that fails is rolled back (yoyo runs each in one transaction) and stays pending; the
    ``MigrationError`` names its file, the statement and the server's message. Migrations applied before it
    in the same call stay applied. ``notify`` is told when the lock is held by another process.
    """
    migrations = load(user_dir)
    applied: list[str] = []
    with _backend(settings) as backend, _locked(backend, lock_timeout, notify):
        todo = backend.to_apply(migrations)  # inside the lock: see the module docstring
        for m in todo:
            with _tracking() as tracker:
                try:
                    backend.apply_one(m)
                except backend.DatabaseError as exc:
                    where = f"statement {tracker.step + 1}" if tracker.step is not None else "a statement"
                    raise MigrationError(
                        f"migration {m.id} failed at {where} of {m.path}: {_statement_head(tracker.statement)!r}: "
                        f"{_one_line(exc)}. It was rolled back and is still pending"
                        + (
                            f"; {len(applied)} earlier migration(s) in this run stay applied"
                            if applied
                            else ""
                        ),
                        sqlstate=getattr(exc, "sqlstate", None),
                    ) from exc
            applied.append(m.id)
    return applied


def rollback(
    settings: ConnectionSettings,
    user_dir: Path | None,
    *,
    count: int = 1,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    notify: Notify | None = None,
) -> list[str]:
    """Roll back the ``count`` most recent applied migrations (their ``.rollback.sql``); return their ids."""
    if count < 1:
        raise MigrationError("--count must be at least 1")
    migrations = load(user_dir)
    done: list[str] = []
    with _backend(settings) as backend, _locked(backend, lock_timeout, notify):
        candidates = list(backend.to_rollback(migrations))[:count]
        for m in candidates:
            with _tracking() as tracker:
                try:
                    backend.rollback_one(m)
                except backend.DatabaseError as exc:
                    rb = Path(m.path).with_suffix(".rollback.sql")
                    raise MigrationError(
                        f"rollback of {m.id} failed in {rb}: {_statement_head(tracker.statement)!r}: "
                        f"{_one_line(exc)}. Nothing of it was undone; it is still applied",
                        sqlstate=getattr(exc, "sqlstate", None),
                    ) from exc
            done.append(m.id)
    return done


def break_lock(settings: ConnectionSettings) -> None:
    """Remove a stale lock row left by a crashed ``migrate`` (yoyo's ``break-lock``)."""
    with _backend(settings) as backend:
        backend.break_lock()


_BUILTIN_TABLES_QUERY = (
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname = ANY (%s)"
)


@dataclass(frozen=True)
class InitResult:
    """What :func:`initdb` did: created the schema or not, built-in migrations recorded, and those left pending."""

    created: bool
    marked: int
    pending: int = 0


def initdb(
    settings: ConnectionSettings,
    *,
    builtin_tables: Sequence[str],
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    distributed: bool = False,
) -> InitResult:
    """Create the built-in schema from ``sql/schema`` and record the built-in migrations as applied.

    - An empty database: ``sql/schema`` (the latest built-in schema) is created and every built-in migration is
      recorded as applied.
    - A database ``dbp`` initialised before: nothing is done; newer built-in migrations are left to ``migrate``.
    - A database with all the original tables but no record (made by db-plugins): nothing is created and only
      the initial migration is recorded, so ``migrate`` applies whatever came after it.
    - Some built-in tables but not all, and no record: an error; guessing could destroy data.

    Runs under the migration lock, in one transaction: the schema and its bookkeeping land together or not at all.
    ``distributed``: on a Citus coordinator, distribute the tables as their models declare (docs/scaling.md).
    """
    if distributed:  # checked before any DDL, yoyo's bookkeeping tables included
        from .. import citus

        with connect(settings) as check_conn:
            citus.require_citus(check_conn, f"initdb --distributed at {settings.safe_dsn}")
        citus.check_distribution(citus.builtin_tables())
    migrations = load(None)
    builtin = migrations.__class__([m for m in migrations if _is_builtin(m.path)])
    with _backend(settings) as backend, _locked(backend, lock_timeout):
        backend.ensure_internal_schema_updated()
        conn = backend.connection
        todo = list(backend.to_apply(builtin))
        if len(todo) < len(builtin):
            return InitResult(created=False, marked=0, pending=len(todo))
        present = {r[0] for r in conn.execute(_BUILTIN_TABLES_QUERY, [list(builtin_tables)]).fetchall()}
        missing = sorted(set(builtin_tables) - present)
        if present and missing:
            raise MigrationError(
                f"the database has some built-in tables but not {', '.join(missing[:5])}"
                + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                + "; initdb needs an empty database or one with the whole original schema"
            )
        # The original schema (db-plugins 4.2.7) is what the root migrations create; later ones still apply.
        mark = todo if missing else [m for m in todo if not m.depends]
        with backend.transaction():
            if missing:
                try:
                    if distributed:
                        citus.create_distributed_schema(conn, citus.builtin_tables(), schema_script())
                    else:
                        conn.execute(schema_script())  # a parameterless script: psycopg runs all its statements
                except psycopg.Error as exc:
                    raise MigrationError(f"creating the built-in schema failed: {_one_line(exc)}") from exc
            for m in mark:
                backend.mark_one(m)
    return InitResult(created=bool(missing), marked=len(mark), pending=len(todo) - len(mark))
