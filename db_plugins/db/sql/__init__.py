"""Compatibility alias of db-plugins' ``db_plugins.db.sql``: the documented imports keep working::

    from db_plugins.db.sql import SQLConnection
    from db_plugins.db.sql.models import *

``SQLConnection`` is :class:`dbplugins.SQLConnection`; the model classes are those of :mod:`dbplugins.models`;
``SQLQuery`` is :class:`dbplugins._query.query.Query` and ``Pagination`` is
:class:`dbplugins._query.query.Pagination`.
"""

from __future__ import annotations

from dbplugins._query.expressions import and_, not_, or_
from dbplugins._query.query import Pagination
from dbplugins._query.query import Query as SQLQuery

from . import models
from .connection import MAP_KEYS, SQLConnection, satisfy_keys, settings_map
from .models import *  # noqa: F403 - db-plugins re-exported its models here

__all__ = [
    "SQLConnection",
    "SQLQuery",
    "Pagination",
    "MAP_KEYS",
    "satisfy_keys",
    "settings_map",
    "models",
    "and_",
    "or_",
    "not_",
    *models.__all__,
]
