"""Cross-matches with other catalogues: xmatch, allwise, gaia_ztf, ss_ztf, ps1_ztf."""

from __future__ import annotations

from dataclasses import dataclass

from .._types.schema import Index, model
from ._common import big, object_oid

__all__ = ["Xmatch", "Allwise", "Gaia_ztf", "Ss_ztf", "Ps1_ztf"]

# The aliases above must be globals of this module: @model resolves the (string) annotations at decoration
# time in the namespace of the module that declares the class.


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
