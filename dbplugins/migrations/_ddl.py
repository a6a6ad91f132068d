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

from .._types.column import _value_type, canonical_type
from ..errors import ConfigurationError, context

__all__ = ["type_sql", "expression_sql", "server_generated", "value_type", "type_key"]

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


# The sequence options of an identity column, ``... as identity (start with 100 increment by 10)``: words
# and numbers only.
_IDENTITY_OPTIONS = re.compile(r"(\bidentity)\s*(\([A-Za-z0-9_ +-]*\))\s*$", re.I)


def identity_options(sql_type: str) -> str:
    """The sequence options declared after an identity type, ``(start with 100)``, or ``""``."""
    match = _IDENTITY_OPTIONS.search(sql_type)
    return match.group(2) if match else ""


def type_sql(sql_type: str, *, model: str, column: str) -> sql.SQL:
    """The column type ``sql_type`` for DDL, checked to be a type name (``ConfigurationError`` otherwise)."""
    if not _TYPE_RE.match(_IDENTITY_OPTIONS.sub(r"\1", sql_type)):
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


def server_generated(sql_type: str) -> bool:
    """Whether ``sql_type`` is a type whose values the server generates: ``serial`` / ``bigserial`` /
    ``smallserial`` (an integer column with an owned sequence as its default) or ``<type> generated {always |
    by default} as identity``. Such a column is NOT NULL by nature and takes no declared default."""
    return _value_type(sql_type)[1]


def value_type(sql_type: str) -> str:
    """The type of the values of ``sql_type``: ``serial`` -> ``integer``, ``bigint generated always as
    identity`` -> ``bigint``; any other type as it is."""
    return _value_type(sql_type)[0]


#: The serial type whose column has values of this type.
SERIAL_OF = {"smallint": "smallserial", "integer": "serial", "bigint": "bigserial"}


def type_key(sql_type: str) -> str:
    """What the differ compares of a type: the spelling introspection gives a server-generated column
    (``serial4`` and ``serial`` alike are ``serial``; ``int GENERATED ALWAYS AS IDENTITY (start with 100)`` is
    ``integer generated always as identity``: the catalog's type does not carry the sequence options)."""
    base, generated = _value_type(sql_type)
    if not generated:
        return canonical_type(sql_type)
    base = canonical_type(base)
    if base not in SERIAL_OF or "identity" in sql_type.lower():  # serial, serial4, ... name no identity
        kind = "always" if re.search(r"\balways\b", sql_type, re.I) else "by default"
        return f"{base} generated {kind} as identity"
    return SERIAL_OF[base]
