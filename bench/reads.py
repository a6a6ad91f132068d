"""``make bench``'s light-curve reads: dbplugins' query builder, hand-written psycopg and the original
db-plugins.

Issue 14 item 6. A database of its own (``dbp_bench_reads``, so that the bulk-load cases, which empty the
detection table, leave it alone) holds ``objects`` objects with ``per_object`` detections each (the values of
the synthetic night's detection rows, with fresh keys), loaded once and ``VACUUM ANALYZE``'d. The cases, run
by :func:`bench.run.run_cases` among the others:

- dbplugins: per object ``db.query(Detection).filter(Detection.oid == oid).all()`` for every oid, then all of
  them at once with ``filter(Detection.oid.in_(oids)).all()``; ``to_dataframe()`` of that query; and a
  projection of :data:`PROJECTION` (``db.query(Detection.oid, Detection.mjd, ...)``, rows without instances);
- hand-written psycopg: one cursor (``class_row(Detection)``: each row built with the dataclass ``__init__``,
  ``fetchall()``) running the same ``SELECT ... WHERE oid = %s`` per object and one ``oid = ANY(%s)``;
- psycopg binary tuples (``cursor(binary=True)``, ``fetchall()``, no instances) of all the columns and of the
  projection's columns: the baselines of ``to_dataframe()`` and the projection.

The hand-written ``= ANY(%s)`` reads run with ``prepare=False``, as dbplugins runs every statement with an
array parameter: left to psycopg, the statement is prepared from its fifth execution, and PostgreSQL gives a
prepared statement its generic plan after five more, which compares every row with each of the 1,000 oids in
turn (600 ms of server time instead of 18 ms, EXPLAIN ANALYZE). The baselines would then measure that plan,
not psycopg, and every ratio to them would grow from the sixth repetition on.
- the original db-plugins 4.2.7 (:func:`bench.original.run_original_reads`, its own virtualenv): its ORM
  query, the same two ways.

Every read must return every stored row (a read that returned fewer would look fast): the count is checked.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from dbplugins import SQLConnection
from dbplugins._types.schema import table_of
from dbplugins.models import Detection, Object

from . import original
from .harness import Case, Row, Timing, drop_database, log, recreate_database, timed

READS_DB = "dbp_bench_reads"
COLUMNS = table_of(Detection).column_names
PROJECTION = ("oid", "mjd", "magpsf", "sigmapsf")


def read_rows(source: list[Row], objects: int, per_object: int) -> tuple[list[str], list[Row]]:
    """``objects`` oids and ``per_object`` detections of each: the values of ``source``'s rows in turn, with
    fresh keys (oid ``BENCHREAD...``, candid counting from 1)."""
    oids = [f"BENCHREAD{i:07d}" for i in range(objects)]
    rows = [
        {**source[(i * per_object + j) % len(source)], "oid": oid, "candid": i * per_object + j + 1}
        for i, oid in enumerate(oids)
        for j in range(per_object)
    ]
    return oids, rows


def _gc_timed(fn: Callable[[], int]) -> tuple[int, float]:
    """``(rows, seconds)`` of ``fn``, after a full collection (untimed), so no read pays for the garbage of
    the previous one."""
    gc.collect()
    return timed(fn)


@dataclass
class Reads:
    """The reads database, its connections and its cases."""

    server: str
    objects: int
    per_object: int
    workdir: Path
    original_url: Callable[[str], str]
    run_original: bool = True
    dsn: str = ""
    oids: list[str] = field(default_factory=list)
    db: SQLConnection = field(default_factory=SQLConnection)
    conn: psycopg.Connection[Any] | None = None

    @property
    def expected(self) -> int:
        return self.objects * self.per_object

    @property
    def oids_path(self) -> Path:
        return self.workdir / "read_oids.json"

    def open(self, source: list[Row], object_template: Row) -> None:
        """Create the database and load the objects and their detections (untimed)."""
        log(f"reads: {self.objects:,} objects x {self.per_object} detections into {READS_DB} ...")
        self.dsn = recreate_database(self.server, READS_DB)
        self.oids, rows = read_rows(source, self.objects, self.per_object)
        self.db.connect(dsn=self.dsn, min_size=1, max_size=1)
        self.db.create_db()
        self.db.query(Object).bulk_insert([{**object_template, "oid": oid} for oid in self.oids])
        self.db.query(Detection).bulk_insert(rows)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE object, detection")
        self.conn = psycopg.connect(self.dsn, autocommit=True)
        self.oids_path.write_text(json.dumps(self.oids))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.db.close()
        if self.dsn:
            drop_database(self.server, READS_DB)

    def _check(self, method: str, n: int) -> None:
        if n != self.expected:
            raise RuntimeError(f"reads: {method} returned {n:,} rows, not the {self.expected:,} stored")

    def _timing(self, method: str, fn: Callable[[], int]) -> Timing:
        n, secs = _gc_timed(fn)
        self._check(method, n)
        return n, secs

    # -- dbplugins

    def ours(self, _rep: int) -> dict[str, Timing]:
        db, oids = self.db, self.oids

        def per_object() -> int:
            return sum(len(db.query(Detection).filter(Detection.oid == oid).all()) for oid in oids)

        def all_at_once() -> int:
            return len(db.query(Detection).filter(Detection.oid.in_(oids)).all())

        return {
            "read.each": self._timing("dbplugins per object", per_object),
            "read.in": self._timing("dbplugins in_", all_at_once),
        }

    def ours_columns(self, _rep: int) -> dict[str, Timing]:
        db, oids = self.db, self.oids

        def projection() -> int:
            query = db.query(*(getattr(Detection, c) for c in PROJECTION))
            return len(query.filter(Detection.oid.in_(oids)).all())

        def dataframe() -> int:
            return len(db.query(Detection).filter(Detection.oid.in_(oids)).to_dataframe())

        result = {"read.proj": self._timing("dbplugins projection", projection)}
        if has_pandas():
            result["read.df"] = self._timing("dbplugins to_dataframe", dataframe)
        return result

    # -- hand-written psycopg

    def hand(self, _rep: int) -> dict[str, Timing]:
        assert self.conn is not None
        cols = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        one = sql.SQL("SELECT {} FROM detection WHERE oid = %s").format(cols)
        many = sql.SQL("SELECT {} FROM detection WHERE oid = ANY(%s)").format(cols)
        oids = self.oids
        cur = self.conn.cursor(row_factory=class_row(Detection))

        def per_object() -> int:
            n = 0
            for oid in oids:
                cur.execute(one, (oid,))
                n += len(cur.fetchall())
            return n

        def all_at_once() -> int:
            cur.execute(many, (oids,), prepare=False)  # see the module docstring
            return len(cur.fetchall())

        try:
            return {
                "read.each.hand": self._timing("psycopg per object", per_object),
                "read.in.hand": self._timing("psycopg ANY", all_at_once),
            }
        finally:
            cur.close()

    def binary_tuples(self, _rep: int) -> dict[str, Timing]:
        assert self.conn is not None
        oids = self.oids
        cur = self.conn.cursor(binary=True)

        def select(columns: tuple[str, ...] | list[str]) -> Callable[[], int]:
            stmt = sql.SQL("SELECT {} FROM detection WHERE oid = ANY(%s)").format(
                sql.SQL(", ").join(map(sql.Identifier, columns))
            )

            def fetch() -> int:
                cur.execute(stmt, (oids,), prepare=False)  # see the module docstring
                return len(cur.fetchall())

            return fetch

        try:
            return {
                "read.tuples": self._timing("psycopg binary tuples", select(COLUMNS)),
                "read.proj.tuples": self._timing("psycopg binary projection", select(PROJECTION)),
            }
        finally:
            cur.close()

    # -- the original library

    def original(self, _rep: int) -> dict[str, Timing]:
        result = original.run_original_reads(self.original_url(self.dsn), self.oids_path)
        out: dict[str, Timing] = {}
        for key, metric in (("per_object", "read.each.orig"), ("in", "read.in.orig")):
            self._check(f"the original, {key}", result[key]["n"])
            out[metric] = (result[key]["n"], result[key]["seconds"])
        return out

    def cases(self) -> list[Case]:
        """The read cases, the sides of each ratio next to each other."""
        cases = [
            Case("reads: psycopg binary tuples", self.binary_tuples),
            Case("reads: dbplugins projection, to_dataframe", self.ours_columns),
            Case("reads: dbplugins instances", self.ours),
            Case("reads: psycopg + __init__", self.hand),
        ]
        if self.run_original:
            # A fresh subprocess every repetition: nothing for a warm-up to warm (the other read cases warm
            # the server's caches of the same rows).
            cases.insert(2, Case("reads: original db-plugins", self.original, warm_up=False))
        return cases


def has_pandas() -> bool:
    """Whether ``to_dataframe()`` can run here (pandas is an optional extra)."""
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True
