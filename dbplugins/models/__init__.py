"""The built-in ZTF / ALeRCE models: the 17 tables of db-plugins 4.2.7, as plain dataclasses.

Each class is a ``@dataclass(kw_only=True)`` declared with :func:`dbplugins.model`, so the field order is
the column order of the original schema (as db-plugins 4.2.7 created it) while instances are built
by keyword in any order. Nullable columns default to ``None``; NOT NULL columns must be given::

    >>> Object(oid="ZTF20aaelulu", ndet=3)
    <Object(oid='ZTF20aaelulu')>
    >>> det = Detection(candid=1, oid="ZTF20aaelulu", mjd=59000.5, fid=1, pid=1.0, isdiffpos=1, ra=10.0,
    ...                 dec=-5.0, magpsf=18.2, sigmapsf=0.1, corrected=False, dubious=False, has_stamp=True,
    ...                 step_id_corr="corr-1.0")
    >>> det["magpsf"]
    18.2

The hand-written DDL in ``sql/schema/*.sql`` creates exactly these tables; a test introspects the created
database and compares it with :func:`dbplugins.table_of` of every model. There are no ORM relationships:
load related rows with a query (``db.query(Detection).find(filter_by={"oid": oid}, paginate=False)``).

Type aliases used below, as in the spec: ``str`` varchar, ``int`` integer, ``big`` bigint, ``float`` double
precision (SQLAlchemy's ``Float`` and ``Float(precision=53)`` both became double precision), ``bool`` boolean,
``ts`` timestamp without time zone, ``list[str]`` varchar[]. ``X | None`` is a nullable column.
"""

from __future__ import annotations

from ._alerts import Dataquality, Detection, MagStats, NonDetection, Reference
from ._crossmatch import Allwise, Gaia_ztf, Ps1_ztf, Ss_ztf, Xmatch
from ._objects import Feature, FeatureVersion, Object, Pipeline, Probability, Step, Taxonomy

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


#: The 17 built-in models in foreign-key dependency order (a table comes after every table it references):
#: the order of ``sql/schema/NN_<table>.sql``.
ALL_MODELS: list[type] = [
    Object,
    Step,
    Pipeline,
    Taxonomy,
    Probability,
    FeatureVersion,
    Feature,
    Xmatch,
    Allwise,
    MagStats,
    NonDetection,
    Detection,
    Dataquality,
    Gaia_ztf,
    Ss_ztf,
    Ps1_ztf,
    Reference,
]
