"""The migration workflow as Python calls: what ``dbp initdb``, ``make_migrations`` and ``migrate`` run.

Every function takes the database first (a DSN, a db-plugins config dict, :class:`~dbplugins.config.
ConnectionSettings`, a connected ``SQLConnection``, or ``None``: ``DBP_DSN`` / ``DATABASE_URL``, then
``./settings.py``, then the embedded server, as ``dbp`` finds it), and your migrations directory
(``migrations_dir``; default ``./migrations``, as ``dbp`` run in the current directory without a settings.py).
Each returns a small result object saying what it wrote or applied, and raises a
:class:`~dbplugins.errors.DbpError` subclass with a one-line message: ``MigrationError`` (pending migrations,
a failed statement, a lock held too long, a refused rollback), ``ConnectionFailedError`` (host, port,
database, user and the server's reason), ``ConfigurationError`` (bad settings or models)::

    from dbplugins import migrations
    import mymodels

    draft = migrations.make_migrations(dsn, models=[mymodels], name="add-watchlist")   # writes migrations/...
    done = migrations.migrate(dsn)                                                    # applies it
    assert done.applied == [draft.id]

docs/migrations.md ("From Python") has the full example; docs/cli.md maps each command to its call.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Union

from ..config import ConnectionSettings, resolve
from ..errors import ConfigurationError, MigrationError
from . import _rollback, runner
from ._yoyo import DEFAULT_LOCK_TIMEOUT, Notify, connect
from .diff import Operation, diff
from .introspect import canonicalize, introspect
from .render import render, write_migration

if TYPE_CHECKING:
    from .._session.connection import SQLConnection

__all__ = [
    "Target",
    "settings_of",
    "models_of",
    "status",
    "make_migrations",
    "migrate",
    "rollback",
    "initdb",
    "break_lock",
    "Status",
    "MakeMigrationsResult",
    "MigrateResult",
    "RollbackResult",
]

#: Where the database comes from: a DSN or URL, a db-plugins config dict (``DB_CONFIG["SQL"]``), resolved
#: settings, a connected ``SQLConnection`` (its settings), or ``None`` (environment, ./settings.py, embedded).
Target = Union[str, Mapping[str, Any], ConnectionSettings, "SQLConnection", None]
PathLike = Union[str, "os.PathLike[str]"]


def settings_of(target: Target = None) -> ConnectionSettings:
    """The :class:`ConnectionSettings` a function of this module connects with (see :data:`Target`).

    >>> settings_of("host=db.example.org port=5433 dbname=ztf user=alerce password=secret").target
    "database 'ztf' as user 'alerce' on db.example.org port 5433"
    """
    if isinstance(target, ConnectionSettings):
        return target
    if target is None or isinstance(target, (str, Mapping)):
        from ..embedded import embedded_allowed

        return resolve(target, embedded=embedded_allowed())
    settings = getattr(target, "settings", None)
    if isinstance(settings, ConnectionSettings):
        return settings
    if hasattr(target, "settings"):
        raise ConfigurationError("the SQLConnection is not connected: call connect() first, or pass a DSN")
    raise ConfigurationError(
        f"cannot connect with a {type(target).__name__}: pass a DSN, a config dict, ConnectionSettings or a "
        "connected SQLConnection"
    )


def _declared(value: object) -> bool:
    # Only classes declared with @model themselves, not subclasses inheriting __table__.
    return isinstance(value, type) and "__table__" in vars(value)


def models_of(models: Iterable[type | ModuleType | str] | type | ModuleType | str = ()) -> list[type]:
    """The built-in models followed by ``models``: model classes, modules (their ``@model`` classes) or module
    names, as in settings.py's ``MODELS``.

    >>> from dbplugins.models import ALL_MODELS, Object
    >>> models_of([Object]) == ALL_MODELS
    True
    """
    from ..models import ALL_MODELS

    found = list(ALL_MODELS)
    # one module or class rather than a list: a common slip
    items: Iterable[type | ModuleType | str] = (
        [models] if isinstance(models, (str, ModuleType, type)) else models
    )
    for item in items:
        if isinstance(item, str):  # a module name, as in settings.py MODELS
            import importlib

            try:
                item = importlib.import_module(item)
            except ImportError as exc:
                raise ConfigurationError(f"models: cannot import module {item!r}: {exc}") from exc
        if isinstance(item, ModuleType):
            candidates = [v for v in vars(item).values() if _declared(v)]
        elif _declared(item):
            candidates = [item]
        else:
            raise ConfigurationError(
                f"models: {item!r} is neither a module nor a class declared with @model"
            )
        found += [m for m in candidates if m not in found]
    return found


def _user_dir(migrations_dir: PathLike | None) -> Path:
    """``migrations_dir`` resolved (default ``./migrations``); a path that is a file is an error."""
    path = Path(migrations_dir if migrations_dir is not None else "migrations").expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise MigrationError(f"the migrations directory {path} is a file, not a directory")
    return path


# -- status --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """Every known migration in application order (built-in first), each with ``applied`` and ``builtin``."""

    migrations: tuple[runner.MigrationInfo, ...]

    @property
    def applied(self) -> list[runner.MigrationInfo]:
        return [m for m in self.migrations if m.applied]

    @property
    def pending(self) -> list[runner.MigrationInfo]:
        """What :func:`migrate` would apply, in that order."""
        return [m for m in self.migrations if not m.applied]

    def __iter__(self) -> Iterator[runner.MigrationInfo]:
        return iter(self.migrations)

    def __len__(self) -> int:
        return len(self.migrations)


def status(target: Target = None, *, migrations_dir: PathLike | None = None) -> Status:
    """Which migrations the database has (``dbp migrate --list``). Creates nothing, not even yoyo's tables.

    Example: ``[m.id for m in migrations.status(dsn).pending]``.
    """
    return Status(tuple(runner.status(settings_of(target), _user_dir(migrations_dir))))


# -- make_migrations -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MakeMigrationsResult:
    """What :func:`make_migrations` found and wrote.

    ``operations``: the changes from the database to the models, in the order they apply (empty: nothing to
    do). ``path`` / ``rollback_path``: the files written (``None`` when nothing was: no change, or
    ``dry_run``). ``sql`` / ``rollback_sql``: their text (also for a dry run); ``depends``: the migrations it
    depends on. ``tables``: how many tables the models declare.
    """

    operations: tuple[Operation, ...]
    tables: int
    sql: str = ""
    rollback_sql: str = ""
    depends: tuple[str, ...] = ()
    path: Path | None = None
    rollback_path: Path | None = None

    @property
    def changed(self) -> bool:
        """Whether the database differs from the models (``dbp make_migrations --check`` exits 1 then)."""
        return bool(self.operations)

    @property
    def id(self) -> str | None:
        """The id of the migration written (its file name without ``.sql``), or ``None``."""
        return self.path.stem if self.path is not None else None

    @property
    def destructive(self) -> bool:
        """Whether a step drops data (a table or a column): review it before :func:`migrate`."""
        return any(op.destructive for op in self.operations)

    @property
    def warnings(self) -> list[str]:
        """Possible renames: a dropped and an added column (or table) of the same type, which lose data."""
        return [
            op.note
            for op in self.operations
            if op.note and "possible rename" in op.note and op.kind in ("drop_column", "drop_table")
        ]


def make_migrations(
    target: Target = None,
    *,
    models: Iterable[type | ModuleType | str] = (),
    migrations_dir: PathLike | None = None,
    name: str | None = None,
    dry_run: bool = False,
) -> MakeMigrationsResult:
    """Write a migration for the differences between the database and the models (``dbp make_migrations``).

    ``models`` are your model classes, the modules declaring them or their names; the built-in models always
    count (a database without them would otherwise be told to drop the ZTF tables). Writes ``<id>.sql`` and
    ``<id>.rollback.sql`` into ``migrations_dir`` (created if need be), depending on its current heads, and
    returns them with the operations. ``dry_run``: write nothing, return the same (``--check`` and
    ``--dry-run`` are this). No difference: nothing is written and ``result.changed`` is false.

    Raises ``MigrationError`` while migrations are pending (apply them first: a migration shipped with a newer
    dbplugins must not be generated again as yours) and for the package's own built-in migrations directory.

    Example: ``migrations.make_migrations(dsn, models=[mymodels], name="add-watchlist").path``.
    """
    user_dir = _user_dir(migrations_dir)
    if not dry_run:
        runner.check_user_dir(user_dir)  # before any work: never write into the built-in migrations
    from .._types.schema import Schema

    settings = settings_of(target)
    desired = Schema.from_models(models_of(models))
    waiting = runner.pending(settings, user_dir)
    if waiting:
        ids = ", ".join(m.id for m in waiting[:3]) + (" ..." if len(waiting) > 3 else "")
        raise MigrationError(
            f"{len(waiting)} migration(s) not applied yet ({ids}); run `dbp migrate` first, then "
            "make_migrations"
        )
    with connect(settings) as conn:
        current = introspect(conn)
        desired = canonicalize(conn, desired, current)
    ops = tuple(diff(current, desired))
    if not ops:
        return MakeMigrationsResult(ops, len(desired.tables))
    depends = tuple(runner.heads(user_dir))
    if dry_run:
        sql, rollback_sql = render(ops, message=name or "(dry run)", depends=depends)
        return MakeMigrationsResult(ops, len(desired.tables), sql, rollback_sql, depends)
    path, rollback_path = write_migration(user_dir, ops, depends=depends, name=name)
    return MakeMigrationsResult(
        ops,
        len(desired.tables),
        path.read_text(encoding="utf-8"),
        rollback_path.read_text(encoding="utf-8"),
        depends,
        path,
        rollback_path,
    )


# -- migrate, rollback ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MigrateResult:
    """What :func:`migrate` applied (``applied``, in order; empty: the database was up to date), or for a dry
    run what it would apply (``pending``) and its SQL (``sql``, file by file)."""

    applied: list[str]
    pending: list[str] = dataclasses.field(default_factory=list)
    sql: str = ""
    dry_run: bool = False


def migrate(
    target: Target = None,
    *,
    migrations_dir: PathLike | None = None,
    dry_run: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    notify: Notify | None = None,
) -> MigrateResult:
    """Apply the pending migrations, the built-in ones first, then those of ``migrations_dir`` (``dbp
    migrate``).

    Each migration runs in its own transaction; one that fails is rolled back and stays pending, and the
    ``MigrationError`` names its file, statement and the server's message. Safe from several processes at
    once: the pending list is computed under yoyo's lock. ``lock_timeout`` (seconds) bounds every wait: for
    another migrate's lock and for each table lock a statement takes (the error then names the blocking
    process). ``notify(text)`` hears that another process holds the lock. ``dry_run``: change nothing, return
    the SQL.

    Example: ``migrations.migrate(dsn).applied`` lists the ids applied.
    """
    settings = settings_of(target)
    user_dir = _user_dir(migrations_dir)
    if dry_run:
        waiting = runner.pending(settings, user_dir)
        return MigrateResult([], [m.id for m in waiting], runner.sql_of(waiting), dry_run=True)
    return MigrateResult(runner.apply(settings, user_dir, lock_timeout=lock_timeout, notify=notify))


@dataclass(frozen=True)
class RollbackResult:
    """What :func:`rollback` undid (``steps``, most recent first), or would undo for a dry run.

    Each :class:`~dbplugins.migrations.runner.RollbackStep` has its ``id``, rollback ``sql``, ``builtin`` and
    ``reasons`` (what it drops); ``needs_confirmation`` says whether ``allow_destructive`` is needed for it.
    """

    steps: list[runner.RollbackStep]
    dry_run: bool = False

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.steps]

    @property
    def needs_confirmation(self) -> list[runner.RollbackStep]:
        """The built-in or destructive steps: :func:`rollback` refuses them unless ``allow_destructive``."""
        return [s for s in self.steps if s.needs_confirmation]


def rollback(
    target: Target = None,
    *,
    migrations_dir: PathLike | None = None,
    count: int | None = None,
    to: str | None = None,
    dry_run: bool = False,
    allow_destructive: bool = False,
    expect: Sequence[str] | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    notify: Notify | None = None,
) -> RollbackResult:
    """Undo the most recent migrations with their ``.rollback.sql`` (``dbp migrate rollback``).

    ``count`` (default 1) undoes that many; ``to`` undoes every migration applied after the one of that id (or
    unique id prefix), which stays applied. ``dry_run`` changes nothing and returns the plan. A built-in
    migration (undoing the initial one drops the 17 ZTF tables) or a step that drops data is refused with
    ``RollbackNotConfirmed`` (a ``MigrationError``, before anything is undone) unless ``allow_destructive``.
    ``expect``: the ids a plan showed (``dry_run`` result's ``ids``); if what is applied changed since,
    nothing is undone and a ``MigrationError`` says so.

    Example: ``plan = migrations.rollback(dsn, dry_run=True)``, then
    ``migrations.rollback(dsn, allow_destructive=True, expect=plan.ids)``.
    """
    if count is not None and to is not None:
        raise MigrationError("give count or to, not both")
    settings = settings_of(target)
    user_dir = _user_dir(migrations_dir)
    if dry_run:
        return RollbackResult(runner.plan_rollback(settings, user_dir, count=count, to=to), dry_run=True)
    steps = _rollback.undo(
        settings,
        user_dir,
        count=count,
        to=to,
        allow_destructive=allow_destructive,
        expect=expect,
        lock_timeout=lock_timeout,
        notify=notify,
    )
    return RollbackResult(steps)


# -- initdb, break_lock --------------------------------------------------------------------------------------


def initdb(
    target: Target = None, *, distributed: bool = False, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
) -> runner.InitResult:
    """Create the built-in schema and record its migrations as applied (``dbp initdb``); safe to run again.

    On an empty database the 17 built-in tables are created in one transaction; on one that db-plugins created
    nothing is created and only the initial migration is recorded; one with some built-in tables but not all
    is refused. ``distributed``: on a Citus coordinator, distribute the tables as their models declare
    (docs/scaling.md). The result says whether it ``created`` them, how many migrations it ``marked`` applied
    and how many newer built-in ones are ``pending`` (for :func:`migrate`).
    """
    from .._types.schema import table_of
    from ..models import ALL_MODELS

    tables = tuple(table_of(m).name for m in ALL_MODELS)
    result = runner.initdb(
        settings_of(target), builtin_tables=tables, lock_timeout=lock_timeout, distributed=distributed
    )
    return dataclasses.replace(result, tables=tables)


def break_lock(target: Target = None) -> None:
    """Remove the migration lock a crashed ``migrate`` left behind (``dbp migrate break-lock``)."""
    runner.break_lock(settings_of(target))
