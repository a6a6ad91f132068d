"""Compatibility alias of db-plugins' ``db_plugins.db.sql``: the documented imports keep working::

    from db_plugins.db.sql import SQLConnection
    from db_plugins.db.sql.models import *

``SQLConnection`` is :class:`dbplugins.SQLConnection`; the model classes are those of :mod:`dbplugins.models`.
``Pagination`` and ``SQLQuery`` (an alias of :class:`dbplugins.query.Query`) are resolved on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import models
from .connection import MAP_KEYS, SQLConnection, satisfy_keys, settings_map
from .models import (
    ALL_MODELS,
    Allwise,
    Dataquality,
    Detection,
    Feature,
    FeatureVersion,
    Gaia_ztf,
    MagStats,
    NonDetection,
    Object,
    Pipeline,
    Probability,
    Ps1_ztf,
    Reference,
    Ss_ztf,
    Step,
    Taxonomy,
    Xmatch,
)

# Pagination and SQLQuery are left out of __all__: they are lazy, and a star import must not fail while
# dbplugins.query cannot provide them.
__all__ = [
    "SQLConnection",
    "MAP_KEYS",
    "satisfy_keys",
    "settings_map",
    "models",
    "ALL_MODELS",
    "Object",
    "Step",
    "Pipeline",
    "Taxonomy",
    "Probability",
    "FeatureVersion",
    "Feature",
    "Xmatch",
    "Allwise",
    "MagStats",
    "NonDetection",
    "Detection",
    "Dataquality",
    "Gaia_ztf",
    "Ss_ztf",
    "Ps1_ztf",
    "Reference",
]

# Names served lazily from dbplugins.query: (attribute there, name here).
_LAZY = {"Pagination": "Pagination", "SQLQuery": "Query"}


def __getattr__(name: str) -> Any:
    """Resolve ``Pagination`` and ``SQLQuery`` from :mod:`dbplugins.query` on first access."""
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        query = importlib.import_module("dbplugins.query")
    except ModuleNotFoundError as exc:
        if exc.name != "dbplugins.query":  # a real import error inside dbplugins.query: let it show
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r} (no dbplugins.query yet)") from None
    try:
        value = getattr(query, target)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazy ones included."""
    return sorted(set(globals()) | set(_LAZY))
