"""ZTF alerts for the worker and the benchmarks: the real packets, a synthetic night like them, and the
mapping.

An *alert* here is a dict shaped like a ZTF Avro packet (``objectId``, ``candid``, ``candidate``,
``prv_candidates``), whether it was read from a real ``.avro`` file or generated. :func:`alert_to_rows` maps
one to rows of the four tables an ingestion worker writes, as the data README says:

- ``candidate`` is a detection of ``objectId``; ``mjd = jd - 2400000.5``; ``isdiffpos`` 't'/'1' -> 1, 'f'/'0'
  -> -1;
- a ``prv_candidates`` entry with a ``candid`` is a detection, one without is a non-detection
  (``oid, fid, mjd, diffmaglim``);
- every detection also has a ``dataquality`` row (same ``candid, oid``);
- the ``object`` row carries the first-seen history fields and the aggregates of the alert's own detections.

    >>> alerts = list(read_packets())                       # the 3 real packets
    >>> rows = alert_to_rows(alerts[0])
    >>> len(rows.detections), len(rows.non_detections)
    (11, 14)
    >>> night = list(synthetic_night(1000, seed=7))        # deterministic: same seed, same alerts, same rows

The synthetic night is a *stream*: the first ``k`` alerts of ``synthetic_night(n, seed)`` are the same for
every ``n >= k``, so a larger run re-delivers everything a smaller one wrote and adds only what is new.
"""

from __future__ import annotations

import math
import os
import random
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "AlertRows",
    "DQ_RANGES",
    "MJD_OFFSET",
    "STEP_ID",
    "alert_to_rows",
    "alerts_dir",
    "isdiffpos_sign",
    "jd_to_mjd",
    "read_packets",
    "synthetic_night",
]

#: ``mjd = jd - MJD_OFFSET``.
MJD_OFFSET = 2400000.5
#: ``step_id_corr`` written by the worker (NOT NULL in ``detection``).
STEP_ID = "bench.ingest"

Row = dict[str, Any]

# -- the real packets ----------------------------------------------------------------------------------------


def alerts_dir() -> Path:
    """The directory of the real packets: ``$DBP_ALERTS_DIR``, or ``bench/data/ztf-alerts`` shipped with the
    repo."""
    override = os.environ.get("DBP_ALERTS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "data" / "ztf-alerts"


def read_packets(directory: Path | str | None = None) -> Iterator[dict[str, Any]]:
    """Yield every alert of every ``*.avro`` file in ``directory`` (default :func:`alerts_dir`), by file
    name."""
    import fastavro  # the dev extra; only needed for the real packets

    folder = Path(directory) if directory is not None else alerts_dir()
    paths = sorted(folder.glob("*.avro"))
    if not paths:
        raise FileNotFoundError(f"no *.avro alert packets in {folder} (set DBP_ALERTS_DIR)")
    for path in paths:
        with path.open("rb") as fh:
            for record in fastavro.reader(fh):
                yield dict(record)  # type: ignore[arg-type]


# -- mapping an alert to rows --------------------------------------------------------------------------------

_DETECTION_FIELDS = (
    "diffmaglim", "nid", "ra", "dec", "magpsf", "sigmapsf", "magap", "sigmagap", "distnr", "rb", "rbversion",
    "drb", "drbversion", "magapbig", "sigmagapbig", "rfid",
)  # fmt: skip
_DATAQUALITY_FIELDS = (
    "xpos", "ypos", "chipsf", "sky", "fwhm", "classtar", "mindtoedge", "seeratio", "aimage", "bimage",
    "aimagerat", "bimagerat", "nneg", "nbad", "sumrat", "scorr", "dsnrms", "ssnrms", "magzpsci",
    "magzpsciunc", "magzpscirms", "nmatches", "clrcoeff", "clrcounc", "zpclrcov", "zpmed", "clrmed", "clrrms",
    "exptime",
)  # fmt: skip


@dataclass
class AlertRows:
    """The rows one alert maps to (detections include the alert's own ``candidate``, last)."""

    object: Row
    detections: list[Row] = field(default_factory=list)
    non_detections: list[Row] = field(default_factory=list)
    dataquality: list[Row] = field(default_factory=list)


def jd_to_mjd(jd: float) -> float:
    """Julian date to modified Julian date."""
    return jd - MJD_OFFSET


def isdiffpos_sign(value: str | None) -> int:
    """ZTF's ``isdiffpos`` flag as the ``detection.isdiffpos`` integer: 't'/'1' -> 1, 'f'/'0' -> -1."""
    if value in ("t", "1"):
        return 1
    if value in ("f", "0"):
        return -1
    raise ValueError(f"isdiffpos must be 't', 'f', '1' or '0', got {value!r}")


def detection_row(
    oid: str, entry: Mapping[str, Any], *, parent_candid: int | None, has_stamp: bool, step_id: str = STEP_ID
) -> Row:
    """A ``detection`` row from a ``candidate`` or a ``prv_candidates`` entry that has a ``candid``."""
    row: Row = {
        "candid": entry["candid"],
        "oid": oid,
        "mjd": jd_to_mjd(entry["jd"]),
        "fid": entry["fid"],
        "pid": float(entry["pid"]),
        "isdiffpos": isdiffpos_sign(entry.get("isdiffpos")),
    }
    for name in _DETECTION_FIELDS:
        row[name] = entry.get(name)
    row.update(
        magpsf_corr=None,
        sigmapsf_corr=None,
        sigmapsf_corr_ext=None,
        corrected=False,
        dubious=False,
        parent_candid=parent_candid,
        has_stamp=has_stamp,
        step_id_corr=step_id,
    )
    return row


def non_detection_row(oid: str, entry: Mapping[str, Any]) -> Row:
    """A ``non_detection`` row from a ``prv_candidates`` entry without a ``candid`` (an upper limit)."""
    return {
        "oid": oid,
        "fid": entry["fid"],
        "mjd": jd_to_mjd(entry["jd"]),
        "diffmaglim": entry.get("diffmaglim"),
    }


def dataquality_row(oid: str, entry: Mapping[str, Any]) -> Row:
    """The ``dataquality`` row of a detection (fields a ``prv_candidates`` entry lacks are NULL)."""
    row: Row = {"candid": entry["candid"], "oid": oid, "fid": entry["fid"]}
    for name in _DATAQUALITY_FIELDS:
        row[name] = entry.get(name)
    return row


def aggregates(detections: Iterable[Mapping[str, Any]]) -> Row:
    """The object aggregates the worker maintains, over some detection rows (at least one)."""
    mjds: list[float] = []
    ras: list[float] = []
    decs: list[float] = []
    for det in detections:
        mjds.append(det["mjd"])
        ras.append(det["ra"])
        decs.append(det["dec"])
    first, last = min(mjds), max(mjds)
    return {
        "ndet": len(mjds),
        "firstmjd": first,
        "lastmjd": last,
        "deltajd": last - first,
        "meanra": math.fsum(ras) / len(ras),
        "meandec": math.fsum(decs) / len(decs),
    }


def object_row(oid: str, candidate: Mapping[str, Any], detections: list[Row], step_id: str = STEP_ID) -> Row:
    """The ``object`` row as first seen in an alert: history fields from the candidate, aggregates of its
    detections."""
    start, end = candidate.get("jdstarthist"), candidate.get("jdendhist")
    row: Row = {
        "oid": oid,
        "ndethist": candidate.get("ndethist"),
        "ncovhist": candidate.get("ncovhist"),
        "mjdstarthist": jd_to_mjd(start) if start is not None else None,
        "mjdendhist": jd_to_mjd(end) if end is not None else None,
        "corrected": False,
        "stellar": False,
        "step_id_corr": step_id,
        "diffpos": isdiffpos_sign(candidate.get("isdiffpos")) > 0,
        "reference_change": False,
    }
    row.update(aggregates(detections))
    return row


def alert_to_rows(alert: Mapping[str, Any], *, step_id: str = STEP_ID) -> AlertRows:
    """Map one alert packet to its object, detection, non-detection and data-quality rows."""
    oid = alert["objectId"]
    candidate = alert["candidate"]
    rows = AlertRows(object={})
    for entry in alert.get("prv_candidates") or ():
        if entry.get("candid") is None:
            rows.non_detections.append(non_detection_row(oid, entry))
        else:
            rows.detections.append(
                detection_row(oid, entry, parent_candid=alert["candid"], has_stamp=False, step_id=step_id)
            )
            rows.dataquality.append(dataquality_row(oid, entry))
    rows.detections.append(detection_row(oid, candidate, parent_candid=None, has_stamp=True, step_id=step_id))
    rows.dataquality.append(dataquality_row(oid, candidate))
    rows.object = object_row(oid, candidate, rows.detections, step_id)
    return rows


# -- the synthetic night -------------------------------------------------------------------------------------

#: Uniform ranges of the data-quality and photometry fields, measured over the 35 detections (candidates and
#: previous detections) of the three real packets and rounded outwards. A test checks the packets stay inside.
DQ_RANGES: dict[str, tuple[float, float]] = {
    "xpos": (1000.0, 2600.0),
    "ypos": (200.0, 3000.0),
    "chipsf": (1.2, 340.0),
    "sky": (-7.5, 1.5),
    "fwhm": (1.3, 7.1),
    "classtar": (0.7, 1.0),
    "mindtoedge": (100.0, 1150.0),
    "seeratio": (0.34, 2.0),
    "aimage": (0.5, 1.8),
    "bimage": (0.49, 1.52),
    "aimagerat": (0.16, 0.77),
    "bimagerat": (0.14, 0.74),
    "sumrat": (0.89, 1.0),
    "scorr": (5.5, 62.0),
    "dsnrms": (15.0, 370.0),
    "ssnrms": (33.0, 890.0),
    "magzpsci": (24.5, 26.5),
    "magzpsciunc": (2.0e-6, 8.5e-5),
    "magzpscirms": (0.015, 0.068),
    "clrcoeff": (-0.12, 0.14),
    "clrcounc": (3.0e-6, 1.1e-4),
    "zpclrcov": (-1.3e-5, -4.5e-6),
    "zpmed": (26.2, 26.5),
    "clrmed": (0.78, 1.3),
    "clrrms": (0.19, 0.33),
    "diffmaglim": (18.4, 21.0),
    "rb": (0.36, 0.96),
    "drb": (0.5, 1.0),
    "distnr": (0.02, 1.6),
    "sigmagap": (0.005, 0.32),
}
#: Integer fields of the packets: (low, high) inclusive.
INT_RANGES: dict[str, tuple[int, int]] = {"nneg": (0, 7), "nbad": (0, 0), "nmatches": (300, 2100)}
#: Fields of a ``candidate`` that a ``prv_candidates`` entry carries too (ZTF schema 3.3 ``prv_candidate``).
PRV_FIELDS = frozenset(
    "jd fid pid diffmaglim candid isdiffpos nid ra dec magpsf sigmapsf magap sigmagap distnr rb rbversion "
    "magapbig sigmagapbig xpos ypos chipsf sky fwhm classtar mindtoedge seeratio aimage bimage aimagerat "
    "bimagerat nneg nbad sumrat scorr magzpsci magzpsciunc magzpscirms clrcoeff clrcounc".split()
)

SYNTHETIC_CANDID_BASE = 2_500_000_000_000_000_000  # above every real ZTF candid (~1.6e18), below 2**63
NIGHT_START_JD = 2460300.625  # 2023-12-22, evening at Palomar
EXPOSURE_DAYS = 40 / 86400  # 30 s exposure + readout
ALERTS_PER_EXPOSURE = 100
REVISIT_GAP = 3  # exposures (2 min) before the same object can be observed again
REVISIT_PROBABILITY = 0.6
HISTORY_DAYS = 30.0  # prv_candidates cover the 30 days before the alert
_OID_SPACE = 26**7
_OID_STRIDE = 3_459_123_877  # coprime with 26**7: consecutive objects get scattered oids, like real ones


@dataclass
class _SkyObject:
    """One synthetic object and the history its alerts carry."""

    oid: str
    ra: float
    dec: float
    mag: float
    field: int
    rcid: int
    visits_left: int
    ndethist: int
    ncovhist: int
    jdstarthist: float
    history: list[dict[str, Any]] = field(default_factory=list)


def synthetic_oid(serial: int, seed: int) -> str:
    """A ZTF-looking object id (``ZTF23`` + 7 letters), distinct for distinct ``serial`` under one seed."""
    n = ((serial + seed * 1_000_003) * _OID_STRIDE) % _OID_SPACE
    letters = []
    for _ in range(7):
        n, r = divmod(n, 26)
        letters.append(chr(ord("a") + r))
    return "ZTF23" + "".join(reversed(letters))


class SyntheticNight:
    """A deterministic stream of alerts shaped like the real packets (see the module docstring).

    Alerts come in exposures of ``ALERTS_PER_EXPOSURE``. Each alert is either a revisit of an object observed
    at least ``REVISIT_GAP`` exposures earlier (probability ``REVISIT_PROBABILITY``, while there is one) or a
    new object with a 30-day history of detections and non-detections. Every alert's ``prv_candidates`` repeat
    the object's history, including the previous alerts' candidates: the overlapping re-deliveries a worker
    sees.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self._objects = 0
        self._detections = 0
        self._waiting: deque[tuple[int, _SkyObject]] = deque()
        self._ready: list[_SkyObject] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        exposure = 0
        while True:
            jd = NIGHT_START_JD + exposure * EXPOSURE_DAYS
            fid = 1 + (exposure // 30) % 2  # g and r in blocks, as the survey alternates filters
            self._release(exposure)
            for _ in range(ALERTS_PER_EXPOSURE):
                yield self._alert(self._pick(), jd, fid)
            exposure += 1

    # -- objects

    def _release(self, exposure: int) -> None:
        while self._waiting and self._waiting[0][0] <= exposure:
            self._ready.append(self._waiting.popleft()[1])

    def _pick(self) -> _SkyObject:
        rng = self.rng
        if self._ready and rng.random() < REVISIT_PROBABILITY:
            i = rng.randrange(len(self._ready))
            self._ready[i], self._ready[-1] = self._ready[-1], self._ready[i]
            return self._ready.pop()
        return self._new_object()

    def _new_object(self) -> _SkyObject:
        rng = self.rng
        serial = self._objects
        self._objects += 1
        dec = math.degrees(math.asin(rng.uniform(math.sin(math.radians(-31.0)), 1.0)))  # ZTF's sky
        field_id, rcid = rng.randint(245, 880), rng.randint(0, 63)
        prior = rng.randint(0, 40)  # detections older than the 30-day window
        obj = _SkyObject(
            oid=synthetic_oid(serial, self.seed),
            ra=rng.uniform(0.0, 360.0),
            dec=dec,
            mag=rng.uniform(15.5, 20.0),
            field=field_id,
            rcid=rcid,
            visits_left=rng.choice((1, 2, 2, 3, 3, 4, 5)),
            ndethist=prior,
            ncovhist=prior + rng.randint(0, 30),
            jdstarthist=NIGHT_START_JD - HISTORY_DAYS - rng.uniform(1.0, 400.0),
        )
        epochs = sorted(
            rng.uniform(NIGHT_START_JD - HISTORY_DAYS, NIGHT_START_JD - 0.2)
            for _ in range(rng.randint(0, 20))
        )
        for jd in epochs:
            fid = rng.choice((1, 2))
            if rng.random() < 0.55:
                obj.history.append(_prv(self._detection(obj, jd, fid)))
                obj.ndethist += 1
            else:
                obj.history.append(self._non_detection(jd, fid))
            obj.ncovhist += 1
        if prior == 0:  # first detected inside the window (or tonight)
            detected = [e["jd"] for e in obj.history if e["candid"] is not None]
            obj.jdstarthist = detected[0] if detected else math.inf
        return obj

    # -- alerts

    def _alert(self, obj: _SkyObject, jd: float, fid: int) -> dict[str, Any]:
        candidate = self._detection(obj, jd, fid)
        obj.ndethist += 1
        obj.ncovhist += 1
        obj.jdstarthist = min(obj.jdstarthist, jd)
        candidate.update(
            ndethist=obj.ndethist,
            ncovhist=obj.ncovhist,
            jdstarthist=obj.jdstarthist,
            jdendhist=jd,
            field=obj.field,
            rcid=obj.rcid,
        )
        window = jd - HISTORY_DAYS
        alert = {
            "schemavsn": "synthetic",
            "objectId": obj.oid,
            "candid": candidate["candid"],
            "candidate": candidate,
            "prv_candidates": [e for e in obj.history if e["jd"] > window],
        }
        obj.history.append(_prv(candidate))
        obj.visits_left -= 1
        if obj.visits_left > 0:
            self._waiting.append((self._exposure_of(jd) + REVISIT_GAP, obj))
        return alert

    @staticmethod
    def _exposure_of(jd: float) -> int:
        return round((jd - NIGHT_START_JD) / EXPOSURE_DAYS)

    def _detection(self, obj: _SkyObject, jd: float, fid: int) -> dict[str, Any]:
        """A candidate-shaped detection of ``obj`` with values in the ranges of the real packets."""
        rng = self.rng
        candid = SYNTHETIC_CANDID_BASE + self._detections
        self._detections += 1
        mag = min(21.5, max(13.0, obj.mag + (0.3 if fid == 1 else 0.0) + rng.gauss(0.0, 0.3)))
        sigma = min(0.35, 0.02 + 0.1 * math.exp(mag - 20.0))
        jitter = 0.25 / 3600.0
        entry: dict[str, Any] = {
            "jd": jd,
            "fid": fid,
            "pid": candid // 1_000_000,
            "candid": candid,
            "isdiffpos": "t" if rng.random() < 0.8 else "f",
            "nid": int(jd - 2457754.5),
            "ra": (obj.ra + rng.gauss(0.0, jitter) / max(0.05, math.cos(math.radians(obj.dec)))) % 360.0,
            "dec": min(90.0, obj.dec + rng.gauss(0.0, jitter)),
            "magpsf": mag,
            "sigmapsf": sigma,
            "magap": mag + rng.gauss(0.0, 0.1),
            "magapbig": mag + rng.gauss(0.0, 0.1),
            "sigmagapbig": sigma * rng.uniform(0.9, 1.6),
            "rbversion": "t17_f5_c3",
            "drbversion": "d6_m7",
            "rfid": obj.field * 1_000_000 + 120_200 + obj.rcid,
            "exptime": 30.0,
        }
        for name, (low, high) in DQ_RANGES.items():
            entry[name] = rng.uniform(low, high)
        for name, (ilow, ihigh) in INT_RANGES.items():
            entry[name] = rng.randint(ilow, ihigh)
        return entry

    def _non_detection(self, jd: float, fid: int) -> dict[str, Any]:
        low, high = DQ_RANGES["diffmaglim"]
        return {"jd": jd, "fid": fid, "pid": None, "candid": None, "diffmaglim": self.rng.uniform(low, high)}


def _prv(candidate: Mapping[str, Any]) -> dict[str, Any]:
    """A candidate as it reappears in later alerts' ``prv_candidates`` (the prv_candidate schema's fields)."""
    return {k: v for k, v in candidate.items() if k in PRV_FIELDS}


def synthetic_night(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """The first ``n`` alerts of the synthetic night for ``seed`` (see :class:`SyntheticNight`)."""
    night = iter(SyntheticNight(seed))
    for _ in range(n):
        yield next(night)
