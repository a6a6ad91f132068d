"""Streaming rows into a binary COPY: the input feed, the row encoder (``write_rows``), and the fast path's
record of what it sent (the spool), replayed through staging when a key turns out to exist."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

import psycopg
from psycopg.copy import LibpqWriter

from .._types.column import Refused
from ..errors import (
    DataError,
    DbpError,
    context,
)
from .checker import _Layout, _RowChecker

if TYPE_CHECKING:
    from psycopg.abc import Buffer



# The fast path's record of the rows it sent (see _Spool): in memory up to this many bytes (about 50,000
# detection rows), then in a temporary file read back in pieces of _SPOOL_READ bytes on a replay.
_SPOOL_MEMORY = 16 * 1024 * 1024
_SPOOL_READ = 1024 * 1024
_BINARY_TRAILER = b"\xff\xff"
_END: Any = object()


class _Feed:
    """The input stream: one row looked ahead (to know whether another chunk follows) and the running
    index."""

    __slots__ = ("head", "rest", "index", "copy_start", "layout")

    def __init__(self, head: Any, rest: Iterator[Any]) -> None:
        self.head = head
        self.rest = rest
        self.index = 0  # index of ``head`` in the caller's iterable
        self.copy_start = 0  # index of the first row of the COPY in progress (server errors count from it)
        # Set when the writer stopped before ``head`` because it leaves out other server-default columns than
        # the COPY in progress names: the columns it leaves out (the next COPY's layout).
        self.layout: frozenset[str] | None = None

    @property
    def done(self) -> bool:
        return self.head is _END


def _write_rows(copy: psycopg.Copy, check: _RowChecker, feed: _Feed, limit: int | None) -> None:
    """Validate and write up to ``limit`` rows (all if None) of ``feed`` to ``copy``; advance the feed.

    The per-row work is kept to C calls: a tuple from itemgetter/attrgetter, the list of value types compared
    with the last two signatures seen (else looked up in the table's cache of checked signatures), a struct
    range check of the narrow integer columns.

    Why two remembered signatures: rows come in a few shapes (which optional columns are None), often runs of
    one or alternating between two. Comparing lists of types costs ~85 ns for a 30-column row when equal, and
    far less when they differ at the first columns, against ~120 ns more to build a tuple and ~220 ns to hash
    it for the dict (tuple hashes are not cached). Measured with a no-op write_row on the 100k detection rows
    of bench/bulk_vs_copy.py (4 signatures, randomly mixed): the loop went from 1.51 to 1.27 us/row (bare
    itemgetter loop: 0.35 us/row).

    The COPY names the columns of ``check``'s layout (every column but the server-default ones its rows leave
    out): at a row that leaves out others, the writer stops before it and sets ``feed.layout``; the caller
    ends this COPY and starts the next with that row. A call whose rows all leave out the same columns (the
    usual case) is one COPY, at no cost per row.
    """
    write = copy.write_row
    ncols = check.ncols
    colset = check.colset
    items = check.item_getter
    attrs = check.attr_getter
    # An instance in a layout leaving columns out: values_slow reads it (and checks its Nones belong here).
    cls = check.cls if not check.omitted else _END
    signatures = check.signatures
    base = None if check.factories else check.defaults
    need = check.named_defaults  # a row with fewer keys must name these to belong to this layout
    instance_defaults = check.defaults_getter
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
                elif base is not None and row.keys() <= colset and (need is None or need <= row.keys()):
                    values = items(base | row)
                else:
                    values = check.values_slow(row, i)
            elif type(row) is cls:
                values = attrs(row)
                if instance_defaults is not None and None in instance_defaults(values):
                    values = check.values_slow(row, i)  # a None left for the server: another layout
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
        except _Layout as change:  # row i belongs to another COPY: stop before it
            feed.index = i
            feed.head = row
            feed.layout = change.omitted
            return
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
    """The error for row ``index``, which psycopg's encoder rejected with ``exc``: named as precisely as we
    can."""
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
    """The first column whose value psycopg's binary dumper for the column type refuses (a timezone
    mismatch...)."""
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

    The first ``_SPOOL_MEMORY`` bytes stay in memory as the formatter's own buffers (no copy); the rest goes
    to an anonymous temporary file (in ``$TMPDIR``), so the memory of a call stays bounded whatever its size.
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
                    f"bulk_insert into {self.model!r} keeps the rows it sends in a temporary file, to replay "
                    f"them if a key exists, and could not write it ({exc}); point TMPDIR at a directory with "
                    "room (about 0.3 kB per 30-column row), or send smaller batches",
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

    The binary trailer written when the COPY ends is left out of the record (``ending`` is set just before),
    so rows can be appended after a replay.
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
