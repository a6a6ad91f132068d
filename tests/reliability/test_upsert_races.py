"""Two workers upserting the same large batch in opposite orders (issue 13, item 9), and get_or_create_many
the same way: no error surfaces, nothing is lost, and each key ends with the values of one of the callers.

``on_conflict="update"`` used to flush 20,000-row chunks one after the other in the caller's order, each chunk
holding its row locks until the commit: two callers in opposite orders deadlocked across chunks, and one of
the two failed in every round with ``DbpError: deadlock detected``.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from .conftest import admin, sizes

KEYS = 45_000  # three default chunks of the old "update" path


def upserter(dsn: str, wid: int, rounds: int, barrier: Any) -> list[str]:
    """One worker: every round, the same keys with values of its own, in its own order. Returns its errors."""
    from dbplugins import SQLConnection
    from dbplugins.models import Object

    db = SQLConnection()
    db.connect(dsn=dsn, min_size=1, max_size=1, timeout=60)
    errors: list[str] = []
    try:
        for r in range(rounds):
            rows = [{"oid": f"U{k:05d}", "ndet": wid * 1000 + r} for k in range(KEYS)]
            if wid % 2:
                rows.reverse()
            barrier.wait(timeout=300)
            try:
                db.query(Object).bulk_insert(iter(rows), on_conflict="update")
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                errors.append(f"round {r}: {type(exc).__name__}: {exc}")
    finally:
        db.close()
    return errors


@pytest.mark.parametrize("rounds", sizes(3, 30))
def test_opposite_order_upserts_of_one_batch_survive(dsn: str, rounds: int) -> None:
    with admin(dsn) as conn:  # half the keys exist (updated), half are new (inserted) in the first round
        conn.execute(
            "INSERT INTO object (oid, ndet, meanra) SELECT 'U' || lpad(k::text, 5, '0'), -1, 1.5 "
            "FROM generate_series(0, %s, 2) AS k",
            (KEYS - 1,),
        )
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        barrier = manager.Barrier(2)
        futures = [pool.submit(upserter, dsn, wid, rounds, barrier) for wid in range(2)]
        errors = [e for f in futures for e in f.result(timeout=rounds * 120 + 120)]
    assert not errors, errors[:4]
    last = rounds - 1
    with admin(dsn) as conn:
        rows = conn.execute("SELECT ndet, count(*) FROM object GROUP BY ndet ORDER BY ndet").fetchall()
        kept = conn.execute(
            "SELECT count(*) FROM object WHERE meanra = 1.5 AND right(oid, 1) IN ('0', '2', '4', '6', '8')"
        ).fetchone()
    assert sum(n for _, n in rows) == KEYS  # nothing lost, nothing duplicated
    assert {v for v, _ in rows} <= {last, 1000 + last}  # every key: the last round of one of the two callers
    assert kept == (KEYS // 2 + KEYS % 2,)  # a column the input does not name was never touched


def creator(dsn: str, wid: int, rounds: int, barrier: Any) -> tuple[list[str], list[str]]:
    from dbplugins import SQLConnection
    from dbplugins.models import Object

    db = SQLConnection()
    db.connect(dsn=dsn, min_size=1, max_size=1, timeout=60)
    created: list[str] = []
    errors: list[str] = []
    try:
        for r in range(rounds):
            rows = [{"oid": f"G{r}_{k:05d}", "ndet": wid} for k in range(6_000)]
            if wid % 2:
                rows.reverse()
            barrier.wait(timeout=300)
            try:
                pairs = db.query(Object).get_or_create_many(rows, batch_size=1_000)
                created += [o.oid for o, c in pairs if c]
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                errors.append(f"round {r}: {type(exc).__name__}: {exc}")
    finally:
        db.close()
    return created, errors


@pytest.mark.parametrize("rounds", sizes(3, 30))
def test_opposite_order_get_or_create_many_in_batches_survives(dsn: str, rounds: int) -> None:
    """get_or_create_many is one transaction per call now: callers crossing in opposite orders over several
    batches may deadlock, and the loser runs its call again; each key is reported created exactly once."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        barrier = manager.Barrier(2)
        futures = [pool.submit(creator, dsn, wid, rounds, barrier) for wid in range(2)]
        results = [f.result(timeout=rounds * 120 + 120) for f in futures]
    errors = [e for _, errs in results for e in errs]
    assert not errors, errors[:4]
    created = sorted(o for c, _ in results for o in c)
    assert len(created) == len(set(created)) == rounds * 6_000
    with admin(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM object").fetchone() == (rounds * 6_000,)
