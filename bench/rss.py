"""Peak memory of ``bulk_insert`` fed by a generator, measured in a process of its own.

    python -m bench.rss --dsn DSN --rows 1000000

The rows are detection dicts made one at a time from a few templates (a new ``candid`` each), so the input
costs no memory: whatever the resident set grows by during the call is the library's. The growth is the peak
resident set during the load (sampled every 5 ms, and the kernel's high-water mark ``VmHWM`` when the load
raised it) minus the resident set just before. The objects the rows refer to must exist. Prints one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from dbplugins import SQLConnection
from dbplugins.models import Detection


def rss_kib() -> int:
    """The current resident set size of this process, in KiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def max_rss_kib() -> int:
    """The peak resident set size of this process so far, in KiB.

    ``VmHWM``, not ``getrusage().ru_maxrss``: after fork + exec, Linux carries the parent's high-water mark
    into the child's ``ru_maxrss``, so a child of a large process (pytest after many tests) reports the
    parent's peak.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


class PeakSampler:
    """Samples the resident set in a background thread; ``peak`` is the largest seen, in KiB."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = rss_kib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib())
            time.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib())


def generate(templates: list[dict[str, Any]], n: int, first_candid: int) -> Iterator[dict[str, Any]]:
    """``n`` detection rows: the templates in turn, each with a fresh ``candid``."""
    k = len(templates)
    for i in range(n):
        row = dict(templates[i % k])
        row["candid"] = first_candid + i
        yield row


def measure(dsn: str, templates: list[dict[str, Any]], n: int, first_candid: int) -> dict[str, Any]:
    """Load ``n`` generated rows with ``bulk_insert``; return rows, seconds and the memory figures."""
    db = SQLConnection()
    db.connect(dsn=dsn, min_size=1, max_size=2)
    try:
        db.query(Detection).bulk_insert(
            generate(templates, 10, first_candid - 100), on_conflict="ignore"
        )  # warm
        baseline, peak_before = rss_kib(), max_rss_kib()
        with PeakSampler() as sampler:
            start = time.perf_counter()
            inserted = db.query(Detection).bulk_insert(generate(templates, n, first_candid))
            seconds = time.perf_counter() - start
        peak_after = max_rss_kib()
    finally:
        db.close()
    peak = max(sampler.peak, peak_after if peak_after > peak_before else 0)
    return {
        "rows": n,
        "inserted": inserted,
        "seconds": seconds,
        "baseline_kib": baseline,
        "peak_kib": peak,
        "growth_kib": peak - baseline,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Peak RSS of a generator-fed bulk_insert.")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--templates", required=True, help="JSON file: a list of detection rows")
    parser.add_argument("--first-candid", type=int, default=9_000_000_000_000_000_000)
    args = parser.parse_args(argv)
    with open(args.templates) as fh:
        templates = json.load(fh)
    print(json.dumps(measure(args.dsn, templates, args.rows, args.first_candid)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
