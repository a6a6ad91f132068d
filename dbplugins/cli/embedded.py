"""``dbp embedded start|status|stop``: the local PostgreSQL under ./.dbp (:mod:`dbplugins.embedded`)."""

from __future__ import annotations

import click

from ._common import _Group, _verbose_option

__all__ = ["embedded"]


@click.group(cls=_Group)
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
