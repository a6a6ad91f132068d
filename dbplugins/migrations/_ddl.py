"""The pieces of migration DDL that are not identifiers: column types and declared SQL expressions.

Identifiers always go through ``psycopg.sql.Identifier``, as everywhere in the package. Two things cannot: a
column's type and a declared expression (a column default, an index predicate). Both come from model
declarations (or from the server's own catalog, for the rollback of a drop), never from data.

    >>> type_sql("timestamp(3) without time zone", model="w", column="seen").as_string(None)
    'timestamp(3) without time zone'
    >>> type_sql("integer; DROP TABLE w", model="w", column="n")
    Traceback (most recent call last):
    ...
    dbplugins.errors.ConfigurationError: column type 'integer; DROP TABLE w' is not a type name [model 'w'...]
"""

from __future__ import annotations

import re

from psycopg import sql

from ..errors import ConfigurationError, context

__all__ = ["type_sql", "expression_sql"]

# A type name as ``format_type`` prints it (the spelling models and introspection share): words, optionally
# schema-qualified or double-quoted (``"char"``, ``"Mood"``, ``extra.mood``), an optional type modifier
# (``(5)``, ``(10,2)``, ``geometry(Point,4326)``), words after it (``timestamp(3) with time zone``, ``interval
# day to second(3)``) and array brackets. The same check as ``::`` casts get in
# ``_query.statements.cast_type``, widened to those spellings: nothing that could end the type (``;``, ``'``,
# ``--``) passes.
_NAME = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_TYPE_RE = re.compile(
    rf"^{_NAME}(?:\.{_NAME})?(?: [A-Za-z_]+)*(?:\([A-Za-z0-9_, ]*\))?"
    r"(?: [A-Za-z_]+(?:\(\d+\))?)*(?:\[\d*\])*$"
)


def type_sql(sql_type: str, *, model: str, column: str) -> sql.SQL:
    """The column type ``sql_type`` for DDL, checked to be a type name (``ConfigurationError`` otherwise)."""
    if not _TYPE_RE.match(sql_type):
        raise ConfigurationError(
            f"column type {sql_type!r} is not a type name{context(model=model, column=column)}",
            model=model,
            column=column,
        )
    # Validated above; the type comes from the model declaration (or the catalog's format_type), never from
    # data.
    return sql.SQL(sql_type)


def expression_sql(text: str) -> sql.SQL:
    """A declared SQL expression (a column ``DEFAULT``, an index ``WHERE``), spliced as written.

    It is SQL by design: the model author writes ``Column(default="now()")`` or ``Index(where="kind =
    'alert'")`` and the migration must carry exactly that expression; introspection reads it back as the
    server's ``pg_get_expr`` text. It comes from the model declaration or the catalog, never from data, and
    the reviewer sees it in the generated migration file.
    """
    return sql.SQL(text)
