"""bulk_insert and get_or_create_many into a local Citus cluster beside the single embedded server.

    .venv/bin/python -m bench.citus_vs_single [--rows 100000] [--objects 10000] [--repeat 3]

A measurement for docs/scaling.md, not part of ``make bench``: the same rows, the same machine, one run. A
fresh coordinator + 2 workers (``dbplugins.citus.LocalCluster`` in a temporary directory, removed afterwards)
and a fresh database on the embedded server each get the built-in schema (distributed on the cluster). Per
repetition, alternating the two targets: the tables are emptied, then

* ``get_or_create_many`` of ``--objects`` new objects (batches of 1,000),
* ``bulk_insert`` of ``--rows`` new detections (one call),
* the same detections again (a re-delivery: every key exists, so the call goes through staging and inserts 0).

Medians of the repetitions are printed with the cluster/single ratio, and the bytes per detection row (table
plus indexes) each side stores.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from dbplugins import SQLConnection
from dbplugins.citus import LocalCluster
from dbplugins.embedded import ensure_server
from dbplugins.models import Detection, Object

from .bulk_vs_copy import make_rows


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _empty(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE object, detection, dataquality, probability, feature, xmatch, magstat, "
            "non_detection, gaia_ztf, ss_ztf, ps1_ztf, reference"
        )


def _bytes_per_row(dsn: str, citus: bool) -> float:
    size = "citus_total_relation_size" if citus else "pg_total_relation_size"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE detection" if not citus else "ANALYZE detection")
        row = conn.execute(
            sql.SQL("SELECT {}('detection'), (SELECT count(*) FROM detection)").format(sql.Identifier(size))
        ).fetchone()
    assert row is not None
    return float(row[0]) / max(int(row[1]), 1)


def run_once(dsn: str, objects: list[dict[str, Any]], detections: list[dict[str, Any]]) -> dict[str, float]:
    """One repetition on one target: seconds per load."""
    _empty(dsn)
    db = SQLConnection()
    db.connect(dsn=dsn, min_size=1, max_size=2)
    try:
        q_obj, q_det = db.query(Object), db.query(Detection)
        t_goc = _timed(
            lambda: [q_obj.get_or_create_many(objects[i : i + 1000]) for i in range(0, len(objects), 1000)]
        )
        t_bulk = _timed(lambda: q_det.bulk_insert(detections))
        t_again = _timed(lambda: q_det.bulk_insert(detections))
    finally:
        db.close()
    return {"get_or_create_many": t_goc, "bulk_insert": t_bulk, "re-delivery": t_again}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.citus_vs_single")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    detections = make_rows(args.rows, args.objects)
    objects = [{"oid": f"ZTF20obj{i:06d}", "ndet": 1} for i in range(args.objects)]

    server = ensure_server(announce=False)
    name = f"dbp_citus_cmp_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    single = make_conninfo(server.dsn(), dbname=name)
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="dbp-citus-bench-")))
    try:
        cluster.start()
        coordinator = cluster.dsn()
        for dsn, distributed in ((single, False), (coordinator, True)):
            db = SQLConnection()
            db.connect(dsn=dsn, min_size=1, max_size=1)
            try:
                db.create_db(distributed=distributed)
            finally:
                db.close()
        results: dict[str, dict[str, list[float]]] = {"single": {}, "citus": {}}
        for r in range(args.repeat):
            order = [("single", single), ("citus", coordinator)]
            for label, dsn in order if r % 2 == 0 else order[::-1]:
                for load, secs in run_once(dsn, objects, detections).items():
                    results[label].setdefault(load, []).append(secs)
        sizes = {"single": _bytes_per_row(single, False), "citus": _bytes_per_row(coordinator, True)}
    finally:
        cluster.destroy()
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    counts = {"get_or_create_many": args.objects, "bulk_insert": args.rows, "re-delivery": args.rows}
    print(f"{args.rows:,} detections of {args.objects:,} objects, median of {args.repeat} repetitions")
    print(f"{'load':<20}{'single rows/s':>15}{'citus rows/s':>15}{'citus/single':>14}")
    for load, n in counts.items():
        s = n / statistics.median(results["single"][load])
        c = n / statistics.median(results["citus"][load])
        print(f"{load:<20}{s:>15,.0f}{c:>15,.0f}{c / s:>13.2f}x")
    print(
        f"bytes per detection row (table + indexes): single {sizes['single']:.0f}, citus {sizes['citus']:.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
