"""The COPY engine behind ``Query.bulk_insert``: binary COPY, typed from the model, streamed, all-or-nothing.

``bulk_insert(session, table, rows)`` writes any iterable of dicts or model instances into ``table`` with
``COPY ... FROM STDIN (FORMAT BINARY)``, the wire types taken from the dataclass schema (``Copy.set_types``).
Rows are checked in Python while they stream (unknown keys, missing NOT NULL values, wrong value types, integers
out of range), so bad input is reported with its column and row index and nothing is written. What only the
server can judge (a foreign key, a NUL byte in text) comes back as a ``DbpError`` naming the constraint, or the
column and row.

Conflict modes:

``"ignore"`` (default)
    Rows whose primary key exists are skipped, so a re-delivered batch lands exactly once. The input is first
    COPYed straight into the table in one COPY (the fast path: no duplicates is the common case), and the
    encoded rows are recorded as they go (in memory up to 16 MiB, then in a temporary file). If the server
    reports a unique violation (looked for every ``_PEEK_ROWS`` rows while streaming, so that a re-delivered batch
    is not sent in full first), the call starts over in a new atomic scope: the recorded rows are replayed into a
    temporary staging table and moved over with ``INSERT ... SELECT ... ORDER BY pk, ctid ON CONFLICT (pk) DO
    NOTHING`` (``ctid``, the staging order, is the input order: of rows sharing a key the first one given is
    the one kept, on every path), and the rest of the input follows the same way, ``chunk_size`` rows per
    flush. The same happens when the COPY has waited ``_FAST_PATH_LOCK_WAIT`` for a key that a concurrent
    caller holds uncommitted: staging takes keys in order, so racing callers wait for each other instead of
    deadlocking.
``"error"``
    One plain COPY: a duplicate raises ``ConstraintError`` naming the constraint.
``"update"``
    Upsert through the staging table: new keys are inserted (the columns the rows leave out get their defaults
    or NULL); an existing row gets only the columns each row *names* (a dict's keys; a dataclass instance names
    them all), applied in input order, so a column the input does not name is never touched and the last row
    naming a column wins (rows equal to what is stored are left alone). The whole input is staged first (each
    run of rows naming the same columns tagged as one segment), then moved over by one ``INSERT ... SELECT ...
    ORDER BY pk ... ON CONFLICT DO UPDATE`` per segment, all in one savepoint: with one segment (the usual
    case) callers upserting the same keys in any order take the row locks in key order and queue instead of
    deadlocking; with several, a deadlock rolls the savepoint back (releasing every row lock of the call) and
    the statements run again.

The call runs inside ``session.atomic()``: a savepoint of the caller's ``db.transaction()`` if one is open, its
own transaction (committed on return) otherwise. Client memory stays bounded whatever the input size: one staging
chunk, or the 16 MiB in-memory part of the fast path's record (``"update"`` stages the whole input in a server-side
temporary table, which spills to disk).
"""

from __future__ import annotations

import copy as copymod
import dataclasses
import hashlib
import itertools
import operator
import random
import re
import struct
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any, Literal, get_args

import psycopg
from psycopg import errors as pge
from psycopg import sql
from psycopg.copy import LibpqWriter

from .._session.session import readable
from .._types.column import ColumnType, Refused
from .._types.rows import UNKNOWN_MODES, as_mapping, check_columns
from .._types.schema import Table
from ..citus.relay import on_citus, relayed_conflict, relayed_violation
from ..errors import (
    ConfigurationError,
    ConstraintError,
    DataError,
    DbpError,
    MissingValueError,
    context,
    refused_error,
    wrap_db_error,
)

if TYPE_CHECKING:
    from psycopg.abc import Buffer

    from .._session.session import Session

__all__ = ["bulk_insert", "OnConflict", "DEFAULT_CHUNK_SIZE"]

OnConflict = Literal["ignore", "error", "update"]
_MODES: tuple[str, ...] = get_args(OnConflict)

# Rows per staging flush in "ignore" mode once a key turned out to exist ("update" mode stages all; each flush is a
# TRUNCATE, a COPY into the staging table and an INSERT ... SELECT in a savepoint). The fast path of "ignore" mode
# is not chunked: it sends the whole input as one COPY straight into the table, like "error" mode, and records it
# (_Spool) for the replay. It used to send chunks of this size, each after the first in a savepoint; measured with
# bench/bulk_vs_copy.py (100k rows of the synthetic night, 7-9 rounds alternating with a hand-written binary COPY
# of the same rows, median of the per-round ratios, five runs on the shared 2-core machine):
#     chunks of 20,000:  0.80x 0.87x 0.87x 0.88x 0.92x     one COPY ("error" mode): 0.91x 0.92x 0.99x 1.02x 1.04x
#     one COPY, spooled: 0.93x (night rows), 1.03x (bench/bulk_vs_copy.py's own rows; "error" 0.92x, 1.00x)
# Each chunk end drains the pipeline (the client waits for the server to finish the COPY, then a round trip for
# the savepoint and one for the next COPY), and the client's CPU competes with the server's on two cores.
# 20,000 rows keep a flush's staging table small and a 1M-row call at 50 savepoints, under PostgreSQL's 64 cached
# subtransactions per backend (more make every snapshot slower).
DEFAULT_CHUNK_SIZE = 20_000

# The fast path's record of the rows it sent (see _Spool): in memory up to this many bytes (about 50,000 detection
# rows), then in a temporary file read back in pieces of _SPOOL_READ bytes on a replay.
_SPOOL_MEMORY = 16 * 1024 * 1024
_SPOOL_READ = 1024 * 1024
# Rows between two looks for an early answer of the server during the fast path's COPY (see _Loader.optimistic).
_PEEK_ROWS = 2048

# The longest the fast path's COPY waits for a lock (lock_timeout, lowered for the COPY only) before it gives up and
# goes through staging. Such a wait means a concurrent caller holds one of our keys uncommitted; waiting for
# deadlock detection instead (deadlock_timeout, 1 s by default) made 8 workers racing the same 2,000-row batch take
# 1-7 s per round (tests/reliability/test_load.py).
_FAST_PATH_LOCK_WAIT = "100ms"

# Signatures (tuples of value types) cached per table. Real inputs have a handful (which optional columns are
# None); the cap keeps memory constant against adversarial input.
_MAX_SIGNATURES = 4096

# Tries of a staged INSERT that the server aborted to break a deadlock (see _Loader._insert_from_stage). On
# Citus the coordinator writes the shards of one INSERT ... SELECT over parallel connections, so key order does
# not order the locks across shards: racing redeliveries deadlock more often there (tests/test_citus.py races 8
# workers), and each abort releases the locks, so the other side finishes; 10 tries hold under a loaded machine.
_DEADLOCK_RETRIES = 10

_BINARY_TRAILER = b"\xff\xff"
_SEGMENT = "_dbp_segment"  # "update" mode's staging column: the run of rows naming the same columns

# Whether the server has sent something during the fast path's COPY (poll(): select() fails on fd >= 1024).
_answered = readable
_END: Any = object()


class _RowChecker:
    """Validation compiled once per table from its column types (``ColumnDef.type``, see dbplugins._types.column).

    The per-row work is a signature check (the tuple of value types): a signature whose every value is of a type
    the column's COPY dumper takes as is needs nothing more than the struct range check of the narrow integer
    columns; any other signature gets a ``fix`` that converts the odd columns with ``ColumnType.convert`` (integral
    floats into integers, NaN into NULL, tuples into lists...) or raises naming the column and row.
    """

    def __init__(self, table: Table) -> None:
        self.table = table
        cols = list(table.columns.values())
        self.names: tuple[str, ...] = tuple(c.name for c in cols)
        self.ncols = len(cols)
        self.colset = frozenset(self.names)
        self.types: tuple[ColumnType, ...] = tuple(c.type for c in cols)
        self.nullable = tuple(c.nullable for c in cols)
        self.sql_types = tuple(c.sql_type for c in cols)
        self.pg_types = [_pg_type_name(t, table.name) for t in self.types]
        # Tuple builders without a per-column Python loop (itemgetter of one key returns a bare value).
        self.item_getter: Callable[[Any], tuple[Any, ...]]
        self.attr_getter: Callable[[Any], tuple[Any, ...]]
        if self.ncols > 1:
            self.item_getter = operator.itemgetter(*self.names)
            self.attr_getter = operator.attrgetter(*self.names)
        else:
            only = self.names[0]
            self.item_getter = lambda row: (row[only],)
            self.attr_getter = lambda row: (getattr(row, only),)
        self.cls = table.cls
        # Values for keys missing from a dict row: the column's SQL default (a constant, evaluated once by its
        # column type), else the dataclass field default, else None (NULL). A default only the server can compute
        # (now(), nextval(...)) cannot go through COPY's fixed column list: such rows are refused, naming it.
        self.defaults: dict[str, Any] = {}
        self.factories: dict[str, Callable[[], Any]] = {}
        self.server_defaults: frozenset[str] = frozenset(t.name for t in self.types if t.server_default)
        fields = {f.name: f for f in dataclasses.fields(table.cls)} if table.cls is not None else {}
        for t in self.types:
            name = t.name
            f = fields.get(name)
            if t.has_default:
                self.defaults[name] = None if t.server_default else t.default
            elif f is not None and f.default_factory is not dataclasses.MISSING:
                self.factories[name] = f.default_factory
                self.defaults[name] = None
            elif f is not None and f.default is not dataclasses.MISSING:
                self.defaults[name] = f.default
            else:
                self.defaults[name] = None
        # signature -> what to do with rows of that signature (None: nothing to check)
        self.signatures: dict[tuple[type, ...], _SigPlan | None] = {}
        self.unknown = "error"  # or "ignore": keys that are not columns are dropped (see for_call)
        self.dropped: set[str] = set()

    def for_call(self, unknown: str, dropped: set[str] | None = None) -> _RowChecker:
        """This checker for one call: compiled parts and signature cache shared, the unknown-key mode its own
        (dropped keys are added to ``dropped``)."""
        if unknown == "error":
            return self
        call = copymod.copy(self)
        call.unknown = unknown
        call.dropped = dropped if dropped is not None else set()
        return call

    # -- turning a row into a tuple of column values -------------------------------------------------------

    def values_slow(self, row: Any, index: int) -> tuple[Any, ...]:
        """The general path: any Mapping, dicts with missing keys, model instances; raises for anything else."""
        if isinstance(row, Mapping):
            if self.unknown != "error":
                extra = [k for k in row if k not in self.colset]
                if extra:
                    self.dropped.update(map(str, extra))
            else:
                check_columns(self.table, row.keys(), what="key", row=index)
            mapping: Mapping[str, Any] = row
        else:
            mapping = as_mapping(self.table, row, index=index)
        out = []
        for name in self.names:
            if name in mapping:
                out.append(mapping[name])
            elif name in self.factories:
                out.append(self.factories[name]())
            elif name in self.server_defaults:
                raise DataError(
                    f"bulk_insert: the row leaves out column {name!r}, whose default is computed by the server "
                    f"({self.table.columns[name].default}); COPY cannot apply it: give the value"
                    + context(model=self.table.name, column=name, row=index),
                    model=self.table.name,
                    column=name,
                    row=index,
                )
            else:
                out.append(self.defaults[name])
        return tuple(out)

    # -- type checks, cached per signature ---------------------------------------------------------------

    def check_signature(self, values: tuple[Any, ...], index: int) -> _SigPlan | None:
        """Compile (and remember) what rows of this row's signature need; check this row. Raises naming column
        and row."""
        sig = tuple(map(type, values))
        convert: list[int] = []
        lengths: list[tuple[int, int]] = []
        for k, t in enumerate(sig):
            ctype = self.types[k]
            if t is type(None):
                if not self.nullable[k]:
                    raise self._missing(k, index)
            elif t not in ctype.fast:
                convert.append(k)
            elif ctype.length is not None:
                lengths.append((k, ctype.length))
        plan = _SigPlan.build(self, sig, tuple(convert), tuple(lengths))
        if plan is not None and plan.fix is not None:
            plan.fix(values, index)  # raises for this row now, before the signature is remembered
        if len(self.signatures) >= _MAX_SIGNATURES:
            self.signatures.clear()
        self.signatures[sig] = plan
        return plan

    def convert(self, k: int, value: Any, index: int) -> Any:
        """``value`` for column ``k`` as its column type converts it; raises DataError / MissingValueError."""
        try:
            out = self.types[k].convert(value)
        except Refused as exc:
            raise self._refused(k, value, index, exc) from None
        if out is None and not self.nullable[k]:
            raise self._missing(k, index)
        return out

    def diagnose(self, values: tuple[Any, ...], index: int) -> DbpError | None:
        """The precise error for a row (every value through its column type), or None when all are good."""
        for k, value in enumerate(values):
            try:
                self.convert(k, value, index)
            except DbpError as exc:
                return exc
        return None

    # -- errors ---------------------------------------------------------------------------------------------

    def _missing(self, k: int, index: int) -> MissingValueError:
        name = self.names[k]
        return MissingValueError(
            f"bulk_insert: missing value for NOT NULL column {name!r}"
            + context(model=self.table.name, column=name, row=index),
            model=self.table.name,
            column=name,
            row=index,
        )

    def _refused(self, k: int, value: Any, index: int, exc: Exception) -> DataError:
        return refused_error(self.table.name, self.types[k], value, exc, row=index, action="bulk_insert")

    def _nul(self, k: int, index: int) -> DataError:
        return self._refused(k, "\x00", index, Refused("contains a NUL (0x00) character, which PostgreSQL text "
                                                       "cannot store"))


class _SigPlan:
    """What rows of one signature need: the struct range check of the narrow integer columns given as ints
    (``pack(*getter(values))``, in C: psycopg's binary int2/int4 dumpers wrap out-of-range values silently), and
    ``fix`` converting the columns whose value type the COPY dumper does not take as is (and checking lengths)."""

    __slots__ = ("getter", "pack", "fix")

    def __init__(
        self,
        getter: Callable[[Any], tuple[Any, ...]] | None,
        pack: Callable[..., bytes] | None,
        fix: Callable[[tuple[Any, ...], int], tuple[Any, ...]] | None,
    ) -> None:
        self.getter = getter
        self.pack = pack
        self.fix = fix

    @classmethod
    def build(
        cls, check: _RowChecker, sig: tuple[type, ...], convert: tuple[int, ...], lengths: tuple[tuple[int, int], ...]
    ) -> _SigPlan | None:
        idx = [k for k, t in enumerate(check.types) if t.struct_code and sig[k] is int]
        getter = pack = None
        if idx:
            codes = "".join(str(check.types[k].struct_code) for k in idx)
            if len(idx) == 1:  # itemgetter of one index returns a bare value: repeat it to keep a tuple
                idx = idx * 2
                codes = codes * 2
            getter, pack = operator.itemgetter(*idx), struct.Struct("!" + codes).pack
        fix = None
        if convert or lengths:
            def fix(values: tuple[Any, ...], index: int) -> tuple[Any, ...]:
                out = list(values)
                for k in convert:
                    out[k] = check.convert(k, out[k], index)
                for k, n in lengths:
                    if len(out[k]) > n:
                        check.convert(k, out[k], index)  # raises: too long
                return tuple(out)
        if getter is None and fix is None:
            return None
        return cls(getter, pack, fix)


def _pg_type_name(ctype: ColumnType, table: str) -> str:
    """The name psycopg's type registry knows for the column's COPY format (typmods do not change it)."""
    try:
        psycopg.adapters.types.get_oid(ctype.copy_type)
    except KeyError:
        raise ConfigurationError(
            f"bulk_insert cannot COPY column {ctype.name!r}: psycopg knows no type {ctype.sql_type!r}"
            + context(model=table, column=ctype.name),
            model=table,
            column=ctype.name,
        ) from None
    return ctype.copy_type


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_CHECKERS: dict[int, tuple[Table, _RowChecker]] = {}


def _checker(table: Table) -> _RowChecker:
    entry = _CHECKERS.get(id(table))
    if entry is None or entry[0] is not table:
        entry = _CHECKERS[id(table)] = (table, _RowChecker(table))
    return entry[1]


# -- streaming -----------------------------------------------------------------------------------------------


class _Feed:
    """The input stream: one row looked ahead (to know whether another chunk follows) and the running index."""

    __slots__ = ("head", "rest", "index", "copy_start")

    def __init__(self, head: Any, rest: Iterator[Any]) -> None:
        self.head = head
        self.rest = rest
        self.index = 0  # index of ``head`` in the caller's iterable
        self.copy_start = 0  # index of the first row of the COPY in progress (server errors count from it)

    @property
    def done(self) -> bool:
        return self.head is _END


def _write_rows(copy: psycopg.Copy, check: _RowChecker, feed: _Feed, limit: int | None) -> None:
    """Validate and write up to ``limit`` rows (all if None) of ``feed`` to ``copy``; advance the feed.

    The per-row work is kept to C calls: a tuple from itemgetter/attrgetter, the list of value types compared with
    the last two signatures seen (else looked up in the table's cache of checked signatures), a struct range
    check of the narrow integer columns.

    Why two remembered signatures: rows come in a few shapes (which optional columns are None), often runs of one
    or alternating between two. Comparing lists of types costs ~85 ns for a 30-column row when equal, and far
    less when they differ at the first columns, against ~120 ns more to build a tuple and ~220 ns to hash it for
    the dict (tuple hashes are not cached). Measured with a no-op write_row on the 100k detection rows of
    bench/bulk_vs_copy.py (4 signatures, randomly mixed): the loop went from 1.51 to 1.27 us/row (bare itemgetter
    loop: 0.35 us/row).
    """
    write = copy.write_row
    ncols = check.ncols
    colset = check.colset
    items = check.item_getter
    attrs = check.attr_getter
    cls = check.cls
    signatures = check.signatures
    base = None if check.factories or check.server_defaults else check.defaults
    rows = itertools.chain(
        (feed.head,), feed.rest if limit is None else itertools.islice(feed.rest, limit - 1)
    )
    i = feed.index
    values: tuple[Any, ...] = ()
    # The last two checked signatures and their plans (pack, getter, fix: None when nothing to do).
    last: list[type] | None = None
    prev: list[type] | None = None
    pack: Callable[..., bytes] | None = None
    getter: Callable[[Any], tuple[Any, ...]] | None = None
    fix: Callable[[tuple[Any, ...], int], tuple[Any, ...]] | None = None
    prev_pack: Callable[..., bytes] | None = None
    prev_getter: Callable[[Any], tuple[Any, ...]] | None = None
    prev_fix: Callable[[tuple[Any, ...], int], tuple[Any, ...]] | None = None
    for row in rows:
        try:
            if type(row) is dict:
                if len(row) == ncols:
                    try:
                        values = items(row)
                    except KeyError:  # as many keys as columns, but one is not a column: the slow path
                        values = check.values_slow(row, i)
                elif base is not None and row.keys() <= colset:
                    values = items(base | row)
                else:
                    values = check.values_slow(row, i)
            elif type(row) is cls:
                values = attrs(row)
            else:
                values = check.values_slow(row, i)
            sig = [*map(type, values)]  # a list: built faster than a tuple, and compared, not hashed, here
            if sig != last:
                if sig == prev:
                    last, prev = prev, last
                    pack, getter, fix, prev_pack, prev_getter, prev_fix = (
                        prev_pack, prev_getter, prev_fix, pack, getter, fix
                    )
                else:
                    try:
                        plan = signatures[tuple(sig)]
                    except KeyError:
                        plan = check.check_signature(values, i)
                    prev, prev_pack, prev_getter, prev_fix = last, pack, getter, fix
                    last = sig
                    if plan is None:
                        pack = getter = fix = None
                    else:
                        pack, getter, fix = plan.pack, plan.getter, plan.fix
            if getter is not None and pack is not None:
                pack(*getter(values))
            if fix is not None:
                values = fix(values, i)
            write(values)
        except (DbpError, psycopg.OperationalError, psycopg.InterfaceError):
            raise  # ours, or the connection failing
        except psycopg.Error as exc:
            if exc.sqlstate:  # the server's answer arriving while we stream: row i was sent with its block
                feed.index = i + 1
                feed.head = next(feed.rest, _END)
                raise
            raise _encoding_error(check, values, i, exc) from exc
        except Exception as exc:  # the encoder (psycopg's dumpers, the struct range check) rejected row i
            raise _encoding_error(check, values, i, exc) from exc
        i += 1
    feed.index = i
    feed.head = next(feed.rest, _END)


def _encoding_error(check: _RowChecker, values: tuple[Any, ...], index: int, exc: Exception) -> DbpError:
    """The error for row ``index``, which psycopg's encoder rejected with ``exc``: named as precisely as we can."""
    found = check.diagnose(values, index)
    if found is not None:
        return found
    model = check.table.name
    column = _unencodable_column(check, values)
    if column is not None:
        k = check.names.index(column)
        return check._refused(k, values[k], index, Refused(f"cannot be encoded for COPY: {exc}"))
    return DataError(
        f"bulk_insert: the row cannot be encoded for COPY: {type(exc).__name__}: {exc}"
        + context(model=model, row=index),
        model=model,
        row=index,
    )


def _unencodable_column(check: _RowChecker, values: tuple[Any, ...]) -> str | None:
    """The first column whose value psycopg's binary dumper for the column type refuses (a timezone mismatch...)."""
    for name, pg_type, value in zip(check.names, check.pg_types, values, strict=True):
        if value is None:
            continue
        try:
            oid = psycopg.adapters.types.get_oid(pg_type)
            dumper = psycopg.adapters.get_dumper_by_oid(oid, psycopg.pq.Format.BINARY)(type(value))
            dumper.dump(value)
        except Exception:
            return name
    return None


class _Spool:
    """The encoded rows of the fast path's COPY, kept to replay them into staging if a key turns out to exist.

    The first ``_SPOOL_MEMORY`` bytes stay in memory as the formatter's own buffers (no copy); the rest goes to an
    anonymous temporary file (in ``$TMPDIR``), so the memory of a call stays bounded whatever its size.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.blocks: list[Buffer] = []
        self.nbytes = 0
        self.file: IO[bytes] | None = None

    def add(self, data: Buffer) -> None:
        if self.file is None and self.nbytes < _SPOOL_MEMORY:
            self.blocks.append(data)
        else:
            try:
                if self.file is None:
                    self.file = tempfile.TemporaryFile(prefix="dbp-bulk-")
                self.file.write(data)
            except OSError as exc:
                raise DbpError(
                    f"bulk_insert into {self.model!r} keeps the rows it sends in a temporary file, to replay them "
                    f"if a key exists, and could not write it ({exc}); point TMPDIR at a directory with room "
                    f"(about 0.3 kB per 30-column row), or send smaller batches",
                    model=self.model,
                ) from exc
        self.nbytes += len(data)

    def replay(self) -> Iterator[Buffer]:
        yield from self.blocks
        if self.file is not None:
            self.file.seek(0)
            while block := self.file.read(_SPOOL_READ):
                yield block

    def close(self) -> None:
        self.blocks = []
        if self.file is not None:
            self.file.close()
            self.file = None


class _RecordingWriter(LibpqWriter):
    """Sends COPY data to the server and keeps it in a spool, for a replay into staging after a duplicate.

    The binary trailer written when the COPY ends is left out of the record (``ending`` is set just before), so
    rows can be appended after a replay.
    """

    def __init__(self, cursor: psycopg.Cursor[Any], spool: _Spool) -> None:
        super().__init__(cursor)
        self.spool = spool
        self.ending = False

    def write(self, data: Buffer) -> None:
        if self.ending:
            self.spool.add(memoryview(data)[: len(data) - len(_BINARY_TRAILER)])
        else:
            self.spool.add(data)
        super().write(data)


# -- SQL ------------------------------------------------------------------------------------------------------


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
        self.create_stage = sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {})").format(stage, t)
        self.truncate_stage = sql.SQL("TRUNCATE {}").format(stage)
        # "update" mode's staging table: the table's columns plus the segment (run of rows naming the same
        # columns) of each row, filled by the column default from a setting changed between the runs' COPYs.
        ustage = self.ustage = sql.Identifier(f"_dbp_ustage_{table.name[:40]}_{digest}")
        self.create_ustage = sql.SQL(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {}, {} integer NOT NULL "
            "DEFAULT current_setting('dbplugins.bulk_segment')::integer)"
        ).format(ustage, t, sql.Identifier(_SEGMENT))
        self.index_ustage = sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.Identifier(f"_dbp_ustage_{digest}_seg"), ustage, sql.Identifier(_SEGMENT)
        )
        self.truncate_ustage = sql.SQL("TRUNCATE {}").format(ustage)
        self.copy_ustage = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(ustage, cols)
        self.set_segment = sql.SQL("SELECT set_config('dbplugins.bulk_segment', %s, true)")
        # Lower lock_timeout for the fast path's COPY (never raise it), returning the setting to restore after.
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
        self._upserts: dict[tuple[tuple[str, ...], bool], sql.Composed] = {}

    def upsert(self, named: tuple[str, ...], segmented: bool) -> sql.Composed:
        """The staged upsert that sets only the ``named`` non-key columns of an existing row (cached per set).

        ``DISTINCT ON`` keeps one row per key (DO UPDATE may not touch a row twice in one statement): the last one
        given, as ctid order is input order in a staging table just truncated and filled by COPY. ``ORDER BY``
        the key makes the statement lock keys in order (see :meth:`_Loader.upsert`). ``segmented``: only the
        rows of the segment bound as the statement's parameter.
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
        stmt = sql.SQL(
            "INSERT INTO {t} ({c}) SELECT DISTINCT ON ({k}) {c} FROM {s}{w} ORDER BY {k}, ctid DESC "
            "ON CONFLICT ({k}) {a}"
        ).format(t=t, c=cols, s=self.ustage, w=where, k=pkcols, a=action)
        if len(self._upserts) >= _MAX_SIGNATURES:
            self._upserts.clear()
        self._upserts[cache] = stmt
        return stmt


_STATEMENTS: dict[int, tuple[Table, _Statements]] = {}


def _statements(table: Table, check: _RowChecker) -> _Statements:
    entry = _STATEMENTS.get(id(table))
    if entry is None or entry[0] is not table:
        entry = _STATEMENTS[id(table)] = (table, _Statements(table, check))
    return entry[1]


# -- the loaders -------------------------------------------------------------------------------------------


class _Restart(Exception):
    """The direct COPY hit a duplicate: roll the atomic scope back and redo its rows through staging."""

    def __init__(self, spool: _Spool, rows: int) -> None:
        super().__init__("restart through staging")
        self.spool = spool
        self.rows = rows


class _Loader:
    """One bulk_insert call inside one atomic scope."""

    def __init__(
        self, conn: psycopg.Connection[Any], check: _RowChecker, stmts: _Statements, feed: _Feed
    ) -> None:
        self.conn = conn
        self.check = check
        self.stmts = stmts
        self.feed = feed
        self.cur = conn.cursor()
        self.stage_ready = False

    def plain(self) -> int:
        """ "error" mode: the whole input as one COPY into the table."""
        start = self.feed.copy_start = self.feed.index
        with self.cur.copy(self.stmts.copy_target) as copy:
            copy.set_types(self.check.pg_types)
            _write_rows(copy, self.check, self.feed, None)
        return self.feed.index - start

    def optimistic(self, *, in_callers_transaction: bool) -> int:
        """ "ignore" mode: the whole input as one COPY into the table, recorded; on a duplicate, ``_Restart``.

        No savepoint: a duplicate aborts the atomic scope, and the caller (``bulk_insert``) opens a new one and
        replays the recorded rows through staging. Also when a concurrent caller holds one of our keys
        uncommitted: the COPY waits at most ``_FAST_PATH_LOCK_WAIT`` for it, then staging (which takes keys in
        order, so callers in it cannot deadlock each other) does the work.

        A server that rejected a row discards the rest of the COPY as fast as it arrives, so the client would send
        the whole input before reading the error. Every ``_PEEK_ROWS`` rows the socket is checked for an answer (a
        COPY in progress gets none): when one is there the COPY is ended, and the server's error is raised.
        """
        start = self.feed.copy_start = self.feed.index
        row = self.cur.execute(self.stmts.limit_lock_wait).fetchone()
        assert row is not None
        lock_timeout = row[0]
        spool = _Spool(self.check.table.name)
        writer = _RecordingWriter(self.cur, spool)
        fileno = self.conn.fileno()
        answered = _answered
        try:
            with self.cur.copy(self.stmts.copy_target, writer=writer) as copy:
                copy.set_types(self.check.pg_types)
                while not self.feed.done:
                    _write_rows(copy, self.check, self.feed, _PEEK_ROWS)
                    if answered(fileno):
                        break
                writer.ending = True
            if not self.feed.done:
                # The server's message was not an error (a NOTICE from a trigger) and the COPY went through: the
                # rest of the input is not in it, so start over through staging, which takes all of it.
                raise _Restart(spool, self.feed.index - start)
        except (pge.UniqueViolation, pge.DeadlockDetected, pge.LockNotAvailable):
            # A key exists; or a concurrent caller holds one of ours uncommitted (we waited past the lowered
            # lock_timeout, or deadlocked with it): staging takes keys in order and waits as long as needed.
            raise _Restart(spool, self.feed.index - start) from None
        except pge.InternalError_ as exc:
            # The same, relayed by Citus from a worker (XX000, "detection_pkey_102119"): dbplugins/citus/relay.py.
            if not relayed_conflict(exc, self.check.table):
                spool.close()
                raise
            raise _Restart(spool, self.feed.index - start) from None
        except BaseException as exc:
            if not isinstance(exc, _Restart):
                spool.close()
            raise
        spool.close()
        if in_callers_transaction:
            # The lowered setting would outlive this call (our own transaction ends it at COMMIT; a restart's
            # rollback undoes it).
            self.cur.execute(self.stmts.restore_lock_wait, (lock_timeout,))
        return self.feed.index - start

    def staged(self, chunk: int, mode: str, replay: _Spool | None = None, replay_rows: int = 0) -> int:
        """The rest of the input through the staging table, ``chunk`` rows per flush; rows written.

        ``replay`` (the rows of a failed direct COPY, ``replay_rows`` of them) goes first, in one flush with the
        rows that fill it up to ``chunk``.
        """
        total = 0
        try:
            while not self.feed.done or replay is not None:
                total += self._stage_chunk(chunk, mode, replay, replay_rows)
                if replay is not None:
                    replay.close()
                replay, replay_rows = None, 0
        finally:
            if replay is not None:
                replay.close()
        return total

    def upsert(self) -> int:
        """ "update" mode: the whole input into the staging table, then one upsert per segment; rows written.

        A segment is a run of rows naming the same columns: its statement sets exactly those. One statement per
        call in the usual case, which takes the keys in order: two callers upserting the same keys (in any order,
        in any number of rows) queue on the first key they share instead of deadlocking across chunks.
        """
        stmts = self.stmts
        check = self.check
        feed = self.feed
        if not self.stage_ready:
            self.cur.execute(stmts.create_ustage)
            self.stage_ready = True
        self.cur.execute(stmts.truncate_ustage)
        segments: list[tuple[str, ...]] = []
        while not feed.done:
            named = _named_columns(check, feed.head)
            self.cur.execute(stmts.set_segment, (str(len(segments)),))
            if len(segments) == 1:
                self.cur.execute(stmts.index_ustage)  # each later segment's statement reads only its rows
            segments.append(named)
            run = _Run(check, named, feed.rest)
            part = _Feed(feed.head, run)
            part.index = feed.index
            feed.copy_start = feed.index
            try:
                with self.cur.copy(stmts.copy_ustage) as copy:
                    copy.set_types(check.pg_types)
                    _write_rows(copy, check, part, None)
            finally:
                feed.index = part.index
                feed.head = run.pending if part.done else part.head
        if len(segments) == 1:
            return self._apply([(stmts.upsert(segments[0], False), ())])
        return self._apply([(stmts.upsert(named, True), (n,)) for n, named in enumerate(segments)])

    def _stage_chunk(self, limit: int, mode: str, replay: _Spool | None, replay_rows: int) -> int:
        stmts = self.stmts
        if not self.stage_ready:
            self.cur.execute(stmts.create_stage)
            self.stage_ready = True
        self.cur.execute(stmts.truncate_stage)
        self.feed.copy_start = self.feed.index - replay_rows
        with self.cur.copy(stmts.copy_stage) as copy:
            copy.set_types(self.check.pg_types)
            if replay is not None:
                for block in replay.replay():
                    copy.write(block)
            remaining = limit - replay_rows
            if remaining > 0 and not self.feed.done:
                _write_rows(copy, self.check, self.feed, remaining)
            elif replay is not None:
                copy.write(_BINARY_TRAILER)  # replayed rows lost theirs and no written row follows to add it
        return self._insert_from_stage(stmts.insert_ignore)

    def _insert_from_stage(self, insert: sql.Composed) -> int:
        return self._apply([(insert, ())])

    def _apply(self, statements: list[tuple[sql.Composed, tuple[Any, ...]]]) -> int:
        """Run the staged statements in one savepoint, retried when the server breaks a deadlock by aborting one.

        Ordered inserts cannot deadlock with each other inside one statement, but they can with a concurrent
        direct COPY (input order), across chunks of two multi-chunk "ignore" calls, or across the segments of
        "update" calls. Rolling back to the savepoint releases every row lock the statements took, so the other
        side finishes within the back-off. After the last try the DeadlockDetected propagates and the whole call
        is rolled back.
        """
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                written = 0
                with self.conn.transaction():
                    citus = on_citus(self.conn)
                    for stmt, params in statements:
                        if citus:  # Citus's INSERT ... SELECT reports the rows selected: count what RETURNING gives
                            stmt = sql.SQL("WITH _dbp_ins AS ({} RETURNING 1) SELECT count(*) FROM _dbp_ins").format(
                                stmt
                            )
                        self.cur.execute(stmt, params or None)
                        counted = self.cur.fetchone() if self.cur.description else None
                        written += int(counted[0]) if counted is not None else max(self.cur.rowcount, 0)
                return written
            except pge.DeadlockDetected:
                if attempt == _DEADLOCK_RETRIES - 1:
                    raise
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # noqa: S311 - jitter, not crypto
        raise AssertionError("unreachable")


def _named_columns(check: _RowChecker, row: Any) -> tuple[str, ...]:
    """The columns a row names, in table order: a mapping's keys, or every column (a model instance)."""
    if isinstance(row, Mapping):
        return tuple(n for n in check.names if n in row)
    return check.names


class _Run:
    """The rows of an iterator while they name the same columns as the first of the run ("update" mode).

    Stops (StopIteration) before the first row that names others and keeps it in ``pending``; the caller starts
    the next run with it. ``pending`` is ``_END`` when the input itself ended.
    """

    __slots__ = ("rows", "keys", "full", "cls", "pending")

    def __init__(self, check: _RowChecker, named: tuple[str, ...], rows: Iterator[Any]) -> None:
        self.rows = rows
        self.keys = frozenset(named)
        self.full = len(named) == check.ncols
        self.cls = check.cls
        self.pending: Any = _END

    def __iter__(self) -> _Run:
        return self

    def __next__(self) -> Any:
        if self.pending is not _END:
            raise StopIteration
        row = next(self.rows)  # the end of the input ends the run
        if type(row) is dict:
            same = row.keys() == self.keys
        elif isinstance(row, Mapping):
            same = frozenset(row.keys()) == self.keys
        else:  # a model instance names every column (anything else: the writer names the error)
            same = self.full or type(row) is not self.cls
        if same:
            return row
        self.pending = row
        raise StopIteration


# -- errors from the server ---------------------------------------------------------------------------------

# PostgreSQL's COPY error context: "COPY detection, line 3, column oid" (binary COPY counts rows as lines).
_COPY_CONTEXT = re.compile(r"COPY .*?, line (\d+)(?:, column ([^\n:]+))?")


def _server_error(exc: psycopg.Error, check: _RowChecker, feed: _Feed) -> DbpError:
    """A psycopg error as a DbpError naming the constraint, and the row and column when the COPY reported them."""
    model = check.table.name
    diag = getattr(exc, "diag", None)
    context = (diag.context if diag is not None else None) or ""
    match = _COPY_CONTEXT.search(context)
    row = feed.copy_start + int(match.group(1)) - 1 if match else None
    column = match.group(2).strip() if match and match.group(2) else None
    if column is not None and column not in check.colset:
        column = None
    if column is not None and row is not None and isinstance(exc, pge.CharacterNotInRepertoire):
        if "0x00" in str(exc):
            return check._nul(check.names.index(column), row)
    err = wrap_db_error(exc, model=model, row=row, column=column, action="bulk_insert")
    relayed = relayed_violation(exc, check.table)
    if relayed is not None:  # a constraint as Citus names it on a worker: the logical table's, as a ConstraintError
        text = err.message if err.constraint else f"{err.message.removesuffix(']')}, constraint {relayed[1]!r}]"
        err = ConstraintError(
            text, model=model, column=err.column, row=row, sqlstate=err.sqlstate, constraint=relayed[1]
        )
    return err


# -- the entry point -------------------------------------------------------------------------------------


def bulk_insert(
    session: Session,
    table: Table,
    rows: Iterable[Any],
    *,
    on_conflict: OnConflict = "ignore",
    chunk_size: int | None = None,
    unknown: str = "error",
    dropped: set[str] | None = None,
    parallel: int = 1,
) -> int:
    """COPY ``rows`` (dicts or instances of the table's model, any iterable) into ``table``; return the count.

    All or nothing: inside the session's open transaction as a savepoint, else in a transaction of its own that
    commits on return. An empty iterable is a no-op returning 0 that touches no connection.

    The count is the rows inserted: duplicates skipped by ``"ignore"`` are not counted; for ``"update"`` it is
    the rows inserted plus the rows whose stored values changed (a key given twice in one call counts once
    per segment, a run of rows naming the same columns, it appears in).

    ``"update"`` touches only the columns the rows name: each row sets its own keys on an existing row, a new
    row gets defaults or NULL for the rest; of several rows with one key, the last to name a column wins.

    ``chunk_size`` (default :data:`DEFAULT_CHUNK_SIZE`) is the number of rows per staging flush in ``"ignore"``
    mode after a key turned out to exist (``"update"`` stages the whole input, then applies it). Without duplicates, ``"ignore"`` and
    ``"error"`` send everything in one COPY. Memory use stays bounded (see the module documentation); the
    ``"ignore"`` fast path keeps a copy of what it sent, beyond 16 MiB in a temporary file (about 0.3 kB per
    30-column row), to replay it if a duplicate shows up.

    Raises ``UnknownColumnError`` (a key that is not a column), ``MissingValueError`` (no value for a NOT NULL
    column), ``DataError`` (a value of the wrong type or out of range, a NUL byte in text), each naming the
    column and the row index (values follow the column-type rules of :mod:`dbplugins._types.column`: ``1001.0`` goes
    into an integer column, ``1.5`` is refused; NaN is NULL outside float columns); ``unknown="ignore"`` drops row
    keys that are not columns instead of raising, and adds their names to ``dropped`` when given (the caller warns
    with them); ``ConstraintError`` naming the constraint (a foreign key; a duplicate key with
    ``on_conflict="error"``); ``ConnectionError`` if the server goes away. Nothing is written when it raises.
    """
    if on_conflict not in _MODES:
        raise DbpError(
            f"on_conflict must be one of {', '.join(map(repr, _MODES))}, got {on_conflict!r}",
            model=table.name,
        )
    if chunk_size is None:
        chunk = DEFAULT_CHUNK_SIZE
    elif isinstance(chunk_size, int) and not isinstance(chunk_size, bool) and chunk_size > 0:
        chunk = chunk_size
    else:
        raise DbpError(f"chunk_size must be a positive integer, got {chunk_size!r}", model=table.name)
    if isinstance(rows, (Mapping, str, bytes)) or dataclasses.is_dataclass(rows):
        raise DbpError(
            f"bulk_insert takes an iterable of rows, got a single {type(rows).__name__}; wrap it in a list",
            model=table.name,
        )
    if unknown not in UNKNOWN_MODES:
        raise DbpError(f'unknown must be "error" or "ignore", got {unknown!r}', model=table.name)
    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
        raise DbpError(f"parallel must be an integer >= 1 (the number of COPY streams), got {parallel!r}",
                       model=table.name)
    check = _checker(table).for_call(unknown, dropped)
    stmts = _statements(table, check)
    if on_conflict == "update" and not stmts.has_key:
        raise DbpError(
            f'on_conflict="update" needs a primary key; model {table.name!r} has none', model=table.name
        )

    rest = iter(rows)
    head = next(rest, _END)
    if head is _END:
        return 0
    # The first row is checked before any connection is borrowed, so input that is wrong from the start
    # (an unknown or hostile key, a missing column, a wrong type) runs no SQL at all. Later rows are checked
    # as they stream, inside the transaction that their error rolls back.
    error = check.diagnose(check.values_slow(head, 0), 0)
    if error is not None:
        raise error
    if parallel > 1:
        from .parallel import parallel_insert

        return parallel_insert(
            session, check, stmts, head, rest, mode=on_conflict, chunk=chunk, parallel=parallel
        )
    feed = _Feed(head, rest)
    joined = session.in_transaction  # the call becomes a savepoint of the caller's transaction
    # While the COPY streams, the connection is busy: a statement on the session from the rows' iterable raises.
    busy = f"bulk_insert into {table.name!r}"
    try:
        try:
            with session.atomic() as conn, session.streaming(busy):
                loader = _Loader(conn, check, stmts, feed)
                if on_conflict == "error":
                    return loader.plain()
                if on_conflict == "update":
                    return loader.upsert()
                return loader.optimistic(in_callers_transaction=joined)
        except _Restart as restart:
            with session.atomic() as conn, session.streaming(busy):
                loader = _Loader(conn, check, stmts, feed)
                return loader.staged(chunk, "ignore", restart.spool, restart.rows)
    except psycopg.Error as exc:
        raise _server_error(exc, check, feed) from exc
