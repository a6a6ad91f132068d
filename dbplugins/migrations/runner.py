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
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from ..config import ConnectionSettings
from ..errors import ConnectionError, MigrationError
from ..sqlfiles import package_migrations_dir, schema_script
from .locks import LOCK_NOT_AVAILABLE, LockWatch, with_lock_timeout

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
    "plan_rollback",
    "RollbackStep",
    "RollbackNotConfirmed",
    "destructive_reasons",
    "check_user_dir",
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


def check_user_dir(directory: Path) -> Path:
    """``directory``, resolved, if user migrations may be written there; else a ``MigrationError`` saying where.

    The package's built-in ``migrations/`` (in a checkout, the repository's own; in a wheel, inside
    site-packages) and anything inside the installed package are refused: a user migration written there would be
    taken for a built-in one, and would vanish with the next install.
    """
    import dbplugins

    target = directory.expanduser().resolve()
    builtin = package_migrations_dir().resolve()
    package = Path(dbplugins.__file__).resolve().parent
    if target == builtin or target.is_relative_to(builtin) or target.is_relative_to(package):
        raise MigrationError(
            f"refusing to write into {target}: it holds dbplugins' built-in migrations. Your migrations go in "
            "migrations/ beside your settings.py: run dbp from your project's directory, or pass "
            "--settings_path DIR or --migrations-dir DIR (or set MIGRATIONS_DIR in settings.py)"
        )
    return target


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
        # the URL carries every libpq option (lock_timeout, application_name) to the connections yoyo opens
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


@contextlib.contextmanager
def _bounded(settings: ConnectionSettings, lock_timeout: float) -> Iterator[tuple[ConnectionSettings, LockWatch]]:
    """Settings whose connections wait at most ``lock_timeout`` s per lock, and a watch naming any blocker."""
    tag = LockWatch.new_tag()
    with LockWatch(settings, tag) as watch:
        yield with_lock_timeout(settings, lock_timeout, tag), watch


def _failure(
    exc: BaseException, what: str, where: str, tracker: _StatementTracker, watch: LockWatch, timeout: float
) -> MigrationError:
    """The one-line error for a migration (or rollback) whose statement failed; names the blocker on a timeout."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == LOCK_NOT_AVAILABLE:
        blocker = watch.blocker
        who = (
            blocker.describe() + f"; end that transaction, or stop it with SELECT pg_terminate_backend({blocker.pid})"
            if blocker is not None
            else "the session holding the lock could not be identified"
        )
        return MigrationError(
            f"{what}: gave up after waiting {timeout:g} s for a lock at {where} "
            f"({_statement_head(tracker.statement)!r}): {who}",
            sqlstate=sqlstate,
        )
    return MigrationError(
        f"{what} failed at {where}: {_statement_head(tracker.statement)!r}: {_one_line(exc)}", sqlstate=sqlstate
    )


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
                        error = _failure(exc, f"migration {m.id}", f"{where} of {m.path}", tracker, watch, lock_timeout)
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


# -- rollback ---------------------------------------------------------------------------------------------------

# What makes a rollback step destructive: it removes data. Comments are stripped first; the marker render.py puts
# on data-losing steps counts as well.
_DESTRUCTIVE = [
    (re.compile(r"\bDROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?([\w.\"]+)", re.I), "drops table {}"),
    (re.compile(r"\bDROP\s+COLUMN\s+(?:IF\s+EXISTS\s+)?([\w\"]+)", re.I), "drops column {}"),
    (re.compile(r"\bDROP\s+(SCHEMA|DATABASE)\b", re.I), "drops a {}"),
    (re.compile(r"\b(TRUNCATE|DELETE\s+FROM)\b", re.I), "runs {}"),
]


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"--[^\n]*", " ", text)


def destructive_reasons(sql_text: str) -> tuple[str, ...]:
    """Why running ``sql_text`` loses data (``()`` if it does not): the tables and columns it drops, etc."""
    body = _strip_comments(sql_text)
    reasons: list[str] = []
    for pattern, label in _DESTRUCTIVE:
        for match in pattern.finditer(body):
            reason = label.format(" ".join(match.group(1).split()))
            if reason not in reasons:
                reasons.append(reason)
    if not reasons and re.search(r"^--\s*DESTRUCTIVE", sql_text, flags=re.M):
        reasons.append("marked DESTRUCTIVE")
    return tuple(reasons)


@dataclass(frozen=True)
class RollbackStep:
    """One migration a rollback would undo, with its rollback SQL and why it needs confirmation (if it does)."""

    id: str
    path: Path
    builtin: bool
    sql: str
    reasons: tuple[str, ...]

    @property
    def rollback_path(self) -> Path:
        return self.path.with_name(self.id + ".rollback.sql")

    @property
    def destructive(self) -> bool:
        return bool(self.reasons)

    @property
    def needs_confirmation(self) -> bool:
        """Built-in migrations and destructive steps are only undone when the caller said yes."""
        return self.builtin or self.destructive

    def describe(self) -> str:
        """``<id> (built-in; drops table object, ...)``: one line for listings and prompts."""
        notes = ["built-in"] if self.builtin else []
        dropped: dict[str, list[str]] = {"table": [], "column": []}
        for reason in self.reasons:
            kind = reason.split(" ")[1] if reason.startswith("drops ") else ""
            if kind in dropped:
                dropped[kind].append(reason.split(" ", 2)[2])
            else:
                notes.append(reason)
        for kind, names in dropped.items():
            if names:
                shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
                notes.append(f"drops {kind}{'s' if len(names) > 1 else ''} {shown}")
        return self.id + (f" ({'; '.join(notes)})" if notes else "")


class RollbackNotConfirmed(MigrationError):
    """A rollback would undo a built-in migration or lose data, and the caller did not allow it."""


def _step(m: Any) -> RollbackStep:
    path = Path(m.path)
    rb = path.with_name(m.id + ".rollback.sql")
    text = rb.read_text(encoding="utf-8") if rb.is_file() else ""
    return RollbackStep(m.id, path, _is_builtin(path), text, destructive_reasons(text))


def _select(candidates: Sequence[Any], count: int | None, to: str | None) -> list[Any]:
    """The first ``count`` of ``candidates`` (most recent first), or those applied after migration ``to``."""
    if to is not None and count is not None:
        raise MigrationError("give either count or to, not both")
    if to is None:
        n = 1 if count is None else count
        if n < 1:
            raise MigrationError("--count must be at least 1")
        return list(candidates)[:n]
    ids = [m.id for m in candidates]
    matches = [i for i in ids if i == to] or [i for i in ids if i.startswith(to)]
    if len(matches) != 1:
        known = "no applied migration" if not matches else f"{len(matches)} applied migrations"
        raise MigrationError(f"{known} matches {to!r}: --to takes the id of an applied migration (see dbp migrate --list)")
    return list(candidates)[: ids.index(matches[0])]


def plan_rollback(
    settings: ConnectionSettings, user_dir: Path | None, *, count: int | None = None, to: str | None = None
) -> list[RollbackStep]:
    """What :func:`rollback` with the same arguments would undo, most recent first. Changes nothing.

    ``count`` (default 1) takes the most recent applied migrations; ``to`` takes every migration applied after
    the migration of that id (or unique id prefix), which itself stays applied.
    """
    from yoyo.migrations import topological_sort

    migrations = load(user_dir)
    applied = _applied_hashes(settings)
    candidates = list(reversed(list(topological_sort(m for m in migrations if m.hash in applied))))
    return [_step(m) for m in _select(candidates, count, to)]


def rollback(
    settings: ConnectionSettings,
    user_dir: Path | None,
    *,
    count: int | None = None,
    to: str | None = None,
    dry_run: bool = False,
    allow_destructive: bool = True,
    expect: Sequence[str] | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    notify: Notify | None = None,
) -> list[str]:
    """Roll back migrations with their ``.rollback.sql``, most recent first; return the ids undone.

    ``count`` / ``to`` choose them as in :func:`plan_rollback`. ``dry_run`` only returns the ids.
    ``allow_destructive=False`` raises :class:`RollbackNotConfirmed` (before undoing anything) if one of them is
    a built-in migration or drops data (``dbp migrate rollback`` without ``--yes``). ``expect`` is the list of
    ids the caller confirmed (from :func:`plan_rollback`): if another process changed what is applied since,
    nothing is undone and a ``MigrationError`` says so. Each step waits at most ``lock_timeout`` s per lock.
    """
    migrations = load(user_dir)
    if dry_run:
        return [s.id for s in plan_rollback(settings, user_dir, count=count, to=to)]
    done: list[str] = []
    with _bounded(settings, lock_timeout) as (bounded, watch):
        with _backend(bounded) as backend, _locked(backend, lock_timeout, notify):
            candidates = _select(list(backend.to_rollback(migrations)), count, to)  # inside the lock
            if expect is not None and [m.id for m in candidates] != list(expect):
                raise MigrationError(
                    "the applied migrations changed since the rollback was planned (another process ran "
                    f"migrate or rollback); now it would undo: {', '.join(m.id for m in candidates) or 'nothing'}"
                )
            risky = [s for s in map(_step, candidates) if s.needs_confirmation]
            if risky and not allow_destructive:
                raise RollbackNotConfirmed(
                    "refusing to roll back without confirmation: "
                    + ", ".join(s.describe() for s in risky)
                )
            for m in candidates:
                with _tracking() as tracker:
                    try:
                        backend.rollback_one(m)
                    except backend.DatabaseError as exc:
                        rb = Path(m.path).with_name(m.id + ".rollback.sql")
                        error = _failure(exc, f"rollback of {m.id}", str(rb), tracker, watch, lock_timeout)
                        raise MigrationError(
                            f"{error}. Nothing of it was undone; it is still applied"
                            + (f"; {len(done)} migration(s) rolled back before it stay rolled back" if done else ""),
                            sqlstate=error.sqlstate,
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
) -> InitResult:
    """Create the built-in schema from ``sql/schema`` and record the built-in migrations as applied.

    - An empty database: ``sql/schema`` (the latest built-in schema) is created and every built-in migration is
      recorded as applied.
    - A database ``dbp`` initialised before: nothing is done; newer built-in migrations are left to ``migrate``.
    - A database with all the original tables but no record (made by db-plugins): nothing is created and only
      the initial migration is recorded, so ``migrate`` applies whatever came after it.
    - Some built-in tables but not all, and no record: an error; guessing could destroy data.

    Runs under the migration lock, in one transaction: the schema and its bookkeeping land together or not at all.
    """
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
                    conn.execute(schema_script())  # a parameterless script: psycopg runs all its statements
                except psycopg.Error as exc:
                    raise MigrationError(f"creating the built-in schema failed: {_one_line(exc)}") from exc
            for m in mark:
                backend.mark_one(m)
    return InitResult(created=bool(missing), marked=len(mark), pending=len(todo) - len(mark))
