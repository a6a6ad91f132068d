"""What each alert carries: magstat, non_detection, detection, dataquality, reference."""

from __future__ import annotations

from dataclasses import dataclass

from .._types.schema import ForeignKey, Index, model
from ._common import Commons, big, object_oid

__all__ = ["MagStats", "NonDetection", "Detection", "Dataquality", "Reference"]

# The aliases above must be globals of this module: @model resolves the (string) annotations at decoration
# time in the namespace of the module that declares the class.


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
class NonDetection(Commons):
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
class Detection(Commons):
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
    foreign_keys=[
        ForeignKey("dataquality_candid_oid_fkey", ("candid", "oid"), "detection", ("candid", "oid"))
    ],
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
