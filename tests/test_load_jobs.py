"""``dbp load --jobs N``: the file read once, its records dealt by key to N COPY streams (the server parses
the CSV), ending as ``bulk_insert(parallel=N)`` ends: all or nothing with prepared transactions; without them
``--on-conflict error`` refused and ``ignore`` / ``update`` exactly once and resumable.

The servers and fixtures are tests/test_parallel_copy.py's: ``dsn`` / ``db2`` a fresh database on a server
with prepared transactions, ``no2pc`` a throwaway server with ``max_prepared_transactions = 0``.
``DBP_LOAD_FAST=require`` makes a load that the COPY path gives up on raise instead of reading in Python.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_parallel_copy import cluster, db2, dsn, no2pc, poison, prepared, scalar

from dbplugins import ConstraintError, DataError, DbpError, SQLConnection
from dbplugins._load import loadjobs
from dbplugins._load.files import load_into
from dbplugins._load.loadcopy import ENV, Fallback
from dbplugins._types.schema import table_of
from dbplugins.cli import cli
from dbplugins.models import Object

__all__ = ["cluster", "db2", "dsn", "no2pc"]  # the fixtures, imported for this module's tests

JOBS = 3
OBJECT = table_of(Object)


def stream_of(key: bytes, n: int = JOBS) -> int:
    """The stream a record whose (text) key field is ``key`` goes to: the engine's rule, in this process."""
    return hash(key) % n


def keys_of_stream(stream: int, count: int, prefix: str = "o", n: int = JOBS) -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < count:
        key = f"{prefix}{i}"
        if stream_of(key.encode(), n) == stream:
            out.append(key)
        i += 1
    return out


def write(tmp_path: Path, text: str, name: str = "f.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def objects_csv(tmp_path: Path, rows: list[tuple[str, Any]], name: str = "o.csv") -> Path:
    body = "".join(f"{oid},{ndet}\n" for oid, ndet in rows)
    return write(tmp_path, "oid,ndet\n" + body, name)


def stored(db: SQLConnection) -> dict[str, Any]:
    return dict(db.execute("SELECT oid, ndet FROM object"))


def load(db: SQLConnection, path: Path, on_conflict: str = "ignore", jobs: int = JOBS, **kw: Any) -> Any:
    return load_into(db, OBJECT, str(path), "csv", on_conflict, jobs=jobs, **kw)


@pytest.fixture(autouse=True)
def _copy_path_required(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unless a test says otherwise, a load that leaves the COPY path raises Fallback (no silent Python
    reading)."""
    monkeypatch.setenv(ENV, "require")


def xids(db: SQLConnection) -> int:
    """How many transactions wrote the rows of object."""
    return int(db.execute("SELECT count(DISTINCT xmin::text) FROM object")[0][0])


# -- the streams run, and rows land once ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["ignore", "error", "update"])
def test_a_file_spread_over_the_streams_lands_once(
    db2: SQLConnection, dsn: str, tmp_path: Path, mode: str
) -> None:
    path = objects_csv(tmp_path, [(f"o{i}", i) for i in range(30_000)])
    assert load(db2, path, mode) == (30_000, 30_000)
    assert db2.execute("SELECT count(*), sum(ndet), count(DISTINCT oid) FROM object") == [
        (30_000, sum(range(30_000)), 30_000)
    ]
    assert xids(db2) == JOBS  # one transaction per stream: the rows really went over JOBS connections
    assert prepared(dsn) == []
    if mode != "error":  # loading it again changes nothing (through the streams' staging)
        assert load(db2, path, mode) == (30_000, 0)
        assert db2.execute("SELECT count(*) FROM object") == [(30_000,)]


def test_jobs_one_is_one_stream(db2: SQLConnection, tmp_path: Path) -> None:
    path = objects_csv(tmp_path, [(f"o{i}", i) for i in range(5000)])
    assert load(db2, path, jobs=1) == (5000, 5000)
    assert xids(db2) == 1


# -- duplicates of a key: first / last occurrence wins, whichever streams the other keys go to ---------------


def far_apart_duplicates(n: int = 2000) -> list[tuple[str, int]]:
    """Every key three times, the occurrences far apart (other keys, on other streams, in between)."""
    rows = [(f"k{i}", i) for i in range(n)]
    rows += [(f"k{i}", 10_000 + i) for i in range(n)]
    rows += [(f"k{i}", 20_000 + i) for i in range(n)]
    return rows


@pytest.mark.parametrize("server", ["2pc", "no2pc"])
def test_first_occurrence_wins_with_ignore_and_the_last_with_update(
    request: pytest.FixtureRequest, tmp_path: Path, server: str
) -> None:
    if server == "2pc":
        db: SQLConnection = request.getfixturevalue("db2")
    else:
        db, _ = request.getfixturevalue("no2pc")
    path = objects_csv(tmp_path, far_apart_duplicates())
    assert load(db, path, "ignore") == (6000, 2000)
    assert stored(db) == {f"k{i}": i for i in range(2000)}
    assert load(db, path, "update") == (6000, 2000)
    assert stored(db) == {f"k{i}": 20_000 + i for i in range(2000)}
    db.execute("TRUNCATE object CASCADE")
    assert load(db, path, "update") == (6000, 2000)  # from an empty table, through staging
    assert stored(db) == {f"k{i}": 20_000 + i for i in range(2000)}


def test_keys_written_differently_are_one_key(db2: SQLConnection, tmp_path: Path) -> None:
    """A quoted key and the same key unquoted, an integer key with a leading zero or a plus sign: each is one
    key, so its occurrences meet in one stream and keep their order."""
    db2.execute("CREATE TABLE t_lj (id integer PRIMARY KEY, body text NOT NULL)")
    from dataclasses import dataclass

    from dbplugins import model

    @model("t_lj", primary_key=["id"])
    @dataclass
    class LJ:
        id: int
        body: str

    lines = [f"{i},first{i}" for i in range(1000)]
    lines += [f"0{i},second{i}" for i in range(1000)]
    lines += [f'"+{i}",third{i}' for i in range(1000)]
    path = write(tmp_path, "id,body\n" + "\n".join(lines) + "\n")
    table = table_of(LJ)
    assert load_into(db2, table, str(path), "csv", "ignore", jobs=JOBS) == (3000, 1000)
    assert dict(db2.execute("SELECT id, body FROM t_lj")) == {i: f"first{i}" for i in range(1000)}
    assert load_into(db2, table, str(path), "csv", "update", jobs=JOBS) == (3000, 1000)
    assert dict(db2.execute("SELECT id, body FROM t_lj")) == {i: f"third{i}" for i in range(1000)}

    text = "oid,ndet\n" + "".join(f"q{i},1\n" for i in range(500))
    text += "".join(f'"q{i}",2\n' for i in range(500))
    path = write(tmp_path, text, "q.csv")
    assert load(db2, path, "update") == (1000, 500)
    assert set(stored(db2).values()) == {2}


# -- records, not lines: quoted line ends --------------------------------------------------------------------


def test_quoted_line_ends_stay_inside_their_record(db2: SQLConnection, tmp_path: Path) -> None:
    rows = []
    for i in range(4000):
        note = f'"line one\nline two, of {i}\r\n""quoted"" three"' if i % 3 == 0 else f"plain {i}"
        rows.append(f"o{i},{i},{note}")
    # a quoted key, a quoted multi-line field spanning the reads of the file (1 MiB blocks)
    rows.append('"o-last",1,"' + "x\n" * 700_000 + '"')
    path = write(tmp_path, "oid,ndet,step_id_corr\n" + "\n".join(rows) + "\n")
    assert load(db2, path) == (4001, 4001)
    got = dict(db2.execute("SELECT oid, step_id_corr FROM object"))
    assert got["o0"] == 'line one\nline two, of 0\r\n"quoted" three'
    assert got["o1"] == "plain 1"
    assert got["o-last"] == "x\n" * 700_000
    assert len(got) == 4001
    assert xids(db2) == JOBS


def test_a_lone_carriage_return_goes_to_python(
    db2: SQLConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL ends a line at a lone \r too: records are not cut there, the file goes to the Python path,
    with the answer of one stream."""
    path = write(tmp_path, "oid,ndet\n" + "".join(f"o{i},{i}\n" for i in range(100)) + "o100,1\ro101,2\n")
    with pytest.raises(Fallback, match="carriage return"):
        load(db2, path)
    monkeypatch.setenv(ENV, "auto")
    outcomes = []
    for jobs in (1, JOBS):
        db2.execute("TRUNCATE object CASCADE")
        try:
            outcomes.append(load(db2, path, jobs=jobs))
        except DbpError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]


# -- a stream failing midway ---------------------------------------------------------------------------------


def big_file_with(tmp_path: Path, bad_line: int, bad: str, total: int = 60_000) -> Path:
    """``oid,ndet`` rows, line ``bad_line`` of the file (the header is line 1) with ndet ``bad``."""
    rows = [(f"o{i}", str(i)) for i in range(total)]
    rows[bad_line - 2] = (rows[bad_line - 2][0], bad)
    return objects_csv(tmp_path, rows)


@pytest.mark.parametrize("jobs", [1, JOBS])
def test_a_server_error_midway_is_never_lost(db2: SQLConnection, dsn: str, tmp_path: Path, jobs: int) -> None:
    """The server refuses a value early in a large file (what follows fills the socket's buffers while the
    server's error waits in them): the load fails, nothing is committed, nothing stays prepared."""
    path = big_file_with(tmp_path, bad_line=50, bad="99999999999")  # out of range for integer
    for mode in ("ignore", "update", "error"):
        with pytest.raises(Fallback, match="the server said"):
            load(db2, path, mode, jobs=jobs)
        assert db2.execute("SELECT count(*) FROM object") == [(0,)]
        assert prepared(dsn) == []


@pytest.mark.parametrize("mode", ["ignore", "update", "error"])
def test_a_bad_value_on_line_k_names_it_and_loads_nothing(
    db2: SQLConnection, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv(ENV, "auto")  # the COPY path gives up, the Python path names the line
    path = big_file_with(tmp_path, bad_line=41_234, bad="many")
    with pytest.raises(DataError) as info:
        load(db2, path, mode)
    assert "line 41234 of o.csv" in str(info.value)
    assert (info.value.column, info.value.row) == ("ndet", 41_232)
    assert db2.execute("SELECT count(*) FROM object") == [(0,)]
    assert prepared(dsn) == []
    # fixed, the same load lands every row once
    path = big_file_with(tmp_path, bad_line=41_234, bad="7")
    assert load(db2, path, mode)[0] == 60_000
    assert db2.execute("SELECT count(*), count(DISTINCT oid) FROM object") == [(60_000, 60_000)]


def test_a_stream_failing_at_prepare_rolls_the_others_back(
    db2: SQLConnection, dsn: str, tmp_path: Path
) -> None:
    rows = [(f"o{i}", i) for i in range(3000)]
    victim = keys_of_stream(JOBS - 1, 1)[0]
    poison(dsn, victim, wait_for_others=True)  # fails the victim's transaction once the others prepared
    path = objects_csv(tmp_path, rows)
    with pytest.raises(Fallback, match="poisoned row"):
        load(db2, path)
    assert prepared(dsn) == []
    assert db2.execute("SELECT count(*) FROM object") == [(0,)]
    assert load(db2, path) == (3000, 3000)  # the trigger fails once: now every row, once
    assert db2.execute("SELECT count(*), sum(ndet) FROM object") == [(3000, sum(range(3000)))]


def test_a_foreign_key_violation_loads_nothing(
    db2: SQLConnection, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "auto")
    db2.execute("INSERT INTO object (oid) SELECT 'o' || g FROM generate_series(0, 99) g")
    header = "candid,oid,mjd,fid,pid,isdiffpos,ra,dec,magpsf,sigmapsf,corrected,dubious,has_stamp,"
    header += "step_id_corr"
    lines = [f"{i},o{i % 100},59000.5,1,1.0,1,10.0,-5.0,18.0,0.1,f,f,t,c" for i in range(20_000)]
    lines[15_000] = lines[15_000].replace(",o0,", ",nobody,")
    text = header + "\n" + "\n".join(lines) + "\n"
    path = write(tmp_path, text, "d.csv")
    from dbplugins.models import Detection

    with pytest.raises(ConstraintError, match="detection_oid_fkey"):
        load_into(db2, table_of(Detection), str(path), "csv", "ignore", jobs=JOBS)
    assert db2.execute("SELECT count(*) FROM detection") == [(0,)]
    assert prepared(dsn) == []


def test_a_killed_stream_fails_the_load_and_leaves_nothing(
    db2: SQLConnection, dsn: str, tmp_path: Path
) -> None:
    """A backend killed while its COPY runs (a trigger that waits makes sure it runs): the load fails naming
    the lost connection; nothing is written, nothing stays prepared, and the pool works again."""
    db2.execute(
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.oid = 'o25000' THEN PERFORM pg_sleep(30); END IF; RETURN NEW; END $$;"
        "CREATE TRIGGER slow BEFORE INSERT ON object FOR EACH ROW EXECUTE FUNCTION slow()"
    )
    killer = subprocess.Popen(  # noqa: S603 - our own interpreter, a fixed script
        [
            sys.executable,
            "-c",
            "import sys, time, psycopg\n"
            "with psycopg.connect(sys.argv[1], autocommit=True) as c:\n"
            "    for _ in range(600):\n"
            "        r = c.execute(\"SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' \"\n"
            "                      \"AND datname = current_database()\").fetchall()\n"
            "        if r:\n"
            "            c.execute('SELECT pg_terminate_backend(%s)', (r[0][0],)); break\n"
            "        time.sleep(0.05)\n",
            dsn,
        ]
    )
    try:
        path = objects_csv(tmp_path, [(f"o{i}", i) for i in range(50_000)])
        with pytest.raises(DbpError) as info:
            load(db2, path)
        assert "nothing was written" in str(info.value), str(info.value)
    finally:
        killer.wait(timeout=60)
    assert prepared(dsn) == []
    assert db2.execute("SELECT count(*) FROM object") == [(0,)]
    db2.execute("DROP TRIGGER slow ON object")
    assert load(db2, path) == (50_000, 50_000)


# -- without prepared transactions ---------------------------------------------------------------------------


def test_error_mode_without_prepared_transactions_is_refused(
    no2pc: tuple[SQLConnection, str], tmp_path: Path
) -> None:
    db, dsn = no2pc
    path = objects_csv(tmp_path, [(f"o{i}", i) for i in range(100)])
    with pytest.raises(DbpError) as info:
        load(db, path, "error")
    message = str(info.value)
    assert f"dbp load --jobs {JOBS} --on-conflict error needs prepared transactions" in message
    assert "max_prepared_transactions = 0" in message and "--jobs 1" in message
    assert scalar(dsn, "SELECT count(*) FROM object") == 0
    assert load(db, path, "error", jobs=1) == (100, 100)


@pytest.mark.parametrize("mode", ["ignore", "update"])
def test_without_prepared_transactions_a_failed_commit_is_completed_by_running_it_again(
    no2pc: tuple[SQLConnection, str], tmp_path: Path, mode: str
) -> None:
    db, dsn = no2pc
    rows = [(f"o{i}", i) for i in range(3000)]
    victim = keys_of_stream(JOBS - 1, 1)[0]  # its stream commits last: the others have committed by then
    poison(dsn, victim, wait_for_others=False)
    path = objects_csv(tmp_path, rows)
    with pytest.raises(ConstraintError, match="poisoned row") as info:
        load(db, path, mode)
    message = str(info.value)
    assert f"{JOBS - 1} of its streams had committed" in message
    assert "running the same load again completes it" in message
    landed = scalar(dsn, "SELECT count(*) FROM object")
    assert 0 < landed < 3000
    read, written = load(db, path, mode)
    assert read == 3000 and (mode == "update" or written == 3000 - landed)
    assert scalar(dsn, "SELECT count(*) || '/' || sum(ndet) || '/' || count(DISTINCT oid) FROM object") == (
        f"3000/{sum(range(3000))}/3000"
    )
    assert prepared(dsn) == []


def test_without_prepared_transactions_a_failure_while_working_commits_nothing(
    no2pc: tuple[SQLConnection, str], tmp_path: Path
) -> None:
    db, dsn = no2pc
    path = big_file_with(tmp_path, bad_line=30_000, bad="99999999999")
    with pytest.raises(Fallback):
        load(db, path)
    assert scalar(dsn, "SELECT count(*) FROM object") == 0


# -- the Python path, the command ----------------------------------------------------------------------------


def test_a_file_read_in_python_goes_over_the_streams_too(
    db2: SQLConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "auto")
    path = tmp_path / "o.jsonl"
    path.write_text("".join(f'{{"oid": "o{i}", "ndet": {i}}}\n' for i in range(10_000)) + '{"oid": "o1"}\n')
    assert load_into(db2, OBJECT, str(path), "jsonl", "ignore", jobs=JOBS) == (10_001, 10_000)
    assert xids(db2) == JOBS


def test_jobs_beyond_the_pool_and_with_update_are_refused(db2: SQLConnection, tmp_path: Path) -> None:
    path = objects_csv(tmp_path, [("o1", 1)])
    with pytest.raises(DbpError, match="needs 9 connections at once and the pool holds at most 5"):
        load(db2, path, jobs=9)
    with pytest.raises(DbpError, match="--update runs on one connection"):
        load(db2, path, "bulk_update")
    with pytest.raises(DbpError, match="jobs must be an integer >= 1"):
        load(db2, path, jobs=0)


def test_the_command(dsn: str, tmp_path: Path) -> None:
    path = objects_csv(tmp_path, [(f"o{i}", i) for i in range(5000)])
    runner = CliRunner()
    result = runner.invoke(cli, ["load", "object", str(path), "--jobs", "2", "--silent", "--dsn", dsn])
    assert result.exit_code == 0, result.output
    assert "5,000 rows loaded into object" in result.output
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(DISTINCT xmin::text) FROM object").fetchone() == (2,)
    result = runner.invoke(cli, ["load", "object", str(path), "--jobs", "2", "--update", "--dsn", dsn])
    assert result.exit_code == 2 and "--jobs applies to loads that insert" in result.output


def test_stdin_goes_over_the_streams_and_is_read_again_for_staging(dsn: str) -> None:
    text = "oid,ndet\n" + "".join(f"o{i},{i}\n" for i in range(20_000))
    runner = CliRunner()
    args = ["load", "object", "-", "--format", "csv", "--jobs", "2", "--silent", "--dsn", dsn]
    result = runner.invoke(cli, args, input=text)
    assert result.exit_code == 0, result.output
    assert "20,000 rows loaded" in result.output
    # again: every key exists, the streams' direct COPY gives way to staging, which reads stdin's copy again
    result = runner.invoke(cli, [*args, "--on-conflict", "update"], input=text.replace(",1\n", ",-1\n"))
    assert result.exit_code == 0, result.output
    assert "1 row inserted or changed" in result.output
    assert scalar(dsn, "SELECT count(*) || '/' || min(ndet) FROM object") == "20000/-1"


def test_error_mode_duplicate_keys_in_the_file_load_nothing(
    db2: SQLConnection, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "auto")
    rows = [(f"o{i}", i) for i in range(10_000)] + [("o5", 1)]
    path = objects_csv(tmp_path, rows)
    with pytest.raises(ConstraintError, match="object_pkey") as info:
        load(db2, path, "error")
    assert info.value.row == 10_000
    assert db2.execute("SELECT count(*) FROM object") == [(0,)]
    assert prepared(dsn) == []


def test_the_dealer_reads_records_not_lines() -> None:
    lines = b'1,"a\nb\nc",x\n2,y,z\n3,"""q""\n",w'.split(b"\n")
    records, rest = loadjobs._records(lines)
    assert records == [b'1,"a\nb\nc",x', b"2,y,z", b'3,"""q""\n",w']
    assert rest == b""
    assert loadjobs._records([b'1,"open', b"more"]) == ([], b'1,"open\nmore')
    pattern = re.compile(rb'"([^"]*+(?:""[^"]*+)*+)"|([^",]*+)')
    assert loadjobs._fields(b'"a,b",c,"d""e"', pattern, b",", 3) == [b"a,b", b"c", b'd"e']
    assert loadjobs._fields(b'"a,b",c,"d""e"', pattern, b",", 1) == [b"a,b"]
    assert loadjobs._fields(b"x,y\r", pattern, b",", 5) == [b"x", b"y"]
    assert loadjobs._fields(b'x,"y"\r', pattern, b",", 5) == [b"x", b"y"]



@pytest.mark.parametrize(
    "one, two, growth_mb, passed",
    [(95, 130, 149, [True, True, True]), (94, 129, 150, [False, False, False])],
)
def test_the_bench_targets_sit_on_the_issue_thresholds(
    one: float, two: float, growth_mb: int, passed: list[bool]
) -> None:
    """make bench's lines for dbp load: >= 0.95x and >= 1.3x psql \\copy of the same file, RSS growth below
    150 MB."""
    from bench.report import load_targets

    rates = {"load.psql": [100.0, 100.0, 100.0], "load.jobs1": [one] * 3, "load.jobs2": [two] * 3}
    load = {"rows": 1_000_000, "jobs": 2, "growth_kib": growth_mb * 1024, "bytes": 300 * 2**20}
    found = load_targets(rates, load)
    assert [t.passed for t in found] == passed
    assert "1,000,000-row detection CSV" in found[0].text and "--jobs 2" in found[1].text


_TEXT = st.lists(st.sampled_from(["a", "é", ",", '"', "\n", "\r\n", " ", "x"]), max_size=12).map("".join)
_KEYS = st.sampled_from([f"p{i}" for i in range(8)] + ['p"q', "p,r", "p\ns"])
_ROWS = st.lists(st.tuples(_KEYS, st.integers(-5, 5), _TEXT), max_size=40)


@pytest.mark.parametrize("mode", ["ignore", "update"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_ROWS, crlf=st.booleans())
def test_property_jobs_give_the_table_of_one_stream(
    db2: SQLConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, rows: Any, crlf: bool
) -> None:
    """Any CSV (quotes, delimiters and line ends inside fields, duplicate keys, CRLF): --jobs 3 stores what
    one stream stores, and says the same."""
    monkeypatch.setenv(ENV, "auto")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(["oid", "ndet", "step_id_corr"])
    writer.writerows(rows)
    path = tmp_path / "p.csv"
    path.write_bytes(out.getvalue().encode("utf-8"))

    def outcome(jobs: int) -> Any:
        db2.execute("TRUNCATE object CASCADE")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                counts: Any = load(db2, path, mode, jobs=jobs)
        except DbpError as exc:
            counts = (type(exc).__name__, exc.column, exc.row)
        return counts, db2.execute("SELECT oid, ndet, step_id_corr FROM object ORDER BY oid")

    assert outcome(JOBS) == outcome(1)
