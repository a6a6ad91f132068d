"""Compatibility alias of db-plugins' ``db_plugins.db.sql.query``: ``SQLQuery`` is
:class:`dbplugins.Query`."""

from __future__ import annotations

from dbplugins._query.pagination import Pagination
from dbplugins._query.query import Query as SQLQuery

__all__ = ["SQLQuery", "Pagination"]
