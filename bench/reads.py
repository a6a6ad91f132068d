"""Light-curve reads: dbplugins' query builder against hand-written psycopg, on the same detections, in one
run.

    .venv/bin/python -m bench.reads [--objects 1000] [--per-object 100] [--repeat 3]

A measurement aid for issue 14 item 6 (bench/run.py holds the official figures). ``--objects`` objects get
``--per-object`` detections each; then, alternating methods within each repetition:

* per object: ``db.query(Detection).filter(Detection.oid == oid).all()`` for every oid, against one psycopg
  cursor running the same SELECT and building each ``Detection`` with the dataclass ``__init__``;
* all at once: ``filter(Detection.oid.in_(oids)).all()`` against one ``oid = ANY(%s)`` on that cursor;
* no instances: ``to_dataframe()`` and a 4-column projection ``db.query(Detection.oid, ...)`` against psycopg
  binary tuples of the same columns.

Prints rows/s (best of the repetitions) and the ratio of dbplugins to its baseline.
"""

from __future__ import annotations

import argparse
import gc
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from dbplugins import SQLConnection, table_of
from dbplugins._sqlfiles import schema_script
from dbplugins.embedded import ensure_server
from dbplugins.models import Detection, Object

from .bulk_vs_copy import make_rows

COLUMNS = list(table_of(Detection).columns)
PROJECTION = ["oid", "mjd", "magpsf", "sigmapsf"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--per-object", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    server = ensure_server(announce=False)
    server.wait_ready()
    base = server.dsn()
    name = f"dbp_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(base, dbname=name)
    db = SQLConnection()
    raw: psycopg.Connection[Any] | None = None
    try:
        with psycopg.connect(dsn) as conn:
            conn.execute(schema_script())
        oids = [f"ZTF20obj{i:06d}" for i in range(args.objects)]
        rows = make_rows(args.objects * args.per_object, args.objects)
        db.connect(dsn=dsn, min_size=1, max_size=1)
        db.query(Object).bulk_insert({"oid": oid} for oid in oids)
        db.query(Detection).bulk_insert(rows)
        db.execute("VACUUM ANALYZE detection")
        raw = psycopg.connect(dsn, autocommit=True)
        cur = raw.cursor()
        bcur = raw.cursor(binary=True)
        cols = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        one = sql.SQL("SELECT {} FROM detection WHERE oid = %s").format(cols)
        many = sql.SQL("SELECT {} FROM detection WHERE oid = ANY(%s)").format(cols)
        proj = sql.SQL("SELECT {} FROM detection WHERE oid = ANY(%s)").format(
            sql.SQL(", ").join(map(sql.Identifier, PROJECTION))
        )

        def init_rows(fetched: list[tuple[Any, ...]]) -> list[Detection]:
            return [Detection(**dict(zip(COLUMNS, r, strict=True))) for r in fetched]

        def psycopg_per_object() -> int:
            n = 0
            for oid in oids:
                cur.execute(one, (oid,))
                n += len(init_rows(cur.fetchall()))
            return n

        def ours_per_object() -> int:
            n = 0
            for oid in oids:
                n += len(db.query(Detection).filter(Detection.oid == oid).all())
            return n

        def psycopg_in() -> int:
            cur.execute(many, (oids,))
            return len(init_rows(cur.fetchall()))

        def ours_in() -> int:
            return len(db.query(Detection).filter(Detection.oid.in_(oids)).all())

        def binary_tuples() -> int:
            bcur.execute(many, (oids,))
            return len(bcur.fetchall())

        def ours_dataframe() -> int:
            return len(db.query(Detection).filter(Detection.oid.in_(oids)).to_dataframe())

        def binary_projection() -> int:
            bcur.execute(proj, (oids,))
            return len(bcur.fetchall())

        def ours_projection() -> int:
            q = db.query(Detection.oid, Detection.mjd, Detection.magpsf, Detection.sigmapsf)
            return len(q.filter(Detection.oid.in_(oids)).all())

        pairs: list[tuple[str, Callable[[], int], str, Callable[[], int]]] = [
            (
                "per object: psycopg + __init__",
                psycopg_per_object,
                "dbplugins filter(==).all()",
                ours_per_object,
            ),
            ("in_: psycopg + __init__", psycopg_in, "dbplugins filter(in_).all()", ours_in),
            ("all columns: psycopg binary tuples", binary_tuples, "dbplugins to_dataframe()", ours_dataframe),
            (
                "4 columns: psycopg binary tuples",
                binary_projection,
                "dbplugins db.query(M.a, ...)",
                ours_projection,
            ),
        ]
        try:
            import pandas  # noqa: F401
        except ImportError:
            pairs = [p for p in pairs if "to_dataframe" not in p[2]]
        best: dict[str, float] = {}
        for round_ in range(args.repeat):
            for base_label, base_fn, ours_label, ours_fn in pairs:
                order = [(base_label, base_fn), (ours_label, ours_fn)]
                if round_ % 2:
                    order.reverse()
                for label, fn in order:
                    gc.collect()
                    start = time.perf_counter()
                    n = fn()
                    rate = n / (time.perf_counter() - start)
                    best[label] = max(best.get(label, 0.0), rate)
        print(f"{len(rows):,} detections of {len(oids):,} objects, best of {args.repeat}")
        for base_label, _, ours_label, _ in pairs:
            ratio = best[ours_label] / best[base_label]
            print(f"  {base_label:<40} {best[base_label]:>12,.0f} rows/s")
            print(f"  {ours_label:<40} {best[ours_label]:>12,.0f} rows/s   {ratio:.2f}x")
    finally:
        if raw is not None:
            raw.close()
        db.close()
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
