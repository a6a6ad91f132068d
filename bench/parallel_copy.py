"""bulk_insert(parallel=N) against hand-written single-stream binary COPY: the same detection rows, one run.

    .venv/bin/python -m bench.parallel_copy [--rows 100000] [--repeat 5] [--night] [--streams 2,3]

A measurement aid for dbplugins/_copy/parallel.py; bench/run.py holds the official figure
(``bulk.parallel2``). Each load starts from an empty ``detection`` table (``object`` rows loaded once) and
includes its COMMIT (``COMMIT PREPARED`` for the streams). Methods alternate within each repetition; printed:
the best and median rates and the median per-round ratio to the single raw COPY. Also printed, to weigh
threads against processes: what a process-based engine would pay at least per row in the reading process
(pickling the row dicts in batches to hand them over), beside what the threads' engine spends per row on the
client.
"""

from __future__ import annotations

import argparse
import operator
import pickle
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from dbplugins import SQLConnection, table_of
from dbplugins.models import Detection, Object

from .bulk_vs_copy import COLUMNS, bench_rows, raw_copy
from .harness import drop_database, scratch_database


def raw_copy_streams(dsn: str, rows: list[dict[str, Any]], streams: int) -> int:
    """Hand-written COPY over ``streams`` threads and connections, the rows split beforehand (untimed dealing
    is not free in real use: this is the ceiling)."""
    parts = [rows[k::streams] for k in range(streams)]
    conns = [psycopg.connect(dsn) for _ in range(streams)]
    getter = operator.itemgetter(*COLUMNS)
    types = [c.sql_type for c in table_of(Detection).columns.values()]
    stmt = sql.SQL("COPY detection ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    )

    def load(conn: psycopg.Connection[Any], part: list[dict[str, Any]]) -> None:
        with conn.cursor() as cur, cur.copy(stmt) as copy:
            copy.set_types(types)
            for row in part:
                copy.write_row(getter(row))

    try:
        threads = [threading.Thread(target=load, args=(c, p)) for c, p in zip(conns, parts, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for conn in conns:
            conn.commit()
    finally:
        for conn in conns:
            conn.close()
    return len(rows)


def pickle_cost(rows: list[dict[str, Any]], batch: int = 2048) -> float:
    """Seconds per row to pickle and unpickle the rows in batches (a process engine's hand-over, both
    sides)."""
    start = time.process_time()
    for i in range(0, len(rows), batch):
        pickle.loads(pickle.dumps(rows[i : i + batch], protocol=pickle.HIGHEST_PROTOCOL))
    return (time.process_time() - start) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--objects", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--streams", default="2", help="comma-separated parallel values to time")
    parser.add_argument("--night", action="store_true", help="the rows of make bench (the synthetic night)")
    args = parser.parse_args()
    streams = [int(s) for s in args.streams.split(",")]

    base, name, dsn = scratch_database("dbp_bench")
    try:
        rows, oids = bench_rows(args.night, args.rows, args.objects)
        db = SQLConnection()
        db.connect(dsn=dsn, min_size=1, max_size=max(streams) + 1)
        prepared = int(db.execute("SHOW max_prepared_transactions")[0][0])
        db.query(Object).bulk_insert({"oid": oid} for oid in oids)
        db.execute("VACUUM ANALYZE object")
        raw_conn = psycopg.connect(dsn)

        methods: dict[str, Callable[[], int]] = {
            "raw COPY, 1 stream": lambda: raw_copy(raw_conn, rows),
            "bulk_insert": lambda: db.query(Detection).bulk_insert(rows),
        }
        for n in streams:
            methods[f"raw COPY, {n} threads (rows pre-split)"] = lambda n=n: raw_copy_streams(dsn, rows, n)  # type: ignore[misc]
            methods[f"bulk_insert(parallel={n})"] = lambda n=n: db.query(Detection).bulk_insert(  # type: ignore[misc]
                rows, parallel=n
            )
        times: dict[str, list[float]] = {m: [] for m in methods}
        cpu: dict[str, list[float]] = {m: [] for m in methods}
        for round_ in range(args.repeat):
            order = list(methods.items())
            if round_ % 2:
                order.reverse()
            for label, fn in order:
                db.execute("TRUNCATE detection CASCADE")
                db.execute("CHECKPOINT")
                c0, t0 = time.process_time(), time.perf_counter()
                n_rows = fn()
                times[label].append(time.perf_counter() - t0)
                cpu[label].append(time.process_time() - c0)
                assert n_rows == len(rows), (label, n_rows)
        db.close()
        raw_conn.close()
        raw = times["raw COPY, 1 stream"]
        print(
            f"{args.rows:,} detection rows, {args.repeat} rounds, max_prepared_transactions = {prepared} "
            f"({'2PC' if prepared else 'no 2PC'})"
        )
        print(
            f"  {'method':40s} {'best rows/s':>12s} {'median':>9s} "
            f"{'ratio/round (median)':>22s} {'client CPU/row':>15s}"
        )
        for label, ts in times.items():
            ratios = [r / t for r, t in zip(raw, ts, strict=True)]
            print(
                f"  {label:40s} {args.rows / min(ts):12,.0f} {args.rows / statistics.median(ts):9,.0f}"
                f" {statistics.median(ratios):15.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
                f" {statistics.median(cpu[label]) / args.rows * 1e6:12.1f} us"
            )
        print(f"  pickling + unpickling the rows in batches (a process engine's hand-over): "
              f"{pickle_cost(rows) * 1e6:.1f} us/row of client CPU")
    finally:
        drop_database(base, name)


if __name__ == "__main__":
    main()
