"""Compatibility alias of db-plugins' ``db_plugins.db.sql.connection``.

``SQLConnection`` is :class:`dbplugins.SQLConnection`. ``MAP_KEYS``, ``satisfy_keys`` and ``settings_map``
keep their old meaning, except that ``settings_map`` now escapes every part of the URL (the original pasted
the raw password in, so a password with ``@`` or ``/`` produced a broken URL)::

    >>> settings_map({"ENGINE": "postgresql", "HOST": "db", "USER": "alerce", "PASSWORD": "p@ss/word",
    ...               "PORT": 5432, "DB_NAME": "ztf"})
    'postgresql://alerce:p%40ss%2Fword@db:5432/ztf'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dbplugins._session.connection import SQLConnection as _SQLConnection
from dbplugins.config import MAP_KEYS as _MAP_KEYS
from dbplugins.config import from_mapping
from dbplugins.errors import ConfigurationError

__all__ = ["MAP_KEYS", "SQLConnection", "satisfy_keys", "settings_map"]


class SQLConnection(_SQLConnection):
    """:class:`dbplugins.SQLConnection` with db-plugins' handling of row keys that are not columns.

    db-plugins' ``bulk_insert`` and ``get_or_create_many`` dropped such keys (``df.to_dict("records")`` with
    extra columns, an ``_id``): here they are dropped too, with one ``UserWarning`` per call naming them. Pass
    ``unknown="error"`` to a call to refuse them instead, as :mod:`dbplugins` does by default.
    """

    unknown_keys = "warn"


#: The six keys of a db-plugins ``DB_CONFIG["SQL"]`` dict.
MAP_KEYS: set[str] = set(_MAP_KEYS)


def satisfy_keys(keys: Iterable[str]) -> set[str]:
    """The keys of :data:`MAP_KEYS` missing from ``keys`` (an empty set when the config is complete)."""
    return MAP_KEYS.difference(keys)


def settings_map(cfg: Mapping[str, Any]) -> str:
    """The ``ENGINE://USER:PASSWORD@HOST:PORT/DB_NAME`` URL of a db-plugins config dict, properly escaped.

    The dict is not modified. Raises :class:`dbplugins.ConfigurationError` naming the missing keys when one of
    :data:`MAP_KEYS` is absent, and for an ENGINE other than PostgreSQL.
    """
    missing = satisfy_keys(cfg.keys())
    if missing:
        raise ConfigurationError(f"settings_map: missing keys {', '.join(sorted(missing))}")
    settings = from_mapping({key: cfg[key] for key in MAP_KEYS})
    return settings.url(scheme=str(cfg["ENGINE"]))
