"""Compatibility alias of db-plugins' ``db_plugins.db.generic``.

``BaseQuery`` is :class:`dbplugins.Query` (db-plugins' abstract base of ``SQLQuery``; here the one query
class), ``Pagination`` is :class:`dbplugins.Pagination` and ``BaseConnection`` is
:class:`dbplugins.SQLConnection`, so ``isinstance`` checks and type annotations written against the old names
keep working.
"""

from __future__ import annotations

from dbplugins._query.pagination import KeysetPage, Pagination
from dbplugins._query.query import Query as BaseQuery
from dbplugins._session.connection import SQLConnection as BaseConnection

__all__ = ["BaseConnection", "BaseQuery", "Pagination", "KeysetPage"]
