"""The COPY path of ``dbp load``: a CSV/TSV file whose header names the table's columns goes to the server as
it is, ``COPY table (cols) FROM STDIN (FORMAT csv, HEADER ...)``, as ``psql \\copy`` sends it; the server
parses it.

:mod:`dbplugins._load.files` reads every other file in Python (JSON, a column the server would read
differently than the column-type rules of :mod:`dbplugins._types.column`), and it stays the reference: this
path is taken only where it gives the same answer, checked three ways.

* **Before sending** (:func:`plan`): every header column is of a type whose PostgreSQL text input reads a
  field the way ``ColumnType.from_text`` does (integers, double precision, numeric, text, boolean, uuid; not
  real, which PostgreSQL rounds from the text once where the other paths round a double; the readers of
  :mod:`dbplugins._types.rules` accept what the server accepts, with the same value); the file has two columns
  or more (PostgreSQL reads a blank line of a one-column file as NULL, the Python path skips it); every column
  left out has no default, in the model or in the database (``bulk_insert`` stores NULL there, COPY the
  default), unless the model's default is computed by the server (both paths leave it to the server); the
  encoding is UTF-8 or Latin-1 (where the server's and Python's decoders agree byte for byte).
* **While sending** (:class:`_Scanner`, on the raw bytes, at C speed): quotes only where both CSV readers
  split fields the same way (PostgreSQL opens a quoted section anywhere in a field, Python's reader only at
  its start); no field ending in a space when a ``varchar(n)`` / ``char(n)`` column is loaded (PostgreSQL cuts
  excess trailing spaces silently, our rule refuses text that is too long); before PostgreSQL 18, no line
  ``\\.`` (the end-of-data marker). Anything else leaves the decision to the server.
* **After the server answered**: an error (a value it refuses, a missing field, a constraint) rolls the COPY
  back and the Python path reads the file again (:class:`Fallback`). So where the rules accept what the server
  refuses (``1001.0`` into an integer column, ``nan`` as NULL) the load still succeeds, and every error is the
  Python path's own message naming the file, line, model and column: one answer for both paths, by
  construction. A bad file is read twice, up to its first bad line on this path.

Conflicts: ``"error"`` is one COPY into the table. ``"ignore"`` and ``"update"`` first COPY straight into the
table (no existing key is the common case: a fresh load, as fast as ``psql \\copy``); on a duplicate key (or a
key a concurrent caller holds, waited for at most ``_LOCK_WAIT``) the transaction is rolled back and the file
is sent again into a temporary staging table, moved over with ``INSERT ... SELECT ... ON CONFLICT`` as
``bulk_insert`` does (first occurrence wins for "ignore", the last for "update", which sets the header's
non-key columns). All or nothing: one transaction per attempt.

Stdin cannot be read twice: what is read from it is kept in a temporary file (in memory up to 16 MiB) for the
second reading.

For tests only: ``DBP_LOAD_FAST=0`` turns this path off (every file read in Python), ``DBP_LOAD_FAST=require``
raises :class:`Fallback` instead of falling back (to see that a file is loaded by COPY).
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from typing import IO, Any

import psycopg
from psycopg import errors as pge
from psycopg import sql

from .._session.session import readable
from .._types.schema import Table
from ..citus.relay import on_citus
from . import textformats
from .loadsource import Source

__all__ = ["Fallback", "Plan", "plan", "copy_load", "mode", "ENV"]

#: The environment variable of the switch (tests only): "0" off, "require" no fallback, anything else auto.
ENV = "DBP_LOAD_FAST"

#: Bytes read from the file per write to the server. psql sends 64 KiB messages; larger reads cut the Python
#: work per byte (one scan, one write per block).
BLOCK = 1024 * 1024
#: The longest the direct COPY of "ignore"/"update" waits for a row lock held by a concurrent caller, before
#: it goes through staging (which takes keys in order); bulk_insert's figure (dbplugins/bulk.py).
_LOCK_WAIT = "100ms"
#: A header line longer than this is not a header of column names: the Python path says what it is.
_MAX_HEADER = 1024 * 1024
#: A line or quoted field longer than this is left to the Python path (whose csv reader refuses a field longer
#: than textformats.MAX_CSV_FIELD characters, which is at least as many bytes).
_MAX_CARRY = textformats.MAX_CSV_FIELD

# Column kinds whose PostgreSQL text input reads a CSV field as ColumnType.from_text does (see the module
# doc): temporal types (PostgreSQL also reads "now", "Jan 1 2020", and ignores a zone given to a timestamp),
# bytea (escape format), json (keeps the text; the reader re-serialises), jsonb (exact numbers; the reader's
# floats), interval and arrays (their own literal syntax) stay on the Python path.
_FAST_KINDS = frozenset({"int", "float", "numeric", "text", "bool", "uuid"})
# Python codec name -> PostgreSQL encoding, where both decode every byte sequence alike (or refuse it alike).
_PG_ENCODINGS = {"utf-8": "UTF8", "iso8859-1": "LATIN1"}


class Fallback(Exception):
    """This file (or this call) goes through the Python path; the message says why."""


def mode() -> str:
    """``"off"``, ``"require"`` or ``"auto"``, from :data:`ENV`."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("0", "off", "no", "false"):
        return "off"
    if value == "require":
        return "require"
    return "auto"


# -- the plan: may this file go to the server as it is? -----------------------------------------------------


class Plan:
    """The columns of the file and the COPY options, when :func:`plan` found that the COPY path applies."""

    def __init__(
        self, table: Table, columns: list[str], delimiter: str, encoding: str, bounded: bool
    ) -> None:
        self.table = table
        self.columns = columns
        self.delimiter = delimiter
        self.encoding = encoding
        self.bounded = bounded  # a varchar(n) / char(n) column: check trailing spaces
        self.missing = [n for n in table.columns if n not in columns]
        # An unquoted empty field in a NOT NULL text column has always loaded as the empty string
        # (loadfile.py).
        self.force_not_null = [
            n for n in columns if table.columns[n].type.kind == "text" and not table.columns[n].nullable
        ]

    def copy_statement(self, target: sql.Composable) -> sql.Composed:
        options = [
            sql.SQL("FORMAT csv"),
            sql.SQL("HEADER true"),
            sql.SQL("DELIMITER {}").format(sql.Literal(self.delimiter)),
            sql.SQL("ENCODING {}").format(sql.Literal(self.encoding)),
        ]
        if self.force_not_null:
            options.append(
                sql.SQL("FORCE_NOT_NULL ({})").format(
                    sql.SQL(", ").join(map(sql.Identifier, self.force_not_null))
                )
            )
        return sql.SQL("COPY {} ({}) FROM STDIN ({})").format(
            target, sql.SQL(", ").join(map(sql.Identifier, self.columns)), sql.SQL(", ").join(options)
        )


def plan(table: Table, header: bytes, delimiter: str, encoding: str, on_conflict: str) -> Plan:
    """The plan for a file whose first line is ``header`` (its bytes, line end included); Fallback if the file
    must be read in Python."""
    pg_encoding = _PG_ENCODINGS.get(codecs.lookup(encoding).name)
    if pg_encoding is None:
        raise Fallback(f"the {encoding} encoding")
    if not delimiter.isascii():
        raise Fallback("a delimiter that is not one byte")  # COPY takes a one-byte delimiter only
    try:
        text = header.decode(encoding)
    except UnicodeDecodeError:
        raise Fallback("the header is not valid text") from None
    if pg_encoding == "UTF8":
        text = text.removeprefix("\ufeff")
    text = text.rstrip("\r\n")
    if not text.strip() or "\r" in text or "\x00" in text:
        raise Fallback("no header on the first line")
    try:
        (header_fields,) = list(csv.reader([text], delimiter=delimiter, quotechar='"', strict=False))
    except (csv.Error, ValueError):
        raise Fallback("an unreadable header") from None
    names = [f.strip() for f in header_fields]
    if len(names) < 2:
        raise Fallback("one column")  # PostgreSQL reads a blank line as a NULL row, the Python path skips it
    if len(set(names)) != len(names) or any(n not in table.columns for n in names):
        raise Fallback("the header does not name the table's columns")
    bounded = False
    for name in names:
        ctype = table.columns[name].type
        # real: PostgreSQL rounds the text to a float4 once (strtof), every other path rounds it to a double
        # first (the Python value), then to a float4; the two differ at ties ("1.0000000596046448", 1 +
        # 2**-24).
        if ctype.array or ctype.kind not in _FAST_KINDS or ctype.base == "real":
            raise Fallback(f"column {name!r} ({ctype.sql_type}) is read in Python")
        bounded = bounded or (ctype.kind == "text" and ctype.length is not None)
    fields = {f.name: f for f in dataclasses.fields(table.cls)} if table.cls is not None else {}
    for name, col in table.columns.items():
        if name in names or col.type.server_default:
            continue  # bulk_insert leaves a server-computed default out of its COPY too: the server fills it
        field = fields.get(name)
        # bulk_insert stores the column's default, else the dataclass field's, else NULL; COPY the server's.
        dataclass_default = field is not None and (
            field.default_factory is not dataclasses.MISSING
            or field.default not in (dataclasses.MISSING, None)
        )
        if col.type.has_default or dataclass_default or not col.nullable:
            raise Fallback(f"column {name!r} is left out and has a default or is NOT NULL")
    if on_conflict != "error" and not set(table.primary_key) <= set(names):
        raise Fallback("the primary key is not in the header")
    if on_conflict != "error" and not table.primary_key:
        raise Fallback("no primary key")
    return Plan(table, names, delimiter, pg_encoding, bounded)


# -- the scan of the bytes sent ------------------------------------------------------------------------------


class _Scanner:
    """Cuts the byte stream into pieces ending at a line end and checks each (see the module doc)."""

    def __init__(self, delimiter: str, bounded: bool, eof_marker: bool) -> None:
        d = re.escape(delimiter.encode("ascii"))
        # Well-formed CSV, on which Python's reader and PostgreSQL's agree: each field either wholly quoted
        # ("" inside for a quote) or without any quote; possessive, so the match is linear.
        self.records = re.compile(
            rb'(?:(?:"[^"]*+(?:""[^"]*+)*+"|[^"' + d + rb"\r\n]*+)(?:" + d + rb"|\r\n|\n|\r))*+"
        )
        self.trailing_space = re.compile(rb' "?(?:' + d + rb"|[\r\n]|$)") if bounded else None
        self.eof_marker = re.compile(rb"(?:^|[\r\n])\\\.(?:[\r\n]|$)") if eof_marker else None

    def check(self, piece: bytes, final: bool) -> None:
        if b'"' in piece:
            text = piece if piece.endswith((b"\n", b"\r")) or not final else piece + b"\n"
            if self.records.fullmatch(text) is None:
                raise Fallback("quotes that PostgreSQL and Python's csv reader would read differently")
        if self.trailing_space is not None and self.trailing_space.search(piece):
            raise Fallback("a field ending in a space, for a varchar(n)/char(n) column")
        if self.eof_marker is not None and b"\\." in piece and self.eof_marker.search(piece):
            raise Fallback("a line \\. (end of data before PostgreSQL 18)")

    def pieces(self, first: bytes, read: Callable[[int], bytes]) -> Iterator[bytes]:
        """The bytes of the file (``first``, then ``read`` until empty) as checked pieces."""
        carry = first
        while True:
            data = read(BLOCK)
            buf = carry + data if carry else data
            if not data:
                if buf:
                    self.check(buf, True)
                    yield buf
                return
            cut = max(buf.rfind(b"\n"), buf.rfind(b"\r")) + 1
            if cut and b'"' in buf and buf.count(b'"', 0, cut) % 2:
                cut = 0  # inside a quoted field: wait for its end
            if not cut:
                if len(buf) > _MAX_CARRY:
                    raise Fallback("a line or a quoted field longer than the csv reader takes")
                carry = buf
                continue
            piece, carry = (buf, b"") if cut == len(buf) else (buf[:cut], buf[cut:])
            self.check(piece, False)
            yield piece


# -- the load ------------------------------------------------------------------------------------------------


class _Conflict(Exception):
    """The direct COPY met an existing key (or a key held by a concurrent caller): go through staging."""


def _read_header(stream: IO[bytes]) -> tuple[bytes, bytes]:
    """(the first line with its line end, every byte read so far)."""
    read = getattr(stream, "read1", stream.read)
    buf = b""
    while True:
        data = read(BLOCK)
        buf += data
        end = buf.find(b"\n")
        if end >= 0:
            return buf[: end + 1], buf
        if not data:
            raise Fallback("no line end after the header")
        if len(buf) > _MAX_HEADER:
            raise Fallback("no line end in the first MiB")


def _database_defaults(cur: psycopg.Cursor[Any], table: str, columns: list[str]) -> list[str]:
    """The columns among ``columns`` that have a default (or are generated or identity) in the database."""
    if not columns:
        return []
    cur.execute(
        "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attname = ANY(%s) "
        "AND (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '')",
        (sql.Identifier(table).as_string(None), columns),
    )
    return [r[0] for r in cur.fetchall()]


def copy_load(
    conn_scope: Callable[[], Any],
    source: Source,
    table: Table,
    delimiter: str,
    encoding: str,
    on_conflict: str,
    advance: Callable[[int], None],
) -> tuple[int, int]:
    """Load ``source`` by COPY; ``(rows read, rows written)``. Raises :class:`Fallback` (nothing written) when
    the Python path must read the file; ``conn_scope()`` is a context manager giving a connection in a
    transaction (committed on a normal exit, rolled back on an exception)."""
    stream = source.open(replayable=True)
    header, start = _read_header(stream)
    the_plan = plan(table, header, delimiter, encoding, on_conflict)
    try:
        with conn_scope() as conn:
            return _attempt(conn, source, stream, start, the_plan, on_conflict, advance, staged=False)
    except _Conflict:
        pass
    stream = source.open()
    with conn_scope() as conn:
        return _attempt(conn, source, stream, b"", the_plan, on_conflict, advance, staged=True)


def _attempt(
    conn: psycopg.Connection[Any],
    source: Source,
    stream: IO[bytes],
    start: bytes,
    the_plan: Plan,
    on_conflict: str,
    advance: Callable[[int], None],
    *,
    staged: bool,
) -> tuple[int, int]:
    table = the_plan.table
    cur = conn.cursor()
    direct = not staged
    try:
        if on_citus(conn):
            # conflicts come back relayed from the workers: bulk_insert's job
            raise Fallback("a Citus cluster")
        generated = [n for n in the_plan.missing if table.columns[n].type.server_default]
        defaulted = _database_defaults(cur, table.name, [n for n in the_plan.missing if n not in generated])
        if defaulted:
            raise Fallback(f"column {defaulted[0]!r} is left out and has a default in the database")
        restore = None
        if direct and on_conflict != "error":
            cur.execute(
                "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)", (_LOCK_WAIT,)
            )
            row = cur.fetchone()
            restore = row[0] if row is not None else None
        target = sql.Identifier(table.name)
        stage = None
        if staged:
            digest = hashlib.sha1(repr(the_plan.columns).encode()).hexdigest()[:10]
            stage = sql.Identifier(f"_dbp_lstage_{table.name[:40]}_{digest}")
            cur.execute(sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {})").format(stage, target))
            for name in generated:  # filled by the INSERT into the table, which leaves them out too
                alter = sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL")
                cur.execute(alter.format(stage, sql.Identifier(name)))
            cur.execute(sql.SQL("TRUNCATE {}").format(stage))
        scanner = _Scanner(the_plan.delimiter, the_plan.bounded, conn.info.server_version < 180000)
        if not start:
            header, start = _read_header(stream)
        read_more = getattr(stream, "read1", stream.read)
        fileno = conn.fileno()
        complete = False
        with cur.copy(the_plan.copy_statement(stage or target)) as copy:
            for piece in scanner.pieces(start, read_more):
                copy.write(piece)
                advance(piece.count(b"\n"))
                if readable(fileno):
                    break  # the server refused something: it ignores the rest, end the COPY to hear why
            else:
                complete = True
        # the server's message was not an error (a NOTICE): the COPY lacks the rest of the file
        if not complete:
            raise Fallback("the server spoke during the COPY")
        read = max(cur.rowcount, 0)
        if restore is not None:  # inside a caller's transaction the lowered setting would outlive the call
            cur.execute("SELECT set_config('lock_timeout', %s, true)", (restore,))
        if stage is None:
            return read, read
        return read, _move(cur, the_plan, stage, target, on_conflict)
    except (pge.UniqueViolation, pge.LockNotAvailable, pge.DeadlockDetected) as exc:
        if direct and on_conflict != "error":
            raise _Conflict() from exc
        raise Fallback(f"the server said: {exc}") from exc
    except psycopg.Error as exc:
        if isinstance(exc, psycopg.OperationalError) and conn.closed:
            raise  # the server went away: no second reading would do better
        raise Fallback(f"the server said: {exc}") from exc


def _move(
    cur: psycopg.Cursor[Any], the_plan: Plan, stage: sql.Identifier, target: sql.Identifier, on_conflict: str
) -> int:
    """INSERT ... SELECT from the staging table, as bulk_insert's staged modes do; the rows written."""
    table = the_plan.table
    cols = sql.SQL(", ").join(map(sql.Identifier, the_plan.columns))
    pk = sql.SQL(", ").join(map(sql.Identifier, table.primary_key))
    if on_conflict == "ignore":
        # ctid is the file's order in a staging table just filled by COPY: the first row of a key is kept.
        stmt = sql.SQL(
            "INSERT INTO {t} ({c}) SELECT {c} FROM {s} ORDER BY {k}, ctid ON CONFLICT ({k}) DO NOTHING"
        )
        cur.execute(stmt.format(t=target, c=cols, s=stage, k=pk))
        return max(cur.rowcount, 0)
    rest = [n for n in the_plan.columns if n not in table.primary_key]
    action: sql.Composable = sql.SQL("DO NOTHING")
    if rest:
        action = sql.SQL("DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in rest),
            sql.SQL(", ").join(sql.Identifier(table.name, n) for n in rest),
            sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(n)) for n in rest),
        )
    # DISTINCT ON keeps the last row of a key (ctid DESC): "last occurrence wins", as bulk_insert's "update".
    stmt = sql.SQL(
        "INSERT INTO {t} ({c}) SELECT DISTINCT ON ({k}) {c} FROM {s} ORDER BY {k}, ctid DESC "
        "ON CONFLICT ({k}) {a}"
    )
    cur.execute(stmt.format(t=target, c=cols, s=stage, k=pk, a=action))
    return max(cur.rowcount, 0)

