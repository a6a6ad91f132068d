"""Turning an existing column into a server-numbered one (``serial`` types, identity) and back.

No ``ALTER COLUMN ... TYPE`` does it: a serial column is an integer column with a sequence it owns as its
default, an identity column an integer column with ``attidentity`` set and an internal sequence. So the change
is spelled in steps, each undone by the same function with the two sides swapped (the rollback):

1. the old numbering goes: ``DROP IDENTITY`` (which drops its sequence), or for a serial ``DROP DEFAULT``
   and the sequence it owns (found by ``pg_get_serial_sequence``, since its name is not in the model);
2. the values' type changes if it differs (``USING col::type``), then ``DROP NOT NULL`` if the plain column
   is NULL-able;
3. the new numbering comes: ``SET NOT NULL`` (an identity column requires it), then ``ADD GENERATED ... AS
   IDENTITY`` with the declared options, or a new sequence ``<table>_<column>_seq`` owned by the column and
   its ``nextval`` as the default; the sequence is then moved past the largest stored value, so the next row
   numbered by the server does not collide with an existing one. The existing values are kept as they are.

An identity column that stays one (same value type) gets ``SET GENERATED`` for a change between ``always``
and ``by default`` and ``SET <option>`` for each sequence option that changes. A sequence that has given
no number yet restarts at its new start; one that has keeps its position (a new ``start with`` is where a
later ``RESTART`` would go, as ``ALTER SEQUENCE`` has it), and a position outside new bounds fails the
migration with PostgreSQL's message, nothing changed.
"""

from __future__ import annotations

from psycopg import sql

from .._types.schema import ColumnDef, canonical_type
from ._ddl import (
    SERIAL_OF,
    default_bounds,
    identity_options,
    identity_sequence,
    server_generated,
    type_key,
    type_sql,
    value_type,
)
from .diff import pg_identifier

__all__ = ["generated_change"]


def _numbering(sql_type: str) -> tuple[str | None, str]:
    """``(kind, options)``: kind ``serial``, ``always``, ``by default`` or None (a plain column); options the
    declared sequence options of an identity, ``(start with 5)``, as ``type_sql`` checks them."""
    if not server_generated(sql_type):
        return None, ""
    key = type_key(sql_type)  # serial4, SERIAL, ... -> serial; an identity with its kind spelled out
    if key in SERIAL_OF.values():
        return "serial", ""
    kind = "always" if " always as identity" in key else "by default"
    return kind, identity_options(sql_type)


def _option_changes(old: ColumnDef, new: ColumnDef, value_type: str) -> list[str]:
    """``SET <option>`` for each sequence option that differs between two identities of ``value_type``
    (keywords and integers only, the options read by ``identity_sequence``)."""
    a = identity_sequence(value_type, identity_options(old.sql_type))
    b = identity_sequence(value_type, identity_options(new.sql_type))
    words = [f"SET INCREMENT BY {b.increment}"] if b.increment != a.increment else []
    # bounds at their defaults are NO MINVALUE / NO MAXVALUE: the defaults of the new increment's direction
    low, high = default_bounds(b.increment, value_type)
    if (b.minvalue, b.increment) != (a.minvalue, a.increment):
        words.append("SET NO MINVALUE" if b.minvalue == low else f"SET MINVALUE {b.minvalue}")
    if (b.maxvalue, b.increment) != (a.maxvalue, a.increment):
        words.append("SET NO MAXVALUE" if b.maxvalue == high else f"SET MAXVALUE {b.maxvalue}")
    if b.start != a.start:
        words.append(f"SET START WITH {b.start}")
    if b.cache != a.cache:
        words.append(f"SET CACHE {b.cache}")
    if b.cycle != a.cycle:
        words.append("SET CYCLE" if b.cycle else "SET NO CYCLE")
    return words


def _do(body: sql.Composable) -> sql.SQL:
    """``DO $dbp$ body $dbp$``, with a dollar-quote tag that the body (table and column names included) does
    not contain."""
    text, tag = body.as_string(None), "dbp"
    while f"${tag}$" in text:
        tag += "_"
    # the body is composed above (identifiers and values quoted), the tag letters only
    return sql.SQL(f"DO ${tag}$ {text} ${tag}$")


def generated_change(table: str, old: ColumnDef, new: ColumnDef) -> list[sql.Composable]:
    """The statements that turn column ``old`` of ``table`` into ``new``, either side server-numbered."""
    t, c = sql.Identifier(table), sql.Identifier(new.name)
    alter = sql.SQL("ALTER TABLE {} ALTER COLUMN {} ").format(t, c)
    was, _ = _numbering(old.sql_type)
    becomes, options = _numbering(new.sql_type)
    # int and integer alike: the type the catalog prints
    old_values, new_values = (
        canonical_type(value_type(old.sql_type)),
        canonical_type(value_type(new.sql_type)),
    )
    owner = sql.SQL("pg_get_serial_sequence({}, {})").format(
        sql.Literal(t.as_string(None)), sql.Literal(new.name)
    )
    if was in ("always", "by default") and becomes in ("always", "by default") and old_values == new_values:
        generated = [f"SET GENERATED {becomes.upper()}"] if becomes != was else []
        options_changed = _option_changes(old, new, new_values)
        if not options_changed:
            return [alter + sql.SQL(generated[0])]  # type_key differed, so the kind did
        changes = generated + options_changed
        # A sequence never used yet restarts at its new start, as a table created with the new options would
        # begin (and ALTER SEQUENCE refuses a position outside new bounds); a used one keeps its position.
        return [
            _do(
                sql.SQL(
                    "BEGIN EXECUTE {} || CASE WHEN pg_sequence_last_value({}::regclass) IS NULL"
                    " THEN ' RESTART' ELSE '' END; END"
                ).format(sql.Literal((alter + sql.SQL(" ".join(changes))).as_string(None)), owner)
            )
        ]
    out: list[sql.Composable] = []
    if was == "serial":
        out.append(alter + sql.SQL("DROP DEFAULT"))
        # the sequence the column owns, by its real name (a DO block: DROP SEQUENCE takes no expression)
        out.append(_do(sql.SQL("BEGIN EXECUTE format('DROP SEQUENCE %s', {}); END").format(owner)))
    elif was is not None:
        out.append(alter + sql.SQL("DROP IDENTITY"))
    ty = type_sql(new_values, model=table, column=new.name)
    if old_values != new_values:
        out.append(alter + sql.SQL("TYPE {} USING {}::{}").format(ty, c, ty))
    if becomes is None:
        if new.nullable:
            out.append(alter + sql.SQL("DROP NOT NULL"))
        return out
    out.append(alter + sql.SQL("SET NOT NULL"))
    if becomes == "serial":
        seq = sql.Identifier(pg_identifier(f"{table}_{new.name}_seq"))
        out.append(sql.SQL("CREATE SEQUENCE {} AS {} OWNED BY {}.{}").format(seq, ty, t, c))
        default = sql.SQL("SET DEFAULT nextval({}::regclass)").format(sql.Literal(seq.as_string(None)))
        out.append(alter + default)
    else:
        # options from the model declaration, checked by type_sql's pattern: words and numbers only
        out.append(alter + sql.SQL(f"ADD GENERATED {becomes.upper()} AS IDENTITY {options}".rstrip()))
    # past the stored values in the sequence's direction (a descending one, increment by -1, below the
    # smallest), unless its start already is
    out.append(
        sql.SQL(
            "SELECT setval(x.s, CASE WHEN p.seqincrement > 0 THEN x.hi ELSE x.lo END)"
            " FROM (SELECT {}::regclass AS s, max({}) AS hi, min({}) AS lo FROM {}) AS x"
            " JOIN pg_sequence p ON p.seqrelid = x.s"
            " WHERE CASE WHEN p.seqincrement > 0 THEN x.hi >= p.seqstart ELSE x.lo <= p.seqstart END"
        ).format(owner, c, c, t)
    )
    return out
