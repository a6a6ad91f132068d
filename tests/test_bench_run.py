"""The bench harness's own logic (``bench/run.py``, ``bench/report.py``, ``bench/ingest.py``): behaviour
only."""

from __future__ import annotations

import io
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from bench.ingest import Progress
from bench.report import METRICS, targets
from bench.run import (
    Case,
    HandWritten,
    bench_data,
    count_round_trips,
    object_keys,
    run_cases,
    sqlalchemy_url,
    write_csv,
)
from dbplugins._types.schema import table_of
from dbplugins.models import Detection


def test_count_round_trips_groups_client_flights() -> None:
    trace = [
        "F\t21\tParse\t ...",
        "F\t22\tBind\t ...",
        "F\t4\tSync",
        "B\t4\tParseComplete",
        "B\t5\tReadyForQuery\t I",
        "F\t13\tQuery\t BEGIN",
        "B\t5\tReadyForQuery\t T",
    ]
    assert count_round_trips(trace) == (2, 2)
    assert count_round_trips([]) == (0, 0)


def test_sqlalchemy_url_quotes_and_keeps_unix_sockets() -> None:
    dsn = make_conninfo(
        host="/tmp/pg sock", port=5432, user="postgres", dbname="dbp_bench", password="p@ss/word"
    )
    url = sqlalchemy_url(dsn)
    assert url == "postgresql://postgres:p%40ss%2Fword@/dbp_bench?host=%2Ftmp%2Fpg%20sock&port=5432"


def test_run_cases_alternates_the_order_and_collects_rates() -> None:
    calls: list[str] = []

    def case(name: str, metric: str) -> Case:
        def run(rep: int) -> dict[str, tuple[int, float]]:
            calls.append(f"{name}{rep}")
            return {metric: (100, 0.5)}

        return Case(name, run, setup=lambda rep: calls.append(f"setup-{name}{rep}"))

    rates = run_cases([case("a", "bulk.copy"), case("b", "goc.new")], reps=3)
    assert calls == [
        "setup-a-1", "a-1", "setup-b-1", "b-1",  # the untimed warm-up
        "setup-a0", "a0", "setup-b0", "b0",
        "setup-b1", "b1", "setup-a1", "a1",
        "setup-a2", "a2", "setup-b2", "b2",
    ]  # fmt: skip
    assert rates == {"bulk.copy": [200.0] * 3, "goc.new": [200.0] * 3}
    calls.clear()
    run_cases([case("a", "bulk.copy")], reps=1, warm_up=False)
    assert calls == ["setup-a0", "a0"]


def test_bench_data_is_distinct_rows_with_their_objects() -> None:
    rows, objects = bench_data(500)
    assert len(rows) == 500 == len({(r["candid"], r["oid"]) for r in rows})
    assert {r["oid"] for r in rows} == {o["oid"] for o in objects}
    assert set(rows[0]) == set(table_of(Detection).columns)


def test_write_csv_marks_nulls_apart_from_empty_strings(tmp_path: Any) -> None:
    path = tmp_path / "rows.csv"
    write_csv(path, [{"a": 1, "b": None, "c": "x,y"}, {"a": 2.5, "b": True, "c": ""}], ["a", "b", "c"])
    assert path.read_text().splitlines() == ['1,\\N,"x,y"', "2.5,True,"]


def test_hand_written_get_or_create_creates_once(dsn: str) -> None:
    template = {"ndet": 1, "firstmjd": 60000.5, "meanra": 1.0, "meandec": 2.0, "corrected": False}
    hand = HandWritten(dsn)
    try:
        keys = object_keys(template, "T", 0, 5)
        assert [created for _, created in (hand.get_or_create(k) for k in keys[:2])] == [True, True]
        assert [created for _, created in hand.get_or_create_many(keys)] == [False, False, True, True, True]
        assert [created for _, created in hand.get_or_create_many(keys)] == [False] * 5
        row, created = hand.get_or_create(keys[4])
        assert not created and row[0] == keys[4]["oid"]
    finally:
        hand.close()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM object").fetchone() == (5,)


def test_progress_draws_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    quiet = io.StringIO()
    bar = Progress(10, stream=quiet)
    bar.advance(10)
    bar.close()
    assert quiet.getvalue() == ""
    tty = Tty()
    bar = Progress(10, stream=tty)
    bar.advance(4)
    bar.advance(6)
    bar.close()
    out = tty.getvalue()
    assert "10/10 alerts" in out and out.endswith("\n") and out.count("100%") == 1


def test_targets_pass_and_fail_on_the_design_thresholds() -> None:
    rates = {key: [1000.0] for key in METRICS}
    rates["bulk.ignore"] = [900.0]  # 0.90x COPY: pass
    rates["bulk.small"] = [14_000.0]  # 14x the original: fail
    trips = {"new": (1, 1), "existing": (2, 2), "many_new": (1, 1), "many_existing": (2, 2)}
    rss = {"rows": 1_000_000, "seconds": 10.0, "growth_kib": 20 * 1024, "baseline_kib": 1, "peak_kib": 2}
    mig = {
        name: {"seconds": 0.02, "statements": 3, "operations": 0, "tables": 17} for name in ("full", "extra")
    }
    mig["empty"] = {"seconds": 0.03, "statements": 4, "operations": 31, "tables": 0}
    assert [t.passed for t in targets(rates, trips, rss, mig)] == [
        True,
        False,
        True,
        True,
        False,
        False,
        False,
        True,
    ]


@pytest.mark.parametrize("growth_mb, passed", [(99, True), (100, False)])
def test_rss_target_is_strictly_below_100_mb(growth_mb: int, passed: bool) -> None:
    rates = {key: [1000.0] for key in METRICS}
    trips = {"new": (1, 1), "existing": (2, 2)}
    rss = {"rows": 10, "seconds": 1.0, "growth_kib": growth_mb * 1024}
    mig = {
        n: {"seconds": 0.1, "statements": 3, "operations": 0, "tables": 17}
        for n in ("full", "extra", "empty")
    }
    rss_target = next(t for t in targets(rates, trips, rss, mig) if "RSS" in t.text)
    assert rss_target.passed is passed
