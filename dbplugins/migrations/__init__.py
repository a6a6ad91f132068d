"""Schema migrations: catalog introspection, schema diff, yoyo migration files, and applying them.

- :func:`introspect` reads a live database into a :class:`~dbplugins._types.schema.Schema` (a constant number of
  catalog queries); :func:`canonicalize` spells the models' expressions the way the server stores them.
- :func:`diff` compares two schemas and returns ordered :class:`Operation` objects.
- :func:`render` / :func:`write_migration` turn them into a yoyo ``<id>.sql`` + ``<id>.rollback.sql`` pair.
- :mod:`dbplugins.migrations.runner` applies migrations with yoyo, under its lock, every lock wait bounded
  (:mod:`.locks` names the session that blocks a statement); :mod:`.rollback` plans and undoes them, refusing
  built-in or destructive steps unless allowed.

The ``dbp`` command line (:mod:`dbplugins.cli`) drives all of it: ``initdb``, ``make_migrations``, ``migrate``.
"""

from __future__ import annotations

from .diff import Operation, diff
from .introspect import canonicalize, introspect, is_internal_table
from .render import render, write_migration

__all__ = [
    "Operation",
    "diff",
    "introspect",
    "canonicalize",
    "is_internal_table",
    "render",
    "write_migration",
]
