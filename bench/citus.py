"""``make bench``'s Citus section: the same loads into a local Citus cluster beside the single server.

Issue 15. When a Citus-enabled PostgreSQL is installed (:func:`dbplugins.citus.unavailable_reason` says none
is missing), a fresh coordinator + 2 workers (:class:`dbplugins.citus.LocalCluster` in a temporary directory,
destroyed afterwards) gets the built-in schema distributed as the models declare
(``create_db(distributed=True)``) and the bench's objects. Its cases, run by :func:`bench.run.run_cases`
beside the single server's:

- ``bulk_insert`` of the bench's detection rows (the very rows of the single server's ``bulk_insert`` case)
  into the empty distributed table, then the same rows again (a re-delivery: every key stored, nothing
  inserted);
- ``get_or_create_many`` of fresh object keys in batches of ``batch``, new then existing.

The report sets each rate beside the single server's rate of the same operation in the same repetition
(``bulk.ignore``, ``bulk.redelivered``, ``many.new``, ``many.existing``). There is no target: on one small
machine three servers share the same cores and a coordinator hop, so the ratio says what the coordination
costs here, not what a cluster of real machines delivers (docs/scaling.md).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import LiteralString

import psycopg

from dbplugins import SQLConnection
from dbplugins.citus import LocalCluster, unavailable_reason
from dbplugins.models import Detection, Object

from .harness import Case, Row, Timing, chunks, log, object_keys, timed


def skip_reason() -> str | None:
    """Why the Citus section cannot run on this machine (one line), or ``None``."""
    return unavailable_reason()


@dataclass
class CitusBench:
    """The local cluster, its connection and its cases."""

    rows: Sequence[Row]
    keys: int
    batch: int
    object_template: Row
    cluster: LocalCluster | None = None
    db: SQLConnection = field(default_factory=SQLConnection)
    version: str = ""
    owned: bool = False  # whether close() destroys the cluster (open() started it)

    def open(self, objects: Sequence[Row], cluster: LocalCluster | None = None) -> None:
        """Start a fresh cluster (or use ``cluster``, running and without tables), create the distributed
        schema and load the objects the detections refer to."""
        self.owned = cluster is None
        # Set before start(), so that close() also removes a cluster that failed half-way.
        self.cluster = cluster or LocalCluster(Path(tempfile.mkdtemp(prefix="dbp-bench-citus-")))
        if self.owned:
            log("citus: starting a local coordinator + 2 workers ...")
            self.cluster.start()
        self.db.connect(dsn=self.cluster.dsn(), min_size=1, max_size=2)
        self.db.create_db(distributed=True)
        self.db.query(Object).bulk_insert(objects, on_conflict="ignore")
        with psycopg.connect(self.cluster.dsn()) as conn:
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'").fetchone()
        self.version = str(row[0]) if row else "?"

    def close(self) -> None:
        self.db.close()
        if self.cluster is not None and self.owned:
            self.cluster.destroy()

    def _on_every_node(self, statement: LiteralString) -> None:
        assert self.cluster is not None
        for node in range(self.cluster.workers + 1):
            with psycopg.connect(self.cluster.dsn(node), autocommit=True) as conn:
                conn.execute(statement)

    def reset_detections(self, _rep: int = 0) -> None:
        """Empty the distributed detection table (the coordinator truncates every shard) and flush every
        node's dirty buffers, as the single server's bulk cases do."""
        assert self.cluster is not None
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
            conn.execute("TRUNCATE detection, dataquality")
        self._on_every_node("CHECKPOINT")

    def bulk(self, _rep: int) -> dict[str, Timing]:
        rows = self.rows
        _, new = timed(lambda: self.db.query(Detection).bulk_insert(rows, on_conflict="ignore"))
        self._on_every_node("CHECKPOINT")  # the single server's re-delivery also starts after a checkpoint
        _, again = timed(lambda: self.db.query(Detection).bulk_insert(rows, on_conflict="ignore"))
        return {"citus.bulk": (len(rows), new), "citus.redelivered": (len(rows), again)}

    def get_or_create_many(self, rep: int) -> dict[str, Timing]:
        keys = object_keys(self.object_template, "C", rep, self.keys)
        query = self.db.query(Object)

        def batches() -> None:
            for batch in chunks(keys, self.batch):
                query.get_or_create_many(batch)

        _, new = timed(batches)
        _, existing = timed(batches)
        return {"citus.many.new": (len(keys), new), "citus.many.existing": (len(keys), existing)}

    def bulk_case(self) -> Case:
        """``bulk_insert`` of new rows, then of the same rows again: metrics ``citus.bulk``,
        ``citus.redelivered``."""
        return Case("citus: bulk_insert, re-delivered", self.bulk, self.reset_detections)

    def many_case(self) -> Case:
        """``get_or_create_many``, new then existing keys: ``citus.many.new``, ``citus.many.existing``."""
        return Case("citus: get_or_create_many", self.get_or_create_many)
