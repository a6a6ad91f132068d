"""The ``dbp`` CLI: ``initdb``, ``make_migrations``, ``migrate``, ``load``, ``embedded``, ``cluster``.

    dbp initdb --settings_path .            # create the built-in schema, record its migrations
    dbp make_migrations                     # diff db vs models, write migrations/<id>.sql + .rollback.sql
    dbp make_migrations --check             # exit 1 if the models and the database differ; writes nothing
    dbp migrate [--lock-timeout N]          # apply pending migrations (built-in first, then yours)
    dbp migrate --list | --dry-run | break-lock
    dbp migrate rollback [--count N | --to REVISION] [--dry-run] [--yes]
    dbp load TABLE FILE                     # a CSV / TSV / JSON file into a table, with COPY
    dbp embedded start                      # prints only the DSN: psql "$(dbp embedded start)"
    dbp cluster start                       # a local Citus cluster; prints the coordinator's DSN

Every database command takes ``--settings_path DIR`` (the directory holding ``settings.py``, as in db-plugins)
and ``--dsn``; with neither, ``DBP_DSN`` / ``DATABASE_URL``, then ``./settings.py``, then the embedded server
(unless ``DBP_EMBEDDED=0``). Exit codes: 0 success, 1 failure (one ``Error: ...`` line on stderr; a traceback
without source lines only with ``--verbose``), 2 usage error (including a rollback that needs ``--yes`` and
has no terminal to ask on). Passwords are never printed. The reference is docs/cli.md.

The commands only parse, call the Python API and print: the migration commands are in :mod:`.migrate` and
:mod:`.schema` (calling :mod:`dbplugins.migrations`), the servers' in :mod:`.embedded` and :mod:`.cluster`;
what they share (options, settings.py, failure handling) in :mod:`._common`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from .._load import files as loadfile
from ._common import _db_options, _env, _Group, _verbose_option
from .cluster import cluster as _cluster
from .embedded import embedded as _embedded
from .migrate import make_migrations as _make_migrations
from .migrate import make_migrations_alias as _make_migrations_alias
from .migrate import migrate as _migrate
from .schema import initdb as _initdb

__all__ = ["cli", "main"]


# -- the group -----------------------------------------------------------------------------------------------


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


for _command in (_initdb, _make_migrations, _make_migrations_alias, _migrate, _embedded, _cluster):
    cli.add_command(_command)


# -- load ----------------------------------------------------------------------------------------------------


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
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="COPY streams on as many connections, the file read once and its rows dealt by key; all or nothing "
    "where the server allows prepared transactions (see docs/parallel.md).",
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
    jobs: int,
    silent: bool,
    dsn: str | None,
    settings_path: str | None,
) -> None:
    """Load a CSV/TSV (with a header row), JSON-lines or JSON-array FILE into TABLE, with COPY.

    Example: dbp load detection detections.csv --on-conflict ignore

    FILE may be - for stdin, and may be gzipped (.gz). Rows whose key already exists are skipped by default,
    so loading the same file twice is harmless. The whole file is one transaction (with --jobs N, N that
    commit together where the server allows prepared transactions): on any error nothing is loaded. In CSV
    an unquoted empty field is NULL and a quoted one ("") the empty string.
    """
    fmt = fmt or loadfile.guess_format(file)
    if fmt is None:
        raise click.UsageError(
            f"cannot tell the format of {file!r} from its name: give --format {'|'.join(loadfile.FORMATS)}"
        )
    if delimiter is not None and fmt not in ("csv", "tsv"):
        raise click.UsageError(f"--delimiter applies to csv and tsv files, not {fmt}")
    if jobs > 1 and update:
        raise click.UsageError("--jobs applies to loads that insert; --update runs on one connection")
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
        jobs=jobs,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``dbp`` script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="dbp")


if __name__ == "__main__":  # python -m dbplugins.cli
    main(sys.argv[1:])
