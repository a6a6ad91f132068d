"""The COPY path of ``dbp load`` (dbplugins/loadcopy.py) gives the Python path's answer, for every file.

Each file is loaded twice into a fresh table: by ``dbp load`` as it runs (the COPY path where it applies) and
with ``DBP_LOAD_FAST=0`` (every file read in Python, the reference). Both must store the same rows, or raise
the same error class with the same message (file, line, model, column). ``DBP_LOAD_FAST=require`` shows which
files the COPY path takes and which it leaves to Python.
"""

from __future__ import annotations

import decimal
import gzip
import io
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest
from click.testing import CliRunner

from dbplugins import Column, DbpError, model
from dbplugins._load.files import load_into
from dbplugins._load.loadcopy import ENV, Fallback
from dbplugins._types.schema import table_of
from dbplugins.cli import cli


@model("t_lc", primary_key=["id"])
@dataclass
class LC:
    id: int
    body: Annotated[str, Column("text")]
    n: Annotated[int | None, Column("integer")] = None
    sm: Annotated[int | None, Column("smallint")] = None
    big: Annotated[int | None, Column("bigint")] = None
    d: float | None = None
    r: Annotated[float | None, Column("real")] = None
    p: Annotated[decimal.Decimal | None, Column("numeric(10,2)")] = None
    v: Annotated[str | None, Column("varchar(5)")] = None
    c: Annotated[str | None, Column("char(3)")] = None
    flag: bool | None = None
    u: Annotated[uuid.UUID | None, Column("uuid")] = None


@model("t_lc_def", primary_key=["id"])
@dataclass
class LCDefault:
    id: int
    n: Annotated[int | None, Column("integer")] = None
    status: Annotated[str | None, Column("varchar(8)", default="'new'")] = None


@model("t_lc_ts", primary_key=["id"])
@dataclass
class LCStamp:
    id: int
    at: Annotated[object | None, Column("timestamp")] = None


_DDL = (
    "CREATE TABLE t_lc (id integer PRIMARY KEY, body text NOT NULL, n integer, sm smallint, big bigint, "
    "d double precision, r real, p numeric(10,2), v varchar(5), c char(3), flag boolean, u uuid);"
    "CREATE TABLE t_lc_def (id integer PRIMARY KEY, n integer, status varchar(8) DEFAULT 'new');"
    "CREATE TABLE t_lc_ts (id integer PRIMARY KEY, at timestamp)"
)


@pytest.fixture
def lc_db(db: Any) -> Any:
    db.execute(_DDL)
    return db


def _load(db: Any, path: Path, on_conflict: str = "ignore", fmt: str = "csv", **kw: Any) -> tuple[Any, ...]:
    """("stored", rows, counts) or ("refused", class, message, column, row)."""
    table = table_of(LC) if "table" not in kw else kw.pop("table")
    try:
        counts = load_into(db, table, str(path), fmt, on_conflict, **kw)
    except DbpError as exc:
        return ("refused", type(exc).__name__, str(exc), exc.column, exc.row)
    rows = db.execute(f"SELECT * FROM {table.name} ORDER BY id")  # noqa: S608 - a test table name
    return ("stored", [tuple(map(repr, r)) for r in rows], counts)


def both_paths(
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
    path: Path,
    on_conflict: str = "ignore",
    setup: str = "",
    **kw: Any,
) -> tuple[Any, ...]:
    """The outcome of the load with the COPY path allowed, after checking the Python path's is the same."""
    table = kw.get("table", table_of(LC))
    outcomes = []
    for switch in ("auto", "0"):
        monkeypatch.setenv(ENV, switch)
        db.execute(f"TRUNCATE {table.name}")
        if setup:
            db.execute(setup)
        outcomes.append(_load(db, path, on_conflict, **dict(kw)))
    assert outcomes[0] == outcomes[1], f"COPY path: {outcomes[0]}\nPython path: {outcomes[1]}"
    return outcomes[0]


def copy_path_takes(db: Any, monkeypatch: pytest.MonkeyPatch, path: Path, **kw: Any) -> bool:
    """Whether the COPY path loads ``path`` (DBP_LOAD_FAST=require), the table emptied before and after (the
    reason it did not is printed)."""
    table = kw.pop("table", table_of(LC))
    monkeypatch.setenv(ENV, "require")
    db.execute(f"TRUNCATE {table.name}")
    try:
        load_into(db, table, str(path), kw.pop("fmt", "csv"), kw.pop("on_conflict", "ignore"), **kw)
    except Fallback as exc:
        print("not by COPY:", exc, "- caused by", repr(exc.__cause__))
        return False
    finally:
        db.execute(f"TRUNCATE {table.name}")
    return True


def write(tmp_path: Path, text: str | bytes, name: str = "f.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        text = text.encode("utf-8")
    if name.endswith(".gz"):
        text = gzip.compress(text)
    path.write_bytes(text)
    return path


GOOD = (  # no real column: see test_real_is_rounded_once_from_the_text
    "id,body,n,sm,big,d,p,v,c,flag,u\n"
    "1,hello,5,-3,9000000000,1.5,12.34,abc,xy,t,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\n"
    '2,"with, comma",,,,NaN,,,,,\n'
    '3,"",0,0,0,-0,-1,"a""b",abc,false,{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}\n'
    "4,,1_000,+7,  8,-Infinity,99999999.99,,,YES,A0EEBC999C0B4EF8BB6D6BB9BD380A11\n"
)


def test_a_clean_file_goes_by_copy_and_stores_what_python_stores(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = write(tmp_path, GOOD)
    assert copy_path_takes(lc_db, monkeypatch, path)
    outcome = both_paths(lc_db, monkeypatch, path)
    assert outcome[0] == "stored" and outcome[2] == (4, 4)
    rows = lc_db.execute("SELECT id, body, n, c, flag FROM t_lc ORDER BY id")
    # an unquoted empty field in the NOT NULL text column is the empty string (FORCE_NOT_NULL), as in Python
    assert rows == [
        (1, "hello", 5, "xy ", True),
        (2, "with, comma", None, None, None),
        (3, "", 0, "abc", False),
        (4, "", 1000, None, True),
    ]


@pytest.mark.parametrize("name", ["f.csv", "f.csv.gz"])
def test_crlf_bom_and_gzip(lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> None:
    path = write(tmp_path, ("\ufeff" + GOOD).replace("\n", "\r\n"), name)
    assert copy_path_takes(lc_db, monkeypatch, path)
    assert both_paths(lc_db, monkeypatch, path)[0] == "stored"


@pytest.mark.parametrize(("delimiter", "takes"), [(";", True), ("|", True), (" ", True), ("§", False)])
def test_delimiters(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, delimiter: str, takes: bool
) -> None:
    path = write(tmp_path, f'id{delimiter}body{delimiter}n\n1{delimiter}"a{delimiter}b"{delimiter}2\n')
    assert copy_path_takes(lc_db, monkeypatch, path, delimiter=delimiter) is takes
    outcome = both_paths(lc_db, monkeypatch, path, delimiter=delimiter)
    assert outcome[1] == [("1", repr(f"a{delimiter}b"), "2", *["None"] * 9)]


def test_tsv_and_latin1(lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write(tmp_path, "id\tbody\tv\n1\tcafé\tné\n".encode("latin-1"), "f.tsv")
    assert copy_path_takes(lc_db, monkeypatch, path, fmt="tsv", encoding="latin-1")
    outcome = both_paths(lc_db, monkeypatch, path, fmt="tsv", encoding="latin-1")
    assert outcome[0] == "stored" and "'café'" in outcome[1][0]


# Values the column-type rules read as PostgreSQL's input does (so COPY may take them), values the rules
# accept and the server refuses (the Python path must take over), and values the server would accept or alter
# where the rules refuse (the COPY path must not store them).
FIELDS = {
    "bool prefix": ("flag", "tr"),
    "bool of": ("flag", " Of "),
    "bool junk": ("flag", "maybe"),
    "hex int": ("n", "0x1F"),
    "octal bigint": ("big", "-0o17"),
    "hex numeric": ("p", "0x10"),
    "hex float": ("d", "0x1.8p1"),
    "nan(chars)": ("d", "nan(123)"),
    "integral float into integer": ("n", "1001.0"),
    "exponent into integer": ("n", "1e3"),
    "fraction into integer": ("n", "1.5"),
    "nan into integer": ("n", "nan"),
    "integer out of range": ("sm", "40000"),
    "double beyond range": ("d", "1e400"),
    "real beyond range": ("r", "3.5e38"),
    "real too small": ("r", "1e-50"),
    "numeric too wide": ("p", "123456789.5"),
    "numeric rounds": ("p", "1.005"),
    "varchar too long": ("v", "abcdef"),
    "varchar trailing spaces": ("v", '"abc   "'),
    "char trailing spaces": ("c", "ab   "),
    "char exact": ("c", "ab "),
    "quoted empty number": ("n", '""'),
    "unicode digits": ("n", "\u0663"),
    "bad uuid": ("u", "urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    "uuid braces": ("u", "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"),
    "quote inside a field": ("body", 'a"b'),
    "quoted part inside a field": ("body", 'a"b"'),
    "two quoted parts": ("body", '"ab"c"d"'),
    "space before a quote": ("body", ' "x,y"'),
    "text after a closing quote": ("body", '"ab"c'),
    "unterminated quote": ("body", '"abc'),
    "NUL byte": ("body", "a\x00b"),
    "carriage return": ("body", "a\rb"),
    "end-of-data marker": ("body", "\\."),
}


@pytest.mark.parametrize("case", list(FIELDS))
def test_each_field_gives_one_answer_on_both_paths(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, case: str
) -> None:
    column, field = FIELDS[case]
    text = (
        f"id,body,{column}\n1,ok,\n2,x,{field}\n3,ok,\n"
        if column != "body"
        else f"id,body\n1,ok\n2,{field}\n3,ok\n"
    )
    outcome = both_paths(lc_db, monkeypatch, write(tmp_path, text))
    if outcome[0] == "refused":
        assert outcome[3] in (column, None), outcome  # a malformed line names no column
        assert "line" in outcome[2], outcome


def test_the_end_of_data_marker_on_its_own_line(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Before PostgreSQL 18 a line \. ends COPY's data: the rows after it would be lost silently.
    path = write(tmp_path, "id,body\n1,a\n\\.\n2,b\n")
    outcome = both_paths(lc_db, monkeypatch, path)
    assert outcome[0] == "refused"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("id,n\n1,1001.0\n", "the server refuses what the rules accept"),
        ("id,v\n1,abc  \n", "PostgreSQL would cut the spaces"),
        ('id,body\n1,a"b\n', "PostgreSQL would open a quoted section"),
        ("id\n1\n", "one column: a blank line is a NULL row for PostgreSQL"),
        ("id,nope\n1,2\n", "not a column"),
        ("", "an empty file"),
    ],
)
def test_files_the_copy_path_leaves_to_python(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, why: str
) -> None:
    assert not copy_path_takes(lc_db, monkeypatch, write(tmp_path, text)), why


def test_other_column_types_and_formats_are_read_in_python(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # PostgreSQL reads "now", "Jan 1 2020" and drops a zone given to a timestamp; the rules do not.
    stamp = write(tmp_path, "id,at\n1,2020-01-01 10:00+02\n")
    assert not copy_path_takes(lc_db, monkeypatch, stamp, table=table_of(LCStamp))
    assert both_paths(lc_db, monkeypatch, stamp, table=table_of(LCStamp))[0] == "refused"
    jsonl = write(tmp_path, '{"id": 1, "body": "a"}\n', "f.jsonl")
    assert not copy_path_takes(lc_db, monkeypatch, jsonl, fmt="jsonl")


def test_a_column_left_out_with_a_default(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # bulk_insert stores the model's default; a COPY naming the header's columns would store the server's.
    table = table_of(LCDefault)
    lc_db.execute("ALTER TABLE t_lc_def ALTER COLUMN status SET DEFAULT 'server'")
    path = write(tmp_path, "id,n\n1,2\n")
    assert not copy_path_takes(lc_db, monkeypatch, path, table=table)
    assert both_paths(lc_db, monkeypatch, path, table=table)[1] == [("1", "2", "'new'")]
    # a default only the database knows: COPY would apply it, bulk_insert stores NULL
    lc_db.execute("ALTER TABLE t_lc ALTER COLUMN n SET DEFAULT 42")
    path = write(tmp_path, "id,body\n1,a\n")
    assert not copy_path_takes(lc_db, monkeypatch, path)
    assert "None" in both_paths(lc_db, monkeypatch, path)[1][0][2]


def test_a_bad_line_late_in_a_large_file_loads_nothing_and_is_named(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lines = [f"{i},row {i},{i}" for i in range(1, 30_001)]
    lines[25_000] = "25001,bad,1.5"
    path = write(tmp_path, "id,body,n\n" + "\n".join(lines) + "\n")
    outcome = both_paths(lc_db, monkeypatch, path)
    assert outcome[0] == "refused" and outcome[1] == "DataError"
    assert "line 25002 of f.csv" in outcome[2] and (outcome[3], outcome[4]) == ("n", 25000)
    assert lc_db.execute("SELECT count(*) FROM t_lc")[0][0] == 0


def test_a_value_the_server_refuses_late_in_a_file_still_loads(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lines = [f"{i},r,{i}" for i in range(1, 20_001)] + ["20001,r,1001.0"]
    path = write(tmp_path, "id,body,n\n" + "\n".join(lines) + "\n")
    outcome = both_paths(lc_db, monkeypatch, path)
    assert outcome[0] == "stored" and outcome[2] == (20_001, 20_001)
    assert lc_db.execute("SELECT n FROM t_lc WHERE id = 20001")[0][0] == 1001


EXISTING = "INSERT INTO t_lc (id, body, n, d) VALUES (1, 'old', 10, 1.5), (9, 'kept', 90, 9.5)"
DUPLICATES = "id,body,n\n2,first,20\n1,new,11\n2,second,21\n3,three,30\n"


@pytest.mark.parametrize("on_conflict", ["ignore", "update", "error"])
def test_conflicts_duplicates_and_existing_keys(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, on_conflict: str
) -> None:
    path = write(tmp_path, DUPLICATES)
    outcome = both_paths(lc_db, monkeypatch, path, on_conflict, setup=EXISTING)
    if on_conflict == "error":
        assert outcome[:2] == ("refused", "ConstraintError")
        return
    rows = {r[0]: r for r in outcome[1]}
    assert rows["9"][1:3] == ("'kept'", "90")
    if on_conflict == "ignore":  # the first occurrence of a key wins, existing rows stay
        assert (rows["1"][1], rows["2"][1]) == ("'old'", "'first'")
        assert outcome[2] == (4, 2)
    else:  # the last occurrence wins, only the header's columns change (d is kept)
        assert (rows["1"][1], rows["1"][2], rows["1"][5], rows["2"][1]) == ("'new'", "11", "1.5", "'second'")
        assert outcome[2] == (4, 3)
    # the staging fallback of the COPY path handled it (no Python reading)
    monkeypatch.setenv(ENV, "require")
    lc_db.execute("TRUNCATE t_lc")
    lc_db.execute(EXISTING)
    assert load_into(lc_db, table_of(LC), str(path), "csv", on_conflict) == outcome[2]


def test_a_fresh_file_loaded_twice_with_ignore(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = write(tmp_path, GOOD)
    monkeypatch.setenv(ENV, "require")
    assert load_into(lc_db, table_of(LC), str(path), "csv", "ignore") == (4, 4)
    assert load_into(lc_db, table_of(LC), str(path), "csv", "ignore") == (4, 0)
    assert load_into(lc_db, table_of(LC), str(path), "csv", "update") == (4, 0)  # nothing changed


def test_stdin_is_read_again_when_the_copy_path_gives_up(
    lc_db: Any, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    lines = [f"{i},r,{i}" for i in range(1, 50_001)] + ["50001,r,1001.0"]  # > 1 MiB: several reads
    text = "id,body,n\n" + "\n".join(lines) + "\n"
    result = CliRunner().invoke(
        cli, ["load", "t_lc", "-", "--format", "csv", "--dsn", dsn, "--silent"], input=text
    )
    assert result.exit_code == 0, result.output
    assert "50,001 rows loaded into t_lc from stdin" in result.stdout
    assert lc_db.execute("SELECT count(*), max(n) FROM t_lc")[0] == (50_001, 50_000)


def test_stdin_by_copy(lc_db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "require")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(GOOD.encode())))
    assert load_into(lc_db, table_of(LC), "-", "csv", "error") == (4, 4)


def test_a_field_longer_than_pythons_csv_default_limit(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    big = "x" * 200_000  # over the csv module's default 131,072 characters: PostgreSQL reads it, so must we
    path = write(tmp_path, f'id,body\n1,{big}\n2,"{big}\n{big}"\n')
    assert copy_path_takes(lc_db, monkeypatch, path)
    outcome = both_paths(lc_db, monkeypatch, path)
    assert outcome[0] == "stored"
    assert lc_db.execute("SELECT length(body) FROM t_lc ORDER BY id") == [(200_000,), (400_001,)]


def test_a_field_over_the_limit_is_left_to_python(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dbplugins._load import loadcopy, textformats

    monkeypatch.setattr(textformats, "MAX_CSV_FIELD", 1000)
    monkeypatch.setattr(loadcopy, "_MAX_CARRY", 1000)
    monkeypatch.setattr(loadcopy, "BLOCK", 256)
    path = write(tmp_path, f'id,body\n1,"{"y" * 600}\n{"y" * 600}"\n')
    assert not copy_path_takes(lc_db, monkeypatch, path)


@pytest.mark.parametrize("on_conflict", ["ignore", "update"])
def test_concurrent_loads_of_one_file_land_each_row_once(
    lc_db: Any, dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, on_conflict: str
) -> None:
    import threading

    from dbplugins import SQLConnection

    # the direct COPY waits on the other's keys, then stages: no Python reading
    monkeypatch.setenv(ENV, "require")
    lines = [f"{i},r{i},{i}" for i in range(1, 20_001)]
    path = write(tmp_path, "id,body,n\n" + "\n".join(lines) + "\n")
    results: list[Any] = []

    def worker() -> None:
        db = SQLConnection()
        db.connect(dsn=dsn, min_size=1, max_size=1)
        try:
            results.append(load_into(db, table_of(LC), str(path), "csv", on_conflict))
        except BaseException as exc:  # noqa: BLE001 - reported below
            results.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(isinstance(r, tuple) for r in results), results
    assert sum(written for _read, written in results) == 20_000
    assert lc_db.execute("SELECT count(*), count(DISTINCT id), sum(n) FROM t_lc")[0] == (
        20_000,
        20_000,
        200_010_000,
    )


def test_real_is_rounded_once_from_the_text(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # 1 + 2**-24 is a tie between two reals: the shortest text of that double rounds up as text, down as a
    # double
    path = write(tmp_path, f"id,body,r\n1,a,{1 + 2**-24!r}\n")
    assert not copy_path_takes(lc_db, monkeypatch, path)
    # as bulk_insert stores the float 1 + 2**-24
    assert both_paths(lc_db, monkeypatch, path)[1][0][6] == "1.0"
    assert lc_db.query(LC).bulk_insert([{"id": 2, "body": "b", "r": 1 + 2**-24}]) == 1
    assert lc_db.execute("SELECT r FROM t_lc WHERE id = 2")[0][0] == 1.0


def test_stdin_read_three_times(lc_db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A duplicate near the start sends the COPY path to staging (a second reading, further into stdin), where
    # the server refuses 1001.0 at the end: the Python path reads stdin a third time, and must see all of it.
    from dbplugins._load import loadcopy

    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(loadcopy, "BLOCK", 4096)  # the direct COPY stops reading soon after the duplicate
    lines = ["1,first,1", "1,second,2"] + [f"{i},r,{i}" for i in range(2, 100_001)] + ["100001,r,1001.0"]
    data = ("id,body,n\n" + "\n".join(lines) + "\n").encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert load_into(lc_db, table_of(LC), "-", "csv", "ignore") == (100_002, 100_001)
    assert lc_db.execute("SELECT count(*), sum(n) FROM t_lc")[0] == (100_001, sum(range(1, 100_001)) + 1001)
    assert lc_db.execute("SELECT body FROM t_lc WHERE id = 1")[0][0] == "first"


def test_a_gzipped_file_is_opened_again_for_the_python_path(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lines = [f"{i},r,{i}" for i in range(1, 30_001)] + ["30001,r,1001.0"]
    path = write(tmp_path, "id,body,n\n" + "\n".join(lines) + "\n", "f.csv.gz")
    outcome = both_paths(lc_db, monkeypatch, path)
    assert outcome[0] == "stored" and outcome[2] == (30_001, 30_001)


def test_inside_a_transaction_the_lock_timeout_is_the_callers(
    lc_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV, "require")
    path = write(tmp_path, GOOD)
    with lc_db.transaction():
        lc_db.execute("SET LOCAL lock_timeout = '7s'")
        assert load_into(lc_db, table_of(LC), str(path), "csv", "ignore") == (4, 4)
        assert lc_db.execute("SHOW lock_timeout") == [("7s",)]
    assert lc_db.execute("SELECT count(*) FROM t_lc")[0][0] == 4
