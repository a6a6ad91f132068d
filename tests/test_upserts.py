"""Upserts that keep their promises (issue 13): "update" touches only the columns the input names, "ignore"
keeps the first occurrence of a key on every path, get_or_create_many writes nothing when it raises and counts
a NaN key once."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from dbplugins import ConstraintError, DbpError, SQLConnection, model
from dbplugins.cli import cli
from dbplugins.models import Object


def stored(dsn: str, columns: str = "oid, ndet, meanra") -> list[tuple[Any, ...]]:
    """Committed object rows, as another connection sees them."""
    names = sql.SQL(", ").join(sql.Identifier(c.strip()) for c in columns.split(","))
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(sql.SQL("SELECT {} FROM object ORDER BY oid").format(names)))


# -- 7. on_conflict="update" sets only the columns the input names -------------------------------------------


def test_update_leaves_the_columns_the_input_does_not_name(db: SQLConnection, dsn: str) -> None:
    """The issue's case: updating ndet of a stored row used to set meanra (and every other column) to NULL."""
    q = db.query(Object)
    q.bulk_insert([{"oid": "ZTF1", "ndet": 1, "meanra": 10.5, "meandec": -3.0}])
    assert q.bulk_insert([{"oid": "ZTF1", "ndet": 4}, {"oid": "ZTF2", "ndet": 2}], on_conflict="update") == 2
    assert stored(dsn, "oid, ndet, meanra, meandec") == [("ZTF1", 4, 10.5, -3.0), ("ZTF2", 2, None, None)]


def test_update_with_rows_naming_different_columns_sets_each_rows_own(db: SQLConnection, dsn: str) -> None:
    """Each row sets only its own keys; of several rows with one key, the last to name a column wins."""
    q = db.query(Object)
    q.bulk_insert([{"oid": o, "ndet": 1, "meanra": 1.0} for o in ("A", "B", "C")])
    rows = [
        {"oid": "A", "ndet": 2},
        {"oid": "B", "meanra": 2.0},
        {"oid": "C", "ndet": 5},
        {"oid": "C", "meanra": 5.0},
        {"oid": "C", "ndet": 6},
        {"oid": "D", "meanra": 9.0},
    ]
    assert q.bulk_insert(rows, on_conflict="update") >= 4
    assert stored(dsn) == [("A", 2, 1.0), ("B", 1, 2.0), ("C", 6, 5.0), ("D", None, 9.0)]


def test_update_from_a_generator_in_many_runs_of_column_sets(db: SQLConnection, dsn: str) -> None:
    """Alternating column sets from a generator, several per key: the result is the rows applied in order."""
    q = db.query(Object)
    q.bulk_insert({"oid": f"K{k:03d}", "ndet": 0, "meanra": 0.0} for k in range(100))
    rnd = random.Random(7)
    rows: list[dict[str, Any]] = []
    expected: dict[str, list[float | None]] = {f"K{k:03d}": [0, 0.0] for k in range(100)}
    for n in range(1_000):
        oid = f"K{rnd.randrange(120):03d}"  # some keys are new
        expected.setdefault(oid, [None, None])
        if rnd.random() < 0.5:
            rows.append({"oid": oid, "ndet": n})
            expected[oid][0] = n
        else:
            rows.append({"oid": oid, "meanra": float(n)})
            expected[oid][1] = float(n)
    q.bulk_insert(iter(rows), on_conflict="update")
    assert stored(dsn) == [(oid, *values) for oid, values in sorted(expected.items())]


def test_update_with_model_instances_sets_every_column(db: SQLConnection, dsn: str) -> None:
    """A dataclass instance names every column: its defaults (None) are written too."""
    q = db.query(Object)
    q.bulk_insert([{"oid": "A", "ndet": 1, "meanra": 1.0}])
    q.bulk_insert([Object(oid="A", ndet=3)], on_conflict="update")
    assert stored(dsn) == [("A", 3, None)]


def test_update_inside_a_transaction_rolls_back_whole(db: SQLConnection, dsn: str) -> None:
    q = db.query(Object)
    q.bulk_insert([{"oid": "A", "ndet": 1, "meanra": 1.0}])
    with pytest.raises(RuntimeError), db.transaction():
        q.bulk_insert([{"oid": "A", "ndet": 2}, {"oid": "B", "meanra": 2.0}], on_conflict="update")
        raise RuntimeError("boom")
    assert stored(dsn) == [("A", 1, 1.0)]


def test_load_cli_update_with_some_columns_keeps_the_others(
    db: SQLConnection, dsn: str, tmp_path: Path
) -> None:
    """``dbp load object f.csv --on-conflict update`` with a header ``oid,ndet`` used to wipe every other
    column."""
    db.query(Object).bulk_insert([{"oid": "ZTF1", "ndet": 1, "meanra": 10.5, "meandec": 4.5}])
    path = tmp_path / "f.csv"
    path.write_text("oid,ndet\nZTF1,4\nZTF2,2\n")
    result = CliRunner().invoke(cli, ["load", "object", str(path), "--on-conflict", "update", "--dsn", dsn])
    assert result.exit_code == 0, result.output
    assert stored(dsn, "oid, ndet, meanra, meandec") == [("ZTF1", 4, 10.5, 4.5), ("ZTF2", 2, None, None)]


# -- 8. on_conflict="ignore" keeps the first occurrence of a key, on every path ------------------------------


def _shuffled(rnd: random.Random, keys: int, copies: int) -> list[dict[str, Any]]:
    rows = [{"oid": f"K{k:04d}", "ndet": c * 10_000 + k} for k in range(keys) for c in range(copies)]
    rnd.shuffle(rows)
    return rows


def _first(rows: list[dict[str, Any]]) -> dict[str, int]:
    first: dict[str, int] = {}
    for row in rows:
        first.setdefault(row["oid"], row["ndet"])
    return first


@pytest.mark.parametrize(
    ("path", "chunk_size"),
    [
        ("duplicates within the input", None),  # the fast path's COPY fails, the replay goes through staging
        ("a key already stored", None),  # the same, for a stored key
        ("in small staging chunks", 300),  # the replay and the rest of the input in several flushes
        ("inside a transaction", 700),
    ],
)
def test_ignore_keeps_the_first_occurrence_on_every_path(
    db: SQLConnection, dsn: str, path: str, chunk_size: int | None
) -> None:
    """2,000 shuffled rows over 1,000 keys: the row kept per key is the first one given (staging ordered by
    key alone kept a later one for about half the keys)."""
    rnd = random.Random(13)
    rows = _shuffled(rnd, 1_000, 2)
    q = db.query(Object)
    expected = _first(rows)
    if path == "a key already stored":
        q.bulk_insert([{"oid": "K0500", "ndet": -1}])
        expected["K0500"] = -1
    if path == "inside a transaction":
        with db.transaction():
            q.bulk_insert(rows, chunk_size=chunk_size)
    else:
        q.bulk_insert(iter(rows), chunk_size=chunk_size)
    assert dict((oid, ndet) for oid, ndet, _ in stored(dsn)) == expected


# -- 4. get_or_create_many writes nothing when it raises -----------------------------------------------------


def test_get_or_create_many_that_raises_writes_nothing(db: SQLConnection, dsn: str) -> None:
    """The issue's case: X exists with ndet=5, so key (oid, ndet)=(X, 7) cannot be created; NEW1 (inserted by
    the same statement) used to stay committed."""
    q = db.query(Object)
    q.bulk_insert([{"oid": "X", "ndet": 5}])
    rows = [{"oid": "NEW1", "ndet": 1}, {"oid": "X", "ndet": 7}]
    with pytest.raises(
        ConstraintError, match=r"^get_or_create_many: .*'X'.*\[model 'object', row 1\]"
    ) as info:
        q.get_or_create_many(rows, key=["oid", "ndet"])
    assert info.value.row == 1 and info.value.model == "object"
    assert stored(dsn, "oid, ndet") == [("X", 5)]


def test_get_or_create_many_across_batches_writes_nothing_when_a_later_batch_raises(
    db: SQLConnection, dsn: str
) -> None:
    q = db.query(Object)
    q.bulk_insert([{"oid": "X", "ndet": 5}])
    rows = [{"oid": f"N{i}", "ndet": i} for i in range(10)] + [{"oid": "X", "ndet": 7}]
    with pytest.raises(ConstraintError, match="get_or_create_many"):
        q.get_or_create_many(rows, key=["oid", "ndet"], batch_size=3)
    assert stored(dsn, "oid, ndet") == [("X", 5)]


def test_get_or_create_many_that_raises_inside_a_block_undoes_only_itself(
    db: SQLConnection, dsn: str
) -> None:
    q = db.query(Object)
    q.bulk_insert([{"oid": "X", "ndet": 5}])
    with db.transaction():
        q.get_or_create(filter_by={"oid": "BEFORE"})
        with pytest.raises(ConstraintError):
            q.get_or_create_many([{"oid": "NEW1", "ndet": 1}, {"oid": "X", "ndet": 7}], key=["oid", "ndet"])
        q.get_or_create(filter_by={"oid": "AFTER"})
    assert [r[0] for r in stored(dsn)] == ["AFTER", "BEFORE", "X"]


def test_get_or_create_many_commits_on_return(db: SQLConnection, dsn: str) -> None:
    result = db.query(Object).get_or_create_many([{"oid": "A"}, {"oid": "B"}, {"oid": "A"}])
    assert [c for _, c in result] == [True, True, False]
    assert [r[0] for r in stored(dsn)] == ["A", "B"]
    assert not db.current_session().in_transaction


# -- 10. a NaN key is one key --------------------------------------------------------------------------------


@model("up_nan_key", primary_key=["x"])
@dataclass
class NanKey:
    x: float
    note: Optional[str] = None  # noqa: UP045 - the model annotation style of DESIGN.md §3a


@pytest.fixture
def nan_db(db: SQLConnection) -> SQLConnection:
    db.execute("CREATE TABLE up_nan_key (x double precision PRIMARY KEY, note varchar)")
    return db


def test_get_or_create_many_counts_a_nan_key_once(nan_db: SQLConnection) -> None:
    """PostgreSQL stores one row for two NaN keys (NaN = NaN there); both used to be reported created=True."""
    q = nan_db.query(NanKey)
    result = q.get_or_create_many(
        [{"x": math.nan, "note": "a"}, {"x": 1.0}, {"x": float("nan"), "note": "b"}]
    )
    assert [c for _, c in result] == [True, True, False]
    assert math.isnan(result[0][0].x) and result[2][0].note == "a"  # the first occurrence is the row
    assert nan_db.execute("SELECT count(*) FROM up_nan_key") == [(2,)]
    again = q.get_or_create_many([{"x": math.nan}, {"x": math.nan}])
    assert [c for _, c in again] == [False, False]
    assert all(r.note == "a" for r, _ in again)


def test_the_update_mode_refuses_nothing_it_used_to_accept(db: SQLConnection) -> None:
    """Unknown keys are still named (a row naming other columns starts a new segment, then the writer
    checks)."""
    q = db.query(Object)
    with pytest.raises(DbpError, match="unknown key 'nope'"):
        q.bulk_insert([{"oid": "A", "ndet": 1}, {"oid": "B", "nope": 1}], on_conflict="update")
    assert q.count() == 0
