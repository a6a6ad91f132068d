"""bulk_update: some columns of many rows by key; never inserts, never touches a column a row leaves out."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Optional

import psycopg
import pytest

from dbplugins import (
    Column,
    ConstraintError,
    DataError,
    DbpError,
    MissingValueError,
    NoResultFound,
    QueryError,
    SQLConnection,
    UnknownColumnError,
    model,
)


@model("tu_item", primary_key=["iid"])
@dataclass
class Item:
    iid: Annotated[int, Column("bigint")]
    name: str
    qty: Optional[int] = None  # noqa: UP045 - the model annotation style of DESIGN.md §3a
    price: Optional[float] = None  # noqa: UP045
    code: Annotated[Optional[str], Column("varchar(4)")] = None  # noqa: UP045
    tags: Optional[list[str]] = None  # noqa: UP045


@model("tu_obs", primary_key=["oid", "fid"])
@dataclass
class Obs:
    oid: str
    fid: int
    flux: Optional[float] = None  # noqa: UP045
    ref: Optional[str] = None  # noqa: UP045


DDL = """
CREATE TABLE tu_ref (ref varchar PRIMARY KEY);
CREATE TABLE tu_item (iid bigint PRIMARY KEY, name varchar NOT NULL, qty integer, price double precision,
                      code varchar(4), tags varchar[]);
CREATE TABLE tu_obs (oid varchar, fid integer, flux double precision, ref varchar REFERENCES tu_ref (ref),
                     PRIMARY KEY (oid, fid));
"""

ITEMS = [(i, f"n{i}", i, i * 1.5, f"c{i}", [f"t{i}"]) for i in range(1, 11)]


@pytest.fixture
def udb(module_db: SQLConnection, module_dsn: str) -> Iterator[SQLConnection]:
    with psycopg.connect(module_dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE tu_item, tu_obs")
        cur.executemany("INSERT INTO tu_item VALUES (%s, %s, %s, %s, %s, %s)", ITEMS)
        cur.executemany(
            "INSERT INTO tu_obs (oid, fid, flux) VALUES (%s, %s, %s)",
            [(o, f, 1.0) for o in ("a", "b") for f in (1, 2)],
        )
    module_db.create_session()
    yield module_db
    module_db.end_session()


def stored(db: SQLConnection) -> dict[int, tuple[Any, ...]]:
    return {r[0]: r[1:] for r in db.execute("SELECT iid, name, qty, price, code, tags FROM tu_item")}


def original() -> dict[int, tuple[Any, ...]]:
    return {r[0]: r[1:] for r in ITEMS}


def test_each_row_changes_only_the_columns_it_names(udb: SQLConnection) -> None:
    n = udb.query(Item).bulk_update(
        [
            {"iid": 1, "qty": 100},
            {"iid": 2, "price": 9.5, "code": "zz"},
            {"iid": 3, "qty": None, "name": "renamed"},
            {"iid": 4, "tags": ["x", "y"]},
        ]
    )
    assert n == 4 and n.missing == []
    want = original()
    want[1] = ("n1", 100, 1.5, "c1", ["t1"])
    want[2] = ("n2", 2, 9.5, "zz", ["t2"])
    want[3] = ("renamed", None, 4.5, "c3", ["t3"])
    want[4] = ("n4", 4, 6.0, "c4", ["x", "y"])
    assert stored(udb) == want


def test_same_columns_everywhere(udb: SQLConnection) -> None:
    rows = [{"iid": i, "qty": i * 10, "price": -1.0} for i in range(1, 11)]
    assert udb.query().bulk_update(rows, Item) == 10
    assert {k: v[1:3] for k, v in stored(udb).items()} == {i: (i * 10, -1.0) for i in range(1, 11)}


def test_missing_keys_ignored_are_reported_and_never_inserted(udb: SQLConnection) -> None:
    n = udb.query(Item).bulk_update([{"iid": 99, "qty": 1}, {"iid": 5, "qty": 50}, {"iid": 98, "name": "x"}])
    assert n == 1
    assert n.missing == [0, 2]
    assert 99 not in stored(udb) and 98 not in stored(udb)
    assert stored(udb)[5][1] == 50


def test_missing_keys_error_names_them_and_writes_nothing(udb: SQLConnection) -> None:
    with pytest.raises(NoResultFound, match=r"row 1 \(iid=99\)") as info:
        udb.query(Item).bulk_update([{"iid": 5, "qty": 50}, {"iid": 99, "qty": 1}], missing="error")
    assert info.value.row == 1 and info.value.model == "tu_item"
    assert stored(udb) == original()


def test_composite_key_and_explicit_key(udb: SQLConnection) -> None:
    rows_in = [{"oid": "a", "fid": 2, "flux": 7.0}, {"oid": "b", "fid": 1, "flux": 8.0}]
    assert udb.query(Obs).bulk_update(rows_in) == 2
    rows = dict(((r[0], r[1]), r[2]) for r in udb.execute("SELECT oid, fid, flux FROM tu_obs"))
    assert rows == {("a", 1): 1.0, ("a", 2): 7.0, ("b", 1): 8.0, ("b", 2): 1.0}
    # key= a non-key column: every matching row is updated
    assert udb.query(Item).bulk_update([{"name": "n3", "qty": 33}], key=["name"]) == 1
    assert stored(udb)[3][1] == 33
    assert udb.query(Item).bulk_update([{"code": "c4", "qty": 44}], key="code") == 1
    assert stored(udb)[4][1] == 44


def test_a_key_given_twice_applies_in_input_order(udb: SQLConnection) -> None:
    n = udb.query(Item).bulk_update(
        [
            {"iid": 1, "qty": 1000},
            {"iid": 1, "qty": 2000, "price": 0.5},
            {"iid": 1, "qty": 3000},
            {"iid": 2, "qty": 7},
        ]
    )
    assert n == 2
    assert stored(udb)[1][1:3] == (3000, 0.5)
    assert stored(udb)[2][1] == 7


def test_instances_update_every_column(udb: SQLConnection) -> None:
    item = Item(iid=6, name="six", qty=None, price=None, code=None, tags=None)
    assert udb.query(Item).bulk_update([item]) == 1
    assert stored(udb)[6] == ("six", None, None, None, None)


@pytest.mark.parametrize(
    ("rows", "error", "match", "column", "row"),
    [
        ([{"iid": 1, "qty": 2}, {"iid": 2, "nope": 1}], UnknownColumnError, "nope", "nope", 1),
        ([{"iid": 1, "qty": 2}, {"qty": 5}], MissingValueError, "key column 'iid'", "iid", 1),
        ([{"iid": 1, "qty": 2}, {"iid": None, "qty": 5}], MissingValueError, "key column 'iid'", "iid", 1),
        ([{"iid": 1, "qty": 2}, {"iid": 2, "name": None}], MissingValueError, "NOT NULL", "name", 1),
        ([{"iid": 1, "qty": 2}, {"iid": 2, "qty": "x"}], DataError, "qty", "qty", 1),
        ([{"iid": 1, "qty": 2}, {"iid": 2, "qty": 2**31}], DataError, "qty", "qty", 1),
        ([{"iid": 1, "qty": 2}, {"iid": 2, "name": "a\x00b"}], DataError, "name", "name", 1),
        ([{"iid": 1, "qty": 2}, {"iid": 2, "qty": True}], DataError, "qty", "qty", 1),
    ],
    ids=["unknown", "no-key", "none-key", "not-null", "type", "range", "nul", "bool"],
)
def test_bad_rows_name_column_and_row_and_write_nothing(
    udb: SQLConnection, rows: list[dict[str, Any]], error: type[DbpError], match: str, column: str, row: int
) -> None:
    with pytest.raises(error, match=match) as info:
        udb.query(Item).bulk_update(rows)
    assert info.value.column == column and info.value.row == row
    assert stored(udb) == original()


def test_server_refusal_rolls_everything_back(udb: SQLConnection) -> None:
    with pytest.raises(DbpError, match="tu_item"):
        udb.query(Item).bulk_update([{"iid": 1, "qty": 5}, {"iid": 2, "code": "too long"}])
    assert stored(udb) == original()


def test_hostile_values_are_data(udb: SQLConnection) -> None:
    evil = "'); DROP TABLE tu_item; --"
    assert udb.query(Item).bulk_update([{"iid": 1, "name": evil}]) == 1
    assert stored(udb)[1][0] == evil


def test_bad_arguments(udb: SQLConnection) -> None:
    with pytest.raises(DbpError, match="missing"):
        udb.query(Item).bulk_update([{"iid": 1, "qty": 1}], missing="insert")  # type: ignore[arg-type]
    with pytest.raises(DbpError, match="wrap it in a list"):
        udb.query(Item).bulk_update({"iid": 1, "qty": 1})
    with pytest.raises(UnknownColumnError):
        udb.query(Item).bulk_update([{"iid": 1, "qty": 1}], key=["nope"])
    with pytest.raises(QueryError):
        udb.query(Item).bulk_update([{"iid": 1, "qty": 1}], key=[])
    assert udb.query(Item).bulk_update([]) == 0
    assert udb.query(Item).bulk_update([{"iid": 1}]) == 0  # nothing to set
    assert stored(udb) == original()


def test_inside_a_transaction_it_is_undone_with_it(udb: SQLConnection) -> None:
    with pytest.raises(RuntimeError), udb.transaction():
        assert udb.query(Item).bulk_update([{"iid": 1, "qty": 5}]) == 1
        assert udb.query(Item).bulk_update([{"iid": 2, "qty": 6}]) == 1  # twice in one transaction
        raise RuntimeError("boom")
    assert stored(udb) == original()
    with udb.transaction():
        udb.query(Item).bulk_update([{"iid": 1, "qty": 5}])
    assert stored(udb)[1][1] == 5


def test_concurrent_calls_on_overlapping_keys_do_not_deadlock(udb: SQLConnection, module_dsn: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(n: int) -> None:
        db = SQLConnection()
        db.connect(dsn=module_dsn, min_size=1, max_size=1)
        try:
            barrier.wait(timeout=30)
            keys = list(range(1, 11)) if n % 2 else list(range(10, 0, -1))
            for _ in range(5):
                db.query(Item).bulk_update([{"iid": k, "qty": n} for k in keys])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    qtys = {v[1] for v in stored(udb).values()}
    assert len(qtys) == 1 and qtys <= {0, 1, 2, 3}


def test_foreign_key_violation_names_the_constraint(udb: SQLConnection) -> None:
    with pytest.raises(ConstraintError, match="tu_obs_ref_fkey"):
        udb.query(Obs).bulk_update([{"oid": "a", "fid": 1, "ref": "nope"}])


def test_dbp_load_update(udb: SQLConnection, module_dsn: str, tmp_path: Any) -> None:
    from click.testing import CliRunner

    from dbplugins.cli import cli

    path = tmp_path / "items.csv"
    path.write_text("iid,qty\n1,111\n2,\n404,1\n")
    result = CliRunner().invoke(cli, ["load", "tu_item", str(path), "--update", "--dsn", module_dsn])
    assert result.exit_code == 0, result.output
    assert "2 rows updated" in result.output and "1 with no stored key" in result.output
    want = original()
    want[1] = ("n1", 111, 1.5, "c1", ["t1"])
    want[2] = ("n2", None, 3.0, "c2", ["t2"])  # an empty CSV field is NULL in a nullable column
    assert stored(udb) == want
    bad = tmp_path / "bad.csv"
    bad.write_text("iid,qty\n1,5\n2,x\n")
    result = CliRunner().invoke(cli, ["load", "tu_item", str(bad), "--update", "--dsn", module_dsn])
    assert result.exit_code == 1
    assert stored(udb) == want
