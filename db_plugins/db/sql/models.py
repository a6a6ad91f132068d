"""Compatibility alias of :mod:`dbplugins.models`: ``from db_plugins.db.sql.models import *`` works as before.

The classes are the very same objects as in :mod:`dbplugins.models` (dataclasses, not SQLAlchemy models).
"""

from __future__ import annotations

from dbplugins.models import *  # noqa: F403 - the alias re-exports exactly dbplugins.models' public names
from dbplugins.models import __all__ as __all__
