"""The differ and the renderer: operations, their order, the SQL pair, and migra's convergence check.

The convergence cases build schema A in a fresh database from the models (through the differ itself), generate
the A -> B migration, apply it with yoyo, and check that a second diff against B is empty; then they roll it
back and check the database is A again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated

import psycopg
import pytest
from yoyo.migrations import read_sql_migration

import dbplugins.migrations
from dbplugins._types.schema import Column, ColumnDef, ForeignKey, Index, Schema, Table, model, table_of
from dbplugins.config import from_dsn
from dbplugins.errors import ConfigurationError
from dbplugins.migrations import canonicalize, diff, introspect
from dbplugins.migrations.diff import PHASES, Operation, pg_identifier
from dbplugins.migrations.render import backward, forward, migration_id, render, write_migration
from dbplugins.migrations.runner import apply, destructive_reasons, heads
from dbplugins.models import ALL_MODELS

# -- two versions of a small user schema ---------------------------------------------------------------------


@model("w_owner", primary_key=["oid"])
@dataclass
class OwnerA:
    oid: str
    label: str | None = None


@model("w_list", primary_key=["wid"], indexes=[Index("ix_w_list_name", ["name"])])
@dataclass
class ListA:
    wid: Annotated[int, Column("bigint")]
    name: str
    note: str | None = None
    score: float | None = None


@model("w_target", primary_key=["wid", "oid"])
@dataclass
class TargetA:
    wid: Annotated[int, Column("bigint", references="w_list.wid")]
    oid: str
    added: datetime | None = None


@model("w_owner", primary_key=["oid"], unique=[["label"]])
@dataclass
class OwnerB:
    oid: str
    label: str | None = None


@model(
    "w_list",
    primary_key=["wid"],
    indexes=[
        Index("ix_w_list_name", ["name", "owner"]),  # changed columns
        Index("ix_w_list_owner", ["owner"], using="hash"),  # new
        Index("ix_w_list_hot", ["priority"], where="priority > 5"),  # new, partial
    ],
)
@dataclass
class ListB:
    wid: Annotated[int, Column("bigint")]
    name: str
    note: str  # now NOT NULL
    rating: float | None = None  # score dropped, rating added: a possible rename
    owner: Annotated[str | None, Column(references="w_owner.oid")] = None  # new column with a new FK
    priority: Annotated[int, Column(default="0")] = 0
    tags: list[str] | None = None


@model("w_event", primary_key=["eid"], indexes=[Index("ix_w_event_kind", ["kind"], where="kind = 'alert'")])
@dataclass
class EventB:
    eid: Annotated[int, Column("bigint")]
    wid: Annotated[int, Column("bigint", references="w_list.wid")]
    kind: str
    at: datetime


SCHEMA_A = Schema.from_models([OwnerA, ListA, TargetA])
SCHEMA_B = Schema.from_models([OwnerB, ListB, EventB])


def _with_builtin(schema: Schema) -> Schema:
    """``schema`` plus the built-in tables, which ``apply`` always brings first."""
    return Schema({**Schema.from_models(ALL_MODELS).tables, **schema.tables})


def _kinds(ops: list[Operation]) -> list[tuple[str, str, str | None]]:
    return [(op.kind, op.table, op.name) for op in ops]


# -- pure diff -----------------------------------------------------------------------------------------------


def test_identical_schemas_give_no_operations() -> None:
    assert diff(SCHEMA_A, SCHEMA_A) == []
    assert diff(Schema(), Schema()) == []


def test_operations_from_a_to_b() -> None:
    ops = diff(SCHEMA_A, SCHEMA_B)
    kinds = _kinds(ops)
    assert ("drop_table", "w_target", None) in kinds
    assert ("add_table", "w_event", None) in kinds
    assert ("drop_column", "w_list", "score") in kinds
    assert ("add_column", "w_list", "rating") in kinds
    assert ("add_column", "w_list", "tags") in kinds
    assert ("alter_nullable", "w_list", "note") in kinds
    assert ("drop_index", "w_list", "ix_w_list_name") in kinds and (
        "add_index",
        "w_list",
        "ix_w_list_name",
    ) in kinds
    assert ("add_index", "w_list", "ix_w_list_owner") in kinds
    assert ("add_fk", "w_list", "w_list_owner_fkey") in kinds
    assert ("add_fk", "w_event", "w_event_wid_fkey") in kinds
    assert ("drop_fk", "w_target", "w_target_wid_fkey") in kinds  # explicit, so the rollback can restore it
    assert ("add_unique", "w_owner", "w_owner_label_key") in kinds
    # migra's order: every drop before every create, foreign keys dropped first and added last
    phases = [PHASES.index(op.kind) for op in ops]
    assert phases == sorted(phases)
    assert ops[0].kind == "drop_fk" and ops[-1].kind == "add_fk"


def test_drop_and_add_of_the_same_type_is_flagged_as_a_possible_rename() -> None:
    ops = {(op.kind, op.name): op for op in diff(SCHEMA_A, SCHEMA_B)}
    note = ops[("drop_column", "score")].note or ""
    assert "possible rename" in note and 'ALTER TABLE "w_list" RENAME COLUMN "score" TO "rating"' in note
    assert ops[("drop_column", "score")].destructive
    assert "possible rename" in (ops[("add_column", "rating")].note or "")
    # a new NOT NULL column without default is flagged: it fails on a table with rows
    plain = Table("t", {"a": ColumnDef("a", "integer", False)}, ("a",))
    grown = Table("t", {"a": ColumnDef("a", "integer", False), "b": ColumnDef("b", "text", False)}, ("a",))
    (op,) = diff(Schema({"t": plain}), Schema({"t": grown}))
    assert op.kind == "add_column" and "fails if the table has rows" in (op.note or "")


def test_table_rename_is_flagged() -> None:
    t = table_of(OwnerA)
    renamed = Table("w_owner2", dict(t.columns), ("oid",))
    ops = diff(Schema({"w_owner": t}), Schema({"w_owner2": renamed}))
    assert 'ALTER TABLE "w_owner" RENAME TO "w_owner2"' in (ops[0].note or "")


def test_type_default_and_primary_key_changes() -> None:
    a = Table("t", {"a": ColumnDef("a", "integer", False), "b": ColumnDef("b", "integer", True)}, ("a",))
    b = Table(
        "t",
        {"a": ColumnDef("a", "bigint", False), "b": ColumnDef("b", "integer", False, default="1")},
        ("a", "b"),
    )
    ref = Table(
        "r",
        {"a": ColumnDef("a", "integer", False)},
        ("a",),
        foreign_keys=[ForeignKey("r_a_fkey", ("a",), "t", ("a",))],
    )
    ops = diff(Schema({"t": a, "r": ref}), Schema({"t": b, "r": ref}))
    kinds = _kinds(ops)
    assert ("alter_type", "t", "a") in kinds and ("alter_default", "t", "b") in kinds
    assert ("drop_pk", "t", "t_pkey") in kinds and ("add_pk", "t", "t_pkey") in kinds
    # the foreign key that depends on the old primary key is dropped before it and re-created after
    assert kinds.index(("drop_fk", "r", "r_a_fkey")) < kinds.index(("drop_pk", "t", "t_pkey"))
    assert kinds.index(("add_fk", "r", "r_a_fkey")) > kinds.index(("add_pk", "t", "t_pkey"))


def test_index_with_a_new_name_only_is_renamed() -> None:
    a = Table("t", {"a": ColumnDef("a", "integer", False)}, ("a",), indexes=[Index("ix_old", ["a"])])
    b = Table("t", {"a": ColumnDef("a", "integer", False)}, ("a",), indexes=[Index("ix_new", ["a"])])
    (op,) = diff(Schema({"t": a}), Schema({"t": b}))
    assert op.kind == "rename_index"
    assert forward(op) == ['ALTER INDEX "ix_old" RENAME TO "ix_new"']
    assert backward(op) == ['ALTER INDEX "ix_new" RENAME TO "ix_old"']


def test_long_names_compare_as_postgresql_truncates_them() -> None:
    long = "ix_" + "x" * 80
    assert len(pg_identifier(long).encode()) == 63
    a = Table(
        "t", {"a": ColumnDef("a", "integer", False)}, ("a",), indexes=[Index(pg_identifier(long), ["a"])]
    )
    b = Table("t", {"a": ColumnDef("a", "integer", False)}, ("a",), indexes=[Index(long, ["a"])])
    assert diff(Schema({"t": a}), Schema({"t": b})) == []


# -- rendering -----------------------------------------------------------------------------------------------


def test_every_identifier_is_quoted_by_psycopg_sql() -> None:
    """One composition style: names always double-quoted (keywords, mixed case, quotes inside), as psycopg.sql
    does everywhere else in the package; types and declared expressions as written."""
    table = Table(
        'We"ird list',
        {
            "dec": ColumnDef("dec", "integer", False),
            "user": ColumnDef("user", "varchar(5)", True, default="'new'"),
            "Mixed Case": ColumnDef("Mixed Case", "timestamp(3)", True),
        },
        ("dec",),
        indexes=[Index("ix_Odd", ["Mixed Case"], where="\"user\" = 'a'")],
        unique=[("user",)],
    )
    assert forward(Operation("add_table", table.name, new=table)) == [
        'CREATE TABLE "We""ird list" (\n'
        '    "dec" integer NOT NULL,\n'
        '    "user" character varying(5) DEFAULT \'new\',\n'
        '    "Mixed Case" timestamp(3) without time zone,\n'
        '    CONSTRAINT "We""ird list_pkey" PRIMARY KEY ("dec"),\n'
        '    CONSTRAINT "We""ird list_user_key" UNIQUE ("user")\n'
        ")",
        'CREATE INDEX "ix_Odd" ON "We""ird list" USING "btree" ("Mixed Case") WHERE "user" = \'a\'',
    ]
    new = ColumnDef("dec", "bigint", False, default="0")
    old = table.columns["dec"]
    assert forward(Operation("alter_type", table.name, "dec", old=old, new=new)) == [
        'ALTER TABLE "We""ird list" ALTER COLUMN "dec" TYPE bigint USING "dec"::bigint'
    ]
    assert forward(Operation("alter_default", table.name, "dec", old=old, new=new)) == [
        'ALTER TABLE "We""ird list" ALTER COLUMN "dec" SET DEFAULT 0'
    ]
    assert backward(Operation("add_column", table.name, "user", new=table.columns["user"])) == [
        'ALTER TABLE "We""ird list" DROP COLUMN "user"'
    ]


@pytest.mark.parametrize(
    "sql_type",
    ["integer; DROP TABLE object", "text DEFAULT 1", "varchar(5) --", "integer)", "'text'", "int4 /* x */"],
)
def test_a_column_type_that_is_not_a_type_name_is_refused(sql_type: str, tmp_path: Path) -> None:
    """The type is spliced as SQL: anything that could end it is refused, naming model and column, and no file
    is written."""
    bad = Table(
        "w_bad", {"id": ColumnDef("id", "integer", False), "x": ColumnDef("x", sql_type, True)}, ("id",)
    )
    with pytest.raises(ConfigurationError, match=r"is not a type name \[model 'w_bad', column 'x'\]") as info:
        write_migration(tmp_path / "m", diff(Schema(), Schema({"w_bad": bad})), name="bad")
    assert (info.value.model, info.value.column) == ("w_bad", "x")
    assert not list(tmp_path.glob("m/*.sql"))


def test_render_pair_is_a_valid_yoyo_migration(tmp_path: Path) -> None:
    ops = diff(SCHEMA_A, SCHEMA_B)
    path, rb = write_migration(tmp_path, ops, depends=["20250101_01_aaaaa-base"], name="Watchlist v2!")
    assert re.fullmatch(r"\d{8}_01_[a-z0-9]{5}-watchlist-v2\.sql", path.name)
    assert rb.name == path.name.replace(".sql", ".rollback.sql")
    directives, doc, statements = read_sql_migration(str(path))
    assert directives["depends"].split() == ["20250101_01_aaaaa-base"]
    assert doc.startswith("Watchlist v2!")
    text = path.read_text()
    assert "-- DESTRUCTIVE:" in text and "-- WARNING: possible rename" in text
    assert "CONCURRENTLY" not in text
    assert len(statements) == sum(len(forward(op)) for op in ops)
    _, _, rb_statements = read_sql_migration(str(rb))
    assert rb_statements[0].strip().splitlines()[-1].startswith('ALTER TABLE "w_event" DROP CONSTRAINT')
    # the next id of the day counts up, as yoyo new does
    assert migration_id(tmp_path, "x").split("_")[1] == "02"


def test_render_without_depends() -> None:
    apply_text, rollback_text = render(diff(Schema(), SCHEMA_A), message="init", depends=[])
    assert "-- depends:\n" in apply_text
    assert 'CREATE TABLE "w_list"' in apply_text and 'DROP TABLE "w_list"' in rollback_text


# -- convergence against a real database ---------------------------------------------------------------------


def _migrate_to(dsn: str, desired: Schema, directory: Path, name: str) -> list[Operation]:
    """Generate the migration current -> desired into ``directory`` and apply it with yoyo; return its ops."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        current = introspect(conn)
        target = canonicalize(conn, desired, current)
    ops = diff(current, target)
    write_migration(directory, ops, depends=heads(directory), name=name)
    apply(from_dsn(dsn), directory)
    return ops


def _remaining(dsn: str, desired: Schema) -> list[Operation]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        current = introspect(conn)
        return diff(current, canonicalize(conn, desired, current))


@pytest.mark.parametrize(
    "before, after",
    [
        pytest.param(Schema(), SCHEMA_A, id="empty-to-a"),
        pytest.param(SCHEMA_A, SCHEMA_B, id="a-to-b"),
        pytest.param(SCHEMA_B, SCHEMA_A, id="b-to-a"),
    ],
)
def test_generated_migrations_converge_and_roll_back(
    empty_dsn: str, tmp_path: Path, before: Schema, after: Schema
) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    apply(from_dsn(empty_dsn), migrations)  # the built-in schema
    before, after = _with_builtin(before), _with_builtin(after)
    if before.tables:
        _migrate_to(empty_dsn, before, migrations, "before")
        assert _remaining(empty_dsn, before) == []
    ops = _migrate_to(empty_dsn, after, migrations, "after")
    assert ops
    assert _remaining(empty_dsn, after) == []  # no further statements to apply (migra's check)
    # the rollback file takes the database back to where it was
    dbplugins.migrations.rollback(
        from_dsn(empty_dsn), migrations_dir=migrations, count=1, allow_destructive=True
    )
    assert _remaining(empty_dsn, before) == []


def test_rows_survive_a_non_destructive_migration(empty_dsn: str, tmp_path: Path) -> None:
    migrations = tmp_path / "m"
    migrations.mkdir()
    apply(from_dsn(empty_dsn), migrations)
    _migrate_to(empty_dsn, _with_builtin(SCHEMA_A), migrations, "a")
    with psycopg.connect(empty_dsn) as conn:
        conn.execute("INSERT INTO w_list (wid, name, note) VALUES (1, 'n', 'kept')")
    grown = Schema.from_models([OwnerA, TargetA])
    t = table_of(ListA)
    grown.tables["w_list"] = Table(
        "w_list",
        {**t.columns, "extra": ColumnDef("extra", "integer", True)},
        t.primary_key,
        indexes=[*t.indexes, Index("ix_w_list_extra", ["extra"])],
    )
    _migrate_to(empty_dsn, _with_builtin(grown), migrations, "grow")
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT wid, note, extra FROM w_list").fetchall() == [(1, "kept", None)]


# -- every column type diffs clean (issue 12) ----------------------------------------------------------------


@model("w_types", primary_key=["id"])
@dataclass
class EveryType:
    id: Annotated[int, Column("smallint")]
    code: Annotated[str | None, Column("char(3)")] = None
    letter: Annotated[str | None, Column("char")] = None
    short: Annotated[str | None, Column("varchar(5)")] = None
    price: Annotated[object | None, Column("decimal(10,2)")] = None
    amount: Annotated[object | None, Column("numeric")] = None
    at: Annotated[datetime | None, Column("timestamp(3)")] = None
    at_tz: Annotated[datetime | None, Column("timestamptz(0)")] = None
    clock: Annotated[object | None, Column("time")] = None
    clock_tz: Annotated[object | None, Column("timetz")] = None
    ratio: Annotated[float | None, Column("float4")] = None
    big: Annotated[int | None, Column("int8")] = None
    flag: Annotated[bool | None, Column("bool")] = None
    doc: Annotated[object | None, Column("json")] = None
    docb: Annotated[object | None, Column("jsonb")] = None
    key: Annotated[object | None, Column("uuid")] = None
    codes: Annotated[list[str] | None, Column("char(2)[]")] = None
    names: Annotated[list[str] | None, Column("varchar(10)[]")] = None
    status: Annotated[str, Column("varchar(8)", default="'new'")] = "new"


def test_every_type_renders_and_diffs_clean_after_migrate(empty_dsn: str, tmp_path: Path) -> None:
    """char(n), numeric(p,s), timestamp(p), timetz...: no diff right after migrate (it used to never go away),
    and ``timestamp(3)`` renders valid SQL (it used to be ``timestamp without time zone(3)``)."""
    migrations = tmp_path / "m"
    migrations.mkdir()
    apply(from_dsn(empty_dsn), migrations)
    desired = _with_builtin(Schema.from_models([EveryType]))
    _migrate_to(empty_dsn, desired, migrations, "types")
    assert _remaining(empty_dsn, desired) == []
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'w_types'::regclass AND attname = 'at'"
        ).fetchone() == ("timestamp(3) without time zone",)


@model("w_drop", primary_key=["id"])
@dataclass
class DropBefore:
    id: int
    label: str  # NOT NULL, no default: dropped below


@model("w_drop", primary_key=["id"])
@dataclass
class DropAfter:
    id: int


def test_rollback_of_a_dropped_not_null_column_works_on_a_table_with_rows(
    empty_dsn: str, tmp_path: Path
) -> None:
    """The rollback used to be ``ADD COLUMN label ... NOT NULL``, which fails as soon as the table has a
    row."""
    migrations = tmp_path / "m"
    migrations.mkdir()
    apply(from_dsn(empty_dsn), migrations)
    _migrate_to(empty_dsn, _with_builtin(Schema.from_models([DropBefore])), migrations, "before")
    with psycopg.connect(empty_dsn) as conn:
        conn.execute("INSERT INTO w_drop (id, label) VALUES (1, 'a'), (2, 'b')")
    _migrate_to(empty_dsn, _with_builtin(Schema.from_models([DropAfter])), migrations, "drop")
    rollback_file = next(migrations.glob("*drop.rollback.sql"))
    assert "NULL-able" in rollback_file.read_text()
    dbplugins.migrations.rollback(
        from_dsn(empty_dsn), migrations_dir=migrations, count=1, allow_destructive=True
    )
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT id, label FROM w_drop ORDER BY id").fetchall() == [(1, None), (2, None)]


def test_dropped_table_with_odd_names_and_catalog_types_rolls_back(empty_dsn: str, tmp_path: Path) -> None:
    """A table the models do not declare is dropped; its rollback re-creates it from the catalog: quoted
    names, a schema-qualified mixed-case enum type, an array of it, a typmod'd interval, defaults as the
    server prints them. Every piece must come back exactly as it was."""
    migrations = tmp_path / "m"
    migrations.mkdir()
    apply(from_dsn(empty_dsn), migrations)
    with psycopg.connect(empty_dsn) as conn:
        conn.execute("CREATE SCHEMA extra")
        conn.execute("CREATE TYPE extra.\"Mood\" AS ENUM ('ok', 'sad')")
        conn.execute(
            'CREATE TABLE "Odd ""t"" x" ("user" integer PRIMARY KEY, '
            '"Mixed Case" extra."Mood" DEFAULT \'ok\', '
            'moods extra."Mood"[], span interval day to second(3), '
            'at timestamp(2) with time zone DEFAULT now(), '
            'bits bit varying(4), ch "char")'
        )
        conn.execute('CREATE INDEX "ix odd" ON "Odd ""t"" x" ("Mixed Case") WHERE "user" > 0')
        before = introspect(conn)
    assert 'Odd "t" x' in before.tables
    ops = _migrate_to(empty_dsn, _with_builtin(Schema()), migrations, "drop odd")
    assert [(op.kind, op.table) for op in ops] == [("drop_table", 'Odd "t" x')]
    rb = next(migrations.glob("*drop-odd.rollback.sql")).read_text()
    assert 'extra."Mood"[]' in rb and "interval day to second(3)" in rb
    dbplugins.migrations.rollback(
        from_dsn(empty_dsn), migrations_dir=migrations, count=1, allow_destructive=True
    )
    with psycopg.connect(empty_dsn) as conn:
        assert diff(introspect(conn), before) == []


def test_rollback_plan_names_quoted_tables_and_columns_as_declared() -> None:
    """Generated rollbacks quote every name; the confirmation prompt shows the names as the user wrote
    them."""
    dropped = Table("We ird", {"id": ColumnDef("id", "integer", False)}, ("id",))
    column = ColumnDef('say "hi"', "text", True)
    _, rollback_text = render(
        [
            Operation("add_table", dropped.name, new=dropped),
            Operation("add_column", "w", column.name, new=column),
        ],
        message="m",
    )
    assert destructive_reasons(rollback_text) == ("drops table We ird", 'drops column say "hi"')
    assert destructive_reasons(
        'ALTER TABLE w DROP "Mixed Case", DROP CONSTRAINT "c"; DROP TABLE public . t'
    ) == (
        "drops table public.t",
        "drops column Mixed Case",
    )
