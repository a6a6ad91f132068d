"""dbplugins: a fast, lightweight PostgreSQL data layer for the ALeRCE / ZTF alert schema, without an ORM.

    >>> from dbplugins import SQLConnection
    >>> from dbplugins.models import Object
    >>> with SQLConnection() as db:                       # DBP_DSN, settings.py, or the embedded server
    ...     obj, created = db.query(Object).get_or_create(filter_by={"oid": "ZTF20abc"})
"""

from __future__ import annotations

from ._query.expressions import and_, cols, not_, or_
from ._query.pagination import KeysetPage, Pagination
from ._query.query import Query
from ._session.connection import SQLConnection
from ._session.scoped import ScopedSession
from ._session.session import Session
from ._types.schema import Column, ForeignKey, Index, model, table_of
from .errors import (
    ConfigurationError,
    ConnectionError,
    ConnectionFailedError,
    ConstraintError,
    DataError,
    DbpError,
    MigrationError,
    MissingValueError,
    MultipleResultsFound,
    NoResultFound,
    PoolTimeoutError,
    QueryError,
    UnknownColumnError,
)

__all__ = [
    "SQLConnection",
    "Session",
    "ScopedSession",
    "Query",
    "Pagination",
    "KeysetPage",
    "and_",
    "or_",
    "not_",
    "cols",
    "Column",
    "Index",
    "ForeignKey",
    "model",
    "table_of",
    "DbpError",
    "ConfigurationError",
    "ConnectionError",
    "ConnectionFailedError",
    "PoolTimeoutError",
    "UnknownColumnError",
    "MissingValueError",
    "ConstraintError",
    "DataError",
    "QueryError",
    "NoResultFound",
    "MultipleResultsFound",
    "MigrationError",
]

for _name in ("SQLConnection", "Session", "ScopedSession"):
    globals()[_name].__module__ = "dbplugins"
