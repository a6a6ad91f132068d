"""``dbp load`` of a detection CSV against ``psql \\copy`` of the same file into the same empty table.

    .venv/bin/python -m bench.load_csv [--rows 300000] [--repeat 3] [--rss-rows 1000000] [--no-python-path]

The file is exported by the server itself (``COPY detection TO STDOUT (FORMAT csv, HEADER)``, what
``\\copy ... to`` writes) from synthetic detection rows (bench/bulk_vs_copy.py's). Each load starts from an
empty ``detection`` table after a CHECKPOINT (the ``object`` rows it refers to stay) and includes its
COMMIT; the methods alternate within each round. Timed:

* ``psql \\copy``: the embedded server's own psql, ``\\copy detection FROM 'file' (FORMAT csv, HEADER)``;
* ``dbp load`` in-process: :func:`dbplugins._load.files.load_into` (the COPY path), ``--on-conflict ignore``
  (the default) and ``error``;
* ``dbp load`` CLI: ``python -m dbplugins.cli load detection FILE --silent`` (Python's start-up included);
* the Python path (``DBP_LOAD_FAST=0``, what ``dbp load`` did before the COPY path), unless
  ``--no-python-path``.

Then, with ``--rss-rows N``, the peak resident-set growth of ``dbp load`` of an N-row file, in a process of
its own (VmHWM minus VmRSS before the load; ``getrusage().ru_maxrss`` is printed too, but Linux carries a
parent's high-water mark into it across fork + exec).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from dbplugins import SQLConnection, table_of
from dbplugins._copy import bulk as B
from dbplugins.embedded import _bin_dir
from dbplugins.models import Detection, Object

from .bulk_vs_copy import make_rows
from .harness import Case, Timing, drop_database, log, scratch_database, timed

_RSS_CHILD = """
import json, resource, sys
from bench.rss import max_rss_kib, rss_kib
from dbplugins import SQLConnection
from dbplugins._load.files import find_table, load_into
dsn, path, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = SQLConnection()
db.connect(dsn=dsn, min_size=1, max_size=jobs)
table = find_table("detection", [])
before = rss_kib()
read, written = load_into(db, table, path, "csv", "ignore", silent=True, jobs=jobs)
db.close()
print(json.dumps({"rows": read, "before_kib": before, "peak_kib": max_rss_kib(),
                  "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def detection_rows(n: int, n_objects: int) -> Iterator[dict[str, Any]]:
    """``n`` detection dicts, made 50,000 at a time (constant memory)."""
    step = 50_000
    for start in range(0, n, step):
        for row in make_rows(min(step, n - start), n_objects, seed=start + 1):
            row["candid"] += start
            if row["parent_candid"] is not None:
                row["parent_candid"] += start
            yield row


def export(dsn: str, path: Path) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur, open(path, "wb") as out:
        with cur.copy("COPY detection TO STDOUT (FORMAT csv, HEADER)") as copy:
            for block in copy:
                out.write(block)


def fill(db: SQLConnection, n: int, n_objects: int) -> None:
    db.execute("TRUNCATE detection CASCADE")
    B.bulk_insert(db.current_session(), table_of(Detection), detection_rows(n, n_objects))


def peak_rss_growth(dsn: str, path: Path, jobs: int) -> dict[str, Any]:
    """``dbp load --jobs`` of ``path`` into an empty detection table, in a process of its own: ``{"rows",
    "before_kib", "peak_kib", "ru_maxrss_kib"}`` (peak: VmHWM, see bench/rss.py)."""
    out = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, dsn, str(path), str(jobs)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def psql_copy_argv(dsn: str, path: Path) -> list[str]:
    """The embedded server's psql running ``\\copy detection FROM path (FORMAT csv, HEADER)``."""
    command = f"\\copy detection FROM '{path}' (FORMAT csv, HEADER)"
    return [str(_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", dsn, "-c", command]


class LoadCsvBench:
    """``make bench``'s ``dbp load`` section: one detection CSV of ``rows`` rows (exported by the server, as
    ``\\copy ... to`` writes it) loaded by ``psql \\copy``, by ``dbp load`` and by ``dbp load --jobs 2``
    into an empty table, in a scratch database of its own; then the peak RSS growth of ``dbp load --jobs 2``
    of the same file in a process of its own.

    ``dbp load`` runs in-process (:func:`dbplugins._load.files.load_into`, what the command runs once its
    arguments are parsed): the Python start-up of the command (about 0.4 s here) is left out; psql's own
    start-up (a few ms) is in.
    """

    def __init__(self, rows: int, workdir: Path, objects: int = 20_000) -> None:
        self.rows = rows
        self.objects = objects
        self.path = workdir / "load_detections.csv"
        self.db = SQLConnection()
        self.base = self.name = self.dsn = ""

    def open(self) -> None:
        self.base, self.name, self.dsn = scratch_database("dbp_bench_load")
        self.db.connect(dsn=self.dsn, min_size=1, max_size=2)
        objects = ({"oid": f"ZTF20obj{i:06d}"} for i in range(self.objects))
        B.bulk_insert(self.db.current_session(), table_of(Object), objects)
        self.db.execute("VACUUM ANALYZE object")
        log(f"dbp load: {self.rows:,} detection rows to a CSV file ...")
        fill(self.db, self.rows, self.objects)
        export(self.dsn, self.path)
        self.reset()

    def close(self) -> None:
        self.db.close()
        self.path.unlink(missing_ok=True)
        if self.name:
            drop_database(self.base, self.name)

    def reset(self, _rep: int = 0) -> None:
        """Empty the detection table and flush the dirty buffers (untimed)."""
        self.db.execute("TRUNCATE detection CASCADE")
        self.db.execute("CHECKPOINT")

    def _check(self, label: str) -> None:
        count = self.db.execute("SELECT count(*) FROM detection")[0][0]
        if count != self.rows:
            raise RuntimeError(f"{label} stored {count:,} rows of {self.rows:,}")

    def psql(self, _rep: int) -> dict[str, Timing]:
        argv = psql_copy_argv(self.dsn, self.path)
        proc, secs = timed(lambda: subprocess.run(argv, capture_output=True, text=True))
        if proc.returncode != 0:
            raise RuntimeError(f"psql \\copy failed: {proc.stderr.strip()}")
        self._check("psql \\copy")
        return {"load.psql": (self.rows, secs)}

    def dbp(self, jobs: int) -> Callable[[int], dict[str, Timing]]:
        from dbplugins._load.files import load_into

        table = table_of(Detection)

        def load() -> tuple[int, int]:
            with contextlib.redirect_stdout(io.StringIO()):  # the command's summary line: not the report's
                return load_into(self.db, table, str(self.path), "csv", "ignore", silent=True, jobs=jobs)

        def run(_rep: int) -> dict[str, Timing]:
            (read, written), secs = timed(load)
            if (read, written) != (self.rows, self.rows):
                raise RuntimeError(f"dbp load --jobs {jobs}: {read:,} read, {written:,} written")
            self._check(f"dbp load --jobs {jobs}")
            return {f"load.jobs{jobs}": (self.rows, secs)}

        return run

    def cases(self) -> list[Case]:
        """psql, then one job, then two; no warm-up (each load reads the whole file: nothing stays cold)."""
        return [
            Case("psql \\copy of the CSV", self.psql, self.reset, warm_up=False),
            Case("dbp load", self.dbp(1), self.reset, warm_up=False),
            Case("dbp load --jobs 2", self.dbp(2), self.reset, warm_up=False),
        ]

    def rss(self, jobs: int = 2) -> dict[str, Any]:
        """Peak RSS growth of ``dbp load --jobs`` of the same file: ``{"rows", "jobs", "growth_kib",
        "bytes"}``."""
        self.reset()
        figures = peak_rss_growth(self.dsn, self.path, jobs)
        self.reset()
        return {
            "rows": figures["rows"],
            "jobs": jobs,
            "growth_kib": figures["peak_kib"] - figures["before_kib"],
            "bytes": self.path.stat().st_size,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--rss-rows", type=int, default=0, help="also measure the peak RSS growth for this many rows"
    )
    parser.add_argument("--no-python-path", action="store_true", help="skip the Python path (slow)")
    args = parser.parse_args()

    base, name, dsn = scratch_database("dbp_bench_load")
    psql = str(_bin_dir() / "psql")
    tmp = Path(tempfile.mkdtemp(prefix="dbp_bench_load_"))
    try:
        db = SQLConnection()
        db.connect(dsn=dsn, min_size=1, max_size=2)
        objects = ({"oid": f"ZTF20obj{i:06d}"} for i in range(args.objects))
        B.bulk_insert(db.current_session(), table_of(Object), objects)
        db.execute("VACUUM ANALYZE object")
        path = tmp / "detections.csv"
        fill(db, args.rows, args.objects)
        export(dsn, path)
        size = path.stat().st_size
        print(f"{args.rows:,} detection rows, {size / 2**20:.0f} MiB of CSV; psql {psql}", flush=True)

        from dbplugins._load.files import load_into

        table = table_of(Detection)

        def ours(on_conflict: str) -> Callable[[], int]:
            def run() -> int:
                read, written = load_into(db, table, str(path), "csv", on_conflict, silent=True)
                assert written == args.rows, (read, written)
                return written

            return run

        def python_path() -> int:
            os.environ["DBP_LOAD_FAST"] = "0"
            try:
                return ours("ignore")()
            finally:
                del os.environ["DBP_LOAD_FAST"]

        def psql_copy() -> int:
            subprocess.run(psql_copy_argv(dsn, path), check=True)
            return args.rows

        def jobs(n: int) -> Callable[[], int]:
            def run() -> int:
                read, written = load_into(db, table, str(path), "csv", "ignore", silent=True, jobs=n)
                assert written == args.rows, (read, written)
                return int(written)

            return run

        def cli() -> int:
            subprocess.run(
                [sys.executable, "-m", "dbplugins.cli", "load", "detection", str(path)]
                + ["--dsn", dsn, "--silent"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            return args.rows

        methods: dict[str, Callable[[], int]] = {
            "psql \\copy": psql_copy,
            "dbp load (in-process, ignore)": ours("ignore"),
            "dbp load (in-process, error)": ours("error"),
            "dbp load --jobs 2 (in-process)": jobs(2),
            "dbp load (CLI, ignore)": cli,
        }
        if not args.no_python_path:
            methods["Python path (DBP_LOAD_FAST=0)"] = python_path
        times: dict[str, list[float]] = {m: [] for m in methods}
        cpu: dict[str, list[float]] = {m: [] for m in methods}  # client CPU (psql and the CLI: the child's)
        for round_ in range(args.repeat):
            order = list(methods.items())
            if round_ % 2:
                order.reverse()
            for label, fn in order:
                db.execute("TRUNCATE detection CASCADE")
                db.execute("CHECKPOINT")
                c0 = time.process_time() + _children_cpu()
                t0 = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - t0)
                cpu[label].append(time.process_time() + _children_cpu() - c0)
                count = db.execute("SELECT count(*) FROM detection")[0][0]
                assert count == args.rows, (label, count)
        ref = times["psql \\copy"]
        print(
            f"  {'method':34s} {'best rows/s':>12s} {'median':>9s}  {'ratio to psql per round':>24s}"
            f"  {'client CPU s':>12s}"
        )
        for label, ts in times.items():
            ratios = [r / t for r, t in zip(ref, ts, strict=True)]
            print(
                f"  {label:34s} {args.rows / min(ts):12,.0f} {args.rows / statistics.median(ts):9,.0f}"
                f"  {statistics.median(ratios):11.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
                f"  {statistics.median(cpu[label]):12.2f}"
            )
        print("  (ratio: psql's time over the method's, per round, median and range; best / median rows/s)")

        if args.rss_rows:
            big = tmp / "detections_rss.csv"
            fill(db, args.rss_rows, args.objects)
            export(dsn, big)
            db.execute("TRUNCATE detection CASCADE")
            figures = peak_rss_growth(dsn, big, 1)
            growth = (figures["peak_kib"] - figures["before_kib"]) / 1024
            print(
                f"  peak RSS growth of dbp load, {figures['rows']:,} rows "
                f"({big.stat().st_size / 2**20:.0f} MiB): "
                f"{growth:.1f} MiB (ru_maxrss {figures['ru_maxrss_kib'] / 1024:.0f} MiB)"
            )
        db.close()
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
        drop_database(base, name)


if __name__ == "__main__":
    main()
