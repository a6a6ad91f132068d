"""``dbp cluster start|stop|status|destroy``: a local Citus cluster (a coordinator and two workers on
127.0.0.1) for development and tests, under ``./.dbp/citus`` (:class:`dbplugins.citus.LocalCluster`)."""

from __future__ import annotations

import click

from ._common import _Group, _verbose_option

__all__ = ["cluster"]


@click.group(cls=_Group)
def cluster() -> None:
    """A local Citus cluster: a coordinator and 2 workers on 127.0.0.1 (data in ./.dbp/citus).

    Example: DBP_DSN="$(dbp cluster start)" dbp initdb --distributed

    Needs a Citus-enabled PostgreSQL (DBP_CITUS_PG_BIN, default /usr/lib/postgresql/15/bin); see
    docs/scaling.md.
    """


@cluster.command("start")
@_verbose_option
def cluster_start() -> None:
    """Start the cluster (initialising it the first time) and print the coordinator's DSN."""
    from ..citus import LocalCluster, default_cluster_dir

    local = LocalCluster(default_cluster_dir())
    local.start()
    click.echo(
        f"dbp: Citus coordinator and {local.workers} workers ready (data in {local.root})", err=True
    )
    click.echo(local.dsn())  # stdout holds the DSN alone: DBP_DSN="$(dbp cluster start)"


@cluster.command("status")
@_verbose_option
@click.pass_context
def cluster_status(ctx: click.Context) -> None:
    """Say whether every node runs (exit 1 if not)."""
    from ..citus import LocalCluster, default_cluster_dir

    local = LocalCluster(default_cluster_dir())
    if local.is_running():
        click.echo(f"running: {local.dsn()}")
    else:
        click.echo(f"not running ({local.root})")
        ctx.exit(1)


@cluster.command("stop")
@_verbose_option
def cluster_stop() -> None:
    """Stop every node; the data stays for the next start."""
    from ..citus import LocalCluster, default_cluster_dir

    LocalCluster(default_cluster_dir()).stop()
    click.echo("stopped")


@cluster.command("destroy")
@_verbose_option
def cluster_destroy() -> None:
    """Stop every node and delete the cluster's directory, data included."""
    from ..citus import LocalCluster, default_cluster_dir

    local = LocalCluster(default_cluster_dir())
    local.destroy()
    click.echo(f"removed {local.root}")
