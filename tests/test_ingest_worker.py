"""The ingestion worker (``bench/ingest.py``) end to end against a fresh database: counts, aggregates,
idempotence."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from bench.alerts import alert_to_rows, read_packets, synthetic_night
from bench.ingest import Report, ingest, main, night
from dbplugins import SQLConnection

ALERTS = 700
SEED = 4


@pytest.fixture
def worker_db(dsn: str) -> Iterator[SQLConnection]:
    db = SQLConnection()
    db.connect(dsn=dsn, min_size=1, max_size=2)
    try:
        yield db
    finally:
        db.close()


def expected_counts(alerts: list[dict[str, Any]]) -> dict[str, int]:
    """Distinct primary keys per table over the whole night, from the mapping alone."""
    keys: dict[str, set[Any]] = {
        "object": set(),
        "detection": set(),
        "non_detection": set(),
        "dataquality": set(),
    }
    for alert in alerts:
        rows = alert_to_rows(alert)
        keys["object"].add(rows.object["oid"])
        keys["detection"].update((d["candid"], d["oid"]) for d in rows.detections)
        keys["non_detection"].update((n["oid"], n["fid"], n["mjd"]) for n in rows.non_detections)
        keys["dataquality"].update((q["candid"], q["oid"]) for q in rows.dataquality)
    return {name: len(k) for name, k in keys.items()}


def db_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]  # noqa: S608 - fixed table names
            for t in ("object", "detection", "non_detection", "dataquality")
        }


def stored_objects(dsn: str) -> dict[str, tuple[Any, ...]]:
    """Each object's stored aggregates next to the ones recomputed from its detections."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """SELECT o.oid, o.ndet, o.firstmjd, o.lastmjd, o.deltajd, o.meanra, o.meandec,
                      count(d.candid), min(d.mjd), max(d.mjd), avg(d.ra), avg(d.dec)
               FROM object o JOIN detection d USING (oid)
               GROUP BY o.oid"""
        ).fetchall()
    return {r[0]: r[1:] for r in rows}


def run(db: SQLConnection, alerts: int, *, batch: int = 200) -> Report:
    return ingest(db, night(alerts, SEED), batch_size=batch)


def test_worker_writes_every_distinct_row_once(worker_db: SQLConnection, dsn: str) -> None:
    alerts = [*read_packets(), *synthetic_night(ALERTS, SEED)]
    report = run(worker_db, ALERTS)
    expected = expected_counts(alerts)
    assert db_counts(dsn) == expected
    assert report.totals == expected
    assert dict(report.new) == expected  # a fresh database: everything was new
    assert report.alerts == len(alerts) == ALERTS + 3
    offered = sum(report.offered.values())
    assert offered > sum(expected.values())  # batches re-delivered rows the database skipped


def test_object_aggregates_match_the_stored_detections(worker_db: SQLConnection, dsn: str) -> None:
    run(worker_db, ALERTS, batch=150)
    objects = stored_objects(dsn)
    assert len(objects) == db_counts(dsn)["object"]
    for oid, (ndet, first, last, delta, meanra, meandec, n, lo, hi, ra, dec) in objects.items():
        assert ndet == n, oid
        assert (first, last) == (lo, hi), oid
        assert math.isclose(delta, hi - lo, abs_tol=1e-9)
        assert math.isclose(meanra, ra, abs_tol=1e-9) and math.isclose(meandec, dec, abs_tol=1e-9), oid


def test_second_run_changes_nothing(worker_db: SQLConnection, dsn: str) -> None:
    run(worker_db, ALERTS)
    counts, objects = db_counts(dsn), stored_objects(dsn)
    again = run(worker_db, ALERTS, batch=333)  # another batching: the same rows
    assert db_counts(dsn) == counts
    assert sum(again.new.values()) == 0
    assert again.updated == 0  # aggregates already right: no writes at all
    assert stored_objects(dsn) == objects


def test_longer_night_adds_only_what_is_new(worker_db: SQLConnection, dsn: str) -> None:
    run(worker_db, 300)
    before = db_counts(dsn)
    report = run(worker_db, ALERTS)
    after = db_counts(dsn)
    assert after == expected_counts([*read_packets(), *synthetic_night(ALERTS, SEED)])
    assert {t: after[t] - before[t] for t in after} == dict(report.new)
    assert all(report.new[t] > 0 for t in after)


def test_cli_creates_the_schema_and_is_idempotent(empty_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--alerts", "300", "--seed", str(SEED), "--dsn", empty_dsn, "--batch", "128"]) == 0
    first = capsys.readouterr().out
    counts = db_counts(empty_dsn)
    assert counts == expected_counts([*read_packets(), *synthetic_night(300, SEED)])
    assert "ingested 303 alerts (3 real + 300 synthetic, seed 4)" in first
    n = counts["detection"]
    assert f"{'detection':<14} {n:>14,} {n:>13,}" in first
    assert main(["--alerts", "300", "--seed", str(SEED), "--dsn", empty_dsn, "--quiet"]) == 0
    second = capsys.readouterr().out
    assert db_counts(empty_dsn) == counts
    assert f"{'detection':<14} {n:>14,} {0:>13,}" in second


def test_expect_unchanged_fails_a_run_that_adds_rows(
    empty_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``.ci/run`` runs ``make run`` twice, the second with ``--expect-unchanged``: only a no-op run passes
    it."""
    args = ["--alerts", "50", "--seed", str(SEED), "--dsn", empty_dsn, "--quiet", "--expect-unchanged"]
    assert main(args) == 1  # the first run adds rows
    assert "expected no change" in capsys.readouterr().err
    assert main(args) == 0  # the same night again changes nothing
