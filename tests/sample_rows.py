"""Rows of the built-in schema for tests: a detection with every NOT NULL column set, an object."""

from __future__ import annotations

from typing import Any


def object_row(oid: str, **extra: Any) -> dict[str, Any]:
    return {"oid": oid, "ndet": 1, "firstmjd": 59000.0, **extra}


def detection_row(candid: int, oid: str, **extra: Any) -> dict[str, Any]:
    """A detection with every NOT NULL column set."""
    row: dict[str, Any] = {
        "candid": candid,
        "oid": oid,
        "mjd": 59000.0 + candid / 1e6,
        "fid": 1 + candid % 2,
        "pid": float(candid),
        "isdiffpos": 1,
        "ra": 10.0,
        "dec": -5.0,
        "magpsf": 18.0,
        "sigmapsf": 0.1,
        "corrected": False,
        "dubious": False,
        "has_stamp": True,
        "step_id_corr": "rel",
    }
    row.update(extra)
    return row
