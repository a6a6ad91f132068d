"""The ingestion worker: a night of ZTF alerts into the database, through dbplugins' public API.

    python -m bench.ingest --alerts 20000            # embedded server (or DBP_DSN / settings.py)
    python -m bench.ingest --alerts 2000 --dsn postgresql://...
    python -m bench.ingest --citus                   # the local Citus cluster (.dbp/citus), schema
    distributed

It reads the real packets first (:func:`bench.alerts.read_packets`), then ``--alerts N`` synthetic ones
(:func:`bench.alerts.synthetic_night`, deterministic per ``--seed``), and for every batch of alerts does what
an ALeRCE ingestion step does:

1. ``db.query(Object).get_or_create_many(objects)``: one row per object, created on first sight;
2. ``db.query(Model).bulk_insert(rows, on_conflict="ignore")`` for the detections, non-detections and
   data-quality rows: re-delivered rows (every alert repeats its object's 30-day history) are skipped;
3. recomputes ``ndet, firstmjd, lastmjd, deltajd, meanra, meandec`` of the batch's objects from their stored
   detections and ``db.query().update(obj, {...})`` the ones that changed.

Each batch is one transaction (``with db.transaction():``), so a crash leaves whole batches only. Aggregates
are recomputed from what is stored, never incremented, so running the same night twice changes nothing: the
second run reports 0 new rows, and a longer night (same seed) adds only its new alerts.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, TextIO, cast

from dbplugins import SQLConnection
from dbplugins._load import progress as _progress
from dbplugins.models import Dataquality, Detection, NonDetection, Object

from .alerts import alert_to_rows, read_packets, synthetic_night

__all__ = [
    "Batch",
    "Progress",
    "Report",
    "batches",
    "ingest",
    "ingest_batch",
    "main",
    "night",
    "table_counts",
]

#: Synthetic alerts of the default night: about a minute on a 2-core machine.
DEFAULT_ALERTS = 50_000
#: Alerts per batch (one transaction). Larger batches amortise the per-statement cost; 500 alerts are about
#: 15k offered rows, a few thousand of them new.
DEFAULT_BATCH = 500
#: Aggregates that differ by less than this are equal (avg() may sum in another order from run to run).
_TOLERANCE = 1e-9

TABLES: dict[str, type] = {
    "object": Object,
    "detection": Detection,
    "non_detection": NonDetection,
    "dataquality": Dataquality,
}

# One round trip for the aggregates of a whole batch; the statement names no caller-supplied identifier.
_AGGREGATES_SQL = (
    "SELECT oid, count(*), min(mjd), max(mjd), avg(ra), avg(dec)"
    " FROM detection WHERE oid = ANY(%s) GROUP BY oid"
)

Row = dict[str, Any]


@dataclass
class Batch:
    """The rows of a run of alerts, deduplicated by primary key (the first delivery wins, as in the
    database)."""

    alerts: int = 0
    objects: dict[str, Row] = field(default_factory=dict)
    detections: dict[tuple[int, str], Row] = field(default_factory=dict)
    non_detections: dict[tuple[str, int, float], Row] = field(default_factory=dict)
    dataquality: dict[tuple[int, str], Row] = field(default_factory=dict)

    def add(self, alert: dict[str, Any]) -> None:
        """Map ``alert`` to rows and add those not seen yet in this batch."""
        rows = alert_to_rows(alert)
        self.alerts += 1
        self.objects.setdefault(rows.object["oid"], rows.object)
        for det in rows.detections:
            self.detections.setdefault((det["candid"], det["oid"]), det)
        for non in rows.non_detections:
            self.non_detections.setdefault((non["oid"], non["fid"], non["mjd"]), non)
        for dq in rows.dataquality:
            self.dataquality.setdefault((dq["candid"], dq["oid"]), dq)

    def sizes(self) -> dict[str, int]:
        """Rows per table in this batch."""
        return {
            "object": len(self.objects),
            "detection": len(self.detections),
            "non_detection": len(self.non_detections),
            "dataquality": len(self.dataquality),
        }


@dataclass
class Report:
    """What a run did: rows offered and new per table, objects updated, alerts, seconds, final table sizes."""

    alerts: int = 0
    offered: Counter[str] = field(default_factory=Counter)
    new: Counter[str] = field(default_factory=Counter)
    updated: int = 0
    seconds: float = 0.0
    totals: dict[str, int] = field(default_factory=dict)


def batches(alerts: Iterable[dict[str, Any]], size: int) -> Iterator[Batch]:
    """Group ``alerts`` into :class:`Batch` es of ``size`` alerts."""
    it = iter(alerts)
    while True:
        batch = Batch()
        for alert in itertools.islice(it, size):
            batch.add(alert)
        if not batch.alerts:
            return
        yield batch


def night(alerts: int, seed: int, *, real: bool = True) -> Iterator[dict[str, Any]]:
    """The real packets (unless ``real`` is false), then ``alerts`` synthetic ones."""
    if real:
        yield from read_packets()
    yield from synthetic_night(alerts, seed)


# -- one batch -----------------------------------------------------------------------------------------------


def ingest_batch(db: SQLConnection, batch: Batch) -> tuple[Counter[str], int]:
    """Write one batch in one transaction; return the new rows per table and the number of objects updated."""
    new: Counter[str] = Counter()
    with db.transaction():
        pairs = db.query(Object).get_or_create_many(list(batch.objects.values()))
        new["object"] = sum(1 for _, created in pairs if created)
        new["detection"] = db.query(Detection).bulk_insert(batch.detections.values(), on_conflict="ignore")
        new["non_detection"] = db.query(NonDetection).bulk_insert(
            batch.non_detections.values(), on_conflict="ignore"
        )
        new["dataquality"] = db.query(Dataquality).bulk_insert(
            batch.dataquality.values(), on_conflict="ignore"
        )
        updated = refresh_aggregates(db, [obj for obj, _ in pairs])
    return new, updated


def stored_aggregates(db: SQLConnection, oids: Sequence[str]) -> dict[str, Row]:
    """``ndet, firstmjd, lastmjd, deltajd, meanra, meandec`` of each object, from its stored detections."""
    result: dict[str, Row] = {}
    for oid, ndet, first, last, meanra, meandec in db.execute(_AGGREGATES_SQL, (list(oids),)):
        result[oid] = {
            "ndet": ndet,
            "firstmjd": first,
            "lastmjd": last,
            "deltajd": last - first,
            "meanra": meanra,
            "meandec": meandec,
        }
    return result


def _changed(obj: Any, values: Row) -> Row:
    """The entries of ``values`` that differ from ``obj``'s attributes (floats within a tolerance)."""
    changed: Row = {}
    for name, value in values.items():
        old = getattr(obj, name)
        if old is None or (
            old != value if isinstance(value, int) else not math.isclose(old, value, abs_tol=_TOLERANCE)
        ):
            changed[name] = value
    return changed


def refresh_aggregates(db: SQLConnection, objects: Sequence[Any]) -> int:
    """Update the aggregates of ``objects`` that changed; return how many were updated."""
    fresh = stored_aggregates(db, [obj.oid for obj in objects])
    updated = 0
    for obj in objects:
        values = fresh.get(obj.oid)
        changes = _changed(obj, values) if values else {}
        if changes:
            db.query().update(obj, changes)
            updated += 1
    return updated


# -- a whole night -------------------------------------------------------------------------------------------


def table_counts(db: SQLConnection) -> dict[str, int]:
    """Rows in each of the worker's tables."""
    return {name: db.query(model).count() for name, model in TABLES.items()}


def ingest(
    db: SQLConnection,
    alerts: Iterable[dict[str, Any]],
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> Report:
    """Ingest ``alerts`` batch by batch; return a :class:`Report` (its ``totals`` are the final table
    sizes)."""
    report = Report()
    start = time.perf_counter()
    for batch in batches(alerts, batch_size):
        new, updated = ingest_batch(db, batch)
        report.alerts += batch.alerts
        report.offered.update(batch.sizes())
        report.new.update(new)
        report.updated += updated
        if progress is not None:
            progress.advance(batch.alerts)
    report.seconds = time.perf_counter() - start
    if progress is not None:
        progress.close()
    report.totals = table_counts(db)
    return report


class Progress(_progress.Progress):
    """The ingestion's progress on stderr: a bar on a terminal, a line every few seconds without one.

    The shared helper of ``dbp load`` (:mod:`dbplugins._load.progress`, over ``click.progressbar``), counting
    alerts; ``advance(n)`` after each batch, ``close()`` at the end.
    """

    def __init__(
        self,
        total: int,
        *,
        unit: str = "alerts",
        stream: IO[str] | None = None,
        width: int = 30,
        interval: float = _progress.DEFAULT_INTERVAL,
    ) -> None:
        super().__init__(
            total=max(total, 1),
            unit=unit,
            label="ingest",
            file=cast(TextIO, stream) if stream is not None else None,
            width=width,
            interval=interval,
        )


# -- the command line ----------------------------------------------------------------------------------------


def format_report(report: Report, *, real: int, synthetic: int, seed: int) -> str:
    """The end-of-run summary: rows per table, new and offered, and rows/s."""
    secs = max(report.seconds, 1e-9)
    lines = [
        f"ingested {report.alerts:,} alerts ({real} real + {synthetic:,} synthetic, seed {seed}) "
        f"in {report.seconds:.1f} s: {report.alerts / secs:,.0f} alerts/s",
        f"{'table':<14} {'rows in table':>14} {'new this run':>13} {'offered':>10}",
    ]
    for name in TABLES:
        lines.append(
            f"{name:<14} {report.totals.get(name, 0):>14,} {report.new[name]:>13,} "
            f"{report.offered[name]:>10,}"
        )
    new, offered = sum(report.new.values()), sum(report.offered.values())
    lines.append(f"{'all':<14} {sum(report.totals.values()):>14,} {new:>13,} {offered:>10,}")
    lines.append(
        f"rows/s: {offered / secs:,.0f} offered, {new / secs:,.0f} new; "
        f"aggregates updated on {report.updated:,} objects"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description="Ingest the real ZTF packets and a synthetic night of alerts through dbplugins.",
    )
    parser.add_argument(
        "--alerts", type=int, default=DEFAULT_ALERTS, help="synthetic alerts (default %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the synthetic night (default %(default)s)"
    )
    parser.add_argument(
        "--batch", type=int, default=DEFAULT_BATCH, help="alerts per batch (default %(default)s)"
    )
    parser.add_argument("--dsn", default=None, help="database (default: DBP_DSN, settings.py, else embedded)")
    parser.add_argument(
        "--citus",
        action="store_true",
        help="into a Citus coordinator (--dsn; default the local cluster in .dbp/citus, started if needed), "
        "its schema created distributed (docs/scaling.md)",
    )
    parser.add_argument("--no-real", action="store_true", help="skip the real packets")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--expect-unchanged",
        action="store_true",
        help="exit 1 if the run added a row or changed an object (a re-delivered night must change nothing)",
    )
    args = parser.parse_args(argv)
    if args.alerts < 0 or args.batch < 1:
        parser.error("--alerts must be >= 0 and --batch >= 1")
    return args


def citus_coordinator(dsn: str | None) -> str:
    """The coordinator to ingest into (``dsn``, else the local cluster, started if needed), initialised as
    ``dbp initdb --distributed`` does: the distributed built-in schema and its migrations recorded."""
    from dbplugins.citus import LocalCluster, builtin_tables, default_cluster_dir
    from dbplugins.config import resolve
    from dbplugins.migrations import runner

    if dsn is None:
        dsn = LocalCluster(default_cluster_dir()).start().dsn()
        print(f"bench.ingest: using the local Citus cluster at {dsn}", file=sys.stderr)
    tables = [t.name for t in builtin_tables()]
    runner.initdb(resolve(dsn=dsn), builtin_tables=tables, distributed=True)
    return dsn


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.ingest``: create the schema if needed, ingest, print the summary."""
    args = parse_args(argv)
    real = 0 if args.no_real else sum(1 for _ in read_packets())
    db = SQLConnection()
    dsn = citus_coordinator(args.dsn) if args.citus else args.dsn
    if dsn:
        db.connect(dsn=dsn)
    else:
        db.connect()
    try:
        if not args.citus:
            db.create_db()
        progress = None if args.quiet else Progress(real + args.alerts)
        report = ingest(
            db, night(args.alerts, args.seed, real=not args.no_real), batch_size=args.batch, progress=progress
        )
    finally:
        db.close()
    print(format_report(report, real=real, synthetic=args.alerts, seed=args.seed))
    if args.expect_unchanged and (sum(report.new.values()) or report.updated):
        print(
            f"expected no change, but {sum(report.new.values()):,} rows were added and "
            f"{report.updated:,} objects updated",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
