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
from typing import NamedTuple

from psycopg import sql

from .._types.column import _value_type, canonical_type
from ..errors import ConfigurationError, context

__all__ = [
    "type_sql",
    "expression_sql",
    "server_generated",
    "value_type",
    "type_key",
    "identity_options",
    "identity_sequence",
    "IdentitySequence",
    "default_bounds",
]

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


class IdentitySequence(NamedTuple):
    """The options of an identity column's sequence, every one of them (PostgreSQL's defaults filled in)."""

    increment: int
    minvalue: int
    maxvalue: int
    start: int
    cache: int
    cycle: bool

    def spelled(self, value_type: str) -> str:
        """The options that differ from the defaults for ``value_type``, in one fixed order: ``(increment by
        -1 start with -10)``, or ``""``: the spelling introspection gives and the differ compares."""
        low, high = default_bounds(self.increment, value_type)
        words = [
            f"{name} {value}"
            for name, value, default in (
                ("increment by", self.increment, 1),
                ("minvalue", self.minvalue, low),
                ("maxvalue", self.maxvalue, high),
                # CREATE SEQUENCE starts at the minimum going up, at the maximum going down
                ("start with", self.start, self.minvalue if self.increment > 0 else self.maxvalue),
                ("cache", self.cache, 1),
            )
            if value != default
        ]
        if self.cycle:
            words.append("cycle")
        return f"({' '.join(words)})" if words else ""


# The largest value of each integer type (an identity column is one of them; PostgreSQL refuses any other).
_LARGEST = {"smallint": 2**15 - 1, "integer": 2**31 - 1, "bigint": 2**63 - 1}


def default_bounds(increment: int, value_type: str) -> tuple[int, int]:
    """``(minvalue, maxvalue)`` PostgreSQL gives a sequence of ``value_type`` counting by ``increment``."""
    largest = _LARGEST.get(canonical_type(value_type), _LARGEST["bigint"])
    return (1, largest) if increment > 0 else (-largest - 1, -1)


def identity_sequence(value_type: str, options: str) -> IdentitySequence:
    """The sequence an identity column of ``value_type`` gets from its declared ``options`` (``(start with
    5)``, as :func:`identity_options` reads them), with PostgreSQL's defaults (CREATE SEQUENCE) for the rest.

    ``ValueError`` for an option this cannot read (``sequence name``, a misspelling): the differ could not
    compare it.

    >>> identity_sequence("integer", "(START 5 increment by 2)")
    IdentitySequence(increment=2, minvalue=1, maxvalue=2147483647, start=5, cache=1, cycle=False)
    >>> identity_sequence("smallint", "(increment by -1)").spelled("smallint")
    '(increment by -1)'
    """
    words = options.strip().removeprefix("(").removesuffix(")").lower().split()
    given: dict[str, int | bool | None] = {}
    i = 0
    while i < len(words):
        word = words[i]
        after = words[i + 1] if i + 1 < len(words) else ""
        if word in ("start", "increment"):
            skip = {"start": "with", "increment": "by"}[word]
            i += 2 if after == skip else 1
            given[word], i = _number(words, i, options), i + 1
        elif word in ("minvalue", "maxvalue", "cache"):
            given[word], i = _number(words, i + 1, options), i + 2
        elif word == "cycle":
            given["cycle"], i = True, i + 1
        elif word == "no" and after in ("minvalue", "maxvalue", "cycle"):
            given[after], i = (False if after == "cycle" else None), i + 2
        else:
            raise ValueError(f"identity option {word!r} in {options!r} is not one the differ can compare")
    increment = _given(given, "increment", 1)
    cache = _given(given, "cache", 1)
    if increment == 0 or cache < 1:
        raise ValueError(f"identity options {options!r}: increment by 0 or cache below 1")
    low, high = default_bounds(increment, value_type)
    minvalue = _given(given, "minvalue", low)
    maxvalue = _given(given, "maxvalue", high)
    return IdentitySequence(
        increment=increment,
        minvalue=minvalue,
        maxvalue=maxvalue,
        start=_given(given, "start", minvalue if increment > 0 else maxvalue),
        cache=cache,
        cycle=bool(given.get("cycle", False)),
    )


def _given(given: dict[str, int | bool | None], name: str, default: int) -> int:
    value = given.get(name)
    return default if value is None else int(value)


def _number(words: list[str], i: int, options: str) -> int:
    try:
        return int(words[i])
    except (IndexError, ValueError):
        raise ValueError(f"identity options {options!r}: a number expected at word {i + 1}") from None


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
    (``serial4`` and ``serial`` alike are ``serial``; ``int GENERATED ALWAYS AS IDENTITY (START 100 MINVALUE
    1)`` is ``integer generated always as identity (start with 100)``: the sequence options that differ from
    PostgreSQL's defaults, in one order). Options it cannot read are compared as written."""
    base, generated = _value_type(sql_type)
    if not generated:
        return canonical_type(sql_type)
    base = canonical_type(base)
    if base not in SERIAL_OF or "identity" in sql_type.lower():  # serial, serial4, ... name no identity
        kind = "always" if re.search(r"\balways\b", sql_type, re.I) else "by default"
        options = identity_options(sql_type)
        try:
            options = identity_sequence(base, options).spelled(base)
        except ValueError:  # refused with its model and column by the differ (diff._generated_not_null)
            pass
        return f"{base} generated {kind} as identity {options}".rstrip()
    return SERIAL_OF[base]
