"""Load: 8 processes for a bounded time mixing get_or_create, get_or_create_many, bulk_insert with
re-delivered (and re-ordered) batches, and update, all on the same small key space of one database. Then the
invariants:

* no error was raised in any worker;
* no duplicate keys; every detection's object exists;
* each object was reported ``created=True`` exactly once across all workers, and the table holds exactly
  those;
* the detections are exactly the batches the workers report done, each batch whole, and their count equals the
  sum of what ``bulk_insert`` returned;
* every object's ``lastmjd`` is the last value some worker committed for it (or NULL if none did).
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
from sample_rows import detection_row, object_row

from .conftest import admin, sizes

WORKERS = 8
KEYS = 120  # small: every key is fought over
BATCHES = 400
OBJECTS_PER_BATCH = 5
DETECTIONS_PER_BATCH = 300


def batch_oids(b: int) -> list[str]:
    return [f"L{(b * 7 + j * 13) % KEYS:04d}" for j in range(OBJECTS_PER_BATCH)]


def batch_rows(b: int) -> list[dict[str, Any]]:
    oids = batch_oids(b)
    return [detection_row(b * 1000 + i, oids[i % OBJECTS_PER_BATCH]) for i in range(DETECTIONS_PER_BATCH)]


def worker(dsn: str, wid: int, start_at: float, seconds: float, seed: int) -> dict[str, Any]:
    """One ingestion process. Runs in a spawned child: imports here, reports plain data."""
    from dbplugins import SQLConnection
    from dbplugins.models import Detection, Object

    rnd = random.Random(seed)
    report: dict[str, Any] = {
        "created": [],
        "batches": [],
        "inserted": 0,
        "updates": {},  # oid -> tokens committed, in order
        "errors": [],
        "ops": Counter(),
    }
    db = SQLConnection()
    db.connect(dsn=dsn, min_size=1, max_size=2, timeout=30)
    seq = 0

    def ensure(oids: list[str]) -> None:
        rows = [object_row(oid) for oid in oids]
        rnd.shuffle(rows)
        for (obj, created) in db.query(Object).get_or_create_many(rows):
            if created:
                report["created"].append(obj.oid)

    try:
        time.sleep(max(0.0, start_at - time.time()))
        deadline = time.time() + seconds
        while time.time() < deadline:
            op = rnd.choice(["get_or_create", "get_or_create_many", "bulk_insert", "bulk_insert", "update"])
            try:
                if op == "get_or_create":
                    oid = f"L{rnd.randrange(KEYS):04d}"
                    obj, created = db.query(Object).get_or_create(filter_by={"oid": oid}, **object_row(oid))
                    assert obj.oid == oid
                    if created:
                        report["created"].append(oid)
                elif op == "get_or_create_many":
                    ensure([f"L{k:04d}" for k in rnd.sample(range(KEYS), 20)])
                elif op == "bulk_insert":
                    # Half the time the batch of the current half-second, which every worker delivers at once
                    # (a re-delivery storm: the same fresh rows racing in different orders); else an old one.
                    b = int(time.time() * 2) % BATCHES if rnd.random() < 0.5 else rnd.randrange(BATCHES)
                    ensure(batch_oids(b))
                    rows = batch_rows(b)
                    if rnd.random() < 0.5:  # a re-delivery may come in another order
                        rnd.shuffle(rows)
                    report["inserted"] += db.query(Detection).bulk_insert(rows, on_conflict="ignore")
                    report["batches"].append(b)
                else:
                    oid = f"L{rnd.randrange(KEYS):04d}"
                    obj, created = db.query(Object).get_or_create(filter_by={"oid": oid}, **object_row(oid))
                    if created:
                        report["created"].append(oid)
                    seq += 1
                    token = float(wid * 1_000_000 + seq)
                    db.query().update(obj, {"lastmjd": token})
                    assert db.session is not None
                    db.session.commit()
                    report["updates"].setdefault(oid, []).append(token)
                report["ops"][op] += 1
            except Exception as exc:  # noqa: BLE001 - every error is a finding, reported to the parent
                report["errors"].append(f"{op}: {type(exc).__name__}: {exc}")
                db.current_session().rollback()
    finally:
        db.close()
    report["ops"] = dict(report["ops"])
    return report


def deliver(dsn: str, seed: int, start_at: float, rounds: int, size: int) -> tuple[int, list[str]]:
    """Deliver the same fresh batches as every other process, at the same moments, in an order of our own."""
    from dbplugins import SQLConnection
    from dbplugins.models import Detection

    rnd = random.Random(seed)
    db = SQLConnection()
    db.connect(dsn=dsn, min_size=1, max_size=1, timeout=30)
    inserted, errors = 0, []
    try:
        for r in range(rounds):
            rows = [detection_row(r * 1_000_000 + i, "storm") for i in range(size)]
            rnd.shuffle(rows)
            time.sleep(max(0.0, start_at + r * 0.5 - time.time()))
            try:
                inserted += db.query(Detection).bulk_insert(rows, on_conflict="ignore")
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                errors.append(f"round {r}: {type(exc).__name__}: {exc}")
    finally:
        db.close()
    return inserted, errors


@pytest.mark.parametrize("rounds", sizes(6, 200))
def test_racing_redeliveries_in_different_orders_land_once_without_error(dsn: str, rounds: int) -> None:
    with admin(dsn) as conn:
        conn.execute("INSERT INTO object (oid) VALUES ('storm')")
    size = 2000
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 5.0
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=ctx) as pool:
        futures = [pool.submit(deliver, dsn, seed, start_at, rounds, size) for seed in range(WORKERS)]
        results = [f.result(timeout=rounds * 5 + 90) for f in futures]
    errors = [e for _, errs in results for e in errs]
    assert not errors, errors[:5]
    with admin(dsn) as conn:
        stored = conn.execute("SELECT count(*), count(DISTINCT candid) FROM detection").fetchone()
    assert stored == (rounds * size, rounds * size)
    assert sum(n for n, _ in results) == rounds * size  # each row reported inserted exactly once


@pytest.mark.parametrize("seconds", sizes(8.0, 180.0))
def test_eight_processes_keep_every_invariant(dsn: str, seconds: float) -> None:
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds pool threads
    start_at = time.time() + 6.0  # every worker connected and waiting: the load starts together
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=ctx) as pool:
        futures = [pool.submit(worker, dsn, w, start_at, seconds, 1000 + w) for w in range(WORKERS)]
        reports = [f.result(timeout=seconds + 90) for f in futures]

    errors = [e for r in reports for e in r["errors"]]
    assert not errors, errors[:10]
    ops = Counter[str]()
    for r in reports:
        ops.update(r["ops"])
    assert all(ops[op] > 0 for op in ("get_or_create", "get_or_create_many", "bulk_insert", "update")), ops

    with admin(dsn) as conn:
        dup_objects = conn.execute("SELECT oid FROM object GROUP BY oid HAVING count(*) > 1").fetchall()
        dup_dets = conn.execute(
            "SELECT candid, oid FROM detection GROUP BY candid, oid HAVING count(*) > 1"
        ).fetchall()
        orphans = conn.execute(
            "SELECT count(*) FROM detection d WHERE NOT EXISTS (SELECT 1 FROM object o WHERE o.oid = d.oid)"
        ).fetchone()
        objects = {r[0]: r[1] for r in conn.execute("SELECT oid, lastmjd FROM object")}
        detections = {(r[0], r[1]) for r in conn.execute("SELECT candid, oid FROM detection")}
    assert dup_objects == [] and dup_dets == [] and orphans == (0,)

    # Each object created exactly once, by exactly one reported call.
    created = Counter(oid for r in reports for oid in r["created"])
    assert [oid for oid, n in created.items() if n > 1] == []
    assert set(created) == set(objects)

    # Detections: exactly the batches reported done, each whole; the count is what bulk_insert reported.
    done = {b for r in reports for b in r["batches"]}
    expected = {(d["candid"], d["oid"]) for b in done for d in batch_rows(b)}
    assert detections == expected
    assert sum(r["inserted"] for r in reports) == len(detections)

    # Updates: the stored value is the last one committed by some worker for that object.
    tokens: dict[str, set[float]] = {}
    for r in reports:
        for oid, values in r["updates"].items():
            tokens.setdefault(oid, set()).update(values)
    for oid, lastmjd in objects.items():
        if oid in tokens:
            assert lastmjd in tokens[oid], (oid, lastmjd)
        else:
            assert lastmjd is None, (oid, lastmjd)
