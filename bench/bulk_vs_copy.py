"""bulk_insert against hand-written psycopg binary COPY: the same detection rows, the same table, one run.

    .venv/bin/python -m bench.bulk_vs_copy [--rows 100000] [--repeat 5] [--night] [--error-mode]
        [--staging --chunks 1000,5000,20000] [--spool-mb 0,1000]

A measurement aid for dbplugins/bulk.py (the "ignore" strategy, its staging flush size, its spool);
bench/run.py holds the official figures. Each load starts from an empty ``detection`` table (``object`` rows
are loaded once), runs in one transaction and includes its COMMIT. Methods alternate within each repetition so
drifts hit them alike; the best and the median of the repetitions are printed, with the ratio to raw COPY.
"""

from __future__ import annotations

import argparse
import gc
import operator
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from dbplugins import SQLConnection, table_of
from dbplugins._copy import bulk as B
from dbplugins._copy import checker as CH
from dbplugins._copy import stage as ST
from dbplugins._copy import stream as SM
from dbplugins.models import Detection, Object

from .harness import drop_database, scratch_database

COLUMNS = list(table_of(Detection).columns)


def bench_rows(night: bool, n: int, n_objects: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows to load and the oids of their objects: the synthetic night's (``--night``), else
    :func:`make_rows`'."""
    if night:
        from .run import bench_data

        rows, objects = bench_data(n)
        return rows, [o["oid"] for o in objects]
    return make_rows(n, n_objects), [f"ZTF20obj{i:06d}" for i in range(n_objects)]


def make_rows(n: int, n_objects: int, seed: int = 1) -> list[dict[str, Any]]:
    """Detection dicts like an ingestion worker's: every column present, the optional ones sometimes None."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        opt = rnd.random() < 0.8
        rows.append(
            {
                "candid": 1_000_000_000_000 + i,
                "oid": f"ZTF20obj{i % n_objects:06d}",
                "mjd": 59000.0 + rnd.random() * 100,
                "fid": rnd.choice((1, 2)),
                "pid": float(rnd.randrange(10**9)),
                "diffmaglim": rnd.uniform(19, 21) if opt else None,
                "isdiffpos": rnd.choice((1, -1)),
                "nid": rnd.randrange(2000) if opt else None,
                "ra": rnd.uniform(0, 360),
                "dec": rnd.uniform(-30, 90),
                "magpsf": rnd.uniform(14, 21),
                "sigmapsf": rnd.uniform(0.01, 0.3),
                "magap": rnd.uniform(14, 21) if opt else None,
                "sigmagap": rnd.uniform(0.01, 0.3) if opt else None,
                "distnr": rnd.uniform(0, 10) if opt else None,
                "rb": rnd.random() if opt else None,
                "rbversion": "t17_f5_c3" if opt else None,
                "drb": rnd.random() if opt else None,
                "drbversion": "d6_m7" if opt else None,
                "magapbig": rnd.uniform(14, 21) if opt else None,
                "sigmagapbig": rnd.uniform(0.01, 0.3) if opt else None,
                "rfid": rnd.randrange(10**6) if opt else None,
                "magpsf_corr": rnd.uniform(14, 21) if opt else None,
                "sigmapsf_corr": rnd.uniform(0.01, 0.3) if opt else None,
                "sigmapsf_corr_ext": rnd.uniform(0.01, 0.3) if opt else None,
                "corrected": opt,
                "dubious": rnd.random() < 0.05,
                "parent_candid": 1_000_000_000_000 + i - 1 if rnd.random() < 0.3 else None,
                "has_stamp": True,
                "step_id_corr": "correction_1.0.0",
            }
        )
    return rows


def raw_copy(conn: psycopg.Connection[Any], rows: list[dict[str, Any]]) -> int:
    """The hand-written baseline: binary COPY with set_types, rows as tuples built by itemgetter."""
    getter = operator.itemgetter(*COLUMNS)
    types = [c.sql_type for c in table_of(Detection).columns.values()]
    stmt = sql.SQL("COPY detection ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    )
    with conn.cursor() as cur:
        with cur.copy(stmt) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(getter(row))
        conn.commit()
    return len(rows)


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by the server process ``pid`` (same machine)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def staged_ignore(db: SQLConnection, rows: list[dict[str, Any]], chunk: int) -> int:
    """The alternative "ignore" strategy, always through the staging table (for the record)."""
    table = table_of(Detection)
    check = CH._checker(table)
    stmts = ST._statements(table, check)
    it = iter(rows)
    feed = SM._Feed(next(it), it)
    with db.current_session().atomic() as conn:
        return ST._Loader(conn, check, stmts, feed).staged(chunk, "ignore")


def with_spool(nbytes: int, load: Callable[[], int]) -> int:
    """Run ``load`` with the fast path's record kept in memory up to ``nbytes`` (then in a temporary file)."""
    saved = SM._SPOOL_MEMORY
    SM._SPOOL_MEMORY = nbytes
    try:
        return load()
    finally:
        SM._SPOOL_MEMORY = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--objects", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--chunks",
        default="",
        help="with --staging: comma-separated staging flush sizes to compare (the fast path is one COPY "
        "whatever chunk_size is, so without duplicates only the staging path depends on it)",
    )
    parser.add_argument("--staging", action="store_true", help="also time the always-staging strategy")
    parser.add_argument("--error-mode", action="store_true", help='also time on_conflict="error"')
    parser.add_argument("--generator", action="store_true", help="feed bulk_insert from a generator")
    parser.add_argument("--night", action="store_true", help="the rows of make bench (the synthetic night)")
    parser.add_argument(
        "--spool-mb", default="", help="comma-separated in-memory sizes of the fast path's record to compare"
    )
    args = parser.parse_args()

    base, name, dsn = scratch_database("dbp_bench")
    try:
        rows, oids = bench_rows(args.night, args.rows, args.objects)
        signatures = {tuple(type(r.get(c)) for c in COLUMNS) for r in rows}
        print(f"{len(signatures)} value-type signatures in {len(rows):,} rows", flush=True)
        db = SQLConnection()
        db.connect(dsn=dsn, min_size=1, max_size=1)  # one backend, whose CPU time we read
        raw_conn = psycopg.connect(dsn)
        pids = {"raw": raw_conn.info.backend_pid, "ours": int(db.execute("SELECT pg_backend_pid()")[0][0])}
        session = db.current_session()
        B.bulk_insert(session, table_of(Object), ({"oid": oid} for oid in oids))
        db.execute("VACUUM ANALYZE object")

        methods: dict[str, Callable[[], int]] = {"raw COPY": lambda: raw_copy(raw_conn, rows)}
        if args.generator:
            methods["bulk_insert"] = lambda: B.bulk_insert(session, table_of(Detection), (r for r in rows))
        else:
            methods["bulk_insert"] = lambda: B.bulk_insert(session, table_of(Detection), rows)
        for mb in filter(None, args.spool_mb.split(",")):
            methods[f"bulk_insert spool={mb} MB"] = lambda mb=mb: with_spool(  # type: ignore[misc]
                int(float(mb) * 2**20), lambda: B.bulk_insert(session, table_of(Detection), rows)
            )
        if args.error_mode:
            methods['bulk_insert on_conflict="error"'] = lambda: B.bulk_insert(
                session, table_of(Detection), rows, on_conflict="error"
            )
        if args.staging:
            for size in [int(c) for c in filter(None, args.chunks.split(","))] or [B.DEFAULT_CHUNK_SIZE]:
                methods[f"staging + INSERT..ON CONFLICT, chunk={size:,}"] = lambda size=size: staged_ignore(  # type: ignore[misc]
                    db, rows, size
                )
        times: dict[str, list[float]] = {m: [] for m in methods}
        cpu: dict[str, list[float]] = {m: [] for m in methods}
        server_cpu: dict[str, list[float]] = {m: [] for m in methods}
        # garbage collections per generation during each load
        collections: dict[str, list[list[int]]] = {m: [] for m in methods}
        for round_ in range(args.repeat):
            order = list(methods.items())
            if round_ % 2:  # alternate the order so neither side always runs right after a checkpoint
                order.reverse()
            for label, fn in order:
                db.execute("TRUNCATE detection CASCADE")
                db.execute("CHECKPOINT")
                pid = pids["raw"] if label == "raw COPY" else pids["ours"]
                g0 = [g["collections"] for g in gc.get_stats()]
                s0, c0, t0 = backend_cpu(pid), time.process_time(), time.perf_counter()
                n = fn()
                collections[label].append([g["collections"] - g0[i] for i, g in enumerate(gc.get_stats())])
                times[label].append(time.perf_counter() - t0)
                cpu[label].append(time.process_time() - c0)
                server_cpu[label].append(backend_cpu(pid) - s0)
                assert n == len(rows), (label, n)
        db.close()
        raw_conn.close()
        raw = times["raw COPY"]
        print(f"{args.rows:,} detection rows, {args.repeat} rounds, chunk default {B.DEFAULT_CHUNK_SIZE:,}")
        print(
            f"  {'method':34s} {'best rows/s':>12s} {'median':>9s} {'ratio/round (median)':>22s}"
            f" {'CPU/row: client':>16s} {'server':>7s}  GC runs gen0/1/2"
        )
        for label, ts in times.items():
            ratios = [r / t for r, t in zip(raw, ts, strict=True)]
            print(
                f"  {label:34s} {args.rows / min(ts):12,.0f} {args.rows / statistics.median(ts):9,.0f} "
                f"{statistics.median(ratios):15.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) "
                f"{statistics.median(cpu[label]) / args.rows * 1e6:13.1f} us "
                f"{statistics.median(server_cpu[label]) / args.rows * 1e6:5.1f} us  "
                + "/".join(str(round(statistics.median(c[g] for c in collections[label]))) for g in range(3))
            )
    finally:
        drop_database(base, name)


if __name__ == "__main__":
    main()
