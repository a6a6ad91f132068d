"""Read a live database's schema from ``pg_catalog`` into the structures :mod:`dbplugins._types.schema` builds
from dataclasses, so the differ compares like with like.

Three catalog queries (``sql/columns.sql``, ``sql/constraints.sql``, ``sql/indexes.sql``, loaded as package
data the way schemainspect does) read every table, whatever their number::

    >>> with psycopg.connect(dsn) as conn:                       # doctest: +SKIP
    ...     current = introspect(conn)
    >>> current.tables["object"].primary_key                     # doctest: +SKIP
    ('oid',)

Bookkeeping tables of migration tools (yoyo's ``_yoyo_*``, ``yoyo_lock`` and its ``yoyo_tmp_*`` probe, and the
original db-plugins' ``alembic_version``) are never part of the schema.

:func:`canonicalize` asks the server for its own spelling of declared index predicates and column defaults,
which PostgreSQL rewrites (``ranking=1`` is stored as ``(ranking = 1)``, ``'a'`` as ``'a'::character
varying``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any, Protocol

import psycopg
from psycopg import sql

from .._types.schema import ColumnDef, ForeignKey, Index, Schema, Table, canonical_type, normalize_predicate
from ._ddl import expression_sql, type_sql

__all__ = [
    "introspect",
    "canonicalize",
    "is_internal_table",
    "EXCLUDED_TABLES",
    "EXCLUDED_PATTERNS",
    "CATALOG_QUERIES",
]

#: Tables that belong to a migration tool, not to the schema (exact names).
EXCLUDED_TABLES: tuple[str, ...] = ("yoyo_lock", "alembic_version")
#: ... and LIKE patterns: yoyo's ``_yoyo_migration``, ``_yoyo_log``, ``_yoyo_version`` and the
#: ``yoyo_tmp_<random>`` table its transactional-DDL probe creates and drops.
EXCLUDED_PATTERNS: tuple[str, ...] = (r"\_yoyo\_%", r"yoyo\_tmp\_%")

#: The catalog queries :func:`introspect` runs, one round trip each.
CATALOG_QUERIES: tuple[str, ...] = ("columns", "constraints", "indexes")

_EXCLUDED_RE = re.compile(r"^(_yoyo_.*|yoyo_tmp_.*|yoyo_lock|alembic_version)$")


class _Executes(Protocol):
    """What introspection needs of a connection (a ``psycopg.Connection``, or a test's counting proxy)."""

    def execute(self, query: Any, params: Any = None, /) -> Any: ...


def is_internal_table(name: str) -> bool:
    """True for the bookkeeping tables of yoyo and alembic, which introspection skips."""
    return bool(_EXCLUDED_RE.match(name))


@functools.cache
def _query(name: str) -> str:
    return resources.files(__package__).joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


def _params(schema: str) -> dict[str, Any]:
    return {"schema": schema, "excluded": list(EXCLUDED_TABLES), "excluded_like": list(EXCLUDED_PATTERNS)}


_QUOTED_IDENT = re.compile(r'^"((?:[^"]|"")+)"$')


def _unquote_ident(text: str) -> str:
    """``"Name"`` -> ``Name``: pg_get_indexdef quotes a key column that needs it; declared columns are raw."""
    m = _QUOTED_IDENT.match(text)
    return m.group(1).replace('""', '"') if m else text


def introspect(conn: _Executes, *, schema: str = "public") -> Schema:
    """The tables of ``schema`` in the database behind ``conn``, as a
    :class:`~dbplugins._types.schema.Schema`.

    Runs exactly ``len(CATALOG_QUERIES)`` queries whatever the number of tables. Column types are canonical
    (``format_type``), predicates normalised (:func:`dbplugins._types.schema.normalize_predicate`), and the
    names of the primary key and unique constraints kept (``Table.pk_constraint``, ``Table.unique_names``) so
    that a migration can drop them by their real names. Identity and generated columns are reported with their
    type only.
    """
    params = _params(schema)
    tables: dict[str, Table] = {}
    for table_name, column, sql_type, nullable, default, _identity, _generated in conn.execute(
        _query("columns"), params
    ).fetchall():
        table = tables.get(table_name)
        if table is None:
            table = tables[table_name] = Table(name=table_name, columns={}, primary_key=())
        if column is not None:
            table.columns[column] = ColumnDef(
                column, canonical_type(sql_type), bool(nullable), default=default
            )

    for table_name, name, kind, columns, ref_table, ref_columns in conn.execute(
        _query("constraints"), params
    ).fetchall():
        table = tables.get(table_name)
        if table is None:  # pragma: no cover - a table created between the two queries
            continue
        cols = tuple(columns)
        if kind == "p":
            table.primary_key = cols
            table.pk_constraint = name
        elif kind == "u":
            table.unique.append(cols)
            table.unique_names[cols] = name
        elif kind == "f":
            table.foreign_keys.append(ForeignKey(name, cols, ref_table, tuple(ref_columns)))

    for table_name, name, method, is_unique, predicate, columns, _definition in conn.execute(
        _query("indexes"), params
    ).fetchall():
        table = tables.get(table_name)
        if table is None:  # pragma: no cover - as above
            continue
        table.indexes.append(
            Index(
                name,
                [_unquote_ident(c) for c in columns],
                using=method,
                where=predicate,
                unique=bool(is_unique),
            )
        )
    return Schema(tables=dict(sorted(tables.items())))


# -- server-side canonical forms -----------------------------------------------------------------------------

_WS_AROUND_OPS = re.compile(r"\s*([=<>!(),+*/-]+)\s*")


def loose_form(text: str) -> str:
    """A whitespace- and outer-parenthesis-insensitive form, for a cheap first comparison."""
    return _WS_AROUND_OPS.sub(r"\1", normalize_predicate(text))


def canonicalize(conn: psycopg.Connection[Any], desired: Schema, current: Schema) -> Schema:
    """A copy of ``desired`` whose index predicates and column defaults are spelled as PostgreSQL stores them.

    Only expressions that differ (beyond whitespace) from the current database's are sent to the server: each
    table concerned is created as a temporary table inside a transaction that is rolled back, and the stored
    expressions are read back with ``pg_get_expr``. That is one script in all (none in the usual case where
    nothing differs), so make_migrations stays at a constant number of queries. It is migra's "build the
    target in a scratch schema" idea, reduced to the expressions that need it. If the server rejects an
    expression (a default calling a function that does not exist yet), the declared text is kept as it is.
    """
    wanted: dict[str, Table] = {}
    for name, table in desired.tables.items():
        cur = current.tables.get(name)
        cur_idx = {i.name: i for i in cur.indexes} if cur else {}
        cur_cols = cur.columns if cur else {}
        if any(
            ix.where is not None
            and loose_form(getattr(cur_idx.get(ix.name), "where", None) or "") != loose_form(ix.where)
            for ix in table.indexes
        ) or any(
            col.default is not None
            and loose_form(getattr(cur_cols.get(col.name), "default", None) or "") != loose_form(col.default)
            for col in table.columns.values()
        ):
            wanted[name] = table
    if not wanted:
        return desired
    try:
        with conn.transaction(force_rollback=True):
            stored_defaults, stored_predicates = _server_forms(conn, list(wanted.values()))
    except psycopg.Error:
        return desired
    result = Schema(tables=dict(desired.tables))
    for name, table in wanted.items():
        new = copy.copy(table)
        new.columns = {
            c: (
                dataclasses.replace(col, default=stored_defaults[(name, c)])
                if (name, c) in stored_defaults
                else col
            )
            for c, col in table.columns.items()
        }
        new.indexes = [
            dataclasses.replace(ix, where=stored_predicates[(name, ix.name)])
            if (name, ix.name) in stored_predicates
            else ix
            for ix in table.indexes
        ]
        result.tables[name] = new
    return result


def _server_forms(
    conn: psycopg.Connection[Any], tables: Sequence[Table]
) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    """Create ``tables`` as temporary tables and read back their stored defaults and predicates.

    The caller holds a transaction that it rolls back, so nothing persists.
    """
    statements: list[sql.Composable] = []
    temps: dict[str, Table] = {}
    for n, table in enumerate(tables):
        temp = f"_dbp_canon_{n}"
        temps[temp] = table
        cols = sql.SQL(", ").join(
            sql.SQL("{} {}{}").format(
                sql.Identifier(c.name),
                type_sql(c.sql_type, model=table.name, column=c.name),
                sql.SQL(" DEFAULT ") + expression_sql(c.default) if c.default is not None else sql.SQL(""),
            )
            for c in table.columns.values()
        )
        statements.append(sql.SQL("CREATE TEMPORARY TABLE {} ({})").format(sql.Identifier(temp), cols))
        for i, ix in enumerate(table.indexes):
            if ix.where is not None:
                statements.append(
                    sql.SQL("CREATE INDEX {} ON {} ({}) WHERE {}").format(
                        sql.Identifier(f"{temp}_ix_{i}"),
                        sql.Identifier(temp),
                        sql.SQL(", ").join(sql.Identifier(c) for c in ix.columns),
                        expression_sql(ix.where),
                    )
                )
    statements.append(sql.SQL(_query("canonical")))
    # One parameterless multi-statement string: psycopg sends it with the simple protocol, one round trip;
    # the SELECT's rows are the last result set.
    cur = conn.execute(sql.SQL("; ").join(statements))
    while cur.nextset():
        pass
    defaults: dict[tuple[str, str], str] = {}
    predicates: dict[tuple[str, str], str] = {}
    for relname, kind, name, expr in cur.fetchall():
        source = temps.get(relname)
        if source is None:
            continue
        if kind == "d":
            defaults[(source.name, name)] = expr
        else:
            i = int(name.rsplit("_", 1)[1])
            predicates[(source.name, source.indexes[i].name)] = normalize_predicate(expr)
    return defaults, predicates
