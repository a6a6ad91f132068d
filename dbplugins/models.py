"""The built-in ZTF / ALeRCE models: the 17 tables of db-plugins 4.2.7, as plain dataclasses.

Each class is a ``@dataclass(kw_only=True)`` declared with :func:`dbplugins._types.schema.model`, so the field order is
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
database and compares it with :func:`dbplugins._types.schema.table_of` of every model. There are no ORM relationships:
load related rows with a query (``db.query(Detection).find(filter_by={"oid": oid}, paginate=False)``).

Type aliases used below, as in the spec: ``str`` varchar, ``int`` integer, ``big`` bigint, ``float`` double
precision (SQLAlchemy's ``Float`` and ``Float(precision=53)`` both became double precision), ``bool`` boolean,
``ts`` timestamp without time zone, ``list[str]`` varchar[]. ``X | None`` is a nullable column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from ._types.schema import Column, ForeignKey, Index, model

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

# Column type aliases. They must be module globals defined before the classes: @model resolves the (string)
# annotations with typing.get_type_hints at decoration time, in this module's namespace.
big = Annotated[int, Column("bigint")]
ts = datetime
#: An ``oid`` column that references ``object.oid`` (FK named ``<table>_oid_fkey``).
object_oid = Annotated[str, Column(references="object.oid")]
#: A ``step_id`` column that references ``step.step_id``.
step_ref = Annotated[str, Column(references="step.step_id")]


class _Commons:
    """db-plugins' ``Commons`` mixin: ``row["field"]`` reads a column value."""

    def __getitem__(self, field: str) -> Any:
        """The value of column ``field``; ``KeyError`` if the model has no such column."""
        if field not in getattr(self, "__dataclass_fields__", {}):
            raise KeyError(field)
        return getattr(self, field)


@model(
    "object",
    distribute_by="oid",
    primary_key=["oid"],
    indexes=[
        Index("ix_object_ndet", ["ndet"]),
        Index("ix_object_firstmjd", ["firstmjd"]),
        Index("ix_object_g_r_max", ["g_r_max"]),
        Index("ix_object_g_r_mean_corr", ["g_r_mean_corr"]),
        Index("ix_object_meanra", ["meanra"]),
        Index("ix_object_meandec", ["meandec"]),
    ],
)
@dataclass(kw_only=True)
class Object:
    """An astronomical object (a ZTF ``oid``) with its aggregated statistics."""

    oid: str
    ndethist: int | None = None
    ncovhist: int | None = None
    mjdstarthist: float | None = None
    mjdendhist: float | None = None
    corrected: bool | None = None
    stellar: bool | None = None
    ndet: int | None = None
    g_r_max: float | None = None
    g_r_max_corr: float | None = None
    g_r_mean: float | None = None
    g_r_mean_corr: float | None = None
    meanra: float | None = None
    meandec: float | None = None
    sigmara: float | None = None
    sigmadec: float | None = None
    deltajd: float | None = None
    firstmjd: float | None = None
    lastmjd: float | None = None
    step_id_corr: str | None = None
    diffpos: bool | None = None
    reference_change: bool | None = None

    def __repr__(self) -> str:
        return f"<Object(oid='{self.oid}')>"


@model("step", reference=True, primary_key=["step_id"])
@dataclass(kw_only=True)
class Step:
    """A pipeline step and its version."""

    step_id: str
    name: str
    version: str
    comments: str
    date: ts


@model("pipeline", reference=True, primary_key=["pipeline_id"])
@dataclass(kw_only=True)
class Pipeline:
    """A pipeline: the steps that produced a set of results."""

    pipeline_id: str
    step_id_corr: str | None = None
    step_id_feat: str | None = None
    step_id_clf: str | None = None
    step_id_out: str | None = None
    step_id_stamp: str | None = None
    date: ts


@model("taxonomy", reference=True, primary_key=["classifier_name", "classifier_version"])
@dataclass(kw_only=True)
class Taxonomy:
    """The classes a classifier version can assign."""

    classifier_name: str
    classifier_version: str
    classes: list[str]


@model(
    "probability",
    distribute_by="oid",
    colocate_with="object",
    primary_key=["oid", "class_name", "classifier_name", "classifier_version"],
    indexes=[
        Index("ix_probabilities_oid", ["oid"], using="hash"),
        Index("ix_probabilities_probability", ["probability"]),
        Index("ix_probabilities_ranking", ["ranking"]),
        Index("ix_classification_rank1", ["ranking"], where="ranking = 1"),
    ],
)
@dataclass(kw_only=True)
class Probability:
    """The probability that an object belongs to a class, by classifier."""

    oid: object_oid
    class_name: str
    classifier_name: str
    classifier_version: str
    probability: float
    ranking: int


@model("feature_version", reference=True, primary_key=["version"])
@dataclass(kw_only=True)
class FeatureVersion:
    """A version of the feature set and the steps that computed it."""

    version: str
    step_id_feature: step_ref | None = None
    step_id_preprocess: step_ref | None = None


@model(
    "feature",
    distribute_by="oid",
    colocate_with="object",
    primary_key=["oid", "name", "fid", "version"],
    indexes=[Index("ix_feature_oid_2", ["oid"], using="hash")],
)
@dataclass(kw_only=True)
class Feature:
    """One feature value of an object in one band."""

    oid: object_oid
    name: str
    value: float | None = None
    fid: int
    version: Annotated[str, Column(references="feature_version.version")]


@model("xmatch", distribute_by="oid", colocate_with="object", primary_key=["oid", "catid"])
@dataclass(kw_only=True)
class Xmatch:
    """A cross-match of an object with an external catalog."""

    oid: object_oid
    catid: str
    oid_catalog: str
    dist: float
    class_catalog: str | None = None
    period: float | None = None


@model(
    "allwise",
    reference=True,
    primary_key=["oid_catalog"],
    indexes=[Index("ix_allwise_dec", ["dec"]), Index("ix_allwise_ra", ["ra"])],
)
@dataclass(kw_only=True)
class Allwise:
    """An AllWISE source (with its 2MASS magnitudes)."""

    oid_catalog: str
    ra: float
    dec: float
    w1mpro: float | None = None
    w2mpro: float | None = None
    w3mpro: float | None = None
    w4mpro: float | None = None
    w1sigmpro: float | None = None
    w2sigmpro: float | None = None
    w3sigmpro: float | None = None
    w4sigmpro: float | None = None
    j_m_2mass: float | None = None
    h_m_2mass: float | None = None
    k_m_2mass: float | None = None
    j_msig_2mass: float | None = None
    h_msig_2mass: float | None = None
    k_msig_2mass: float | None = None


@model(
    "magstat",
    distribute_by="oid",
    colocate_with="object",
    primary_key=["oid", "fid"],
    indexes=[
        Index("ix_magstats_dmdt_first", ["dmdt_first"]),
        Index("ix_magstats_firstmjd", ["firstmjd"]),
        Index("ix_magstats_lastmjd", ["lastmjd"]),
        Index("ix_magstats_magmean", ["magmean"]),
        Index("ix_magstats_magmin", ["magmin"]),
        Index("ix_magstats_magfirst", ["magfirst"]),
        Index("ix_magstats_ndet", ["ndet"]),
        Index("ix_magstats_maglast", ["maglast"]),
        Index("ix_magstats_oid", ["oid"], using="hash"),
    ],
)
@dataclass(kw_only=True)
class MagStats:
    """Magnitude statistics of an object in one band."""

    oid: object_oid
    fid: int
    stellar: bool
    corrected: bool
    ndet: int
    ndubious: int
    dmdt_first: float | None = None
    dm_first: float | None = None
    sigmadm_first: float | None = None
    dt_first: float | None = None
    magmean: float | None = None
    magmedian: float | None = None
    magmax: float | None = None
    magmin: float | None = None
    magsigma: float | None = None
    maglast: float | None = None
    magfirst: float | None = None
    magmean_corr: float | None = None
    magmedian_corr: float | None = None
    magmax_corr: float | None = None
    magmin_corr: float | None = None
    magsigma_corr: float | None = None
    maglast_corr: float | None = None
    magfirst_corr: float | None = None
    firstmjd: float | None = None
    lastmjd: float | None = None
    step_id_corr: str
    saturation_rate: float | None = None


@model(
    "non_detection",
    distribute_by="oid",
    colocate_with="object",
    primary_key=["oid", "fid", "mjd"],
    indexes=[Index("ix_non_detection_oid", ["oid"], using="hash")],
)
@dataclass(kw_only=True)
class NonDetection(_Commons):
    """An upper limit: the object was observed but not detected."""

    oid: object_oid
    fid: int
    mjd: float
    diffmaglim: float | None = None


@model(
    "detection",
    distribute_by="oid",
    colocate_with="object",
    primary_key=["candid", "oid"],
    indexes=[Index("ix_ndetection_oid", ["oid"], using="hash")],  # "ndetection": the library's own spelling
)
@dataclass(kw_only=True)
class Detection(_Commons):
    """One alert candidate (a detection) of an object."""

    candid: big
    oid: object_oid
    mjd: float
    fid: int
    pid: float  # double precision in the original schema, not bigint
    diffmaglim: float | None = None
    isdiffpos: int
    nid: int | None = None
    ra: float
    dec: float
    magpsf: float
    sigmapsf: float
    magap: float | None = None
    sigmagap: float | None = None
    distnr: float | None = None
    rb: float | None = None
    rbversion: str | None = None
    drb: float | None = None
    drbversion: str | None = None
    magapbig: float | None = None
    sigmagapbig: float | None = None
    rfid: int | None = None
    magpsf_corr: float | None = None
    sigmapsf_corr: float | None = None
    sigmapsf_corr_ext: float | None = None
    corrected: bool
    dubious: bool
    parent_candid: big | None = None
    has_stamp: bool
    step_id_corr: str

    def __repr__(self) -> str:
        return f"<Detection(candid='{self.candid}', fid='{self.fid}', oid='{self.oid}')>"


@model(
    "dataquality",
    distribute_by="oid",
    colocate_with="object",
    primary_key=["candid", "oid"],
    foreign_keys=[ForeignKey("dataquality_candid_oid_fkey", ("candid", "oid"), "detection", ("candid", "oid"))],
)
@dataclass(kw_only=True)
class Dataquality:
    """Image-quality measurements of a detection (FK to detection, no FK to object)."""

    candid: big
    oid: str
    fid: int
    xpos: float | None = None
    ypos: float | None = None
    chipsf: float | None = None
    sky: float | None = None
    fwhm: float | None = None
    classtar: float | None = None
    mindtoedge: float | None = None
    seeratio: float | None = None
    aimage: float | None = None
    bimage: float | None = None
    aimagerat: float | None = None
    bimagerat: float | None = None
    nneg: int | None = None
    nbad: int | None = None
    sumrat: float | None = None
    scorr: float | None = None
    dsnrms: float | None = None
    ssnrms: float | None = None
    magzpsci: float | None = None
    magzpsciunc: float | None = None
    magzpscirms: float | None = None
    nmatches: int | None = None
    clrcoeff: float | None = None
    clrcounc: float | None = None
    zpclrcov: float | None = None
    zpmed: float | None = None
    clrmed: float | None = None
    clrrms: float | None = None
    exptime: float | None = None


@model("gaia_ztf", distribute_by="oid", colocate_with="object", primary_key=["oid"])
@dataclass(kw_only=True)
class Gaia_ztf:
    """The nearest Gaia sources of an object, from its ZTF alert."""

    oid: object_oid
    candid: big
    neargaia: float | None = None
    neargaiabright: float | None = None
    maggaia: float | None = None
    maggaiabright: float | None = None
    unique1: bool


@model(
    "ss_ztf",
    distribute_by="oid",
    colocate_with="object",
    primary_key=["oid"],
    indexes=[Index("ix_ss_ztf_candid", ["candid"]), Index("ix_ss_ztf_ssnamenr", ["ssnamenr"])],
)
@dataclass(kw_only=True)
class Ss_ztf:
    """The nearest known solar-system object, from the ZTF alert."""

    oid: object_oid
    candid: big
    ssdistnr: float | None = None
    ssmagnr: float | None = None
    ssnamenr: str | None = None


@model("ps1_ztf", distribute_by="oid", colocate_with="object", primary_key=["oid", "candid"])
@dataclass(kw_only=True)
class Ps1_ztf:
    """The three nearest Pan-STARRS1 sources of an object, from a ZTF alert."""

    oid: object_oid
    candid: big
    objectidps1: float | None = None
    sgmag1: float | None = None
    srmag1: float | None = None
    simag1: float | None = None
    szmag1: float | None = None
    sgscore1: float | None = None
    distpsnr1: float | None = None
    objectidps2: float | None = None
    sgmag2: float | None = None
    srmag2: float | None = None
    simag2: float | None = None
    szmag2: float | None = None
    sgscore2: float | None = None
    distpsnr2: float | None = None
    objectidps3: float | None = None
    sgmag3: float | None = None
    srmag3: float | None = None
    simag3: float | None = None
    szmag3: float | None = None
    sgscore3: float | None = None
    distpsnr3: float | None = None
    nmtchps: int
    unique1: bool
    unique2: bool
    unique3: bool


@model(
    "reference",
    distribute_by="oid",
    colocate_with="object",
    primary_key=["oid", "rfid"],
    indexes=[Index("ix_reference_fid", ["fid"])],
)
@dataclass(kw_only=True)
class Reference:
    """The reference image of an object in one band."""

    oid: object_oid
    rfid: big
    candid: big
    fid: int
    rcid: int | None = None
    field: int | None = None
    magnr: float | None = None
    sigmagnr: float | None = None
    chinr: float | None = None
    sharpnr: float | None = None
    ranr: float
    decnr: float
    mjdstartref: float
    mjdendref: float
    nframesref: int


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
