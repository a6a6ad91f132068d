"""A ``real`` (float4) value reads back as the same float whatever the path.

psycopg's binary loader widens the stored float32 exactly (67108872.0); its text loader parses the server's
shortest decimal form ("6.710887e+07") into the nearest double, 67108870.0: another value, which only rounds
back to the stored one when written as a real again. Queries fetch binary, ``db.execute`` and results with a
column that has no binary loader fetch text, so the same stored value used to come back as two different
floats. The pool's connections now read a text float4 as the float32 it denotes.
"""

from __future__ import annotations

import datetime
import math
import struct
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbplugins import Column, SQLConnection, cols, model


@model("rr_real", primary_key=["rid"])
@dataclass
class Real:
    rid: int
    val: Annotated[float | None, Column("real")] = None


@model("rr_real", primary_key=["rid"])
@dataclass
class RealWithTimetz:
    """The same table read with a ``timetz`` column, which psycopg reads only as text: the whole result is
    fetched in text format."""

    rid: int
    val: Annotated[float | None, Column("real")] = None
    at: Annotated[datetime.time | None, Column("timetz")] = None


DDL = "CREATE TABLE rr_real (rid integer PRIMARY KEY, val real, at timetz);"


def exact(v: float) -> float:
    """The float32 nearest ``v``, as a Python float."""
    return float(struct.unpack("f", struct.pack("f", v))[0])


def test_the_value_that_used_to_differ(module_db: SQLConnection) -> None:
    assert module_db.execute("SELECT 67108872::real")[0][0] == 67108872.0
    assert module_db.execute("SELECT 0.1::real")[0][0] == exact(0.1) != 0.1


def same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(st.none(), st.floats(width=32)), min_size=1, max_size=8))
def test_every_read_path_gives_the_stored_float32(
    module_db: SQLConnection, values: list[float | None]
) -> None:
    db = module_db
    db.execute("TRUNCATE rr_real")
    db.query(Real).bulk_insert([Real(i, v) for i, v in enumerate(values)])
    want = [None if v is None else exact(v) for v in values]
    r, t = cols(Real), cols(RealWithTimetz)
    paths: dict[str, list[Any]] = {
        "db.execute": [row[0] for row in db.execute("SELECT val FROM rr_real ORDER BY rid")],
        "query (binary)": [x.val for x in db.query(Real).order_by(r.rid).all()],
        "in_ (streamed)": [x.val for x in db.query(Real).filter(r.rid.in_(list(range(8)))).order_by(r.rid)],
        "query (text)": [x.val for x in db.query(RealWithTimetz).order_by(t.rid).all()],
    }
    try:
        import pandas  # noqa: F401
    except ImportError:
        pass
    else:
        frame = db.query(Real).order_by(r.rid).to_dataframe()["val"].tolist()
        paths["to_dataframe"] = [None if v is None or math.isnan(v) else v for v in frame]
        want_frame = [None if v is None or math.isnan(v) else v for v in want]
        assert all(same(a, b) for a, b in zip(paths.pop("to_dataframe"), want_frame, strict=True))
    for path, got in paths.items():
        assert all(same(a, b) for a, b in zip(got, want, strict=True)), (path, got, want)


def test_a_plain_psycopg_connection_is_left_alone(module_dsn: str) -> None:
    """The loader is registered on the pool's connections only, not globally."""
    with psycopg.connect(module_dsn) as conn:
        assert conn.execute("SELECT 67108872::real").fetchone() == (67108870.0,)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "-0", "3.4028235e+38", "1e-45"])
def test_special_values(module_db: SQLConnection, text: str) -> None:
    got = module_db.execute("SELECT %s::real", (text,))[0][0]
    want = float(text)
    assert same(got, exact(want) if math.isfinite(want) else want)
