"""Compare two schemas and list the operations that turn the first into the second.

    >>> ops = diff(current, desired)                     # doctest: +SKIP
    >>> [op.describe() for op in ops]                    # doctest: +SKIP
    ['add column watchlist.note (character varying NULL)', 'add index ix_watchlist_name on watchlist']

Detected: table add/drop, column add/drop, type, nullability and default changes, primary keys, unique
constraints, foreign keys, and index add/drop/change (an index whose only change is its name is renamed).
Indexes are compared as structure (method, key columns, uniqueness, predicate), never as the text PostgreSQL
rewrites. Foreign keys and unique constraints are matched by what they constrain, not by name.

A dropped and an added column of the same type in one table (or a dropped and an added table with the same
columns) are flagged as a possible rename in ``Operation.note``: the generated SQL drops and adds, which loses
the data, so the user should turn it into ``ALTER TABLE ... RENAME`` by hand.

The operations come ordered the way migra's ``add_all_changes`` orders them: dependants are dropped first
(foreign keys, indexes, constraints, columns, then tables), and objects are created in dependency order
(tables, columns, column changes, keys, indexes, and foreign keys last, once every table they need exists).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, LiteralString, get_args

from psycopg import sql

from .._types.schema import ColumnDef, ForeignKey, Index, Schema, Table
from ..errors import ConfigurationError, context
from ._ddl import identity_options, identity_sequence, server_generated, type_key, value_type
from .introspect import loose_form

__all__ = ["Operation", "OpKind", "diff", "PHASES", "pg_identifier"]

# The order of the kinds is their execution order (migra's: drop dependants first, create in dependency
# order).
OpKind = Literal[
    "drop_fk",
    "drop_index",
    "drop_unique",
    "drop_pk",
    "drop_column",
    "drop_table",
    "add_table",
    "add_column",
    "alter_type",
    "alter_nullable",
    "alter_default",
    "add_pk",
    "add_unique",
    "rename_index",
    "add_index",
    "add_fk",
]

#: Execution order of the operation kinds.
PHASES: tuple[OpKind, ...] = get_args(OpKind)

Payload = Table | ColumnDef | Index | ForeignKey | tuple[str, ...] | None

_DESTRUCTIVE: frozenset[str] = frozenset({"drop_table", "drop_column"})

# PostgreSQL truncates identifiers to NAMEDATALEN - 1 = 63 bytes; a longer declared name would otherwise show
# up as new on every diff (alembic #647).
_MAX_IDENT = 63


def pg_identifier(name: str) -> str:
    """``name`` as PostgreSQL stores it: truncated to 63 bytes (on a character boundary)."""
    raw = name.encode("utf-8")
    if len(raw) <= _MAX_IDENT:
        return name
    return raw[:_MAX_IDENT].decode("utf-8", errors="ignore")


@dataclass(frozen=True)
class Operation:
    """One schema change. ``old`` is what the database has (for the rollback), ``new`` what the models want.

    ``table`` is the table concerned, ``name`` the column, index or constraint (``None`` for a whole table).
    ``note`` carries a warning for the reviewer (possible rename, a step that can fail on existing rows).
    """

    kind: OpKind
    table: str
    name: str | None = None
    old: Payload = None
    new: Payload = None
    note: str | None = None

    @property
    def destructive(self) -> bool:
        """True when applying it loses data (dropping a table or a column)."""
        return self.kind in _DESTRUCTIVE

    def describe(self) -> str:
        """A one-line, human-readable summary (used in ``--check`` output and file headers)."""
        k, t, n = self.kind, self.table, self.name
        if k == "add_table":
            return f"add table {t}"
        if k == "drop_table":
            return f"drop table {t}"
        if k == "add_column":
            assert isinstance(self.new, ColumnDef)
            return f"add column {t}.{n} ({_coldesc(self.new)})"
        if k == "drop_column":
            return f"drop column {t}.{n}"
        if k == "alter_type":
            assert isinstance(self.old, ColumnDef) and isinstance(self.new, ColumnDef)
            return f"change type of {t}.{n} from {self.old.sql_type} to {self.new.sql_type}"
        if k == "alter_nullable":
            assert isinstance(self.new, ColumnDef)
            return f"make {t}.{n} {'NULL' if self.new.nullable else 'NOT NULL'}"
        if k == "alter_default":
            assert isinstance(self.new, ColumnDef)
            return (
                f"set default of {t}.{n} to {self.new.default}"
                if self.new.default
                else f"drop default of {t}.{n}"
            )
        if k in ("add_pk", "drop_pk"):
            cols = self.new if k == "add_pk" else self.old
            assert isinstance(cols, tuple)
            return f"{k.split('_')[0]} primary key {n} on {t} ({', '.join(cols)})"
        if k in ("add_unique", "drop_unique"):
            cols = self.new if k == "add_unique" else self.old
            assert isinstance(cols, tuple)
            return f"{k.split('_')[0]} unique constraint {n} on {t} ({', '.join(cols)})"
        if k == "rename_index":
            assert isinstance(self.old, Index) and isinstance(self.new, Index)
            return f"rename index {self.old.name} to {self.new.name} on {t}"
        if k in ("add_index", "drop_index"):
            return f"{k.split('_')[0]} index {n} on {t}"
        if k in ("add_fk", "drop_fk"):
            fk = self.new if k == "add_fk" else self.old
            assert isinstance(fk, ForeignKey)
            return (
                f"{k.split('_')[0]} foreign key {fk.name} on {t} ({', '.join(fk.columns)}) "
                f"-> {fk.ref_table} ({', '.join(fk.ref_columns)})"
            )
        raise AssertionError(k)  # pragma: no cover


def _sql(template: LiteralString, *names: str) -> str:
    """The text of a statement suggested in a note (quoted like the generated ones, so it can be pasted)."""
    return sql.SQL(template).format(*(sql.Identifier(n) for n in names)).as_string(None)


def _coldesc(col: ColumnDef) -> str:
    text = f"{col.sql_type} {'NULL' if col.nullable else 'NOT NULL'}"
    return text + (f" DEFAULT {col.default}" if col.default is not None else "")


def _index_key(ix: Index) -> tuple[object, ...]:
    """What makes two indexes the same index (schemainspect's InspectedIndex.__eq__, minus the text)."""
    return (tuple(ix.columns), ix.using.lower(), loose_form(ix.where) if ix.where else None, ix.unique)


def _fk_key(fk: ForeignKey) -> tuple[object, ...]:
    return (tuple(fk.columns), fk.ref_table, tuple(fk.ref_columns))


def _default_key(text: str | None) -> str | None:
    return loose_form(text) if text is not None else None


def _generated_not_null(schema: Schema) -> Schema:
    """``schema`` with its serial and identity columns NOT NULL, as PostgreSQL makes them.

    A model declares such a field ``Optional[int] = None`` so that an instance can leave the value to the
    server; the column is NOT NULL all the same, and the diff must not offer to drop that. A declared default
    beside a server-generated type is refused: PostgreSQL would ("multiple default values"); so are identity
    options the differ cannot read and compare (``sequence name``, a misspelling).
    """
    tables: dict[str, Table] = {}
    for name, table in schema.tables.items():
        generated = [c for c in table.columns.values() if server_generated(c.sql_type)]
        for col in generated:
            if "identity" in col.sql_type.lower():
                try:  # the differ compares the options: it must read them
                    identity_sequence(value_type(col.sql_type), identity_options(col.sql_type))
                except ValueError as exc:
                    raise ConfigurationError(
                        f"{exc}{context(model=name, column=col.name)}", model=name, column=col.name
                    ) from None
            if col.default is not None:
                raise ConfigurationError(
                    f"column type {col.sql_type!r} generates its values and takes no default (got "
                    f"default={col.default!r}){context(model=name, column=col.name)}",
                    model=name,
                    column=col.name,
                )
        if any(c.nullable for c in generated):
            table = copy.copy(table)
            table.columns = {
                c: dataclasses.replace(col, nullable=False) if server_generated(col.sql_type) else col
                for c, col in table.columns.items()
            }
        tables[name] = table
    return Schema(tables=tables)


def _sorted_tables(tables: Iterable[Table], *, reverse: bool = False) -> list[Table]:
    """Tables in foreign-key dependency order (referenced first), ties by name; reversed for drops."""
    pending = {t.name: t for t in sorted(tables, key=lambda t: t.name)}
    ordered: list[Table] = []
    while pending:
        ready = [
            t
            for t in pending.values()
            if not any(fk.ref_table in pending and fk.ref_table != t.name for fk in t.foreign_keys)
        ]
        if not ready:  # a cycle: fall back to name order, FKs are added separately anyway
            ready = list(pending.values())
        for t in ready:
            ordered.append(t)
            del pending[t.name]
    return ordered[::-1] if reverse else ordered


def diff(current: Schema, desired: Schema) -> list[Operation]:
    """The operations that turn ``current`` (usually introspected) into ``desired`` (usually the models).

    Pass ``desired`` through :func:`dbplugins.migrations.introspect.canonicalize` first when it declares
    predicates or defaults, so both sides spell expressions the way the server does.
    """
    ops: list[Operation] = []
    desired = _generated_not_null(desired)
    cur_tables, new_tables = current.tables, desired.tables
    dropped = [cur_tables[n] for n in sorted(cur_tables.keys() - new_tables.keys())]
    added = [new_tables[n] for n in sorted(new_tables.keys() - cur_tables.keys())]
    kept = sorted(cur_tables.keys() & new_tables.keys())

    # Tables whose primary key or unique constraints change: foreign keys pointing at them are dropped before
    # and re-created after, since PostgreSQL will not drop a key that a foreign key depends on.
    rekeyed: set[tuple[str, tuple[str, ...]]] = set()

    for name in kept:
        cur, new = cur_tables[name], new_tables[name]
        # -- columns
        cur_cols, new_cols = cur.columns, new.columns
        gone = [c for c in cur_cols if c not in new_cols]
        came = [c for c in new_cols if c not in cur_cols]
        for c in gone:
            twins = [a for a in came if type_key(new_cols[a].sql_type) == type_key(cur_cols[c].sql_type)]
            note = (
                f"possible rename of {name}.{c} to {name}.{twins[0]}: this drops the column and its data; to "
                f"keep them, write {_sql('ALTER TABLE {} RENAME COLUMN {} TO {}', name, c, twins[0])} instead"
                if twins
                else None
            )
            ops.append(Operation("drop_column", name, c, old=cur_cols[c], note=note))
        for c in came:
            col = new_cols[c]
            twins = [g for g in gone if type_key(cur_cols[g].sql_type) == type_key(col.sql_type)]
            note = (
                f"possible rename of {name}.{twins[0]} to {name}.{c} (see the drop above)" if twins else None
            )
            if not col.nullable and col.default is None and not server_generated(col.sql_type):
                extra = "NOT NULL without a default: fails if the table has rows (add a default or backfill)"
                note = f"{note}; {extra}" if note else extra
            ops.append(Operation("add_column", name, c, new=col, note=note))
        for c in cur_cols:
            if c not in new_cols:
                continue
            a, b = cur_cols[c], new_cols[c]
            numbered = server_generated(a.sql_type) or server_generated(b.sql_type)
            if type_key(a.sql_type) != type_key(b.sql_type):
                note = (
                    f"converts existing values with USING {_sql('{}', c)}::{b.sql_type}; may fail or lose "
                    "precision"
                )
                if numbered:
                    # spelled in steps by migrations._generated, NOT NULL included (so no alter_nullable:
                    # an identity column refuses DROP NOT NULL, which its rollback would run first)
                    note = _numbering_note(a.sql_type, b.sql_type)
                ops.append(Operation("alter_type", name, c, old=a, new=b, note=note))
            if a.nullable != b.nullable and not (numbered and type_key(a.sql_type) != type_key(b.sql_type)):
                note = None if b.nullable else "fails if existing rows hold NULL in this column"
                ops.append(Operation("alter_nullable", name, c, old=a, new=b, note=note))
            if _default_key(a.default) != _default_key(b.default):
                ops.append(Operation("alter_default", name, c, old=a, new=b))

        # -- primary key
        if tuple(cur.primary_key) != tuple(new.primary_key):
            if cur.primary_key:
                ops.append(Operation("drop_pk", name, cur.pk_name, old=tuple(cur.primary_key)))
                rekeyed.add((name, tuple(cur.primary_key)))
            if new.primary_key:
                ops.append(Operation("add_pk", name, pg_identifier(new.pk_name), new=tuple(new.primary_key)))

        # -- unique constraints (by columns)
        cur_u = {tuple(u) for u in cur.unique}
        new_u = {tuple(u) for u in new.unique}
        for u in sorted(cur_u - new_u):
            ops.append(Operation("drop_unique", name, cur.unique_name(u), old=u))
            rekeyed.add((name, u))
        for u in sorted(new_u - cur_u):
            ops.append(Operation("add_unique", name, pg_identifier(new.unique_name(u)), new=u))

        # -- indexes (by name; same structure under a new name is a rename)
        cur_ix = {ix.name: ix for ix in cur.indexes}
        new_ix = {pg_identifier(ix.name): ix for ix in new.indexes}
        removed = [cur_ix[n] for n in sorted(cur_ix.keys() - new_ix.keys())]
        created = [new_ix[n] for n in sorted(new_ix.keys() - cur_ix.keys())]
        for n in sorted(cur_ix.keys() & new_ix.keys()):
            if _index_key(cur_ix[n]) != _index_key(new_ix[n]):
                ops.append(Operation("drop_index", name, n, old=cur_ix[n]))
                ops.append(Operation("add_index", name, n, new=new_ix[n]))
        for ix in removed:
            twin = next((c for c in created if _index_key(c) == _index_key(ix)), None)
            if twin is not None:
                created.remove(twin)
                ops.append(Operation("rename_index", name, pg_identifier(twin.name), old=ix, new=twin))
            else:
                ops.append(Operation("drop_index", name, ix.name, old=ix))
        for ix in created:
            ops.append(Operation("add_index", name, pg_identifier(ix.name), new=ix))

    # -- whole tables
    for t in dropped:
        twins = [
            a.name
            for a in added
            if {(c, type_key(d.sql_type)) for c, d in a.columns.items()}
            == {(c, type_key(d.sql_type)) for c, d in t.columns.items()}
        ]
        note = (
            f"possible rename of table {t.name} to {twins[0]}: this drops the table and its data; to keep "
            f"them, write {_sql('ALTER TABLE {} RENAME TO {}', t.name, twins[0])} instead"
            if twins
            else None
        )
        ops.append(Operation("drop_table", t.name, old=t, note=note))
    for t in added:
        ops.append(Operation("add_table", t.name, new=t))

    # -- foreign keys, by what they constrain; all of them after the tables exist, as migra does
    dropped_names = {t.name for t in dropped}
    for name in sorted(cur_tables):
        cur = cur_tables[name]
        new_fks = {_fk_key(fk): fk for fk in new_tables[name].foreign_keys} if name in new_tables else {}
        for fk in cur.foreign_keys:
            key = _fk_key(fk)
            depends_on_rekeyed = (
                fk.ref_table,
                tuple(fk.ref_columns),
            ) in rekeyed or fk.ref_table in dropped_names
            if key not in new_fks or depends_on_rekeyed or name in dropped_names:
                ops.append(Operation("drop_fk", name, fk.name, old=fk))
            if key in new_fks and depends_on_rekeyed and name not in dropped_names:
                ops.append(Operation("add_fk", name, pg_identifier(new_fks[key].name), new=new_fks[key]))
    for name in sorted(new_tables):
        cur_keys = {_fk_key(fk) for fk in cur_tables[name].foreign_keys} if name in cur_tables else set()
        for fk in new_tables[name].foreign_keys:
            if _fk_key(fk) not in cur_keys:
                ops.append(Operation("add_fk", name, pg_identifier(fk.name), new=fk))

    return _order(ops, current, desired)


def _order(ops: list[Operation], current: Schema, desired: Schema) -> list[Operation]:
    """Sort by phase; inside a phase by table (dependency order for creates and drops), then by name."""
    create_rank = {t.name: i for i, t in enumerate(_sorted_tables(desired.tables.values()))}
    drop_rank = {t.name: i for i, t in enumerate(_sorted_tables(current.tables.values(), reverse=True))}
    phase = {k: i for i, k in enumerate(PHASES)}

    def key(op: Operation) -> tuple[int, int, str, str]:
        rank = drop_rank if op.kind.startswith("drop") else create_rank
        return (phase[op.kind], rank.get(op.table, 0), op.table, op.name or "")

    # Deduplicate (a foreign key can be selected twice, e.g. re-created both as re-keyed and as new).
    seen: set[tuple[str, str, str | None]] = set()
    unique: list[Operation] = []
    for op in ops:
        ident = (op.kind, op.table, op.name)
        if ident not in seen:
            seen.add(ident)
            unique.append(op)
    return sorted(unique, key=key)


def _numbering_note(old: str, new: str) -> str | None:
    """What a change to or from a server-numbered column does to the data (see migrations._generated)."""
    if not server_generated(new):
        return "drops the column's sequence; the values are kept"
    if not server_generated(old):
        return "the values are kept; the server numbers new rows after the largest (fails if one is NULL)"
    return None
