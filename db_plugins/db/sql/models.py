"""Compatibility alias of :mod:`dbplugins.models`: ``from db_plugins.db.sql.models import *`` works as before.

The classes are the very same objects as in :mod:`dbplugins.models` (dataclasses, not SQLAlchemy models).
``Base`` stands in for db-plugins' SQLAlchemy declarative base so that imports of it resolve and it can be
passed as ``connect(base=Base)`` (ignored, with a one-time warning); the models do not inherit from it and it
has no ``metadata``: create the schema with ``db.create_db()`` or ``dbp initdb``.
"""

from __future__ import annotations

from dbplugins.models import *  # noqa: F403 - the alias re-exports exactly dbplugins.models' public names
from dbplugins.models import __all__ as _models_all

__all__ = [*_models_all, "Base"]


class Base:
    """Placeholder for db-plugins' ``Base = declarative_base()`` (import compatibility only)."""
