"""Apply, list and roll back yoyo migrations: the package's built-in ones, then the user's.

The built-in schema's migrations ship with the package (``migrations/`` in a checkout,
``dbplugins/_migrations`` in the wheel); a user's live beside their ``settings.py``. Both are read together,
so a user migration can ``-- depends:`` on a built-in one.

Concurrency: :func:`apply` takes yoyo's lock and computes what to apply *inside* it (yoyo's ``apply_one`` does
not re-check, so computing it before the lock lets two booting workers apply the same migration twice).
Several ``dbp migrate`` processes started together therefore apply each migration exactly once; the others
wait for the lock, find nothing left to do, and succeed.

Reading status (:func:`status`) uses one plain query and creates nothing, so ``make_migrations --check`` and
``migrate --list`` leave the database untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from .._sqlfiles import package_migrations_dir, schema_script
from ..config import ConnectionSettings
from ..errors import MigrationError
from ._rollback import RollbackNotConfirmed, RollbackStep, destructive_reasons, plan_rollback
from ._yoyo import (
    DEFAULT_LOCK_TIMEOUT,
    Notify,
    _applied_hashes,
    _backend,
    _bounded,
    _failure,
    _is_builtin,
    _locked,
    _one_line,
    _tracking,
    connect,
    load,
    migration_dirs,
)

__all__ = [
    "MigrationInfo",
    "DEFAULT_LOCK_TIMEOUT",
    "migration_dirs",
    "load",
    "status",
    "pending",
    "heads",
    "apply",
    "plan_rollback",
    "RollbackStep",
    "RollbackNotConfirmed",
    "destructive_reasons",
    "check_user_dir",
    "initdb",
    "break_lock",
    "pending_sql",
    "sql_of",
    "connect",
    "InitResult",
]


@dataclass(frozen=True)
class MigrationInfo:
    """One migration and whether the database has it."""

    id: str
    path: Path
    applied: bool
    builtin: bool


def check_user_dir(directory: Path) -> Path:
    """``directory``, resolved, if user migrations may be written there; else a ``MigrationError`` saying
    where.

    The package's built-in ``migrations/`` (in a checkout, the repository's own; in a wheel, inside
    site-packages) and anything inside the installed package are refused: a user migration written there would
    be taken for a built-in one, and would vanish with the next install.
    """
    import dbplugins

    target = directory.expanduser().resolve()
    builtin = package_migrations_dir().resolve()
    package = Path(dbplugins.__file__).resolve().parent
    if target == builtin or target.is_relative_to(builtin) or target.is_relative_to(package):
        raise MigrationError(
            f"refusing to write into {target}: it holds dbplugins' built-in migrations. Your migrations go "
            "in migrations/ beside your settings.py: run dbp from your project's directory, or pass "
            "--settings_path DIR or --migrations-dir DIR (or set MIGRATIONS_DIR in settings.py)"
        )
    return target


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
    return sql_of(pending(settings, user_dir))


def sql_of(migrations: Sequence[MigrationInfo]) -> str:
    """The text of ``migrations``' files, each under a ``-- ===== <id> (<path>) =====`` line."""
    out = []
    for m in migrations:
        out.append(f"-- ===== {m.id} ({m.path}) =====\n{m.path.read_text(encoding='utf-8').rstrip()}\n")
    return "\n".join(out)


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

    ``lock_timeout`` bounds every wait: for another ``migrate``'s lock, and (as PostgreSQL's ``lock_timeout``)
    for each table lock a statement needs. A statement that times out fails the migration with an error naming
    the table and the process holding it.
    """
    migrations = load(user_dir)
    applied: list[str] = []
    with _bounded(settings, lock_timeout) as (bounded, watch):
        with _backend(bounded) as backend, _locked(backend, lock_timeout, notify):
            todo = backend.to_apply(migrations)  # inside the lock: see the module docstring
            for m in todo:
                with _tracking() as tracker:
                    try:
                        backend.apply_one(m)
                    except backend.DatabaseError as exc:
                        where = f"statement {tracker.step + 1}" if tracker.step is not None else "a statement"
                        error = _failure(
                            exc, f"migration {m.id}", f"{where} of {m.path}", tracker, watch, lock_timeout
                        )
                        raise MigrationError(
                            f"{error}. It was rolled back and is still pending"
                            + (
                                f"; {len(applied)} earlier migration(s) in this run stay applied"
                                if applied
                                else ""
                            ),
                            sqlstate=error.sqlstate,
                        ) from exc
                applied.append(m.id)
    return applied


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
    """What :func:`initdb` did: created the schema or not, built-in migrations recorded, and those left
    pending."""

    created: bool
    marked: int
    pending: int = 0
    tables: tuple[str, ...] = ()  # the built-in tables (filled in by dbplugins.migrations.initdb)


def initdb(
    settings: ConnectionSettings,
    *,
    builtin_tables: Sequence[str],
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    distributed: bool = False,
) -> InitResult:
    """Create the built-in schema from ``sql/schema`` and record the built-in migrations as applied.

    - An empty database: ``sql/schema`` (the latest built-in schema) is created and every built-in migration
      is recorded as applied.
    - A database ``dbp`` initialised before: nothing is done; newer built-in migrations are left to
      ``migrate``.
    - A database with all the original tables but no record (made by db-plugins): nothing is created and only
      the initial migration is recorded, so ``migrate`` applies whatever came after it.
    - Some built-in tables but not all, and no record: an error; guessing could destroy data.

    Runs under the migration lock, in one transaction: the schema and its bookkeeping land together or not at
    all. ``distributed``: on a Citus coordinator, distribute the tables as their models declare
    (docs/scaling.md).
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
                        # a parameterless script: psycopg runs all its statements
                        conn.execute(schema_script())
                except psycopg.Error as exc:
                    raise MigrationError(f"creating the built-in schema failed: {_one_line(exc)}") from exc
            for m in mark:
                backend.mark_one(m)
    return InitResult(created=bool(missing), marked=len(mark), pending=len(todo) - len(mark))
