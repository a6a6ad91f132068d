"""Writes of one row by its primary key: ``Query.update`` (``UPDATE ... WHERE <pk> RETURNING``).

The batched writes live with their engines: ``bulk_insert`` and ``bulk_update`` in :mod:`dbplugins._copy`,
``get_or_create(_many)`` in :mod:`dbplugins._upsert`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import psycopg

from .._types.binding import bind, translate_error
from .._types.rows import check_columns
from .._types.schema import table_of
from ..errors import MissingValueError, NoResultFound, QueryError
from .statements import class_row_for, update_statement

if TYPE_CHECKING:
    from .._session.session import Session

__all__ = ["update"]


def update(session: Session, cls: type, instance: Any, values: Mapping[str, Any]) -> Any:
    """Set ``values`` on the row of ``instance`` in the session's transaction; see
    :meth:`dbplugins.Query.update`."""
    table = table_of(cls)
    if not isinstance(instance, cls):
        raise QueryError(f"update() got a {type(instance).__name__}, not a {cls.__name__}", model=table.name)
    if not isinstance(values, Mapping):
        raise QueryError(f"update() values must be a dict of column -> value, got {type(values).__name__}")
    check_columns(table, values, what="column")
    if not table.primary_key:
        raise QueryError(f"update() needs a primary key; model {table.name!r} has none", model=table.name)
    key = [getattr(instance, c) for c in table.primary_key]
    for c, v in zip(table.primary_key, key, strict=True):
        if v is None:
            raise MissingValueError(
                f"update(): the instance has no value for primary key column {c!r}",
                model=table.name,
                column=c,
            )
    if not values:
        return instance
    stmt = update_statement(table.name, tuple(values), table.primary_key, tuple(table.columns))
    params = [bind(table, c, v, action="update") for c, v in values.items()] + key
    conn = session.begin()
    try:
        with conn.cursor(row_factory=class_row_for(cast(Any, cls))) as cur:
            cur.execute(stmt, params)
            row = cur.fetchone()
    except (psycopg.Error, UnicodeEncodeError) as exc:
        raise translate_error(exc, table, [values], action="update") from exc
    if row is None:
        where = ", ".join(f"{c}={v!r}" for c, v in zip(table.primary_key, key, strict=True))
        raise NoResultFound(f"update(): no row of model {table.name!r} with {where}", model=table.name)
    try:
        for name in table.columns:
            setattr(instance, name, getattr(row, name))
    except AttributeError:  # frozen dataclass (FrozenInstanceError is an AttributeError)
        return row
    return instance
