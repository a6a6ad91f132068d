"""The schema on a Citus coordinator: checked first, then created in the order Citus accepts.

Citus distributes a table that exists, and refuses a foreign key between a reference (or local) table and a
distributed one, so the hand-written DDL of ``sql/schema`` cannot run as it is: its foreign keys sit inside
the ``CREATE TABLE`` statements. :func:`split_schema_sql` takes them out (each becomes an
``ALTER TABLE ... ADD CONSTRAINT`` with the same text), so ``sql/`` stays the one source of the DDL:

1. the tables, without their foreign keys;
2. ``create_reference_table`` / ``create_distributed_table(..., colocate_with => ...)``, anchors first;
3. the foreign keys, then the indexes (Citus creates each on every shard).

A distributed table's primary key and unique constraints must include its distribution column: a shard can
only enforce uniqueness over the rows it holds. :func:`check_distribution` refuses the schema, naming the
constraint, before any DDL runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from .._types.schema import Table
from ..errors import ConfigurationError, DbpError

__all__ = [
    "builtin_tables",
    "check_distribution",
    "citus_version",
    "require_citus",
    "split_schema_sql",
    "distribute_statements",
    "create_distributed_schema",
    "distribute_sql",
]

_CREATE_TABLE = re.compile(r"^\s*CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.IGNORECASE)
_FOREIGN_KEY = re.compile(r"^\s*CONSTRAINT\s+\w+\s+FOREIGN KEY\b", re.IGNORECASE)


def builtin_tables() -> list[Table]:
    """The built-in models' tables, in ``sql/schema`` order."""
    from .._types.schema import table_of
    from ..models import ALL_MODELS

    return [table_of(m) for m in ALL_MODELS]


def check_distribution(tables: Sequence[Table]) -> None:
    """Refuse (``ConfigurationError`` naming model and constraint) what Citus cannot enforce on these tables.

    Every primary key, unique constraint and unique index of a distributed table must include its distribution
    column; a reference table may not have a foreign key to a distributed table.
    """
    by_name = {t.name: t for t in tables}
    for t in tables:
        column = t.distribute_by
        if column is not None:
            keys: list[tuple[str, str, Sequence[str]]] = []
            if t.primary_key:
                keys.append(("primary key", t.pk_name, t.primary_key))
            keys += [("unique constraint", t.unique_name(u), u) for u in t.unique]
            keys += [("unique index", ix.name, ix.columns) for ix in t.indexes if ix.unique]
            for kind, name, cols in keys:
                if column not in cols:
                    raise ConfigurationError(
                        f"model {t.name!r}: {kind} {name!r} ({', '.join(cols)}) does not include the "
                        f"distribution column {column!r}; on Citus each shard enforces it only over its "
                        f"own rows. Add {column!r} to it, or make the table a reference table",
                        model=t.name,
                        constraint=name,
                    )
        if t.reference:
            for fk in t.foreign_keys:
                target = by_name.get(fk.ref_table)
                if target is not None and target.distribute_by is not None:
                    raise ConfigurationError(
                        f"model {t.name!r}: foreign key {fk.name!r} of a reference table points to the "
                        f"distributed table {fk.ref_table!r}, which Citus does not support",
                        model=t.name,
                        constraint=fk.name,
                    )


def citus_version(conn: psycopg.Connection[Any]) -> str | None:
    """The Citus extension's version in the connected database, or ``None`` without Citus."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'").fetchone()
    return str(row[0]) if row else None


def require_citus(conn: psycopg.Connection[Any], action: str) -> str:
    """The Citus version; ``DbpError`` in one line if the server has no Citus."""
    version = citus_version(conn)
    if version is None:
        raise DbpError(
            f"{action}: the server has no Citus extension in this database (run CREATE EXTENSION citus on "
            "the coordinator and every worker, or create the schema without --distributed); see "
            "docs/scaling.md"
        )
    return version


@dataclass
class SplitDDL:
    """``sql/schema`` cut in three: tables without foreign keys, the foreign keys, and the rest (indexes)."""

    tables: list[str] = field(default_factory=list)
    foreign_keys: list[str] = field(default_factory=list)
    rest: list[str] = field(default_factory=list)


def split_schema_sql(script: str) -> SplitDDL:
    """Split hand-written DDL (statements end with ``;`` at the end of a line; one constraint per line)."""
    out = SplitDDL()
    current: list[str] = []
    table: str | None = None
    for line in script.splitlines():
        if not current and not line.strip():
            continue
        m = _CREATE_TABLE.match(line) if table is None else None
        if m:
            table = m.group(1)
        if table is not None and _FOREIGN_KEY.match(line):
            constraint = line.strip().rstrip(",")
            # The name is unquoted in the file, so PostgreSQL folds it to lower case; the constraint is our
            # own file's text, moved as it is.
            alter = sql.SQL("ALTER TABLE {} ADD {};").format(
                sql.Identifier(table.lower()), sql.SQL(constraint)
            )
            out.foreign_keys.append(alter.as_string(None))
            if not line.rstrip().endswith(","):  # it was the last item: the one before loses its comma
                for i in range(len(current) - 1, -1, -1):
                    if current[i].strip() and not current[i].strip().startswith("--"):
                        current[i] = current[i].rstrip().removesuffix(",")
                        break
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            (out.tables if table is not None else out.rest).append("\n".join(current))
            current, table = [], None
    if any(ln.strip() and not ln.strip().startswith("--") for ln in current):
        (out.tables if table is not None else out.rest).append("\n".join(current))
    return out


def _distribution_order(tables: Sequence[Table]) -> list[Table]:
    """Reference tables and colocation anchors first, then each table after the one it is colocated with."""
    names = {t.name for t in tables}
    done: set[str] = set()
    ordered: list[Table] = []
    pending = [t for t in tables if t.reference or t.distribute_by is not None]
    while pending:
        ready = [
            t
            for t in pending
            if t.colocate_with is None or t.colocate_with not in names or t.colocate_with in done
        ]
        if not ready:
            cycle = ", ".join(t.name for t in pending)
            raise ConfigurationError(f"colocate_with forms a cycle among {cycle}")
        for t in ready:
            ordered.append(t)
            done.add(t.name)
        pending = [t for t in pending if t.name not in done]
    return ordered


def _regclass(name: str) -> sql.Literal:
    """``name`` as ``regclass`` input (a string literal holding the quoted identifier), so any table name
    (upper case, spaces) resolves as written: ``'"watch"'``."""
    return sql.Literal(sql.Identifier(name).as_string(None))


def distribute_statements(tables: Sequence[Table]) -> list[sql.Composed]:
    """``create_reference_table`` / ``create_distributed_table`` for each table that declares a
    distribution."""
    out: list[sql.Composed] = []
    for t in _distribution_order(tables):
        if t.reference:
            out.append(sql.SQL("SELECT create_reference_table({})").format(_regclass(t.name)))
        else:
            out.append(
                sql.SQL("SELECT create_distributed_table({}, {}, colocate_with => {})").format(
                    _regclass(t.name),
                    sql.Literal(t.distribute_by),
                    _regclass(t.colocate_with) if t.colocate_with else sql.Literal("default"),
                )
            )
    return out


def create_distributed_schema(conn: psycopg.Connection[Any], tables: Sequence[Table], script: str) -> None:
    """Run ``script`` (``sql/schema``) on a Citus coordinator, distributing ``tables`` (inside a transaction).

    ``check_distribution`` and the Citus check run before any DDL. Multi-shard statements run over one
    connection per worker (``sequential`` mode): Citus refuses a foreign key to a reference table after
    parallel work on a distributed table in the same transaction,
    and an empty schema gains nothing from parallelism.
    """
    check_distribution(tables)
    require_citus(conn, "create the distributed schema")
    names = [t.name for t in tables]
    present = {
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
            "AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)",
            (names,),
        )
    }
    if present == set(names):
        return  # created before: nothing to do, as create_db() on one server
    if present:
        raise DbpError(
            f"create the distributed schema: the database already has {', '.join(sorted(present)[:5])} "
            "but not "
            f"{', '.join(sorted(set(names) - present)[:5])}; it needs an empty database or the whole schema"
        )
    split = split_schema_sql(script)
    conn.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
    for stmt in split.tables:
        conn.execute(stmt.encode())  # our own files, not user data
    for composed in distribute_statements(tables):
        conn.execute(composed)
    for stmt in split.foreign_keys + split.rest:
        conn.execute(stmt.encode())


def distribute_sql(table: Table) -> sql.Composed | None:
    """The migration statement that distributes a newly created ``table`` as it declares, when on Citus.

    A ``DO`` block that does nothing without the Citus extension, so the same migration runs on plain
    PostgreSQL (where the declaration changes nothing) and on a coordinator. Sequential mode, as in
    :func:`create_distributed_schema`: the foreign keys that follow in the same transaction point at reference
    or colocated tables.
    """
    if not table.reference and table.distribute_by is None:
        return None
    check_distribution([table])
    name = _regclass(table.name)
    call: sql.Composable
    if table.reference:
        call = sql.SQL("create_reference_table({})").format(name)
    else:
        colocate_with = _regclass(table.colocate_with) if table.colocate_with else sql.Literal("default")
        call = sql.SQL("create_distributed_table({}, {}, colocate_with => {})").format(
            name, sql.Literal(table.distribute_by), colocate_with
        )
    block = sql.SQL(
        "DO $dbp$ BEGIN\n"
        "    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN\n"
        "        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);\n"
        "        PERFORM {};\n"
        "    END IF;\n"
        "END $dbp$"
    ).format(call)
    return block
