"""Turn diff operations into a yoyo migration pair: ``<id>.sql`` and ``<id>.rollback.sql``.

    >>> apply_sql, rollback_sql = render(ops, message="add watchlist", depends=["20250101_01_abcde-initial"])
    ...                                                               # doctest: +SKIP

The apply file starts with the message and ``-- depends:`` on the current heads (yoyo reads leading comment
lines as the docstring and directives). Each statement is preceded by a comment saying what it does; a step
that loses data is marked ``-- DESTRUCTIVE:`` and notes from the differ (possible renames, steps that fail on
existing rows) are marked ``-- WARNING:``. The rollback file undoes the operations in reverse order; yoyo runs
it top to bottom. Everything runs in one transaction (yoyo's default), so no ``CREATE INDEX CONCURRENTLY``.

File ids follow ``yoyo new``: ``YYYYMMDD_NN_rand5-slug`` with ``NN`` counting up within the day.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import secrets
import string
from collections.abc import Iterable, Sequence
from pathlib import Path

from psycopg import sql

from .._types.schema import ColumnDef, ForeignKey, Index, Table
from ..citus.ddl import distribute_sql
from ._ddl import expression_sql, server_generated, type_sql
from ._generated import generated_change
from .diff import Operation, pg_identifier

__all__ = ["forward", "backward", "render", "migration_id", "slugify", "write_migration"]


def _ident(name: str) -> sql.Identifier:
    """An object name as PostgreSQL stores it (truncated to 63 bytes), double-quoted."""
    return sql.Identifier(pg_identifier(name))


def _cols(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _column_sql(table: str, col: ColumnDef) -> sql.Composed:
    text = sql.SQL("{} {}").format(
        sql.Identifier(col.name), type_sql(col.sql_type, model=table, column=col.name)
    )
    if not col.nullable:
        text += sql.SQL(" NOT NULL")
    if col.default is not None:
        text += sql.SQL(" DEFAULT ") + expression_sql(col.default)
    return text


def _create_index(table: str, ix: Index) -> sql.Composed:
    stmt = sql.SQL("CREATE {}INDEX {} ON {} USING {} ({})").format(
        sql.SQL("UNIQUE ") if ix.unique else sql.SQL(""),
        _ident(ix.name),
        sql.Identifier(table),
        sql.Identifier(ix.using),  # an access method name (btree, hash, ...): an identifier like any other
        _cols(ix.columns),
    )
    if ix.where:
        stmt += sql.SQL(" WHERE ") + expression_sql(ix.where)
    return stmt


def _create_table(t: Table) -> list[sql.Composable]:
    """CREATE TABLE with columns, primary key and unique constraints, then its indexes (no foreign keys: the
    differ adds those as separate operations once every table exists)."""
    parts = [_column_sql(t.name, c) for c in t.columns.values()]
    if t.primary_key:
        parts.append(
            sql.SQL("CONSTRAINT {} PRIMARY KEY ({})").format(_ident(t.pk_name), _cols(t.primary_key))
        )
    for u in t.unique:
        parts.append(sql.SQL("CONSTRAINT {} UNIQUE ({})").format(_ident(t.unique_name(tuple(u))), _cols(u)))
    create = sql.SQL("CREATE TABLE {} (\n    {}\n)").format(
        sql.Identifier(t.name), sql.SQL(",\n    ").join(parts)
    )
    distribute = distribute_sql(t)  # on a Citus coordinator: distribute it as the model declares (§7)
    return [create, *(_create_index(t.name, ix) for ix in t.indexes), *([distribute] if distribute else [])]


def _alter(table: str, action: sql.Composable) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} {}").format(sql.Identifier(table), action)


def _add_fk(table: str, fk: ForeignKey) -> sql.Composed:
    return _alter(
        table,
        sql.SQL("ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})").format(
            _ident(fk.name), _cols(fk.columns), sql.Identifier(fk.ref_table), _cols(fk.ref_columns)
        ),
    )


def _statements(op: Operation) -> list[sql.Composable]:
    """The composed statements that apply ``op``."""
    k, t, n = op.kind, op.table, op.name or ""
    col = sql.Identifier(n)
    if k == "add_table":
        assert isinstance(op.new, Table)
        return _create_table(op.new)
    if k == "drop_table":
        return [sql.SQL("DROP TABLE {}").format(sql.Identifier(t))]
    if k == "add_column":
        assert isinstance(op.new, ColumnDef)
        return [_alter(t, sql.SQL("ADD COLUMN ") + _column_sql(t, op.new))]
    if k == "drop_column":
        return [_alter(t, sql.SQL("DROP COLUMN {}").format(col))]
    if k == "alter_type":
        assert isinstance(op.new, ColumnDef) and isinstance(op.old, ColumnDef)
        if server_generated(op.old.sql_type) or server_generated(op.new.sql_type):
            return generated_change(t, op.old, op.new)
        ty = type_sql(op.new.sql_type, model=t, column=n)
        return [_alter(t, sql.SQL("ALTER COLUMN {} TYPE {} USING {}::{}").format(col, ty, col, ty))]
    if k == "alter_nullable":
        assert isinstance(op.new, ColumnDef)
        change = sql.SQL("DROP" if op.new.nullable else "SET")
        return [_alter(t, sql.SQL("ALTER COLUMN {} {} NOT NULL").format(col, change))]
    if k == "alter_default":
        assert isinstance(op.new, ColumnDef)
        if op.new.default is None:
            return [_alter(t, sql.SQL("ALTER COLUMN {} DROP DEFAULT").format(col))]
        return [
            _alter(t, sql.SQL("ALTER COLUMN {} SET DEFAULT {}").format(col, expression_sql(op.new.default)))
        ]
    if k == "add_pk":
        assert isinstance(op.new, tuple)
        return [_alter(t, sql.SQL("ADD CONSTRAINT {} PRIMARY KEY ({})").format(col, _cols(op.new)))]
    if k == "add_unique":
        assert isinstance(op.new, tuple)
        return [_alter(t, sql.SQL("ADD CONSTRAINT {} UNIQUE ({})").format(col, _cols(op.new)))]
    if k in ("drop_pk", "drop_unique", "drop_fk"):
        return [_alter(t, sql.SQL("DROP CONSTRAINT {}").format(col))]
    if k == "add_index":
        assert isinstance(op.new, Index)
        return [_create_index(t, op.new)]
    if k == "drop_index":
        return [sql.SQL("DROP INDEX {}").format(col)]
    if k == "rename_index":
        assert isinstance(op.old, Index) and isinstance(op.new, Index)
        return [
            sql.SQL("ALTER INDEX {} RENAME TO {}").format(sql.Identifier(op.old.name), _ident(op.new.name))
        ]
    if k == "add_fk":
        assert isinstance(op.new, ForeignKey)
        return [_add_fk(t, op.new)]
    raise AssertionError(k)  # pragma: no cover


def forward(op: Operation) -> list[str]:
    """The statements (without a trailing semicolon) that apply ``op``, identifiers double-quoted.

    >>> from dbplugins.migrations.diff import Operation
    >>> forward(Operation("drop_column", "watchlist", "user"))
    ['ALTER TABLE "watchlist" DROP COLUMN "user"']
    """
    return [stmt.as_string(None) for stmt in _statements(op)]


def _inverse(op: Operation) -> Operation:
    """The operation that undoes ``op``."""
    flip = {
        "add_table": "drop_table", "drop_table": "add_table",
        "add_column": "drop_column", "drop_column": "add_column",
        "add_pk": "drop_pk", "drop_pk": "add_pk",
        "add_unique": "drop_unique", "drop_unique": "add_unique",
        "add_index": "drop_index", "drop_index": "add_index",
        "add_fk": "drop_fk", "drop_fk": "add_fk",
        "alter_type": "alter_type", "alter_nullable": "alter_nullable", "alter_default": "alter_default",
        "rename_index": "rename_index",
    }  # fmt: skip
    kind = flip[op.kind]
    name = op.name
    if op.kind == "rename_index":
        assert isinstance(op.old, Index)
        name = op.old.name
    return Operation(kind, op.table, name, old=op.new, new=op.old)  # type: ignore[arg-type]


def backward(op: Operation) -> list[str]:
    """The statements that undo ``op`` (a dropped table or column comes back empty: data is not restored).

    A dropped NOT NULL column without a default comes back NULL-able: its values are gone, and ``ADD COLUMN
    ... NOT NULL`` would fail on any table with rows (the next ``make_migrations`` offers the SET NOT NULL
    once the column is filled). A dropped ``serial`` or identity column comes back as it was: the server
    numbers the existing rows.
    """
    inverse = _inverse(op)
    if inverse.kind == "add_column" and isinstance(inverse.new, ColumnDef):
        col = inverse.new
        if not col.nullable and col.default is None and not server_generated(col.sql_type):
            inverse = Operation(
                inverse.kind,
                inverse.table,
                inverse.name,
                old=inverse.old,
                new=dataclasses.replace(col, nullable=True),
            )
    return forward(inverse)


def _comment_lines(op: Operation, *, undo: bool = False) -> list[str]:
    lines = [f"-- {'undo: ' if undo else ''}{op.describe()}"]
    if not undo and op.destructive:
        lines.append("-- DESTRUCTIVE: the data in it is lost; make sure this is what you want")
    if undo and op.kind in ("drop_table", "drop_column"):
        lines.append("-- NOTE: this re-creates the structure only; the dropped data does not come back")
    if (
        undo
        and op.kind == "drop_column"
        and isinstance(op.old, ColumnDef)
        and not op.old.nullable
        and op.old.default is None
        and not server_generated(op.old.sql_type)
    ):
        lines.append(
            "-- NOTE: re-added NULL-able: NOT NULL would fail on the existing rows, which have no value"
        )
    if not undo and op.note:
        lines.append(f"-- WARNING: {op.note}")
    return lines


def render(
    ops: Sequence[Operation], *, message: str, depends: Iterable[str] = (), migration: str = ""
) -> tuple[str, str]:
    """The text of the apply file and of the rollback file for ``ops``."""
    heads = " ".join(sorted(depends))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [f"-- {message}", f"-- Generated by dbp make_migrations on {stamp}: review it before applying."]
    if any(op.destructive for op in ops):
        header.append("-- This migration contains DESTRUCTIVE steps (marked below).")
    header.append(f"-- depends: {heads}" if heads else "-- depends:")
    chunks: list[str] = ["\n".join(header)]
    for op in ops:
        for i, stmt in enumerate(forward(op)):
            comment = _comment_lines(op) if i == 0 else []
            chunks.append("\n".join([*comment, stmt + ";"]))
    apply_text = "\n\n".join(chunks) + "\n"

    rb_header = f"-- Rollback of {migration or message}: undoes the steps above in reverse order."
    rb_chunks: list[str] = [rb_header]
    for op in reversed(ops):
        for i, stmt in enumerate(backward(op)):
            comment = _comment_lines(op, undo=True) if i == 0 else []
            rb_chunks.append("\n".join([*comment, stmt + ";"]))
    rollback_text = "\n\n".join(rb_chunks) + "\n"
    return apply_text, rollback_text


def slugify(text: str, *, limit: int = 48) -> str:
    """``yoyo new``'s slug: lower case, runs of other characters become ``-``."""
    s = re.sub(r"[^-a-z0-9]+", "-", text.lower())
    s = re.sub(r"-{2,}", "-", s).strip("-")
    return s[:limit].rstrip("-")


def auto_message(ops: Sequence[Operation]) -> str:
    """A short message naming the change: the first operation, and how many more there are."""
    if not ops:
        return "no changes"
    first = ops[0].describe()
    first = re.sub(r" \(.*", "", first)
    return first if len(ops) == 1 else f"{first} and {len(ops) - 1} more"


def migration_id(directory: Path, slug: str, *, today: datetime.date | None = None) -> str:
    """A new id ``YYYYMMDD_NN_rand5-slug`` for ``directory``, as ``yoyo new`` makes them."""
    datestr = (today or datetime.date.today()).strftime("%Y%m%d")
    number = 1
    if directory.is_dir():
        for p in directory.glob(f"{datestr}_*"):
            n = p.name[len(datestr) + 1 :].split("_")[0]
            if n.isdigit():
                number = max(number, int(n) + 1)
    rand = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
    return f"{datestr}_{number:02d}_{rand}" + (f"-{slug}" if slug else "")


def write_migration(
    directory: Path,
    ops: Sequence[Operation],
    *,
    depends: Iterable[str] = (),
    name: str | None = None,
) -> tuple[Path, Path]:
    """Write ``<id>.sql`` and ``<id>.rollback.sql`` for ``ops`` into ``directory`` (created if needed)."""
    message = name or auto_message(ops)
    directory.mkdir(parents=True, exist_ok=True)
    mid = migration_id(directory, slugify(message))
    apply_text, rollback_text = render(ops, message=message, depends=depends, migration=mid)
    path = directory / f"{mid}.sql"
    rollback = directory / f"{mid}.rollback.sql"
    rollback.write_text(rollback_text, encoding="utf-8")
    path.write_text(apply_text, encoding="utf-8")  # last: yoyo only sees the pair once the apply file exists
    return path, rollback
