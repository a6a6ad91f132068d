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

An identity column changing only between ``always`` and ``by default`` gets ``SET GENERATED``.
"""

from __future__ import annotations

from psycopg import sql

from .._types.schema import ColumnDef
from ._ddl import SERIAL_OF, identity_options, server_generated, type_key, type_sql, value_type
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
    kind = "always" if key.endswith("always as identity") else "by default"
    return kind, identity_options(sql_type)


def generated_change(table: str, old: ColumnDef, new: ColumnDef) -> list[sql.Composable]:
    """The statements that turn column ``old`` of ``table`` into ``new``, either side server-numbered."""
    t, c = sql.Identifier(table), sql.Identifier(new.name)
    alter = sql.SQL("ALTER TABLE {} ALTER COLUMN {} ").format(t, c)
    was, _ = _numbering(old.sql_type)
    becomes, options = _numbering(new.sql_type)
    old_values, new_values = value_type(old.sql_type), value_type(new.sql_type)
    if was in ("always", "by default") and becomes in ("always", "by default") and old_values == new_values:
        return [alter + sql.SQL("SET GENERATED " + becomes.upper())]
    out: list[sql.Composable] = []
    owner = sql.SQL("pg_get_serial_sequence({}, {})").format(
        sql.Literal(t.as_string(None)), sql.Literal(new.name)
    )
    if was == "serial":
        out.append(alter + sql.SQL("DROP DEFAULT"))
        # the sequence the column owns, by its real name (a DO block: DROP SEQUENCE takes no expression)
        out.append(sql.SQL("DO $dbp$ BEGIN EXECUTE format('DROP SEQUENCE %s', {}); END $dbp$").format(owner))
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
    out.append(
        sql.SQL(
            "SELECT setval(s, m) FROM (SELECT {} AS s, max({}) AS m FROM {}) AS x"
            " WHERE m >= (SELECT seqstart FROM pg_sequence WHERE seqrelid = s::regclass)"
        ).format(owner, c, t)
    )
    return out
