"""One ``bulk_insert(..., parallel=N)`` call (see :mod:`dbplugins._copy.parallel`): the dealing of the input
to its streams, by key; how the call ends is :mod:`dbplugins._copy.parallel_end`'s."""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import DbpError
from .checker import _RowChecker
from .parallel_end import _Coordinator
from .parallel_stream import _BATCH, _DONE, _Aborted, _Stream, _StreamBase
from .statements import _Statements

# "[model 'object', column 'ndet', row 12]": the row index of an error's context.
_ROW = re.compile(r"\brow (\d+)\]")


class _Call(_Coordinator):
    """One ``bulk_insert(..., parallel=N)`` call: the dealing of rows to its streams, by key."""

    streams: list[_Stream]  # type: ignore[assignment]  # the same list, of this call's stream class

    def __init__(
        self, check: _RowChecker, stmts: _Statements, mode: str, chunk: int, twophase: bool, parallel: int
    ) -> None:
        super().__init__(check.table.name, mode, twophase, parallel, f"bulk_insert(parallel={parallel})")
        self.check = check
        self.chunk = chunk
        self.dealt = bytearray()  # the stream of each row of the input, in input order (see deal)
        self.stmts = stmts

    # -- dealing -------------------------------------------------------------------------------------------

    def deal(self, head: Any, rest: Iterator[Any]) -> None:
        """Read the input once, in the caller's thread, and hand it to the streams in batches.

        ``self.dealt`` gets one byte per row, its stream: the k-th row a stream received is the k-th
        occurrence of its number there (see :meth:`input_index`), which costs less per row than keeping every
        index.
        """
        streams = self.streams
        n = len(streams)
        pending: list[list[Any]] = [[] for _ in range(n)]
        dealt = self.dealt
        abort = self.abort
        rows = itertools.chain((head,), rest)
        key = _key_function(self.check)
        if key is None:  # no key: whole batches in turn
            turn = 0
            while batch := list(itertools.islice(rows, _BATCH)):
                if abort.is_set():
                    raise _Aborted
                dealt.extend(bytes((turn,)) * len(batch))
                streams[turn].put(batch)
                turn = (turn + 1) % n
        else:
            items = operator.itemgetter(*_deal_columns(self.check.table))
            mark = dealt.append
            for row in rows:
                try:  # the common case inline (a dict with a hashable key); else the key function
                    s = hash(items(row)) % n if type(row) is dict else key(row) % n
                except (KeyError, TypeError):
                    s = key(row) % n
                bucket = pending[s]
                bucket.append(row)
                mark(s)
                if len(bucket) >= _BATCH:
                    if abort.is_set():
                        raise _Aborted
                    streams[s].put(bucket)
                    pending[s] = []
            for s, bucket in enumerate(pending):
                if bucket:
                    streams[s].put(bucket)
        for stream in streams:
            stream.put(_DONE)

    def located(self, err: DbpError, stream: _StreamBase, outcome: str) -> DbpError:
        """``err`` of a stream, its row index turned into the index in the caller's input, its message
        completed."""
        row = err.row
        message = err.message
        found_row = self.input_index(stream.number, row) if row is not None and row >= 0 else None
        if row is not None and found_row is not None:
            row = found_row
            found = list(_ROW.finditer(message))
            if found and int(found[-1].group(1)) == err.row:
                last = found[-1]
                message = message[: last.start(1)] + str(row) + message[last.end(1):]
        message += f" ({self.label}, stream {stream.number + 1} failed; {outcome})"
        return type(err)(
            message,
            model=err.model,
            column=err.column,
            row=row,
            sqlstate=err.sqlstate,
            constraint=err.constraint,
        )

    def input_index(self, stream: int, position: int) -> int | None:
        """The index in the caller's input of the row at ``position`` in what ``stream`` received."""
        found = -1
        try:
            for _ in range(position + 1):
                found = self.dealt.index(stream, found + 1)
        except ValueError:
            return None
        return found


# -- dealing by key ------------------------------------------------------------------------------------------


def _deal_columns(table: Any) -> tuple[str, ...]:
    """The columns whose values choose a row's stream: the primary key, or the part of it that is a foreign
    key.

    Rows of equal primary key must meet in one stream (so that the first or last occurrence wins as with one
    stream), and any part of the key keeps them together. A foreign key's part is better: the server's check
    of a foreign key takes a KEY SHARE lock on the referenced row, and a row locked by two transactions at
    once gets a MultiXact, which costs server time (two hand-written streams of the bench's detection rows,
    split by ``oid`` against split in turn: 1.15x against 1.02x one stream, on a loaded machine). The price:
    rows of few distinct referenced rows (one object's light curve) fill few streams.
    """
    pk = tuple(table.primary_key)
    for fk in table.foreign_keys:
        if set(fk.columns) < set(pk):
            return tuple(fk.columns)
    return pk


def _key_function(check: _RowChecker) -> Callable[[Any], int] | None:
    """``row -> int``: a hash of the row's dealing key (:func:`_deal_columns`), equal for rows whose keys are
    equal (None: the table has no primary key).

    Rows the checker will refuse (no key, not a row at all) go to stream 0, whose checker names the error.
    Keys whose values hash alike in Python when PostgreSQL stores them alike (``1001`` and ``1001.0`` into an
    integer key) land in one stream; unhashable key values (a list for an array column) are hashed as tuples.
    """
    columns = _deal_columns(check.table)
    if not columns:
        return None
    items = operator.itemgetter(*columns)
    attrs = operator.attrgetter(*columns)
    cls = check.cls
    # A row that leaves a key column to the server (serial, identity) has no key to keep together: its rows
    # go to the streams in turn.
    generated = frozenset(columns) & check.server_defaults
    turn = itertools.count()

    def key(row: Any) -> int:
        try:
            if type(row) is dict:
                value = items(row)
            elif type(row) is cls:
                value = attrs(row)
                if generated and check.layout_of(row) & generated:
                    return next(turn)
            else:
                value = items(row)
        except (KeyError, TypeError, AttributeError):
            if generated and check.layout_of(row) & generated:
                return next(turn)
            return 0
        try:
            return hash(value)
        except TypeError:
            return hash(_frozen(value))

    return key


def _frozen(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value
