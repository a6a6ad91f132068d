"""The ``dbp`` command line: ``initdb``, ``make_migrations``, ``migrate``, ``load``, ``embedded``.

    dbp initdb --settings_path .            # create the built-in schema, record its migrations
    dbp make_migrations                     # diff database vs models, write migrations/<id>.sql + .rollback.sql
    dbp make_migrations --check             # exit 1 if the models and the database differ; writes nothing
    dbp migrate [--lock-timeout N]          # apply pending migrations (built-in first, then yours)
    dbp migrate --list | --dry-run | break-lock
    dbp migrate rollback [--count N | --to REVISION] [--dry-run] [--yes]
    dbp embedded start                      # prints only the DSN: psql "$(dbp embedded start)"

Every database command takes ``--settings_path DIR`` (the directory holding ``settings.py``, as in db-plugins)
and ``--dsn``; with neither, ``DBP_DSN`` / ``DATABASE_URL``, then ``./settings.py``, then the embedded server
(unless ``DBP_EMBEDDED=0``). Exit codes: 0 success, 1 failure (one ``Error: ...`` line on stderr; a traceback
without source lines only with ``--verbose``), 2 usage error (including a rollback that needs ``--yes`` and
has no terminal to ask on). Passwords are never printed. The commands only parse and print: the logic is in
:mod:`dbplugins.migrations.runner` and :mod:`dbplugins.embedded`. The reference is docs/cli.md.
"""

from __future__ import annotations

import copy
import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .._load import files as loadfile
from .._session.redact import format_traceback, secrets_in_dsn, secrets_in_settings_file
from ..config import (
    ConnectionSettings,
    _importable_from,
    load_settings_module,
    mask_dsn,
    resolve,
    settings_from_module,
)
from ..embedded import embedded_allowed
from ..errors import ConfigurationError, DbpError

if TYPE_CHECKING:
    from ..migrations.diff import Operation

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

_VERBOSE = "dbp.verbose"
_SECRETS = "dbp.secrets"
_ENV_VARS = ("DBP_DSN", "DATABASE_URL")


# -- shared plumbing --------------------------------------------------------------------------------------------


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[_VERBOSE] = True
    return value


_verbose_option = click.option(
    "-v",
    "--verbose",
    is_flag=True,
    expose_value=False,
    callback=_set_verbose,
    help="Show the full traceback when something fails.",
)


def _secrets(ctx: click.Context) -> set[str]:
    found: set[str] = ctx.meta.setdefault(_SECRETS, set())
    return found


def _mask(ctx: click.Context, text: str) -> str:
    """``text`` with every secret this command has seen masked (longest first, so no fragment survives)."""
    for secret in sorted(_secrets(ctx), key=len, reverse=True):
        text = mask_dsn(text, secret)
    return text


class _Group(click.Group):
    """A group that turns any failure into one ``Error: ...`` line and exit code 1 (traceback with -v)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except Exception as exc:  # everything else: one line, no traceback unless asked
            if ctx.meta.get(_VERBOSE):
                click.echo(_mask(ctx, format_traceback(exc)), err=True)
            message = str(exc) if isinstance(exc, DbpError) else f"{type(exc).__name__}: {exc}"
            raise click.ClickException(_mask(ctx, " ".join(message.split()))) from None


def _db_options(func: F) -> F:
    """``--settings_path``, ``--dsn`` and ``--verbose``, as on every database command."""
    func = click.option(
        "--dsn",
        default=None,
        metavar="DSN",
        help="Database to use (libpq DSN or postgresql:// URL); overrides DBP_DSN and settings.py.",
    )(func)
    func = click.option(
        "--settings_path",
        "--settings-path",
        "settings_path",
        default=None,
        metavar="DIR",
        help="Directory holding settings.py (DB_CONFIG['SQL'], optional MODELS). Default: current directory.",
    )(func)
    return _verbose_option(func)


def _migrations_dir_option(func: F) -> F:
    return click.option(
        "--migrations-dir",
        "--migrations_dir",
        "migrations_dir",
        default=None,
        type=click.Path(file_okay=False, path_type=Path),
        help="Directory of your migrations. Default: migrations/ beside settings.py.",
    )(func)


class _Env:
    """What a command works with: the settings module (if any), the connection, models and migrations dir."""

    def __init__(
        self,
        ctx: click.Context,
        settings_path: str | None,
        dsn: str | None,
        migrations_dir: Path | None = None,
    ) -> None:
        self.ctx = ctx
        self.dsn = dsn
        secrets = _secrets(ctx)
        for text in (dsn, *(os.environ.get(v) for v in _ENV_VARS)):
            secrets.update(secrets_in_dsn(text))
        if os.environ.get("PGPASSWORD"):  # libpq reads it; it must not show up either
            secrets.add(os.environ["PGPASSWORD"])
        # Before loading it: if settings.py raises, its message or traceback must not show its password.
        secrets.update(secrets_in_settings_file(settings_path))
        self.module: ModuleType | None = load_settings_module(settings_path)
        if self.module is not None:
            self.base_dir = Path(str(self.module.__dbp_dir__))
        else:
            self.base_dir = Path(settings_path).expanduser().resolve() if settings_path else Path.cwd()
        configured = getattr(self.module, "MIGRATIONS_DIR", None) if self.module is not None else None
        if migrations_dir is not None:
            self.migrations_dir = migrations_dir.expanduser().resolve()
        elif configured:
            self.migrations_dir = (self.base_dir / str(configured)).resolve()
        else:
            self.migrations_dir = self.base_dir / "migrations"

    @functools.cached_property
    def settings(self) -> ConnectionSettings:
        """Connection settings by precedence: --dsn > DBP_DSN / DATABASE_URL > settings.py > embedded."""
        if self.dsn is None and self.module is not None and not any(os.environ.get(v) for v in _ENV_VARS):
            cs = settings_from_module(self.module)
        else:
            cs = resolve(dsn=self.dsn, embedded=embedded_allowed())
        if cs.password:
            _secrets(self.ctx).add(cs.password)
        return cs

    @functools.cached_property
    def user_models(self) -> list[type]:
        """The model classes of the modules named in settings.py's ``MODELS``, importable from its directory."""
        names = getattr(self.module, "MODELS", None) if self.module is not None else None
        if not names:
            return []
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise ConfigurationError("settings.py: MODELS must be a list of module names, e.g. ['mymodels']")
        import importlib

        found: list[type] = []
        with _importable_from(self.base_dir):
            for name in names:
                try:
                    module = importlib.import_module(str(name))
                except Exception as exc:
                    raise ConfigurationError(
                        f"cannot import model module {name!r} named in settings.py MODELS "
                        f"(looked in {self.base_dir} and sys.path): {type(exc).__name__}: {exc}"
                    ) from exc
                for value in vars(module).values():
                    # Only classes declared with @model themselves (not subclasses inheriting __table__).
                    if isinstance(value, type) and "__table__" in vars(value) and value not in found:
                        found.append(value)
        return found

    def models(self) -> list[type]:
        """The built-in models followed by the user's."""
        from ..models import ALL_MODELS

        out = list(ALL_MODELS)
        out += [m for m in self.user_models if m not in out]
        return out

    def user_dir(self) -> Path | None:
        return self.migrations_dir


def _env(
    ctx: click.Context, settings_path: str | None, dsn: str | None, migrations_dir: Path | None = None
) -> _Env:
    """Build the environment, taking options given to a parent group (``dbp migrate --dsn X rollback``)."""
    parent = ctx.parent.params if ctx.parent is not None else {}
    return _Env(
        ctx,
        settings_path if settings_path is not None else parent.get("settings_path"),
        dsn if dsn is not None else parent.get("dsn"),
        migrations_dir if migrations_dir is not None else parent.get("migrations_dir"),
    )


# -- the group --------------------------------------------------------------------------------------------------


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dbplugins")
    except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
        return "unknown"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "-V", "--version", prog_name="dbp", message="%(prog)s %(version)s")
@_verbose_option
def cli() -> None:
    """dbplugins: the ALeRCE / ZTF schema on PostgreSQL, its migrations and an embedded server.

    Example: dbp initdb && dbp make_migrations && dbp migrate
    """


# -- initdb -----------------------------------------------------------------------------------------------------


def _initdb(env: _Env, distributed: bool = False) -> str:
    from .._types.schema import table_of
    from ..migrations import runner
    from ..models import ALL_MODELS

    cs = env.settings
    tables = [table_of(m).name for m in ALL_MODELS]
    result = runner.initdb(cs, builtin_tables=tables, distributed=distributed)
    if result.created:
        text = f"Database initialised at {cs.safe_dsn}: created the {len(tables)} built-in tables"
    else:
        text = f"Database at {cs.safe_dsn} already has the built-in tables"
    if result.marked:
        text += f"; recorded {result.marked} built-in migration(s) as applied"
    if result.pending:
        text += f"; {result.pending} newer built-in migration(s) pending: run dbp migrate"
    elif not result.created and not result.marked:
        text += "; nothing to do"
    return text + "."


@cli.command()
@_db_options
@click.option("--distributed", is_flag=True, help="On a Citus coordinator: distribute the tables (docs/scaling.md).")
@click.pass_context
def initdb(ctx: click.Context, settings_path: str | None, dsn: str | None, distributed: bool) -> None:
    """Create the built-in schema and record its migrations as applied.

    Example: dbp initdb --settings_path ./config

    Safe to run again. Tables of your own models (settings.py MODELS) arrive with
    dbp make_migrations followed by dbp migrate.
    """
    env = _env(ctx, settings_path, dsn)
    click.echo(_initdb(env, distributed))
    if env.user_models:
        click.echo(
            "To fully init the database with your step configuration run: dbp make_migrations; dbp migrate"
        )


# -- make_migrations --------------------------------------------------------------------------------------------


def _warn(text: str) -> None:
    click.echo(f"Warning: {text}", err=True)


def _note(text: str) -> None:
    click.echo(f"dbp: {text}", err=True)


@click.command("make_migrations")
@_db_options
@_migrations_dir_option
@click.option("--check", is_flag=True, help="Exit 1 if the models and the database differ; write nothing.")
@click.option(
    "--dry-run", "--dry_run", "dry_run", is_flag=True, help="Print the migration SQL; write nothing."
)
@click.option(
    "--name", "-n", default=None, help="Name of the migration (the file name's slug and its message)."
)
@click.pass_context
def make_migrations(
    ctx: click.Context,
    settings_path: str | None,
    dsn: str | None,
    migrations_dir: Path | None,
    check: bool,
    dry_run: bool,
    name: str | None,
) -> None:
    """Write a migration for the differences between the database and the models.

    Example: dbp make_migrations --name add-watchlist

    Compares the database with the built-in models plus those of the modules in settings.py MODELS, and writes
    <id>.sql and <id>.rollback.sql into migrations/ beside settings.py. Refuses while migrations are pending.
    """
    from .._types.schema import Schema
    from ..migrations import runner
    from ..migrations.diff import diff
    from ..migrations.introspect import canonicalize, introspect
    from ..migrations.render import render, write_migration

    env = _env(ctx, settings_path, dsn, migrations_dir)
    if not (check or dry_run):
        runner.check_user_dir(env.migrations_dir)  # before any work: never write into the built-in migrations
    cs = env.settings
    desired = Schema.from_models(env.models())
    waiting = runner.pending(cs, env.user_dir())
    if waiting:
        ids = ", ".join(m.id for m in waiting[:3]) + (" ..." if len(waiting) > 3 else "")
        raise click.ClickException(
            f"{len(waiting)} migration(s) not applied yet ({ids}); run `dbp migrate` first, then make_migrations"
        )
    with runner.connect(cs) as conn:
        current = introspect(conn)
        desired = canonicalize(conn, desired, current)
    ops = diff(current, desired)
    if not ops:
        click.echo(f"No changes: the database matches the models ({len(desired.tables)} tables).")
        return
    for op in ops:
        if op.note and "possible rename" in op.note and op.kind in ("drop_column", "drop_table"):
            _warn(op.note)
    if check:
        click.echo(f"{len(ops)} change(s) between the database and the models:")
        _print_ops(ops)
        click.echo("Run `dbp make_migrations` to write them as a migration.", err=True)
        ctx.exit(1)
    depends = runner.heads(env.user_dir())
    if dry_run:
        apply_text, rollback_text = render(ops, message=name or "(dry run)", depends=depends)
        click.echo(apply_text)
        click.echo("-- ===== rollback =====")
        click.echo(rollback_text)
        return
    path, rollback = write_migration(env.migrations_dir, ops, depends=depends, name=name)
    click.echo(f"Wrote {path} and {rollback.name}: {len(ops)} change(s)")
    _print_ops(ops)
    if any(op.destructive for op in ops):
        _warn("the migration drops data (steps marked DESTRUCTIVE); review it before `dbp migrate`")
    click.echo("Review it, then run: dbp migrate")


def _print_ops(ops: Sequence[Operation]) -> None:
    for op in ops:
        flag = "  [DESTRUCTIVE]" if op.destructive else ""
        click.echo(f"  - {op.describe()}{flag}")


cli.add_command(make_migrations)
# db-plugins documented `make_migrations` but click 7+ only knew `make-migrations`: accept both.
_make_migrations_alias = copy.copy(make_migrations)
_make_migrations_alias.name = "make-migrations"
_make_migrations_alias.hidden = True
cli.add_command(_make_migrations_alias)


# -- migrate ----------------------------------------------------------------------------------------------------

_lock_timeout_option = click.option(
    "--lock-timeout",
    "--lock_timeout",
    "lock_timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    envvar="DBP_LOCK_TIMEOUT",
    metavar="SECONDS",
    help="Wait at most this long for each lock (another migrate's, and each table a statement locks); "
    "then exit 1 naming the blocking process. Default 300.",
)


def _timeout(ctx: click.Context, value: float | None) -> float:
    from ..migrations.runner import DEFAULT_LOCK_TIMEOUT

    if value is None and ctx.parent is not None:
        value = ctx.parent.params.get("lock_timeout")
    return DEFAULT_LOCK_TIMEOUT if value is None else value


@cli.group(cls=_Group, invoke_without_command=True)
@_db_options
@_migrations_dir_option
@click.option("--list", "list_", is_flag=True, help="List migrations, applied [X] and pending [ ].")
@click.option("--dry-run", "--dry_run", "dry_run", is_flag=True, help="Print the SQL that would run.")
@_lock_timeout_option
@click.pass_context
def migrate(
    ctx: click.Context,
    settings_path: str | None,
    dsn: str | None,
    migrations_dir: Path | None,
    list_: bool,
    dry_run: bool,
    lock_timeout: float | None,
) -> None:
    """Apply pending migrations: the built-in ones, then yours.

    Example: dbp migrate --settings_path ./config

    Safe to run from several processes at once: each migration is applied once, under a lock.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..migrations import runner

    env = _env(ctx, settings_path, dsn, migrations_dir)
    cs = env.settings
    if list_:
        items = runner.status(cs, env.user_dir())
        for m in items:
            origin = "built-in" if m.builtin else str(m.path.parent)
            click.echo(f"[{'X' if m.applied else ' '}] {m.id}  ({origin})")
        done = sum(m.applied for m in items)
        click.echo(f"{done} applied, {len(items) - done} pending")
        return
    if dry_run:
        text = runner.pending_sql(cs, env.user_dir())
        click.echo(text if text else "-- Nothing to apply: the database is up to date.")
        return
    applied = runner.apply(cs, env.user_dir(), lock_timeout=_timeout(ctx, lock_timeout), notify=_note)
    if applied:
        click.echo(f"Applied {len(applied)} migration(s) to {cs.safe_dsn}:")
        for mid in applied:
            click.echo(f"  - {mid}")
    else:
        click.echo("Nothing to apply: the database is up to date.")


@migrate.command("rollback")
@_db_options
@_migrations_dir_option
@click.option("--count", type=click.IntRange(min=1), default=None, help="How many to roll back (default 1).")
@click.option(
    "--to", "to", default=None, metavar="REVISION", help="Roll back every migration applied after REVISION."
)
@click.option(
    "--dry-run",
    "--dry_run",
    "dry_run",
    is_flag=True,
    help="Print the rollback SQL that would run; change nothing.",
)
@click.option("--yes", "-y", is_flag=True, help="Undo built-in or destructive migrations without asking.")
@_lock_timeout_option
@click.pass_context
def migrate_rollback(
    ctx: click.Context,
    settings_path: str | None,
    dsn: str | None,
    migrations_dir: Path | None,
    count: int | None,
    to: str | None,
    dry_run: bool,
    yes: bool,
    lock_timeout: float | None,
) -> None:
    """Roll back the most recent migrations with their .rollback.sql.

    Example: dbp migrate rollback --to 20261128_01_dbp01-initial-schema

    Prints what it will undo first. Undoing a built-in migration, or a step that drops tables or columns, needs
    --yes (or an answer at the prompt on a terminal); without a terminal and without --yes it exits 2.
    """
    from ..migrations import runner

    if count is not None and to is not None:
        raise click.UsageError("give --count or --to, not both")
    dry_run = dry_run or bool(ctx.parent is not None and ctx.parent.params.get("dry_run"))
    env = _env(ctx, settings_path, dsn, migrations_dir)
    cs = env.settings
    plan = runner.plan_rollback(cs, env.user_dir(), count=count, to=to)
    if not plan:
        click.echo("Nothing to roll back.")
        return
    if dry_run:
        for step in plan:
            click.echo(f"-- ===== rollback of {step.describe()} ({step.rollback_path}) =====")
            click.echo(step.sql.rstrip() or "-- (no rollback SQL)")
            click.echo()
        return
    click.echo(f"Will roll back {len(plan)} migration(s) on {cs.safe_dsn}, most recent first:")
    for step in plan:
        click.echo(f"  - {step.describe()}")
    risky = [step for step in plan if step.needs_confirmation]
    if risky and not yes:
        what = f"{len(risky)} of them {'is built-in or drops' if len(risky) == 1 else 'are built-in or drop'} data"
        if not (
            sys.stdin.isatty() and sys.stderr.isatty()
        ):  # the prompt goes to stderr, the answer from stdin
            click.echo(f"Error: {what}; nothing was rolled back. Re-run with --yes to confirm.", err=True)
            ctx.exit(2)
        if not click.confirm(f"{what[0].upper()}{what[1:]}. Roll back?", default=False, err=True):
            click.echo("Nothing was rolled back.", err=True)
            ctx.exit(1)
    done = runner.rollback(
        cs,
        env.user_dir(),
        count=count,
        to=to,
        allow_destructive=bool(yes or risky),  # risky here means confirmed at the prompt
        expect=[step.id for step in plan],
        lock_timeout=_timeout(ctx, lock_timeout),
        notify=_note,
    )
    click.echo(f"Rolled back {len(done)} migration(s).")


@migrate.command("break-lock")
@_db_options
@click.pass_context
def migrate_break_lock(ctx: click.Context, settings_path: str | None, dsn: str | None) -> None:
    """Remove a stale migration lock left by a crashed process.

    Example: dbp migrate break-lock --settings_path ./config
    """
    from ..migrations import runner

    env = _env(ctx, settings_path, dsn)
    runner.break_lock(env.settings)
    click.echo("Migration lock cleared.")


# -- embedded server --------------------------------------------------------------------------------------------


@cli.group(cls=_Group)
def embedded() -> None:
    """The embedded PostgreSQL used when nothing is configured (data in ./.dbp).

    Example: dbp embedded start
    """


@embedded.command("start")
@_verbose_option
def embedded_start() -> None:
    """Start the embedded server (initialising it the first time) and print its DSN."""
    from ..embedded import ensure_server

    server = ensure_server(announce=False)
    server.wait_ready()
    click.echo(f"dbp: embedded PostgreSQL ready (data in {server.pgdata})", err=True)
    click.echo(server.dsn())  # stdout holds the DSN alone: psql "$(dbp embedded start)"


@embedded.command("status")
@_verbose_option
@click.pass_context
def embedded_status(ctx: click.Context) -> None:
    """Say whether the embedded server runs (exit 1 if it does not)."""
    from ..embedded import EmbeddedServer, default_dir

    server = EmbeddedServer(default_dir())
    if server.is_running():
        click.echo(f"running: {server.dsn()}")
    else:
        click.echo(f"not running (data directory {server.pgdata})")
        ctx.exit(1)


@embedded.command("stop")
@_verbose_option
def embedded_stop() -> None:
    """Stop the embedded server if it runs."""
    from ..embedded import EmbeddedServer, default_dir

    server = EmbeddedServer(default_dir())
    was_running = server.is_running()
    server.stop()
    click.echo("stopped" if was_running else "not running")


# -- load -------------------------------------------------------------------------------------------------------


def _load_delimiter(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    try:
        return None if value is None else loadfile.check_delimiter(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _load_encoding(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return loadfile.check_encoding(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command("load")
@click.argument("table")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(loadfile.FORMATS)),
    default=None,
    help="File format. Default: from the extension (.csv, .tsv, .json, .jsonl/.ndjson, optionally .gz); "
    "json is an array of objects or JSON lines.",
)
@click.option(
    "--delimiter",
    default=None,
    metavar="CHAR",
    callback=_load_delimiter,
    help="Field separator of a CSV file (default , ; tab for tsv). '\\t' or tab for a tab.",
)
@click.option(
    "--encoding",
    default="utf-8",
    show_default=True,
    callback=_load_encoding,
    help="Encoding of the file's bytes (latin-1, cp1252, utf-16...).",
)
@click.option(
    "--on-conflict",
    "--on_conflict",
    "on_conflict",
    type=click.Choice(["ignore", "error", "update"]),
    default="ignore",
    show_default=True,
    help="Rows whose key exists: skip them, fail, or update their other columns.",
)
@click.option(
    "--chunk-size",
    "--chunk_size",
    "chunk_size",
    type=click.IntRange(min=1),
    default=None,
    help="Rows per staging flush, for --on-conflict update and after a duplicate (default: bulk_insert's).",
)
@click.option(
    "--update",
    is_flag=True,
    help="Update the columns the file names in the rows whose key is stored (bulk_update); insert nothing.",
)
@click.option("--silent", is_flag=True, help="No progress on stderr.")
@_db_options
@click.pass_context
def load(
    ctx: click.Context,
    table: str,
    file: str,
    fmt: str | None,
    delimiter: str | None,
    encoding: str,
    on_conflict: str,
    chunk_size: int | None,
    update: bool,
    silent: bool,
    dsn: str | None,
    settings_path: str | None,
) -> None:
    """Load a CSV/TSV (with a header row), JSON-lines or JSON-array FILE into TABLE, with COPY.

    Example: dbp load detection detections.csv --on-conflict ignore

    FILE may be - for stdin, and may be gzipped (.gz). Rows whose key already exists are skipped by default, so
    loading the same file twice is harmless. The whole file is one transaction: on any error nothing is loaded.
    In CSV an unquoted empty field is NULL and a quoted one ("") the empty string.
    """
    fmt = fmt or loadfile.guess_format(file)
    if fmt is None:
        raise click.UsageError(
            f"cannot tell the format of {file!r} from its name: give --format {'|'.join(loadfile.FORMATS)}"
        )
    if delimiter is not None and fmt not in ("csv", "tsv"):
        raise click.UsageError(f"--delimiter applies to csv and tsv files, not {fmt}")
    env = _env(ctx, settings_path, dsn)
    target = loadfile.find_table(table, env.models())
    mode = "bulk_update" if update else on_conflict  # --update: see dbplugins._copy.update
    loadfile.load_file(
        target,
        file,
        fmt,
        mode,
        chunk_size,
        silent,
        env.settings.conninfo,
        delimiter=delimiter,
        encoding=encoding,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``dbp`` script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="dbp")


if __name__ == "__main__":  # python -m dbplugins.cli
    main(sys.argv[1:])
