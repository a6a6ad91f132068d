"""``dbp make_migrations`` and ``dbp migrate [rollback | break-lock]``: options in, a call of
:mod:`dbplugins.migrations`, its result printed."""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from .. import migrations
from ..migrations import Operation
from ..migrations.runner import DEFAULT_LOCK_TIMEOUT
from ._common import _db_options, _env, _Group, _migrations_dir_option, _note, _warn

__all__ = ["make_migrations", "make_migrations_alias", "migrate"]


# -- make_migrations -----------------------------------------------------------------------------------------


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
    from ..migrations import runner

    env = _env(ctx, settings_path, dsn, migrations_dir)
    if not (check or dry_run):
        # Before the database is resolved (which may start the embedded server): refuse at once.
        runner.check_user_dir(env.migrations_dir)
    cs = env.settings
    result = migrations.make_migrations(
        cs, models=env.user_models, migrations_dir=env.migrations_dir, name=name, dry_run=check or dry_run
    )
    if not result.changed:
        click.echo(f"No changes: the database matches the models ({result.tables} tables).")
        return
    for warning in result.warnings:
        _warn(warning)
    ops = result.operations
    if check:
        click.echo(f"{len(ops)} change(s) between the database and the models:")
        _print_ops(ops)
        click.echo("Run `dbp make_migrations` to write them as a migration.", err=True)
        ctx.exit(1)
    if dry_run:
        click.echo(result.sql)
        click.echo("-- ===== rollback =====")
        click.echo(result.rollback_sql)
        return
    assert result.path is not None and result.rollback_path is not None
    click.echo(f"Wrote {result.path} and {result.rollback_path.name}: {len(ops)} change(s)")
    _print_ops(ops)
    if result.destructive:
        _warn("the migration drops data (steps marked DESTRUCTIVE); review it before `dbp migrate`")
    click.echo("Review it, then run: dbp migrate")


def _print_ops(ops: Sequence[Operation]) -> None:
    for op in ops:
        flag = "  [DESTRUCTIVE]" if op.destructive else ""
        click.echo(f"  - {op.describe()}{flag}")


# db-plugins documented `make_migrations` but click 7+ only knew `make-migrations`: accept both.
make_migrations_alias = copy.copy(make_migrations)
make_migrations_alias.name = "make-migrations"
make_migrations_alias.hidden = True


# -- migrate -------------------------------------------------------------------------------------------------

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
    if value is None and ctx.parent is not None:
        value = ctx.parent.params.get("lock_timeout")
    return DEFAULT_LOCK_TIMEOUT if value is None else value


@click.group(cls=_Group, invoke_without_command=True)
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
    env = _env(ctx, settings_path, dsn, migrations_dir)
    cs = env.settings
    if list_:
        items = migrations.status(cs, migrations_dir=env.migrations_dir)
        for m in items:
            origin = "built-in" if m.builtin else str(m.path.parent)
            click.echo(f"[{'X' if m.applied else ' '}] {m.id}  ({origin})")
        click.echo(f"{len(items.applied)} applied, {len(items.pending)} pending")
        return
    if dry_run:
        text = migrations.migrate(cs, migrations_dir=env.migrations_dir, dry_run=True).sql
        click.echo(text if text else "-- Nothing to apply: the database is up to date.")
        return
    applied = migrations.migrate(
        cs, migrations_dir=env.migrations_dir, lock_timeout=_timeout(ctx, lock_timeout), notify=_note
    ).applied
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

    Prints what it will undo first. Undoing a built-in migration, or a step that drops tables or columns,
    needs --yes (or an answer at the prompt on a terminal); without a terminal and without --yes it exits 2.
    """
    if count is not None and to is not None:
        raise click.UsageError("give --count or --to, not both")
    dry_run = dry_run or bool(ctx.parent is not None and ctx.parent.params.get("dry_run"))
    env = _env(ctx, settings_path, dsn, migrations_dir)
    cs = env.settings
    plan = migrations.rollback(cs, migrations_dir=env.migrations_dir, count=count, to=to, dry_run=True)
    if not plan.steps:
        click.echo("Nothing to roll back.")
        return
    if dry_run:
        for step in plan.steps:
            click.echo(f"-- ===== rollback of {step.describe()} ({step.rollback_path}) =====")
            click.echo(step.sql.rstrip() or "-- (no rollback SQL)")
            click.echo()
        return
    click.echo(f"Will roll back {len(plan.steps)} migration(s) on {cs.safe_dsn}, most recent first:")
    for step in plan.steps:
        click.echo(f"  - {step.describe()}")
    risky = plan.needs_confirmation
    if risky and not yes:
        verb = "is built-in or drops" if len(risky) == 1 else "are built-in or drop"
        what = f"{len(risky)} of them {verb} data"
        if not (
            sys.stdin.isatty() and sys.stderr.isatty()
        ):  # the prompt goes to stderr, the answer from stdin
            click.echo(f"Error: {what}; nothing was rolled back. Re-run with --yes to confirm.", err=True)
            ctx.exit(2)
        if not click.confirm(f"{what[0].upper()}{what[1:]}. Roll back?", default=False, err=True):
            click.echo("Nothing was rolled back.", err=True)
            ctx.exit(1)
    done = migrations.rollback(
        cs,
        migrations_dir=env.migrations_dir,
        count=count,
        to=to,
        allow_destructive=bool(yes or risky),  # risky here means confirmed at the prompt
        expect=plan.ids,
        lock_timeout=_timeout(ctx, lock_timeout),
        notify=_note,
    )
    click.echo(f"Rolled back {len(done.steps)} migration(s).")


@migrate.command("break-lock")
@_db_options
@click.pass_context
def migrate_break_lock(ctx: click.Context, settings_path: str | None, dsn: str | None) -> None:
    """Remove a stale migration lock left by a crashed process.

    Example: dbp migrate break-lock --settings_path ./config
    """
    env = _env(ctx, settings_path, dsn)
    migrations.break_lock(env.settings)
    click.echo("Migration lock cleared.")
