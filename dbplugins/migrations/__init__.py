"""Schema migrations: a Python API over catalog introspection, schema diff and yoyo migration files.

The workflow, callable without the CLI (each function takes a DSN, a config dict, settings or a connected
``SQLConnection``, and returns what it wrote or applied; see :mod:`.api` and docs/migrations.md):

- :func:`initdb` creates the built-in schema and records its migrations (``dbp initdb``);
- :func:`make_migrations` diffs the database against the models and writes ``<id>.sql`` +
  ``<id>.rollback.sql`` (``dbp make_migrations``; ``dry_run=True`` is ``--check`` / ``--dry-run``);
- :func:`migrate` applies what is pending, :func:`status` lists it, :func:`rollback` undoes (refusing built-in
  or destructive steps unless allowed), :func:`break_lock` clears a stale lock (``dbp migrate ...``).

Underneath: :func:`introspect` reads a live database into a :class:`~dbplugins._types.schema.Schema` (a
constant number of catalog queries); :func:`canonicalize` spells the models' expressions the way the server
stores them; :func:`diff` returns ordered :class:`Operation` objects; :func:`render` / :func:`write_migration`
turn them into a yoyo file pair; :mod:`.runner` applies migrations with yoyo, under its lock, every lock wait
bounded (:mod:`.locks` names the session that blocks a statement). The ``dbp`` command line
(:mod:`dbplugins.cli`) only parses options, calls these functions and prints.
"""

from __future__ import annotations

from ._rollback import RollbackNotConfirmed, RollbackStep
from .api import (
    MakeMigrationsResult,
    MigrateResult,
    RollbackResult,
    Status,
    break_lock,
    initdb,
    make_migrations,
    migrate,
    models_of,
    rollback,
    settings_of,
    status,
)
from .diff import Operation, diff
from .introspect import canonicalize, introspect, is_internal_table
from .render import render, write_migration
from .runner import InitResult, MigrationInfo

__all__ = [
    "initdb",
    "make_migrations",
    "migrate",
    "status",
    "rollback",
    "break_lock",
    "settings_of",
    "models_of",
    "InitResult",
    "MakeMigrationsResult",
    "MigrateResult",
    "MigrationInfo",
    "RollbackResult",
    "RollbackStep",
    "RollbackNotConfirmed",
    "Status",
    "Operation",
    "diff",
    "introspect",
    "canonicalize",
    "is_internal_table",
    "render",
    "write_migration",
]
