"""Compatibility alias of db-plugins' ``db_plugins.db.generic``.

``BaseQuery`` is :class:`dbplugins.Query` (db-plugins' abstract base of ``SQLQuery``; here the one query class),
``Pagination`` is :class:`dbplugins.Pagination` and ``BaseConnection`` is :class:`dbplugins.SQLConnection`, so
``isinstance`` checks and type annotations written against the old names keep working.
"""

from __future__ import annotations

from dbplugins.connection import SQLConnection as BaseConnection
from dbplugins.pagination import KeysetPage, Pagination
from dbplugins.query import Query as BaseQuery

__all__ = ["BaseConnection", "BaseQuery", "Pagination", "KeysetPage"]
