"""The documented usage runs verbatim: db-plugins' documented example with the built-in models (the examples
of README.md and docs/ run in tests/test_docs.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

# db-plugins' documented usage, character for character (with our comments on what each line accepts).
EXAMPLE = """\
from db_plugins.db.sql import SQLConnection        # alias of dbplugins.SQLConnection
from db_plugins.db.sql.models import *             # Object, Detection, NonDetection, ...
db = SQLConnection()
db.connect(config=db_config["SQL"])                # also: connect(dsn=...), connect(): env/settings/embedded
obj, created = db.query(Object).get_or_create(filter_by={"oid": oid}, **model_args)
db.query(Detection).bulk_insert(prv_detections)    # list or any iterable of dicts or dataclass instances
obj = db.query().update(obj, {"lastmjd": 12345})
db.session.commit()
db.query(Probability).all()
db.query(Probability).find(filter_by=filters)      # Pagination; find(..., paginate=False) -> list
db.query().get_or_create(model=Object, filter_by=filters)
"""

DOCS = Path(__file__).resolve().parents[1] / "docs" / "queries.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)

OID = "ZTF20aaelulu"


def detection(candid: int, mjd: float) -> dict[str, Any]:
    return {
        "candid": candid,
        "oid": OID,
        "mjd": mjd,
        "fid": 1 + candid % 2,
        "pid": 1.0e9 + candid,
        "isdiffpos": 1,
        "ra": 150.1,
        "dec": 2.2,
        "magpsf": 18.5,
        "sigmapsf": 0.05,
        "corrected": False,
        "dubious": False,
        "has_stamp": True,
        "step_id_corr": "corr-1.0",
    }


def db_plugins_config(dsn: str) -> dict[str, Any]:
    """db-plugins' six-key ``DB_CONFIG["SQL"]`` for the test database."""
    params = conninfo_to_dict(dsn)
    return {
        "ENGINE": "postgresql",
        "HOST": params.get("host", "localhost"),
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "PORT": int(params.get("port") or 5432),
        "DB_NAME": params["dbname"],
    }


def run_example(namespace: dict[str, Any]) -> dict[str, Any]:
    try:
        exec(compile(EXAMPLE, "<documented usage>", "exec"), namespace)  # noqa: S102 - our own documented example
    finally:
        db = namespace.get("db")
        if db is not None and hasattr(db, "close"):
            db.close()
    return namespace


def test_design_example_runs_verbatim(dsn: str) -> None:
    config = db_plugins_config(dsn)
    inputs = {
        "db_config": {"SQL": config},
        "oid": OID,
        "model_args": {"ndet": 2, "firstmjd": 59000.5, "meanra": 150.1, "meandec": 2.2},
        "filters": {"oid": OID},
    }
    first = run_example({**inputs, "prv_detections": [detection(c, 59000.0 + c) for c in range(1, 4)]})
    assert first["created"] is True
    assert first["obj"].oid == OID and first["obj"].lastmjd == 12345
    assert "SQLALCHEMY_DATABASE_URL" not in config  # the caller's dict is not modified

    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT ndet, lastmjd FROM object WHERE oid = %s", [OID]).fetchone() == (
            2,
            12345.0,
        )
        assert conn.execute("SELECT count(*) FROM detection").fetchone() == (3,)
        conn.execute(
            "INSERT INTO probability"
            " (oid, class_name, classifier_name, classifier_version, probability, ranking)"
            " VALUES (%s, 'SN', 'lc', '1.0', 0.9, 1), (%s, 'AGN', 'lc', '1.0', 0.1, 2)",
            [OID, OID],
        )

    # The same alert delivered again, with one more detection (a generator this time): nothing fails or
    # doubles.
    detections = (detection(c, 59000.0 + c) for c in range(1, 5))
    second = run_example({**inputs, "prv_detections": detections})
    assert second["created"] is False and second["obj"].ndet == 2

    from dbplugins import SQLConnection
    from dbplugins._query.query import Pagination
    from dbplugins.models import Object, Probability

    db = SQLConnection()
    db.connect(dsn=dsn)
    with db:
        assert len(db.query(Probability).all()) == 2
        page = db.query(Probability).find(filter_by={"oid": OID})
        assert isinstance(page, Pagination) and page.total == 2 and len(page.items) == 2
        assert len(db.query(Probability).find(filter_by={"oid": OID}, paginate=False)) == 2
        obj, created = db.query().get_or_create(model=Object, filter_by={"oid": OID})
        assert not created and obj.lastmjd == 12345
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM detection").fetchone() == (4,)
