"""Compatibility alias of :mod:`dbplugins.models`: ``from db_plugins.db.sql.models import *`` works as before.

The classes are the very same objects as in :mod:`dbplugins.models` (dataclasses, not SQLAlchemy models).
"""

from __future__ import annotations

from dbplugins.models import (
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

__all__ = [
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
