"""Constraint errors as Citus relays them from a worker, recognised as the logical table's own.

On a worker a constraint carries its shard's suffix (``detection_pkey_102119``), and a COPY into a distributed
table reports a worker's error as an internal error (SQLSTATE XX000) with the worker's message, without the
``constraint_name`` diagnostic::

    >>> from dbplugins.models import Detection
    >>> from dbplugins._types.schema import table_of
    >>> logical_constraint("detection_pkey_102119", table_of(Detection))
    'detection_pkey'
    >>> logical_constraint("detection_pkey", table_of(Detection))
    'detection_pkey'
"""

from __future__ import annotations

import re
import weakref
from typing import Any

import psycopg

from .._types.schema import Table

__all__ = ["logical_constraint", "relayed_violation", "relayed_conflict", "on_citus"]

_UNIQUE = re.compile(r'^duplicate key value violates unique constraint "(?P<name>[^"]+)"')
_FOREIGN = re.compile(r'^insert or update on table "[^"]+" violates foreign key constraint "(?P<name>[^"]+)"')
# What a worker says when our COPY waited for a key that a concurrent transaction holds (plain PostgreSQL
# raises LockNotAvailable / DeadlockDetected for these; through Citus they may arrive as XX000 too).
_WAIT = re.compile(r"lock timeout|deadlock", re.IGNORECASE)
_SHARD_SUFFIX = re.compile(r"^(?P<base>.+)_\d+$")


def _known_names(table: Table) -> set[str]:
    names = {table.pk_name, *(table.unique_name(u) for u in table.unique)}
    names |= {fk.name for fk in table.foreign_keys}
    names |= {ix.name for ix in table.indexes}
    return names


def logical_constraint(name: str, table: Table) -> str:
    """``name`` without a Citus shard suffix when the rest is one of ``table``'s constraints,
    else ``name``."""
    known = _known_names(table)
    if name in known:
        return name
    m = _SHARD_SUFFIX.match(name)
    return m.group("base") if m and m.group("base") in known else name


def relayed_violation(exc: psycopg.Error, table: Table) -> tuple[str, str] | None:
    """``("unique" | "foreign_key", logical constraint name)`` when ``exc`` is such a violation,
    else ``None``.

    Reads the message when the diagnostics lack the constraint (Citus relaying a worker's error).
    """
    diag = exc.diag
    primary = diag.message_primary or ""
    for kind, pattern in (("unique", _UNIQUE), ("foreign_key", _FOREIGN)):
        m = pattern.match(primary)
        if m:
            return kind, logical_constraint(diag.constraint_name or m.group("name"), table)
    return None


def relayed_conflict(exc: psycopg.Error, table: Table) -> bool:
    """Whether an internal error relayed from a worker is a duplicate key or a wait on a concurrent key."""
    if exc.sqlstate != "XX000":
        return False
    found = relayed_violation(exc, table)
    return (found is not None and found[0] == "unique") or bool(_WAIT.search(exc.diag.message_primary or ""))


_CITUS: weakref.WeakKeyDictionary[psycopg.Connection[Any], bool] = weakref.WeakKeyDictionary()


def on_citus(conn: psycopg.Connection[Any]) -> bool:
    """Whether ``conn``'s database has the Citus extension (asked once per connection)."""
    known = _CITUS.get(conn)
    if known is None:
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')").fetchone()
        known = _CITUS[conn] = bool(row and row[0])
    return known
