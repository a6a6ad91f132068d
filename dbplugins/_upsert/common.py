"""What get_or_create and get_or_create_many share: the conflict target, the atomic scope, the mismatch error.

Both rest on ``INSERT ... ON CONFLICT (<key>) DO NOTHING RETURNING``, which inserts a new row and returns
nothing for a key that exists. get_or_create sends, in the common case, one statement that inserts or else
selects (``WITH ins AS (INSERT ...) SELECT ... UNION ALL SELECT ... WHERE NOT EXISTS (SELECT 1 FROM ins)``):
one round trip for new and existing keys alike. Both branches share the statement's snapshot, so under READ
COMMITTED a row committed by a concurrent caller after the snapshot is invisible to the SELECT branch (the
INSERT saw it and did nothing, PostgreSQL manual, "INSERT ... ON CONFLICT DO NOTHING"); the statement then
returns no row, and the call falls back to separate statements, each with a snapshot of its own. If that
SELECT still finds nothing (the other row was deleted meanwhile) it tries again, at most ``MAX_TRIES`` times.
get_or_create_many does the same for a batch: one INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING,
then one SELECT of the keys it did not insert.

Outside a transaction each statement runs in autocommit: a new row is durable when the INSERT returns, and no
BEGIN / COMMIT round trips are spent. Inside a session transaction the call runs in a savepoint
(``session.atomic()``): it commits an implicit transaction afterwards (db-plugins' get_or_create committed the
session), and leaves an explicit ``with db.transaction():`` block to commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import psycopg

from .._session.session import Session
from .._types.schema import Table
from ..errors import ConstraintError, context

__all__ = ["MAX_TRIES", "conflict_target", "session_scope", "mismatch", "log"]

log = logging.getLogger("dbplugins.ingest")

T = TypeVar("T")

#: Attempts at "insert, else select" before giving up. A second attempt is needed only when a conflicting
#: row is deleted between our INSERT and our SELECT; ten in a row means something keeps deleting it.
MAX_TRIES = 10

#: PostgreSQL binds at most 65535 parameters per statement; the VALUES form (tables with array columns) needs
#: one per value, so its batches are cut to fit.
_MAX_PARAMS = 65535

_ORD = "_dbp_ord_"  # ordinality column of the batched statements; not a valid model field name by convention



def conflict_target(table: Table, keys: Iterable[str]) -> tuple[str, ...] | None:
    """The unique key of ``table`` (primary key first, then unique constraints/indexes) within ``keys``."""
    present = set(keys)
    candidates: list[tuple[str, ...]] = []
    if table.primary_key:
        candidates.append(tuple(table.primary_key))
    candidates.extend(tuple(u) for u in table.unique)
    candidates.extend(tuple(ix.columns) for ix in table.indexes if ix.unique and ix.where is None)
    for cand in candidates:
        if cand and set(cand) <= present:
            return cand
    return None


def session_scope(session: Session) -> AbstractContextManager[psycopg.Connection[Any]]:
    """Autocommit statements outside a transaction; a savepoint (then commit if implicit) inside one."""
    if session.in_transaction:
        return session.atomic()
    return session.connection()


def mismatch(
    table: Table,
    target: Sequence[str],
    row: Mapping[str, Any],
    filter_by: Mapping[str, Any],
    index: int | None = None,
    action: str = "get_or_create",
) -> ConstraintError:
    key = ", ".join(f"{c}={row[c]!r}" for c in target)
    return ConstraintError(
        f"{action}: a row with {key} exists but does not match "
        f"{dict(filter_by)!r}; fetch it by its key, or update it" + context(model=table.name, row=index),
        model=table.name,
        row=index,
        constraint=table.pk_name if tuple(target) == tuple(table.primary_key) else None,
    )
