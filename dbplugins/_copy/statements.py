"""The statements of the COPY engine, composed once per table with quoted identifiers: the COPYs into the
table and the staging tables, the staged INSERTs, and their variants for rows that leave out columns whose
default the server computes (:meth:`_Statements.for_layout`)."""

from __future__ import annotations

import copy as copymod
import hashlib

from psycopg import sql

from .._types.schema import Table
from .checker import _MAX_SIGNATURES, _RowChecker

# The longest the fast path's COPY waits for a lock (lock_timeout, lowered for the COPY only) before it gives
# up and goes through staging. Such a wait means a concurrent caller holds one of our keys uncommitted;
# waiting for deadlock detection instead (deadlock_timeout, 1 s by default) made 8 workers racing the same
# 2,000-row batch take 1-7 s per round (tests/reliability/test_load.py).
_FAST_PATH_LOCK_WAIT = "100ms"

_SEGMENT = "_dbp_segment"  # "update" mode's staging column: the run of rows naming the same columns


class _Statements:
    """The statements of one table, composed once with quoted identifiers."""

    def __init__(self, table: Table, check: _RowChecker) -> None:
        t = sql.Identifier(table.name)
        cols = sql.SQL(", ").join(map(sql.Identifier, check.names))
        digest = hashlib.sha1(
            repr(list(zip(check.names, check.sql_types, strict=True))).encode()
        ).hexdigest()[:10]
        stage = self.stage = sql.Identifier(f"_dbp_stage_{table.name[:40]}_{digest}")
        self.copy_target = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(t, cols)
        self.copy_stage = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(stage, cols)
        # A temporary table per connection, reused: created once (it lives as long as the pooled connection,
        # or until a rollback undoes its creation) and emptied before each flush. TRUNCATE rather than
        # CREATE ... ON COMMIT DROP per call, which would write ~35 catalog rows per call.
        # Columns whose default the server computes may be left out of a COPY into staging: the default is
        # applied once, by the INSERT into the table that leaves them out too, so the staging copy of such a
        # column holds NULL and must allow it (LIKE copies the table's NOT NULL, not its defaults; the model
        # may call the column nullable where the table does not).
        generated = [n for n, c in table.columns.items() if c.type.server_default]
        self.create_stage = sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {})").format(stage, t)
        self.create_stage += _allow_null(stage, generated)
        self.truncate_stage = sql.SQL("TRUNCATE {}").format(stage)
        # "update" mode's staging table: the table's columns plus the segment (run of rows naming the same
        # columns) of each row, filled by the column default from a setting changed between the runs' COPYs.
        ustage = self.ustage = sql.Identifier(f"_dbp_ustage_{table.name[:40]}_{digest}")
        self.create_ustage = sql.SQL(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {}, {} integer NOT NULL "
            "DEFAULT current_setting('dbplugins.bulk_segment')::integer)"
        ).format(ustage, t, sql.Identifier(_SEGMENT)) + _allow_null(ustage, generated)
        self.index_ustage = sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.Identifier(f"_dbp_ustage_{digest}_seg"), ustage, sql.Identifier(_SEGMENT)
        )
        self.truncate_ustage = sql.SQL("TRUNCATE {}").format(ustage)
        self.copy_ustage = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(ustage, cols)
        self.set_segment = sql.SQL("SELECT set_config('dbplugins.bulk_segment', %s, true)")
        # Lower lock_timeout for the fast path's COPY (never raise it), returning the setting to restore
        # after.
        self.limit_lock_wait = sql.SQL(
            "SELECT s.prev, set_config('lock_timeout', CASE WHEN s.prev::interval = interval '0' "
            "OR s.prev::interval > {limit}::interval THEN {limit} ELSE s.prev END, true) "
            "FROM (SELECT current_setting('lock_timeout') AS prev) AS s"
        ).format(limit=sql.Literal(_FAST_PATH_LOCK_WAIT))
        self.restore_lock_wait = sql.SQL("SELECT set_config('lock_timeout', %s, true)")
        pk = table.primary_key
        target = sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, pk))) if pk else sql.SQL("")
        # ORDER BY the key: concurrent callers then take row locks in the same order and cannot deadlock on
        # each other's uncommitted keys within a chunk (racing re-deliveries of one batch in other orders).
        # Then ctid: the staging table is truncated and filled by COPY, so ctid order is input order, and the
        # first row given for a key is inserted first (the later ones conflict with it and are skipped).
        order = (
            sql.SQL(" ORDER BY {}, ctid").format(sql.SQL(", ").join(map(sql.Identifier, pk)))
            if pk
            else sql.SQL("")
        )
        self.insert_ignore = sql.SQL(
            "INSERT INTO {t} ({c}) SELECT {c} FROM {s}{o} ON CONFLICT{k} DO NOTHING"
        ).format(t=t, c=cols, s=stage, o=order, k=target)
        self.table = table
        self.names = check.names
        self.has_key = bool(pk)
        # The server-default columns these statements leave out (see for_layout), and whether that
        # includes a key column (the server makes the key: no conflict to look for, every row is new).
        self.omitted: frozenset[str] = frozenset()
        self.keyless = False
        self._upserts: dict[tuple[tuple[str, ...], bool], sql.Composed] = {}
        self._layouts: dict[frozenset[str], _Statements] = {}

    def for_layout(self, omitted: frozenset[str]) -> _Statements:
        """The statements of rows that leave out the server-default columns ``omitted``: their COPYs and
        INSERTs do not name them, so the server fills them in the table (once per row inserted)."""
        if omitted == self.omitted:
            return self
        found = self._layouts.get(omitted)
        if found is not None:
            return found
        out = copymod.copy(self)
        out._upserts = {}
        out._layouts = self._layouts
        out.omitted = omitted
        out.names = tuple(n for n in self.table.columns if n not in omitted)
        pk = self.table.primary_key
        out.keyless = bool(set(pk) & omitted)
        t = sql.Identifier(self.table.name)
        cols = sql.SQL(", ").join(map(sql.Identifier, out.names))
        copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)")
        out.copy_target = copy.format(t, cols)
        out.copy_stage = copy.format(self.stage, cols)
        out.copy_ustage = copy.format(self.ustage, cols)
        if out.keyless:
            # No key given: nothing to skip, and a key the server makes that collides with a stored one is an
            # error (as in "error" mode), never a row silently skipped.
            out.insert_ignore = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ORDER BY ctid").format(
                t, cols, cols, self.stage
            )
        else:
            out.insert_ignore = sql.SQL(
                "INSERT INTO {t} ({c}) SELECT {c} FROM {s} ORDER BY {k}, ctid ON CONFLICT ({k}) DO NOTHING"
            ).format(t=t, c=cols, s=self.stage, k=sql.SQL(", ").join(map(sql.Identifier, pk)))
        if len(self._layouts) >= _MAX_SIGNATURES:
            self._layouts.clear()
        self._layouts[omitted] = out
        return out

    def upsert(self, named: tuple[str, ...], segmented: bool) -> sql.Composed:
        """The staged upsert that sets only the ``named`` non-key columns of an existing row (cached per set).

        ``DISTINCT ON`` keeps one row per key (DO UPDATE may not touch a row twice in one statement): the last
        one given, as ctid order is input order in a staging table just truncated and filled by COPY. ``ORDER
        BY`` the key makes the statement lock keys in order (see :meth:`_Loader.upsert`). ``segmented``: only
        the rows of the segment bound as the statement's parameter.
        """
        cache = (named, segmented)
        found = self._upserts.get(cache)
        if found is not None:
            return found
        pk = self.table.primary_key
        t = sql.Identifier(self.table.name)
        cols = sql.SQL(", ").join(map(sql.Identifier, self.names))
        pkcols = sql.SQL(", ").join(map(sql.Identifier, pk))
        rest = [n for n in self.names if n in named and n not in pk]  # table order; names checked against it
        action: sql.Composable
        if rest:
            # json has no equality operator: its columns compare as text (what json stores)
            cast = {n: sql.SQL("::text" if self.table.columns[n].type.base == "json" else "") for n in rest}
            action = sql.SQL("DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})").format(
                sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in rest),
                sql.SQL(", ").join(sql.Identifier(self.table.name, n) + cast[n] for n in rest),
                sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(n)) + cast[n] for n in rest),
            )
        else:
            action = sql.SQL("DO NOTHING")
        where = sql.SQL(" WHERE {} = %s").format(sql.Identifier(_SEGMENT)) if segmented else sql.SQL("")
        if self.keyless:  # the server makes the key: every row is new (see for_layout)
            stmt = sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s}{w} ORDER BY ctid").format(
                t=t, c=cols, s=self.ustage, w=where
            )
            self._upserts[cache] = stmt
            return stmt
        stmt = sql.SQL(
            "INSERT INTO {t} ({c}) SELECT DISTINCT ON ({k}) {c} FROM {s}{w} ORDER BY {k}, ctid DESC "
            "ON CONFLICT ({k}) {a}"
        ).format(t=t, c=cols, s=self.ustage, w=where, k=pkcols, a=action)
        if len(self._upserts) >= _MAX_SIGNATURES:
            self._upserts.clear()
        self._upserts[cache] = stmt
        return stmt


def _allow_null(stage: sql.Identifier, columns: list[str]) -> sql.Composable:
    """``; ALTER TABLE stage ALTER COLUMN c DROP NOT NULL, ...`` for ``columns`` (nothing without any)."""
    if not columns:
        return sql.SQL("")
    return sql.SQL("; ALTER TABLE {} {}").format(
        stage,
        sql.SQL(", ").join(
            sql.SQL("ALTER COLUMN {} DROP NOT NULL").format(sql.Identifier(n)) for n in columns
        ),
    )


_STATEMENTS: dict[int, tuple[Table, _Statements]] = {}


def _statements(table: Table, check: _RowChecker) -> _Statements:
    entry = _STATEMENTS.get(id(table))
    if entry is None or entry[0] is not table:
        entry = _STATEMENTS[id(table)] = (table, _Statements(table, check))
    return entry[1]
