"""``dbp initdb``: create the built-in schema (:func:`dbplugins.migrations.initdb`) and say what was done."""

from __future__ import annotations

import click

from ._common import _db_options, _env

__all__ = ["initdb"]


@click.command()
@_db_options
@click.option(
    "--distributed", is_flag=True, help="On a Citus coordinator: distribute the tables (docs/scaling.md)."
)
@click.pass_context
def initdb(ctx: click.Context, settings_path: str | None, dsn: str | None, distributed: bool) -> None:
    """Create the built-in schema and record its migrations as applied.

    Example: dbp initdb --settings_path ./config

    Safe to run again. Tables of your own models (settings.py MODELS) arrive with
    dbp make_migrations followed by dbp migrate.
    """
    from .. import migrations

    env = _env(ctx, settings_path, dsn)
    cs = env.settings
    result = migrations.initdb(cs, distributed=distributed)
    if result.created:
        text = f"Database initialised at {cs.safe_dsn}: created the {len(result.tables)} built-in tables"
    else:
        text = f"Database at {cs.safe_dsn} already has the built-in tables"
    if result.marked:
        text += f"; recorded {result.marked} built-in migration(s) as applied"
    if result.pending:
        text += f"; {result.pending} newer built-in migration(s) pending: run dbp migrate"
    elif not result.created and not result.marked:
        text += "; nothing to do"
    click.echo(text + ".")
    if env.user_models:
        click.echo(
            "To fully init the database with your step configuration run: dbp make_migrations; dbp migrate"
        )
