"""The built-in models (dbplugins.models) against the database that ``sql/schema`` creates.

Each table of the created database is read back from the catalogs (pg_attribute, pg_constraint, pg_index) and
compared with what its dataclass declares (``table_of``), then spot-checked against literal facts of the
original schema (reference/original-schema.md), so neither the hand-written DDL nor the dataclasses can drift.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import typing
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from dbplugins._sqlfiles import schema_files, schema_script
from dbplugins._types.schema import Column, Index, canonical_type, model, normalize_predicate, table_of
from dbplugins.config import from_dsn
from dbplugins.errors import ConfigurationError
from dbplugins.models import (
    ALL_MODELS,
    Dataquality,
    Detection,
    Feature,
    NonDetection,
    Object,
    Probability,
    Taxonomy,
)

MODEL_IDS = [table_of(m).name for m in ALL_MODELS]

# -- catalog introspection -----------------------------------------------------------------------------------

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'public' AND c.relname = %(table)s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_CONSTRAINTS = """
SELECT con.conname, con.contype,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord),
       fc.relname,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord),
       con.confupdtype, con.confdeltype
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class fc ON fc.oid = con.confrelid
WHERE n.nspname = 'public' AND c.relname = %(table)s AND con.contype IN ('p', 'f', 'u', 'c', 'x')
ORDER BY con.conname
"""

_INDEXES = """
SELECT ic.relname, am.amname,
       ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(num, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.ord),
       pg_get_expr(i.indpred, i.indrelid), i.indisunique, i.indisprimary
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = ic.relam
WHERE n.nspname = 'public' AND t.relname = %(table)s
ORDER BY ic.relname
"""


@dataclass(frozen=True)
class Inspected:
    """One table as the catalogs describe it, in the shapes the declared side is converted to."""

    columns: list[tuple[str, str, bool, str | None]]
    primary_key: tuple[str, tuple[str, ...]] | None
    foreign_keys: set[tuple[str, tuple[str, ...], str, tuple[str, ...]]]
    other_constraints: list[tuple[str, str]]
    fk_actions: set[tuple[str, str]]
    indexes: set[tuple[str, str, tuple[str, ...], str | None, bool]]
    pk_index: tuple[str, str, tuple[str, ...]] | None


def inspect_table(conn: psycopg.Connection[Any], table: str) -> Inspected:
    """Read ``table`` back from the catalogs."""
    params = {"table": table}
    columns = [(n, t, nullable, d) for n, t, nullable, d in conn.execute(_COLUMNS, params)]
    primary_key = None
    fks = set()
    others = []
    actions = set()
    for name, kind, cols, ref_table, ref_cols, on_update, on_delete in conn.execute(_CONSTRAINTS, params):
        if kind == "p":
            primary_key = (name, tuple(cols))
        elif kind == "f":
            fks.add((name, tuple(cols), ref_table, tuple(ref_cols)))
            actions.add((on_update, on_delete))
        else:
            others.append((name, kind))
    indexes = set()
    pk_index = None
    for name, method, cols, predicate, is_unique, is_primary in conn.execute(_INDEXES, params):
        if is_primary:
            pk_index = (name, method, tuple(cols))
            continue
        where = normalize_predicate(predicate) if predicate else None
        indexes.add((name, method, tuple(cols), where, is_unique))
    return Inspected(columns, primary_key, fks, others, actions, indexes, pk_index)


@pytest.fixture(scope="module")
def schema_dsn(server_dsn: str) -> typing.Iterator[str]:
    """One database for this module's read-only catalog checks: ``sql/schema`` applied to an empty database.

    Module-scoped because cloning a database per check costs ~0.3 s each; the tests that write use ``dsn``.
    """
    name = f"dbp_t_models_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        target = make_conninfo(server_dsn, dbname=name)
        with psycopg.connect(target) as connection:
            connection.execute(schema_script())  # our own files
        yield target
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def conn(schema_dsn: str) -> typing.Iterator[psycopg.Connection[Any]]:
    """A read-only connection to the module's schema database."""
    with psycopg.connect(schema_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def catalog(conn: psycopg.Connection[Any]) -> dict[str, Inspected]:
    """Every built-in table, read back from the catalogs once."""
    return {name: inspect_table(conn, name) for name in MODEL_IDS}


# -- the created database equals the dataclasses -------------------------------------------------------------


@pytest.mark.parametrize("model_cls", ALL_MODELS, ids=MODEL_IDS)
def test_database_matches_dataclass(catalog: dict[str, Inspected], model_cls: type) -> None:
    table = table_of(model_cls)
    got = catalog[table.name]

    declared_columns = [(c.name, c.sql_type, c.nullable, c.default) for c in table.columns.values()]
    assert got.columns == declared_columns
    assert [f.name for f in dataclasses.fields(model_cls)] == [c[0] for c in got.columns]  # order = fields

    assert got.primary_key == (table.pk_name, table.primary_key)
    assert got.pk_index == (table.pk_name, "btree", table.primary_key)

    declared_fks = {(f.name, f.columns, f.ref_table, f.ref_columns) for f in table.foreign_keys}
    assert got.foreign_keys == declared_fks
    assert got.fk_actions <= {("a", "a")}  # NO ACTION on update and delete, as the original
    assert got.other_constraints == []  # no unique, check or exclusion constraints
    assert table.unique == []

    declared_indexes = {(i.name, i.using, i.columns, i.where, i.unique) for i in table.indexes}
    assert got.indexes == declared_indexes


def test_no_other_tables(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S') ORDER BY 1"
    ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(MODEL_IDS)


# -- literal facts of the original schema --------------------------------------------------------------------

# Column counts per table, counted from reference/original-schema.md.
COLUMN_COUNTS = {
    "object": 22,
    "step": 5,
    "pipeline": 7,
    "taxonomy": 3,
    "probability": 6,
    "feature_version": 3,
    "feature": 5,
    "xmatch": 6,
    "allwise": 17,
    "magstat": 28,
    "non_detection": 4,
    "detection": 30,
    "dataquality": 32,
    "gaia_ztf": 7,
    "ss_ztf": 5,
    "ps1_ztf": 27,
    "reference": 15,
}

PRIMARY_KEYS = {
    "object": ("oid",),
    "step": ("step_id",),
    "pipeline": ("pipeline_id",),
    "taxonomy": ("classifier_name", "classifier_version"),
    "probability": ("oid", "class_name", "classifier_name", "classifier_version"),
    "feature_version": ("version",),
    "feature": ("oid", "name", "fid", "version"),
    "xmatch": ("oid", "catid"),
    "allwise": ("oid_catalog",),
    "magstat": ("oid", "fid"),
    "non_detection": ("oid", "fid", "mjd"),
    "detection": ("candid", "oid"),
    "dataquality": ("candid", "oid"),
    "gaia_ztf": ("oid",),
    "ss_ztf": ("oid",),
    "ps1_ztf": ("oid", "candid"),
    "reference": ("oid", "rfid"),
}


def _oid_fk(table: str) -> tuple[str, tuple[str, ...], str, tuple[str, ...]]:
    return (f"{table}_oid_fkey", ("oid",), "object", ("oid",))


FOREIGN_KEYS = {
    "object": set(),
    "step": set(),
    "pipeline": set(),
    "taxonomy": set(),
    "probability": {_oid_fk("probability")},
    "feature_version": {
        ("feature_version_step_id_feature_fkey", ("step_id_feature",), "step", ("step_id",)),
        ("feature_version_step_id_preprocess_fkey", ("step_id_preprocess",), "step", ("step_id",)),
    },
    "feature": {_oid_fk("feature"), ("feature_version_fkey", ("version",), "feature_version", ("version",))},
    "xmatch": {_oid_fk("xmatch")},
    "allwise": set(),
    "magstat": {_oid_fk("magstat")},
    "non_detection": {_oid_fk("non_detection")},
    "detection": {_oid_fk("detection")},
    "dataquality": {("dataquality_candid_oid_fkey", ("candid", "oid"), "detection", ("candid", "oid"))},
    "gaia_ztf": {_oid_fk("gaia_ztf")},
    "ss_ztf": {_oid_fk("ss_ztf")},
    "ps1_ztf": {_oid_fk("ps1_ztf")},
    "reference": {_oid_fk("reference")},
}


def _btree(name: str, column: str) -> tuple[str, str, tuple[str, ...], str | None, bool]:
    return (name, "btree", (column,), None, False)


def _hash(name: str, column: str) -> tuple[str, str, tuple[str, ...], str | None, bool]:
    return (name, "hash", (column,), None, False)


_MAGSTATS_BTREE = ["dmdt_first", "firstmjd", "lastmjd", "magmean", "magmin", "magfirst", "ndet", "maglast"]

INDEXES = {
    "object": {
        _btree(f"ix_object_{c}", c)
        for c in ("ndet", "firstmjd", "g_r_max", "g_r_mean_corr", "meanra", "meandec")
    },
    "step": set(),
    "pipeline": set(),
    "taxonomy": set(),
    "probability": {
        _hash("ix_probabilities_oid", "oid"),
        _btree("ix_probabilities_probability", "probability"),
        _btree("ix_probabilities_ranking", "ranking"),
        ("ix_classification_rank1", "btree", ("ranking",), "ranking = 1", False),
    },
    "feature_version": set(),
    "feature": {_hash("ix_feature_oid_2", "oid")},
    "xmatch": set(),
    "allwise": {_btree("ix_allwise_dec", "dec"), _btree("ix_allwise_ra", "ra")},
    "magstat": {_btree(f"ix_magstats_{c}", c) for c in _MAGSTATS_BTREE} | {_hash("ix_magstats_oid", "oid")},
    "non_detection": {_hash("ix_non_detection_oid", "oid")},
    "detection": {_hash("ix_ndetection_oid", "oid")},
    "dataquality": set(),
    "gaia_ztf": set(),
    "ss_ztf": {_btree("ix_ss_ztf_candid", "candid"), _btree("ix_ss_ztf_ssnamenr", "ssnamenr")},
    "ps1_ztf": set(),
    "reference": {_btree("ix_reference_fid", "fid")},
}


def test_literal_tables_cover_all_models() -> None:
    for literal in (COLUMN_COUNTS, PRIMARY_KEYS, FOREIGN_KEYS, INDEXES):
        assert list(literal) == MODEL_IDS


@pytest.mark.parametrize("table", MODEL_IDS)
def test_database_matches_spec(catalog: dict[str, Inspected], table: str) -> None:
    got = catalog[table]
    assert len(got.columns) == COLUMN_COUNTS[table]
    assert got.primary_key == (f"{table}_pkey", PRIMARY_KEYS[table])
    assert got.foreign_keys == FOREIGN_KEYS[table]
    assert got.indexes == INDEXES[table]
    for name, sql_type, nullable, default in got.columns:
        assert default is None, f"{table}.{name} has a default"  # the original has no defaults at all
        assert sql_type != "real", f"{table}.{name}: every float is double precision"
        if name in PRIMARY_KEYS[table]:
            assert not nullable


# (table, column) -> (format_type, nullable), straight from the spec.
COLUMN_FACTS = [
    ("detection", "pid", "double precision", False),
    ("detection", "candid", "bigint", False),
    ("detection", "parent_candid", "bigint", True),
    ("detection", "diffmaglim", "double precision", True),
    ("detection", "rbversion", "character varying", True),
    ("detection", "has_stamp", "boolean", False),
    ("taxonomy", "classes", "character varying[]", False),
    ("step", "date", "timestamp without time zone", False),
    ("pipeline", "date", "timestamp without time zone", False),
    ("pipeline", "step_id_stamp", "character varying", True),
    ("object", "oid", "character varying", False),
    ("object", "ndet", "integer", True),
    ("object", "reference_change", "boolean", True),
    ("object", "g_r_max", "double precision", True),
    ("magstat", "step_id_corr", "character varying", False),
    ("magstat", "saturation_rate", "double precision", True),
    ("feature", "value", "double precision", True),
    ("ps1_ztf", "objectidps1", "double precision", True),
    ("ps1_ztf", "nmtchps", "integer", False),
    ("reference", "rfid", "bigint", False),
    ("reference", "field", "integer", True),
    ("gaia_ztf", "candid", "bigint", False),
    ("dataquality", "oid", "character varying", False),
    ("non_detection", "fid", "integer", False),
]


@pytest.mark.parametrize(("table", "column", "sql_type", "nullable"), COLUMN_FACTS)
def test_column_facts(
    conn: psycopg.Connection[Any], table: str, column: str, sql_type: str, nullable: bool
) -> None:
    row = conn.execute(
        "SELECT format_type(a.atttypid, a.atttypmod), NOT a.attnotnull FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attname = %s AND NOT a.attisdropped",
        (f"public.{table}", column),
    ).fetchone()
    assert row == (sql_type, nullable)


def test_spot_checks_on_indexes_and_keys(catalog: dict[str, Inspected]) -> None:
    assert ("ix_ndetection_oid", "hash", ("oid",), None, False) in catalog["detection"].indexes
    rank1 = [i for i in catalog["probability"].indexes if i[0] == "ix_classification_rank1"]
    assert rank1 == [("ix_classification_rank1", "btree", ("ranking",), "ranking = 1", False)]
    dataquality = catalog["dataquality"]
    assert dataquality.foreign_keys == {
        ("dataquality_candid_oid_fkey", ("candid", "oid"), "detection", ("candid", "oid"))
    }
    assert dataquality.indexes == set()
    feature = catalog["feature"]
    assert ("feature_version_fkey", ("version",), "feature_version", ("version",)) in feature.foreign_keys


def test_partial_index_is_used_as_declared(conn: psycopg.Connection[Any]) -> None:
    predicate = conn.execute(
        "SELECT pg_get_expr(i.indpred, i.indrelid) FROM pg_index i "
        "WHERE i.indexrelid = to_regclass('public.ix_classification_rank1')"
    ).fetchone()
    assert predicate == ("(ranking = 1)",)
    index = next(i for i in table_of(Probability).indexes if i.name == "ix_classification_rank1")
    assert index.where == normalize_predicate(predicate[0])


# -- the DDL files -------------------------------------------------------------------------------------------


def test_schema_files_are_numbered_in_model_order() -> None:
    names = [p.name for p in schema_files()]
    assert names == [f"{n:02d}_{table}.sql" for n, table in enumerate(MODEL_IDS, start=1)]
    for path in schema_files():
        assert path.read_text().startswith("-- "), f"{path.name} needs a header comment"


def test_schema_script_is_idempotent(empty_dsn: str) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as connection:
        connection.execute(schema_script())  # our own files
        connection.execute(schema_script())
        count = connection.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r'"
        ).fetchone()
    assert count == (len(ALL_MODELS),)


def test_schema_script_runs_again_on_the_built_schema(dsn: str, catalog: dict[str, Inspected]) -> None:
    """``create_db()`` on the database the fixtures built: nothing fails, nothing changes."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        assert {t: inspect_table(connection, t) for t in MODEL_IDS} == catalog
        connection.execute(schema_script())  # our own files
        assert {t: inspect_table(connection, t) for t in MODEL_IDS} == catalog


def test_one_statement_per_semicolon(empty_dsn: str) -> None:
    """Each ``;`` ends exactly one statement: the files can be split naively and run statement by
    statement."""
    with psycopg.connect(empty_dsn, autocommit=True) as connection:
        for path in schema_files():
            text = "\n".join(
                line for line in path.read_text().splitlines() if not line.lstrip().startswith("--")
            )
            statements = [s.strip() for s in text.split(";") if s.strip()]
            assert statements, path.name
            assert statements[0].startswith(f"CREATE TABLE IF NOT EXISTS {path.stem[3:]} (")
            for statement in statements:
                assert statement.startswith(("CREATE TABLE IF NOT EXISTS", "CREATE INDEX IF NOT EXISTS"))
                connection.execute(statement)


# -- the dataclasses -----------------------------------------------------------------------------------------


def test_all_models() -> None:
    assert len(ALL_MODELS) == 17
    assert len({table_of(m).name for m in ALL_MODELS}) == 17
    seen: set[str] = set()
    for m in ALL_MODELS:  # FK-dependency order: referenced tables come first
        table = table_of(m)
        for fk in table.foreign_keys:
            assert fk.ref_table in seen or fk.ref_table == table.name, (table.name, fk.ref_table)
        seen.add(table.name)
    import dbplugins.models as models_module

    assert set(models_module.__all__) == {m.__name__ for m in ALL_MODELS} | {"ALL_MODELS"}


@pytest.mark.parametrize("model_cls", ALL_MODELS, ids=MODEL_IDS)
def test_annotations_resolve(model_cls: type) -> None:
    """``@model`` reads string annotations with get_type_hints: they must resolve in the models' module."""
    hints = typing.get_type_hints(model_cls, include_extras=True)
    table = table_of(model_cls)
    assert list(hints) == table.column_names
    for f in dataclasses.fields(model_cls):
        column = table.columns[f.name]
        assert f.kw_only
        if column.nullable:
            assert f.default is None, f"{table.name}.{f.name}: a nullable column defaults to None"
        else:
            assert f.default is dataclasses.MISSING, f"{table.name}.{f.name}: a NOT NULL column is required"
        assert column.sql_type == canonical_type(column.sql_type)


def test_construct_by_keyword() -> None:
    obj = Object(oid="ZTF1", ndet=2)
    assert obj.lastmjd is None and obj.ndet == 2
    with pytest.raises(TypeError):
        Object("ZTF1")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Detection(candid=1, oid="ZTF1")  # type: ignore[call-arg]
    tax = Taxonomy(classifier_name="lc", classifier_version="1", classes=["SN", "AGN"])
    assert tax.classes == ["SN", "AGN"]
    dq = Dataquality(candid=1, oid="ZTF1", fid=2)
    assert dq.exptime is None
    assert Feature(oid="ZTF1", name="amp", fid=1, version="1.0").value is None


def _detection() -> Detection:
    return Detection(
        candid=1234567890123,
        oid="ZTF20aaelulu",
        mjd=59000.5,
        fid=1,
        pid=9876543210.0,
        isdiffpos=1,
        ra=10.0,
        dec=-5.0,
        magpsf=18.2,
        sigmapsf=0.1,
        corrected=False,
        dubious=False,
        has_stamp=True,
        step_id_corr="corr-1.0",
    )


def test_reprs() -> None:
    assert repr(Object(oid="ZTF20aaelulu")) == "<Object(oid='ZTF20aaelulu')>"
    assert repr(_detection()) == "<Detection(candid='1234567890123', fid='1', oid='ZTF20aaelulu')>"


def test_getitem() -> None:
    det = _detection()
    assert det["magpsf"] == 18.2
    assert det["rb"] is None
    with pytest.raises(KeyError):
        det["nope"]
    non = NonDetection(oid="ZTF1", fid=2, mjd=59000.0, diffmaglim=20.1)
    assert non["diffmaglim"] == 20.1 and non["fid"] == 2
    with pytest.raises(KeyError):
        non["__class__"]


# A user model in a module with ``from __future__ import annotations``: aliases, ``big | None`` and nested
# Annotated must resolve at decoration time.
big = Annotated[int, Column("bigint")]


@model(
    "watchlist_test", primary_key=["wid"], indexes=[Index("ix_watchlist_test_name", ["name"], using="HASH")]
)
@dataclass(kw_only=True)
class _Watchlist:
    wid: big
    name: str
    parent: big | None = None
    oid: Annotated[big, Column(references="object.oid")] | None = None


def test_user_model_annotations() -> None:
    table = table_of(_Watchlist)
    assert [(c.name, c.sql_type, c.nullable) for c in table.columns.values()] == [
        ("wid", "bigint", False),
        ("name", "character varying", False),
        ("parent", "bigint", True),
        ("oid", "bigint", True),
    ]
    assert [(f.name, f.columns, f.ref_table) for f in table.foreign_keys] == [
        ("watchlist_test_oid_fkey", ("oid",), "object")
    ]
    assert table.indexes[0].using == "hash"


# -- the db_plugins alias package ----------------------------------------------------------------------------


def test_alias_imports() -> None:
    import dbplugins
    import dbplugins.models
    from db_plugins.db.sql import SQLConnection
    from db_plugins.db.sql import models as alias_models
    from db_plugins.db.sql.connection import SQLConnection as ConnSQLConnection

    # the compatibility class only changes a default (unknown row keys dropped with a warning)
    assert SQLConnection is ConnSQLConnection
    assert issubclass(SQLConnection, dbplugins.SQLConnection)
    namespace: dict[str, Any] = {}
    exec("from db_plugins.db.sql.models import *", namespace)
    for m in ALL_MODELS:
        assert namespace[m.__name__] is m
        assert getattr(alias_models, m.__name__) is m
    exec("from db_plugins.db.sql import *", namespace)
    assert namespace["SQLConnection"] is SQLConnection
    assert namespace["Detection"] is Detection


def test_alias_lazy_query_names() -> None:
    import db_plugins.db.sql as alias

    try:
        query = importlib.import_module("dbplugins._query.query")
    except ModuleNotFoundError:
        query = None
    for name, target in (("Pagination", "Pagination"), ("SQLQuery", "Query")):
        if query is not None and hasattr(query, target):
            assert getattr(alias, name) is getattr(query, target)
        else:
            with pytest.raises(AttributeError):
                getattr(alias, name)
    missing = "NotAThing"
    with pytest.raises(AttributeError):
        getattr(alias, missing)


def test_alias_connection_helpers() -> None:
    from db_plugins.db.sql.connection import MAP_KEYS, satisfy_keys, settings_map

    assert MAP_KEYS == {"HOST", "USER", "PASSWORD", "PORT", "DB_NAME", "ENGINE"}
    assert satisfy_keys(MAP_KEYS) == set()
    assert satisfy_keys(["HOST", "USER"]) == {"PASSWORD", "PORT", "DB_NAME", "ENGINE"}
    cfg = {
        "ENGINE": "postgresql",
        "HOST": "db.example.org",
        "USER": "al@rce",
        "PASSWORD": "p@ss/w:rd#?%",
        "PORT": 5432,
        "DB_NAME": "ztf",
    }
    original = dict(cfg)
    url = settings_map(cfg)
    assert cfg == original  # the caller's dict is not touched
    assert url == "postgresql://al%40rce:p%40ss%2Fw%3Ard%23%3F%25@db.example.org:5432/ztf"
    params = from_dsn(url).params
    assert (params["user"], params["password"], params["host"], params["port"], params["dbname"]) == (
        "al@rce",
        "p@ss/w:rd#?%",
        "db.example.org",
        "5432",
        "ztf",
    )
    with pytest.raises(ConfigurationError, match="DB_NAME"):
        settings_map({k: v for k, v in cfg.items() if k != "DB_NAME"})
