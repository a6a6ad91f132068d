"""The column-type layer: every row of issue 12's table, and the rules of docs/types.md, on every write
path."""

from __future__ import annotations

import datetime
import decimal
import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import pytest

from dbplugins import Column, DataError, DbpError, UnknownColumnError, model
from dbplugins._types.column import ColumnType, Refused, canonical_type
from dbplugins._types.schema import table_of


@model("t_types", primary_key=["id"])
@dataclass
class T:
    id: int
    n: int | None = None
    short: Annotated[str | None, Column("varchar(5)")] = None
    dbl: float | None = None
    rl: Annotated[float | None, Column("real")] = None
    status: Annotated[str | None, Column("varchar(8)", default="'new'")] = None
    code: Annotated[str | None, Column("char(3)")] = None
    doc: Annotated[object | None, Column("json")] = None
    tags: list[str] | None = None


DDL = """CREATE TABLE t_types (id integer PRIMARY KEY, n integer, short varchar(5), dbl double precision,
    rl real, status varchar(8) DEFAULT 'new', code char(3), doc json, tags varchar[])"""


@pytest.fixture
def tdb(db: Any) -> Any:
    db.execute(DDL)
    return db


def _bulk(mode: str) -> Callable[[Any, dict[str, Any]], None]:
    def write(db: Any, row: dict[str, Any]) -> None:
        db.query(T).bulk_insert([row], on_conflict=mode)

    return write


def _goc(db: Any, row: dict[str, Any]) -> None:
    db.query(T).get_or_create(filter_by={"id": row["id"]}, **{k: v for k, v in row.items() if k != "id"})


def _many(db: Any, row: dict[str, Any]) -> None:
    db.query(T).get_or_create_many([row])


def _update(db: Any, row: dict[str, Any]) -> None:
    instance, _ = db.query(T).get_or_create(filter_by={"id": row["id"]})
    try:
        db.query().update(instance, {k: v for k, v in row.items() if k != "id"})
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


WRITES = {
    "bulk_insert:error": _bulk("error"),
    "bulk_insert:ignore": _bulk("ignore"),
    "bulk_insert:update": _bulk("update"),
    "get_or_create": _goc,
    "get_or_create_many": _many,
    "update": _update,
}
paths = pytest.mark.parametrize("write", list(WRITES.values()), ids=list(WRITES))


def stored(db: Any, column: str, ident: int = 1) -> Any:
    return db.execute(f"SELECT {column} FROM t_types WHERE id = %s", [ident])[0][0]  # noqa: S608 - test columns


# -- the table of issue 12 -----------------------------------------------------------------------------------


@paths
def test_a_fractional_float_into_integer_is_refused_never_rounded(tdb: Any, write: Any) -> None:
    with pytest.raises(DataError, match="fractional") as info:
        write(tdb, {"id": 1, "n": 1.5})
    assert info.value.column == "n"
    assert tdb.execute("SELECT count(*) FROM t_types WHERE n IS NOT NULL")[0][0] == 0


@paths
def test_an_integral_float_goes_into_integer(tdb: Any, write: Any) -> None:
    write(tdb, {"id": 1, "n": 1001.0})
    assert stored(tdb, "n") == 1001


@paths
def test_too_long_text_is_refused_never_truncated(tdb: Any, write: Any) -> None:
    with pytest.raises(DataError, match="too long") as info:
        write(tdb, {"id": 1, "short": "123456"})
    assert info.value.column == "short"
    assert tdb.execute("SELECT count(*) FROM t_types WHERE short IS NOT NULL")[0][0] == 0


@paths
@pytest.mark.parametrize(
    ("column", "value"),
    [("dbl", decimal.Decimal("1e400")), ("dbl", 10**400), ("rl", 1e300), ("rl", -1e300), ("rl", 1e-50)],
)
def test_finite_values_beyond_the_range_are_refused_never_infinity(
    tdb: Any, write: Any, column: str, value: Any
) -> None:
    with pytest.raises(DataError) as info:
        write(tdb, {"id": 1, column: value})
    assert info.value.column == column
    assert tdb.execute(f"SELECT count(*) FROM t_types WHERE {column} IS NOT NULL")[0][0] == 0  # noqa: S608


@paths
def test_a_float_column_keeps_nan_and_infinity(tdb: Any, write: Any) -> None:
    write(tdb, {"id": 1, "dbl": math.nan, "rl": -math.inf})
    assert math.isnan(stored(tdb, "dbl"))
    assert stored(tdb, "rl") == -math.inf


@pytest.mark.parametrize(
    "write", [w for k, w in WRITES.items() if k != "update"], ids=[k for k in WRITES if k != "update"]
)
def test_a_declared_default_applies_when_the_key_is_left_out(tdb: Any, write: Any) -> None:
    write(tdb, {"id": 1, "n": 3})
    assert stored(tdb, "status") == "new"


@paths
def test_char_n_works_and_pads(tdb: Any, write: Any) -> None:
    write(tdb, {"id": 1, "code": "ab"})
    assert stored(tdb, "code") == "ab "
    with pytest.raises(DataError, match="too long"):
        write(tdb, {"id": 2, "code": "abcd"})


def test_on_conflict_update_with_a_json_column(tdb: Any) -> None:
    q = tdb.query(T)
    q.bulk_insert([{"id": 1, "doc": {"a": 1}}])
    assert q.bulk_insert([{"id": 1, "doc": {"a": 2}}, {"id": 2, "doc": [1]}], on_conflict="update") == 2
    assert stored(tdb, "doc") == {"a": 2}


@paths
def test_a_tuple_for_an_array_column(tdb: Any, write: Any) -> None:
    write(tdb, {"id": 1, "tags": ("a", None, "b")})
    assert stored(tdb, "tags") == ["a", None, "b"]


# -- NULL markers, pandas and numpy values -----------------------------------------------------------------


class NAType:
    """Stands for pandas' ``pd.NA`` (recognised by its type name: pandas is not a dependency)."""


class NaTType:
    """Stands for pandas' ``NaT``."""


class int64:  # noqa: N801 - numpy's spelling
    """Stands for a numpy integer (registered as numbers.Integral, as numpy's are)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value


numbers.Integral.register(int64)


@paths
@pytest.mark.parametrize("missing", [math.nan, NAType(), NaTType()], ids=["nan", "pd.NA", "NaT"])
def test_missing_markers_are_null_outside_float_columns(tdb: Any, write: Any, missing: Any) -> None:
    write(tdb, {"id": 1, "n": missing, "short": missing, "code": missing, "doc": missing, "tags": missing})
    assert tdb.execute("SELECT n, short, code, doc, tags FROM t_types") == [(None,) * 5]


@paths
def test_numpy_integers_and_pandas_records(tdb: Any, write: Any) -> None:
    # df.to_dict("records") of an int column with a gap: float64, NaN for the gap
    write(tdb, {"id": 1, "n": int64(7), "dbl": 2})
    assert (stored(tdb, "n"), stored(tdb, "dbl")) == (7, 2.0)


@paths
def test_bool_is_not_an_integer(tdb: Any, write: Any) -> None:
    with pytest.raises(DataError, match="bool") as info:
        write(tdb, {"id": 1, "n": True})
    assert info.value.column == "n"


# -- unknown keys --------------------------------------------------------------------------------------------


def test_unknown_keys_error_by_default_and_ignore_on_request(tdb: Any) -> None:
    q = tdb.query(T)
    with pytest.raises(UnknownColumnError, match="'_id'") as info:
        q.bulk_insert([{"id": 1, "_id": "x"}])
    assert (info.value.column, info.value.row) == ("_id", 0)
    with pytest.raises(UnknownColumnError, match="'_id'"):
        q.get_or_create_many([{"id": 1, "_id": "x"}])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "ignore" is silent
        assert q.bulk_insert([{"id": 1, "n": 1, "_id": "x"}, {"id": 2, "aid": 3}], unknown="ignore") == 2
        [(row, created)] = q.get_or_create_many([{"id": 3, "n": 2.0, "cds": 1}], unknown="ignore")
    assert created and row.n == 2
    with pytest.raises(DbpError, match="unknown"):
        q.bulk_insert([{"id": 9}], unknown="drop")


def test_the_db_plugins_package_drops_unknown_keys_with_one_warning_per_call(dsn: str) -> None:
    from db_plugins.db.sql import SQLConnection

    old = SQLConnection()
    old.connect(dsn=dsn, min_size=1, max_size=2, timeout=10)
    try:
        old.execute(DDL)
        with pytest.warns(UserWarning, match=r"ignored 2 key\(s\) .*: _id, aid") as record:
            assert old.query(T).bulk_insert([{"id": 1, "_id": "x"}, {"id": 2, "aid": 1, "_id": "y"}]) == 2
        assert len(record) == 1
        with pytest.warns(UserWarning, match="cds") as record:
            old.query(T).get_or_create_many([{"id": 3, "cds": 1}, {"id": 4, "cds": 2}])
        assert len(record) == 1
        with pytest.raises(UnknownColumnError):
            old.query(T).bulk_insert([{"id": 5, "_id": "x"}], unknown="error")
    finally:
        old.close()


# -- the column type itself ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "canonical"),
    [
        ("char(3)", "character(3)"),
        ("char", "character(1)"),
        ("bpchar(2)", "character(2)"),
        ("decimal(10, 2)", "numeric(10,2)"),
        ("timestamp(3)", "timestamp(3) without time zone"),
        ("timestamptz(0)", "timestamp(0) with time zone"),
        ("timestamp(6) with time zone", "timestamp(6) with time zone"),
        ("timetz", "time with time zone"),
        ("time(2)", "time(2) without time zone"),
        ("varchar(5)[]", "character varying(5)[]"),
        ("int8", "bigint"),
        ("float4", "real"),
        ("jsonb", "jsonb"),
    ],
)
def test_canonical_type_is_format_type_spelling(declared: str, canonical: str) -> None:
    assert canonical_type(declared) == canonical
    assert canonical_type(canonical) == canonical


def test_model_columns_carry_their_compiled_type() -> None:
    col = table_of(T).columns["short"]
    assert col.sql_type == "character varying(5)"
    assert col.type.length == 5 and col.type.cast_type == "character varying"
    assert table_of(T).columns["code"].type.cast_type == "bpchar"  # a cast to "character" is char(1)
    assert table_of(T).columns["status"].type.default == "new"


@pytest.mark.parametrize(
    ("sql_type", "text", "value"),
    [
        ("integer", "1001.0", 1001),
        ("integer", " 7 ", 7),
        ("real", "nan", math.nan),
        ("numeric(10,2)", "1.25", decimal.Decimal("1.25")),
        ("boolean", "yes", True),
        ("timestamp(3)", "2024-01-02T03:04:05", datetime.datetime(2024, 1, 2, 3, 4, 5)),
        ("varchar(3)[]", '{a,"b c",NULL}', ["a", "b c", None]),
        ("integer[]", "[1, 2.0, null]", [1, 2, None]),
        ("jsonb", '{"a": [1]}', {"a": [1]}),
    ],
)
def test_from_text_is_the_load_hook(sql_type: str, text: str, value: Any) -> None:
    got = ColumnType("c", sql_type).from_text(text)
    assert got == value or (isinstance(value, float) and math.isnan(got))


@pytest.mark.parametrize(
    ("sql_type", "text"),
    [("integer", "1.5"), ("varchar(3)", "abcd"), ("varchar(3)[]", "{abcd}"), ("real", "1e300")],
)
def test_from_text_refuses_what_every_other_path_refuses(sql_type: str, text: str) -> None:
    with pytest.raises(Refused):
        ColumnType("c", sql_type).from_text(text)


def test_from_json_parses_strings_of_typed_columns() -> None:
    assert ColumnType("c", "date").from_json("2024-01-02") == datetime.date(2024, 1, 2)
    assert ColumnType("c", "integer").from_json(1001.0) == 1001
    with pytest.raises(Refused):
        ColumnType("c", "integer").from_json("12")  # a JSON string is not a number


@model("t_fdefault", primary_key=["id"])
@dataclass
class FieldDefault:
    id: int
    n: int = 5  # a dataclass default, no SQL default


@pytest.mark.parametrize(
    "write",
    [
        lambda db: db.query(FieldDefault).bulk_insert([{"id": 1}]),
        lambda db: db.query(FieldDefault).get_or_create(filter_by={"id": 1}),
        lambda db: db.query(FieldDefault).get_or_create_many([{"id": 1}]),
    ],
    ids=["bulk_insert", "get_or_create", "get_or_create_many"],
)
def test_a_dataclass_default_applies_on_every_path(db: Any, write: Any) -> None:
    db.execute("CREATE TABLE t_fdefault (id integer PRIMARY KEY, n integer NOT NULL)")
    write(db)
    assert db.execute("SELECT n FROM t_fdefault") == [(5,)]


@paths
def test_errors_name_model_column_and_row_one_way(tdb: Any, write: Any) -> None:
    with pytest.raises(DataError) as info:
        write(tdb, {"id": 1, "n": 2.5})
    row = ", row 0" if info.value.row is not None else ""
    assert str(info.value).endswith(f"[model 't_types', column 'n'{row}]")
    assert " in row " not in str(info.value) and "(row " not in str(info.value)


@paths
def test_psycopg_json_wrappers_are_accepted(tdb: Any, write: Any) -> None:
    from psycopg.types.json import Json

    write(tdb, {"id": 1, "doc": Json({"a": [1, 2]})})
    assert stored(tdb, "doc") == {"a": [1, 2]}


@model("t_sdefault", primary_key=["id"])
@dataclass
class ServerDefault:
    id: int
    at: Annotated[datetime.datetime | None, Column("timestamp", default="now()")] = None


def test_bulk_insert_leaves_a_server_computed_default_to_the_server(db: Any) -> None:
    """A default only the server computes: COPY leaves the column out for the rows that leave it out, so the
    server applies it, as get_or_create's INSERT does (tests/test_server_defaults.py covers every path)."""
    db.execute("CREATE TABLE t_sdefault (id integer PRIMARY KEY, at timestamp DEFAULT now())")
    given = datetime.datetime(2024, 1, 1)
    assert db.query(ServerDefault).bulk_insert([{"id": 1, "at": given}, {"id": 2}]) == 2
    db.query(ServerDefault).get_or_create(filter_by={"id": 3})
    rows = db.execute("SELECT id, at FROM t_sdefault ORDER BY id")
    assert rows[0] == (1, given) and all(at is not None and at > given for _, at in rows[1:])
