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

# metric key -> (label, unit). Keys name what is measured; the tables below pick them by key.
METRICS: dict[str, tuple[str, str]] = {
    "bulk.ignore": ('dbplugins `bulk_insert(on_conflict="ignore")`', "rows/s"),
    "bulk.error": ('dbplugins `bulk_insert(on_conflict="error")`', "rows/s"),
    "bulk.update": ('dbplugins `bulk_insert(on_conflict="update")`', "rows/s"),
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
) -> list[Target]:
    """The PASS/FAIL lines of the performance targets."""
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
            rates,
            "goc.new",
            "orig.new",
            5,
            "calls/s",
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
    ]  # fmt: skip


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
) -> str:
    """RESULTS.md."""
    results = targets(rates, trips, rss, migrations)
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
        "",
        "## Headline ratios",
        "",
        f"- `bulk_insert`: {r('bulk.ignore', 'bulk.copy'):.2f}× hand-written binary COPY, "
        f"{r('bulk.ignore', 'bulk.psql'):.2f}× `psql \\copy`, {r('bulk.small', 'orig.bulk'):.1f}× the "
        "original db-plugins.",
        f"- `get_or_create`: {r('goc.new', 'orig.new'):.1f}× the original for new keys, "
        f"{r('goc.existing', 'orig.existing'):.1f}× for existing keys; "
        f"{r('goc.new', 'hand.new'):.2f}× / {r('goc.existing', 'hand.existing'):.2f}× a hand-written "
        "`INSERT ... ON CONFLICT` loop.",
        f"- `get_or_create_many` (×1,000): {r('many.new', 'orig.new'):.0f}× the original's per-call rate "
        f"for new keys; {r('many.new', 'handmany.new'):.2f}× / "
        f"{r('many.existing', 'handmany.existing'):.2f}× hand-written batches.",
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
        "column lists each repetition in order. Repetitions alternate the order of the cases (forward, "
        "reverse, forward, ...). Every **ratio** (targets, headline, tables) is the median of the "
        "per-repetition ratios: both sides of a ratio run in the same repetition, the compared cases next "
        "to each other, so load from other processes on a shared machine hits both alike.",
        "- Bulk loads start from an empty detection table (TRUNCATE + CHECKPOINT before each, untimed) and "
        "include the commit. psycopg COPY and executemany use one connection in a transaction; the COPY "
        "turns each dict into a tuple with `operator.itemgetter`, as a hand-written loader does. `psql "
        "\\copy` is timed around the whole `psql` process (its start-up and connection included); writing "
        "the CSV file is not timed.",
        "- The original db-plugins runs in its own virtualenv (`bench/.venv-original`), one subprocess per "
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
            ["bulk.ignore", "bulk.error", "bulk.update", "bulk.copy", "bulk.executemany", "bulk.psql",
             "bulk.redelivered"],
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
