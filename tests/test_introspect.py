"""Catalog introspection: the built-in schema reads back as the models declare it, in a constant number of
queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
import pytest

from dbplugins._types.schema import Column, Index, Schema, model, table_of
from dbplugins.config import from_dsn
from dbplugins.errors import MigrationError
from dbplugins.migrations import canonicalize, diff, introspect
from dbplugins.migrations.introspect import CATALOG_QUERIES, is_internal_table
from dbplugins.migrations.runner import apply, initdb
from dbplugins.models import ALL_MODELS


class CountingConnection:
    """Forwards ``execute`` to a psycopg connection and counts the calls (one call = one round trip here)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.calls = 0

    def execute(self, query: Any, params: Any = None, /) -> Any:
        self.calls += 1
        return self.conn.execute(query, params)

    def transaction(self, **kwargs: Any) -> Any:
        return self.conn.transaction(**kwargs)


def test_builtin_schema_diffs_clean_against_the_models(dsn: str) -> None:
    """sql/schema/*.sql applied to an empty database is exactly what the dataclasses declare."""
    desired = Schema.from_models(ALL_MODELS)
    with psycopg.connect(dsn, autocommit=True) as conn:
        current = introspect(conn)
        canonical = canonicalize(conn, desired, current)
    assert sorted(current.tables) == sorted(desired.tables)
    assert diff(current, canonical) == []
    assert diff(current, desired) == []  # also without the server's help: structural comparison suffices


def test_introspected_structures(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        schema = introspect(conn)
    prob = schema.tables["probability"]
    assert prob.primary_key == ("oid", "class_name", "classifier_name", "classifier_version")
    assert prob.pk_name == "probability_pkey"
    indexes = {ix.name: ix for ix in prob.indexes}
    assert indexes["ix_probabilities_oid"].using == "hash"
    assert indexes["ix_classification_rank1"].where == "ranking = 1"
    assert indexes["ix_classification_rank1"].columns == ("ranking",)
    dq = schema.tables["dataquality"]
    assert [(fk.name, fk.columns, fk.ref_table, fk.ref_columns) for fk in dq.foreign_keys] == [
        ("dataquality_candid_oid_fkey", ("candid", "oid"), "detection", ("candid", "oid"))
    ]
    assert schema.tables["taxonomy"].columns["classes"].sql_type == "character varying[]"
    assert schema.tables["detection"].columns["candid"].sql_type == "bigint"
    assert schema.tables["detection"].columns["rb"].nullable is True
    assert schema.tables["step"].columns["date"].sql_type == "timestamp without time zone"


def test_migration_tool_tables_are_never_part_of_the_schema(empty_dsn: str) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        for name in (
            "_yoyo_migration",
            "_yoyo_log",
            "_yoyo_version",
            "yoyo_lock",
            "yoyo_tmp_abc",
            "alembic_version",
        ):
            conn.execute(f'CREATE TABLE "{name}" (x integer PRIMARY KEY)')
            assert is_internal_table(name)
        conn.execute("CREATE TABLE mine (x integer)")
        schema = introspect(conn)
    assert list(schema.tables) == ["mine"]
    assert not is_internal_table("yoyo")


def test_catalog_queries_are_a_constant_number(empty_dsn: str, dsn: str) -> None:
    """Not one query per table: the same count on an empty database and on the 17-table schema."""
    counts = []
    for target in (empty_dsn, dsn):
        with psycopg.connect(target, autocommit=True) as conn:
            counting = CountingConnection(conn)
            introspect(counting)
            counts.append(counting.calls)
    assert counts == [len(CATALOG_QUERIES), len(CATALOG_QUERIES)]


@model(
    "canon_probe",
    primary_key=["id"],
    indexes=[Index("ix_canon_probe_kind", ["kind"], where="kind='alert' AND score>=0.5")],
)
@dataclass
class CanonProbe:
    id: int
    kind: Annotated[str, Column(default="'new'")]
    score: Annotated[float, Column(default="0")]


def test_rewritten_predicates_and_defaults_compare_equal(empty_dsn: str) -> None:
    """PostgreSQL rewrites `kind='alert'` as `((kind)::text = 'alert'::text)`: the server's spelling is
    used."""
    table = table_of(CanonProbe)
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE canon_probe (id integer PRIMARY KEY, kind varchar NOT NULL DEFAULT 'new', "
            "score double precision NOT NULL DEFAULT 0)"
        )
        conn.execute(
            "CREATE INDEX ix_canon_probe_kind ON canon_probe (kind) WHERE kind='alert' AND score>=0.5"
        )
        current = introspect(conn)
        desired = Schema({table.name: table})
        assert diff(current, desired) != []  # textually different ...
        counting = CountingConnection(conn)
        canonical = canonicalize(counting, desired, current)  # type: ignore[arg-type]
        assert diff(current, canonical) == []  # ... structurally the same
        assert counting.calls == 1  # one script for all the expressions
        # nothing was left behind by the scratch tables
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE '_dbp_canon%'").fetchone() == (
            0,
        )


def test_initdb_and_migrate_agree(make_database: Any) -> None:
    """`initdb` (sql/schema + mark) and `migrate` alone (the built-in migrations) give the same schema."""
    by_init, by_migrate = make_database("empty"), make_database("empty")
    tables = [table_of(m).name for m in ALL_MODELS]
    result = initdb(from_dsn(by_init), builtin_tables=tables)
    assert result.created and result.marked >= 1
    assert apply(from_dsn(by_init), None) == []  # initdb recorded them all
    assert apply(from_dsn(by_migrate), None) != []
    with psycopg.connect(by_init) as a, psycopg.connect(by_migrate) as b:
        sa, sb = introspect(a), introspect(b)
    assert diff(sa, sb) == [] and diff(sb, sa) == []
    assert sorted(sa.tables) == sorted(tables)


@pytest.mark.parametrize("name", ["_yoyo_migration", "yoyo_lock", "alembic_version", "yoyo_tmp_x1"])
def test_is_internal_table(name: str) -> None:
    assert is_internal_table(name)


def test_initdb_on_a_database_made_by_db_plugins(dsn: str, empty_dsn: str) -> None:
    """All the original tables, an alembic_version, no yoyo record: nothing is created, the initial migration
    is recorded, and the differ sees no change (alembic's table is not part of the schema)."""
    tables = [table_of(m).name for m in ALL_MODELS]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
    result = initdb(from_dsn(dsn), builtin_tables=tables)
    assert (result.created, result.marked, result.pending) == (False, 1, 0)
    assert initdb(from_dsn(dsn), builtin_tables=tables) == type(result)(created=False, marked=0, pending=0)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert diff(introspect(conn), Schema.from_models(ALL_MODELS)) == []

    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE object (oid varchar PRIMARY KEY)")
    with pytest.raises(MigrationError, match="some built-in tables but not"):
        initdb(from_dsn(empty_dsn), builtin_tables=tables)
