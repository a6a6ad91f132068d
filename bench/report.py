"""RESULTS.md: the PASS/FAIL line of each performance target, the headline ratios, the environment, the method
and tables.

Pure formatting: :mod:`bench.run` measures and hands the figures over.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .run import Sizes

# Citus metric -> the single server's metric of the same operation on the same rows, in the same repetition.
PAIRS = {
    "citus.bulk": "bulk.ignore",
    "citus.redelivered": "bulk.redelivered",
    "citus.many.new": "many.new",
    "citus.many.existing": "many.existing",
}

# metric key -> (label, unit). Keys name what is measured; the tables below pick them by key.
METRICS: dict[str, tuple[str, str]] = {
    "bulk.ignore": ('dbplugins `bulk_insert(on_conflict="ignore")`', "rows/s"),
    "bulk.error": ('dbplugins `bulk_insert(on_conflict="error")`', "rows/s"),
    "bulk.update": ('dbplugins `bulk_insert(on_conflict="update")`', "rows/s"),
    "bulk.parallel2": ("dbplugins `bulk_insert(parallel=2)`: two COPY streams", "rows/s"),
    "bulk.copy": ("psycopg binary COPY (`set_types`), hand-written", "rows/s"),
    "bulk.executemany": ("psycopg `executemany` INSERT, hand-written", "rows/s"),
    "bulk.psql": ("`psql \\copy` of a CSV file", "rows/s"),
    "bulk.redelivered": ('dbplugins `bulk_insert(on_conflict="ignore")`, every row already stored', "rows/s"),
    "bulk.small": ("dbplugins `bulk_insert` (default mode), the original's rows", "rows/s"),
    "orig.bulk": ("original db-plugins 4.2.7 `bulk_insert`", "rows/s"),
    "orig.new": ("original `get_or_create`, new keys", "calls/s"),
    "orig.existing": ("original `get_or_create`, existing keys", "calls/s"),
    "goc.new": ("dbplugins `get_or_create`, new keys", "calls/s"),
    "goc.existing": ("dbplugins `get_or_create`, existing keys", "calls/s"),
    "many.new": ("dbplugins `get_or_create_many` (batches of 1,000), new keys", "keys/s"),
    "many.existing": ("dbplugins `get_or_create_many` (batches of 1,000), existing keys", "keys/s"),
    "hand.new": ("hand-written `INSERT ... ON CONFLICT` loop, new keys", "calls/s"),
    "hand.existing": ("hand-written `INSERT ... ON CONFLICT` loop, existing keys", "calls/s"),
    "handmany.new": ("hand-written `INSERT ... ON CONFLICT`, batched by 1,000, new keys", "keys/s"),
    "handmany.existing": ("hand-written `INSERT ... ON CONFLICT`, batched by 1,000, existing keys", "keys/s"),
    "read.each": ("dbplugins `db.query(Detection).filter(Detection.oid == oid).all()`", "rows/s"),
    "read.each.hand": (
        "psycopg, one cursor, `class_row(Detection)` (`__init__` per row), hand-written",
        "rows/s",
    ),
    "read.each.orig": ("original db-plugins 4.2.7 ORM query", "rows/s"),
    "read.in": ("dbplugins `db.query(Detection).filter(Detection.oid.in_(oids)).all()`", "rows/s"),
    "read.in.hand": ("psycopg `oid = ANY(%s)`, `class_row(Detection)`, hand-written", "rows/s"),
    "read.in.orig": ("original db-plugins 4.2.7 ORM query, `in_`", "rows/s"),
    "read.df": ("dbplugins `filter(Detection.oid.in_(oids)).to_dataframe()`", "rows/s"),
    "read.tuples": ("psycopg binary tuples, all columns, hand-written", "rows/s"),
    "read.proj": (
        "dbplugins `db.query(Detection.oid, Detection.mjd, Detection.magpsf, Detection.sigmapsf)`",
        "rows/s",
    ),
    "read.proj.tuples": ("psycopg binary tuples of the same 4 columns, hand-written", "rows/s"),
    "load.psql": ("`psql \\copy` of the CSV file", "rows/s"),
    "load.jobs1": ("`dbp load` (in-process), one COPY stream", "rows/s"),
    "load.jobs2": ("`dbp load --jobs 2` (in-process), two COPY streams", "rows/s"),
    "citus.bulk": ('`bulk_insert(on_conflict="ignore")`, new rows', "rows/s"),
    "citus.redelivered": ('`bulk_insert(on_conflict="ignore")`, every row already stored', "rows/s"),
    "citus.many.new": ("`get_or_create_many` (batches of 1,000), new keys", "keys/s"),
    "citus.many.existing": ("`get_or_create_many` (batches of 1,000), existing keys", "keys/s"),
}


@dataclass
class Target:
    """One performance target and whether it holds."""

    text: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"- **{'PASS' if self.passed else 'FAIL'}** {self.text}: {self.detail}"


def median(rates: dict[str, list[float]], key: str) -> float:
    return statistics.median(rates[key]) if rates.get(key) else float("nan")


def ratio(rates: dict[str, list[float]], key: str, baseline: str) -> float:
    """``key`` over ``baseline``: the median of the per-repetition ratios.

    Both are measured in every repetition, minutes apart at most, so pairing them cancels most of the drift of
    a shared machine (other processes' load hits both sides of a pair alike).
    """
    ours, theirs = rates.get(key, []), rates.get(baseline, [])
    if not ours or not theirs:
        return float("nan")
    if len(ours) != len(theirs):
        return statistics.median(ours) / statistics.median(theirs)
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


def ratio_target(
    text: str, rates: dict[str, list[float]], key: str, baseline: str, at_least: float, unit: str
) -> Target:
    """A ``key >= at_least x baseline`` target."""
    r = ratio(rates, key, baseline)
    return Target(
        text,
        r >= at_least,
        f"{r:.2f}× (medians {median(rates, key):,.0f} vs {median(rates, baseline):,.0f} {unit})",
    )


def targets(
    rates: dict[str, list[float]],
    trips: dict[str, tuple[int, int]],
    rss: dict[str, Any],
    migrations: dict[str, Any],
    load: dict[str, Any] | None = None,
) -> list[Target]:
    """The PASS/FAIL lines of the performance targets (``dbp load``'s when ``load``, its peak RSS figures,
    says the section ran)."""
    growth_mb = rss["growth_kib"] / 1024
    mig = migrations
    slowest = max(mig[k]["seconds"] for k in ("full", "extra", "empty"))
    queries = (mig["full"]["statements"], mig["extra"]["statements"])
    return [
        ratio_target(
            "`bulk_insert` (default mode, no duplicates) ≥ 0.85× hand-written psycopg binary COPY",
            rates, "bulk.ignore", "bulk.copy", 0.85, "rows/s",
        ),
        ratio_target(
            "`bulk_insert` ≥ 15× the original's `bulk_insert` (same 20,000 rows)",
            rates, "bulk.small", "orig.bulk", 15, "rows/s",
        ),
        Target(
            "`bulk_insert` of 1,000,000 rows from a generator: peak RSS grows by < 100 MB",
            growth_mb < 100,
            f"{growth_mb:.1f} MB ({rss['rows']:,} rows in {rss['seconds']:.1f} s)",
        ),
        Target(
            "`get_or_create`: one round trip for a new key",
            trips["new"][0] == 1,
            f"{trips['new'][0]} round trip(s), {trips['new'][1]} statement(s); existing key: "
            f"{trips['existing'][0]} round trip(s)",
        ),
        ratio_target(
            "`get_or_create` ≥ 5× the original's calls/s, new keys",
            rates, "goc.new", "orig.new", 5, "calls/s",
        ),
        ratio_target(
            "`get_or_create` ≥ 2.5× the original's calls/s, existing keys",
            rates, "goc.existing", "orig.existing", 2.5, "calls/s",
        ),
        ratio_target(
            "`get_or_create_many` (batches of 1,000) ≥ 40× the original's per-call rate, new keys",
            rates, "many.new", "orig.new", 40, "keys/s vs calls/s",
        ),
        Target(
            "`make_migrations` on the full schema < 1 s, a constant number of catalog queries",
            slowest < 1.0 and queries[0] == queries[1],
            f"{mig['full']['seconds'] * 1000:.0f} ms with the schema in place, "
            f"{mig['empty']['seconds'] * 1000:.0f} ms on an empty database ({mig['empty']['operations']} "
            f"operations); {queries[0]} catalog queries for {mig['full']['tables']} tables, {queries[1]} for "
            f"{mig['extra']['tables']}, "
            f"{mig['empty']['statements']} on an empty database",
        ),
        ratio_target(
            "`bulk_insert(parallel=2)` ≥ 1.3× hand-written single-stream psycopg binary COPY",
            rates, "bulk.parallel2", "bulk.copy", 1.3, "rows/s",
        ),
        *(load_targets(rates, load) if load else []),
        *read_targets(rates),
    ]  # fmt: skip


def load_targets(rates: dict[str, list[float]], load: dict[str, Any]) -> list[Target]:
    """Issue 16's ``dbp load`` targets: against ``psql \\copy`` of the same file, and its peak RSS growth."""
    rows = load["rows"]
    growth_mb = load["growth_kib"] / 1024
    return [
        ratio_target(
            f"`dbp load` of a {rows:,}-row detection CSV ≥ 0.95× `psql \\copy` of the same file (one job)",
            rates, "load.jobs1", "load.psql", 0.95, "rows/s",
        ),
        ratio_target(
            f"`dbp load --jobs 2` of the same {rows:,}-row CSV ≥ 1.3× `psql \\copy`",
            rates, "load.jobs2", "load.psql", 1.3, "rows/s",
        ),
        Target(
            f"`dbp load --jobs {load['jobs']}` of the {rows:,}-row CSV: peak RSS grows by < 150 MB",
            growth_mb < 150,
            f"{growth_mb:.1f} MB ({load['bytes'] / 2**20:.0f} MiB file)",
        ),
    ]  # fmt: skip


# Issue 14's read targets: (text, metric, baseline, at least).
READ_TARGETS = [
    ("light curves, one query per object: ≥ 1.3× hand-written psycopg building each row with `__init__`",
     "read.each", "read.each.hand", 1.3),
    ("light curves, all objects by `in_`: ≥ 1.3× hand-written psycopg building each row with `__init__`",
     "read.in", "read.in.hand", 1.3),
    ("light curves, one query per object: ≥ 2.5× the original's ORM query",
     "read.each", "read.each.orig", 2.5),
    ("light curves, all objects by `in_`: ≥ 2.5× the original's ORM query", "read.in", "read.in.orig", 2.5),
    ("`to_dataframe()` ≥ 0.8× psycopg binary tuples of the same columns", "read.df", "read.tuples", 0.8),
    ("a column projection `db.query(M.a, M.b, ...)` ≥ 0.8× psycopg binary tuples of the same columns",
     "read.proj", "read.proj.tuples", 0.8),
]  # fmt: skip


def read_targets(rates: dict[str, list[float]]) -> list[Target]:
    """The read targets; the ``to_dataframe()`` one only when it was measured (pandas installed)."""
    return [
        ratio_target(text, rates, key, base, at_least, "rows/s")
        for text, key, base, at_least in READ_TARGETS
        if key != "read.df" or "read.df" in rates
    ]


def citus_headline(rates: dict[str, list[float]], citus: dict[str, Any]) -> str:
    """The Citus section's line: the ratios, no target, or why it was skipped."""
    if "skipped" in citus:
        return f"- Citus: section skipped: {citus['skipped']}."
    r = lambda key: ratio(rates, key, PAIRS[key])  # noqa: E731
    return (
        f"- Citus (a local coordinator + {citus['workers']} workers, Citus {citus['version']}, on the same "
        f"{citus['cores']} cores as the single server): `bulk_insert` {r('citus.bulk'):.2f}× the single "
        f"server, re-delivered {r('citus.redelivered'):.2f}×; `get_or_create_many` "
        f"{r('citus.many.new'):.2f}× new keys, {r('citus.many.existing'):.2f}× existing. No target: three "
        f"servers on {citus['cores']} cores share the same CPUs and pay the coordinator's hop and "
        "coordination; what a cluster buys is room (each worker its own cores and disks), not per-call speed "
        "on one machine (docs/scaling.md)."
    )


def citus_method(sizes: Sizes, citus: dict[str, Any]) -> str:
    if "skipped" in citus:
        return f"- Citus: skipped ({citus['skipped']})."
    return (
        f"- Citus (`bench/citus.py`): a fresh local coordinator + {citus['workers']} workers "
        "(`dbplugins.citus.LocalCluster` on this machine, reached over TCP on loopback with a password where "
        "the single server may use a Unix socket), the built-in schema distributed by "
        "`create_db(distributed=True)`, the bench's objects loaded. Per repetition: the detection table "
        "truncated and every node checkpointed (untimed), then `bulk_insert` of the very rows of the single "
        f"server's `bulk_insert` ({sizes.rows:,}), a checkpoint, the same rows again (re-delivered); and "
        f"`get_or_create_many` of {sizes.citus_keys:,} fresh keys in batches of {sizes.batch:,}, new then "
        "existing. Each rate is set beside the single server's rate of the same operation in the same "
        f"repetition (its `get_or_create_many` runs {sizes.many_keys:,} keys in the same batches: the rate "
        "is per key)."
    )


def citus_table(rates: dict[str, list[float]], citus: dict[str, Any]) -> list[str]:
    """The single server and the cluster side by side, with the cluster/single ratio."""
    if "skipped" in citus:
        return []
    lines = [
        f"### Citus: a local coordinator + {citus['workers']} workers beside the single server "
        "(ratio cluster / single)",
        "",
        "| operation | single server | local Citus cluster | cluster / single |",
        "|---|---:|---:|---:|",
    ]
    for key, single in PAIRS.items():
        label, unit = METRICS[key]
        lines.append(
            f"| {label} | {median(rates, single):,.0f} {unit} | {median(rates, key):,.0f} {unit} | "
            f"{ratio(rates, key, single):.2f}× |"
        )
    return [*lines, ""]


def _fmt_rate(values: list[float]) -> str:
    return " / ".join(f"{v:,.0f}" for v in values)


def rate_table(rates: dict[str, list[float]], keys: Sequence[str], baseline: str | None) -> list[str]:
    """A Markdown table of the metrics ``keys``: median, every repetition, ratio to ``baseline``."""
    head = "| method | median | runs | " + ("ratio |" if baseline else "")
    lines = [head, "|---|---:|---|" + ("---:|" if baseline else "")]
    for key in keys:
        if key not in rates:
            continue
        label, unit = METRICS[key]
        med = median(rates, key)
        row = f"| {label} | {med:,.0f} {unit} | {_fmt_rate(rates[key])} |"
        if baseline:
            row += f" {ratio(rates, key, baseline):.2f}× |"
        lines.append(row)
    return lines


def report(
    env: dict[str, str],
    sizes: Sizes,
    reps: int,
    rates: dict[str, list[float]],
    trips: dict[str, tuple[int, int]],
    rss: dict[str, Any],
    migrations: dict[str, Any],
    total_seconds: float,
    original_versions: dict[str, str] | None,
    *,
    database: str,
    citus: dict[str, Any] | None = None,
    load: dict[str, Any] | None = None,
) -> str:
    """RESULTS.md. ``citus``: ``{"skipped": reason}``, or the local cluster's ``version``, ``workers`` and
    ``cores`` when its section ran; ``load``: the ``dbp load`` section's peak RSS figures when it ran."""
    citus = citus or {"skipped": "not run"}
    results = targets(rates, trips, rss, migrations, load)
    passed = sum(t.passed for t in results)
    r = lambda key, base: ratio(rates, key, base)  # noqa: E731
    out = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`python -m bench.run`) in {total_seconds / 60:.1f} minutes. "
        f"**{passed} of {len(results)} targets pass.** What the profiles showed and what changed: "
        "[PROFILE.md](PROFILE.md).",
        "",
        "## Targets",
        "",
        *(t.line() for t in results),
        *(
            []
            if "read.df" in rates
            else [
                "- `to_dataframe()` ≥ 0.8× psycopg binary tuples: not measured, pandas is not installed "
                "(the `pandas` extra)."
            ]
        ),
        "",
        "## Headline ratios",
        "",
        f"- `bulk_insert`: {r('bulk.ignore', 'bulk.copy'):.2f}× hand-written binary COPY, "
        f"{r('bulk.ignore', 'bulk.psql'):.2f}× `psql \\copy`, {r('bulk.small', 'orig.bulk'):.1f}× the "
        f"original db-plugins; with `parallel=2`, {r('bulk.parallel2', 'bulk.copy'):.2f}× the hand-written "
        "COPY.",
        f"- `get_or_create`: {r('goc.new', 'orig.new'):.1f}× the original for new keys, "
        f"{r('goc.existing', 'orig.existing'):.1f}× for existing keys; "
        f"{r('goc.new', 'hand.new'):.2f}× / {r('goc.existing', 'hand.existing'):.2f}× a hand-written "
        "`INSERT ... ON CONFLICT` loop.",
        f"- `get_or_create_many` (×1,000): {r('many.new', 'orig.new'):.0f}× the original's per-call rate "
        f"for new keys; {r('many.new', 'handmany.new'):.2f}× / "
        f"{r('many.existing', 'handmany.existing'):.2f}× hand-written batches.",
        f"- Light-curve reads: {r('read.each', 'read.each.hand'):.2f}× (one query per object) and "
        f"{r('read.in', 'read.in.hand'):.2f}× (`in_`) hand-written psycopg with `__init__` per row; "
        f"{r('read.each', 'read.each.orig'):.1f}× / {r('read.in', 'read.in.orig'):.1f}× the original; "
        + (f"`to_dataframe()` {r('read.df', 'read.tuples'):.2f}×, " if "read.df" in rates else "")
        + f"projection {r('read.proj', 'read.proj.tuples'):.2f}× psycopg binary tuples.",
        citus_headline(rates, citus),
        *(
            [
                f"- `dbp load` of a {load['rows']:,}-row detection CSV: {r('load.jobs1', 'load.psql'):.2f}× "
                f"`psql \\copy` of the same file with one job, {r('load.jobs2', 'load.psql'):.2f}× with "
                f"`--jobs 2` ({r('load.jobs2', 'load.jobs1'):.2f}× one job); peak RSS growth "
                f"{load['growth_kib'] / 1024:.1f} MB."
            ]
            if load
            else []
        ),
        "",
        "## Environment",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in env.items()),
    ]
    if original_versions:
        out.append(
            f"| original library | db-plugins {original_versions.get('db-plugins')}, SQLAlchemy "
            f"{original_versions.get('sqlalchemy')}, psycopg2-binary, Python "
            f"{original_versions.get('python')} |"
        )
    out += [
        "",
        "## Method",
        "",
        f"- One fresh database (`{database}`, the built-in schema from `sql/schema`: the 30-column "
        "`detection` table with its primary key (candid, oid), foreign key to `object` and hash index on "
        "oid).",
        f"- Data: the first {sizes.rows:,} distinct detection rows of the synthetic night "
        "(`bench/alerts.py`, values in the ranges of the real ZTF packets), as dicts; their objects are "
        "loaded first (untimed).",
        f"- Rates are the **median of {reps} repetitions**, after one untimed warm-up repetition; the runs "
        "column lists each repetition in order. "
        "Repetitions alternate the order of the cases (forward, reverse, forward, ...). Every **ratio** "
        "(targets, headline, tables) is the median of the per-repetition ratios: both sides of a ratio run "
        "in the same repetition, the compared cases next to each other, so load from other processes on a "
        "shared machine hits both alike.",
        "- Bulk loads start from an empty detection table (TRUNCATE + CHECKPOINT before each, untimed) and "
        "include the commit. psycopg COPY and executemany use one connection in a transaction; the COPY "
        "turns each dict into a tuple with `operator.itemgetter`, as a hand-written loader does. `psql "
        "\\copy` is timed around the whole `psql` process (its start-up and connection included); writing "
        "the CSV file is not timed. The per-key cases (`get_or_create`, `get_or_create_many` and their "
        "hand-written versions) start after a CHECKPOINT too (untimed), as the original's do.",
        f"- The original db-plugins runs in its own virtualenv (`bench/.venv-original`), one subprocess per "
        f"repetition: `bulk_insert` of the first {sizes.original_rows:,} rows into an empty detection table, "
        f"then `get_or_create` on {sizes.original_keys:,} new object keys and again on the same (now "
        "existing) keys, timed inside the subprocess (start-up excluded). Our `bulk_insert` is timed on the "
        "same rows.",
        f"- `get_or_create`: {sizes.keys:,} new object keys one call each (all columns of an object row as "
        f"kwargs), then the same keys again (existing). `get_or_create_many`: {sizes.many_keys:,} keys in "
        f"batches of {sizes.batch:,}. Keys are fresh in every repetition. The hand-written versions run "
        "`INSERT ... ON CONFLICT (oid) DO NOTHING RETURNING *`, then `SELECT` when it returned nothing, in "
        "autocommit; batched: one `INSERT ... SELECT FROM unnest(...)` and one `SELECT ... = ANY(...)` per "
        "batch.",
        f"- Light-curve reads (`bench/reads.py`): a database of their own (`{database}_reads`) holds "  # noqa: S608 - Markdown, not SQL
        f"{sizes.read_objects:,} objects with {sizes.read_per_object} detections each (values of the "
        "synthetic night's rows, fresh keys), loaded once and `VACUUM ANALYZE`d. Each read is timed after an "
        "untimed `gc.collect()` and must return every stored row. Per object: one query per oid, in turn; "
        "`in_`: one query for all the oids. Hand-written: one psycopg cursor with "
        "`row_factory=class_row(Detection)` (the dataclass `__init__` per row), `fetchall()`, the same "
        "SELECT (`oid = %s`, `oid = ANY(%s)`); binary tuples: `cursor(binary=True)`, `fetchall()`, no "
        "instances. The `= ANY(%s)` reads run unprepared (`prepare=False`), as dbplugins runs statements "
        "with an array parameter: prepared, they get PostgreSQL's generic plan from their eleventh "
        "execution, which compares each row with every oid (PROFILE.md). The original: its ORM query "
        "(`db.query(Detection).filter(...).all()`) in its own "
        "virtualenv, one subprocess per repetition, each pass from an empty identity map, timed inside the "
        "subprocess.",
        citus_method(sizes, citus),
        *(
            [
                f"- `dbp load` (`bench/load_csv.py`, a database of its own, `{database}_load_*`): "
                f"{load['rows']:,} synthetic detection rows exported by the server as CSV "
                f"(`COPY detection TO STDOUT (FORMAT csv, HEADER)`, what `\\copy ... to` writes, "
                f"{load['bytes'] / 2**20:.0f} MiB), loaded into an empty detection table (TRUNCATE + "
                "CHECKPOINT before each, untimed; the commit included) by `psql \\copy detection FROM "
                "file (FORMAT csv, HEADER)` (timed around the psql process), by `dbp load` and by `dbp load "
                "--jobs 2` (timed in-process around `load_into`, what the command runs once its arguments "
                "are parsed: the command's Python start-up, about 0.4 s here, is not in the figure). "
                f"{len(rates.get('load.psql', []))} repetitions, no warm-up, alternating order. Peak RSS: "
                f"`dbp load --jobs {load['jobs']}` of the same file in a process of its own (VmHWM minus the "
                "resident set before the load)."
            ]
            if load
            else []
        ),
        "- Round trips: a libpq protocol trace (`PQtrace`) on a pool of one connection, after a warm-up "
        "call; a round trip is a flight of client messages followed by the server's answer.",
        f"- Memory: `python -m bench.rss` in its own process loads {rss['rows']:,} rows from a generator "
        "(dicts made one at a time); growth = peak resident set during the call (sampled every 5 ms, and "
        "`ru_maxrss`) minus the resident set before it.",
        "- `make_migrations`: the work of the command in-process (models' schema, introspection, canonical "
        "forms, diff, rendered SQL; nothing written), median of the repetitions, against the database with "
        "the full schema (no changes), the full schema plus "
        f"{migrations['extra']['tables'] - migrations['full']['tables']} unknown tables (to drop) and an "
        "empty database (all tables to create). Catalog queries are the statements sent; constant means the "
        "same count whatever the number of tables.",
        "",
        "## Results",
        "",
        f"### `bulk_insert` of {sizes.rows:,} detection rows (ratio to hand-written binary COPY)",
        "",
        *rate_table(
            rates,
            ["bulk.ignore", "bulk.error", "bulk.update", "bulk.parallel2", "bulk.copy", "bulk.executemany",
             "bulk.psql", "bulk.redelivered"],
            "bulk.copy",
        ),
        "",
        f"### The original db-plugins 4.2.7: `bulk_insert` of {sizes.original_rows:,} rows "
        "(ratio to the original)",
        "",
        *rate_table(rates, ["bulk.small", "orig.bulk"], "orig.bulk"),
        "",
        "### `get_or_create`, new keys (ratio to the original)",
        "",
        *rate_table(rates, ["goc.new", "hand.new", "many.new", "handmany.new", "orig.new"], "orig.new"),
        "",
        "### `get_or_create`, existing keys (ratio to the original)",
        "",
        *rate_table(
            rates, ["goc.existing", "hand.existing", "many.existing", "handmany.existing", "orig.existing"],
            "orig.existing",
        ),
        "",
        f"### Light-curve reads: {sizes.read_objects:,} objects × {sizes.read_per_object} detections "
        "(ratio to hand-written psycopg with `__init__`)",
        "",
        "One query per object:",
        "",
        *rate_table(rates, ["read.each", "read.each.hand", "read.each.orig"], "read.each.hand"),
        "",
        "All objects in one query (`in_` / `= ANY`):",
        "",
        *rate_table(rates, ["read.in", "read.in.hand", "read.in.orig"], "read.in.hand"),
        "",
        "### Reads without instances, all objects in one query (ratio to psycopg binary tuples of the same "
        "columns)",
        "",
        (
            "All columns:"
            if "read.df" in rates
            else "All columns: `to_dataframe()` not measured (pandas is not installed)."
        ),
        "",
        *rate_table(rates, ["read.df", "read.tuples"], "read.tuples"),
        "",
        "Four columns:",
        "",
        *rate_table(rates, ["read.proj", "read.proj.tuples"], "read.proj.tuples"),
        "",
        *citus_table(rates, citus),
        *(
            [
                f"### `dbp load` of a {load['rows']:,}-row detection CSV (ratio to `psql \\copy`)",
                "",
                *rate_table(rates, ["load.jobs1", "load.jobs2", "load.psql"], "load.psql"),
                "",
            ]
            if load
            else []
        ),
        "### Measured once",
        "",
        f"- Round trips (statements): `get_or_create` new key {trips['new'][0]} ({trips['new'][1]}), "
        f"existing key {trips['existing'][0]} ({trips['existing'][1]}); `get_or_create_many` of 1,000 new "
        f"keys {trips['many_new'][0]} ({trips['many_new'][1]}), existing {trips['many_existing'][0]} "
        f"({trips['many_existing'][1]}).",
        f"- Generator `bulk_insert` of {rss['rows']:,} rows: {rss['rows'] / rss['seconds']:,.0f} rows/s; "
        f"resident set {rss['baseline_kib'] / 1024:.1f} MB before, peak {rss['peak_kib'] / 1024:.1f} MB, "
        f"growth {rss['growth_kib'] / 1024:.1f} MB.",
        f"- `make_migrations`: {migrations['full']['seconds'] * 1000:.0f} ms and "
        f"{migrations['full']['statements']} catalog queries with the full schema in place "
        f"({migrations['full']['operations']} operations); {migrations['extra']['seconds'] * 1000:.0f} ms "
        f"and {migrations['extra']['statements']} queries with {migrations['extra']['tables']} tables "
        f"({migrations['extra']['operations']} operations); {migrations['empty']['seconds'] * 1000:.0f} ms "
        f"and {migrations['empty']['statements']} queries on an empty database "
        f"({migrations['empty']['operations']} operations).",
        "",
    ]  # fmt: skip
    return "\n".join(out)
