"""``dbp load --jobs N`` by COPY: the file read once, its records dealt to N ``COPY ... FORMAT csv`` streams
on N connections, each sent the header and then its records' bytes as they are (the server parses them, as
for one stream: :mod:`dbplugins._load.loadcopy`, whose plan and byte checks apply unchanged).

The streams and how the call ends are ``bulk_insert(parallel=N)``'s (:mod:`dbplugins._copy.parallel`): with
prepared transactions every stream prepares and then all commit, or all roll back; without them ``"error"``
is refused and ``"ignore"`` / ``"update"`` commit stream after stream once all have done their work (a
failure between the COMMITs says that running the same load again completes it).

Dealing. Records, not lines: a line end inside a quoted field does not end a record (the bytes checked by
the scanner are well-formed CSV, so a line holding an odd number of quotes opens or closes a quoted field).
Each record goes to the stream ``hash(key) % N``, its key the field(s) of :func:`_deal_columns` (the primary
key, or its foreign-key part), unquoted, and for a column that is not text its value as the column type reads
it (``5`` and ``05`` in an integer key are one key): all records of one key meet in one stream, in file order,
so "first occurrence wins" (``"ignore"``) and "last occurrence wins" (``"update"``) hold as with one stream.
A table without a primary key gets the blocks of the file in turn.

Conflicts and errors, as with one stream: ``"ignore"`` / ``"update"`` COPY straight into the table; a
duplicate key (or a lock held by a concurrent caller) in any stream rolls every stream back and the file is
sent again, each stream into an unlogged staging table of its own (a prepared transaction cannot have touched
a temporary table) moved over with ``INSERT ... SELECT ... ON CONFLICT`` and dropped before the PREPARE. Any
other server error rolls every stream back and raises :class:`Fallback`: the Python path reads the file with
``bulk_insert(parallel=N)`` and names the line and column of the first bad value.

Memory: the dealer holds one block of the file (:data:`loadcopy.BLOCK`) and each stream's queue at most
``_QUEUE_BATCHES`` pieces of about a block over N: bounded whatever the file's size.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any

import psycopg
from psycopg import errors as pge
from psycopg import sql

from .._copy.parallel import check_parallel, run_streams
from .._copy.parallel_call import _deal_columns
from .._copy.parallel_end import _Coordinator
from .._copy.parallel_stream import _DONE, _Aborted, _StreamBase
from .._session.session import Session, readable
from .._types.schema import Table
from ..errors import DbpError, wrap_db_error
from .loadcopy import (
    _LOCK_WAIT,
    _MAX_CARRY,
    Fallback,
    Plan,
    _Conflict,
    _database_defaults,
    _move,
    _read_header,
    _Scanner,
    plan,
)
from .loadsource import Source

__all__ = ["check_jobs", "copy_load_jobs"]


def check_jobs(db: Any, table: Table, on_conflict: Any, jobs: Any) -> bool:
    """Refuse a ``jobs`` that cannot run (see :func:`dbplugins._copy.parallel.check_parallel`); whether the
    streams use prepared transactions."""
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise DbpError(f"jobs must be an integer >= 1 (the number of COPY streams), got {jobs!r}")
    if jobs == 1:
        return False
    if on_conflict == "bulk_update":
        raise DbpError("--jobs applies to loads that insert; --update runs on one connection (use --jobs 1)")
    return check_parallel(db.current_session(), table.name, on_conflict, jobs, cli=True)


def copy_load_jobs(
    session: Session,
    source: Source,
    table: Table,
    delimiter: str,
    encoding: str,
    on_conflict: str,
    advance: Callable[[int], None],
    *,
    jobs: int,
    twophase: bool,
) -> tuple[int, int]:
    """Load ``source`` over ``jobs`` COPY streams; ``(rows read, rows written)``. Raises :class:`Fallback`
    (nothing written) when the Python path must read the file.

    ``twophase`` is :func:`dbplugins._copy.parallel.check_parallel`'s answer, which the caller asked (it
    refuses what cannot run).
    """
    stream = source.open(replayable=True)
    header, start = _read_header(stream)
    the_plan = plan(table, header, delimiter, encoding, on_conflict)
    keys = _deal_columns(table) if table.primary_key else ()
    if any(k not in the_plan.columns for k in keys):
        raise Fallback("the key that deals the records to the streams is not in the header")
    with session.connection() as conn:
        try:
            defaulted = _database_defaults(conn.cursor(), table.name, the_plan.missing)
        except psycopg.Error as exc:
            raise wrap_db_error(exc, model=table.name, action="dbp load") from exc
        eof_marker = conn.info.server_version < 180000  # PostgreSQL 18 reads a line \. as data
    if defaulted:
        raise Fallback(f"column {defaulted[0]!r} is left out and has a default in the database")
    args = (session, the_plan, on_conflict, advance, jobs, twophase, eof_marker)
    try:
        return _attempt(stream, header, start, *args, staged=False)
    except _Conflict:
        pass
    stream = source.open()
    header, start = _read_header(stream)
    return _attempt(stream, header, start, *args, staged=True)


def _attempt(
    stream: IO[bytes],
    header: bytes,
    start: bytes,
    session: Session,
    the_plan: Plan,
    on_conflict: str,
    advance: Callable[[int], None],
    jobs: int,
    twophase: bool,
    eof_marker: bool,
    *,
    staged: bool,
) -> tuple[int, int]:
    call = _LoadCall(the_plan, on_conflict, twophase, jobs, header, staged)
    scanner = _Scanner(the_plan.delimiter, the_plan.bounded, eof_marker)
    scanner.check(header, False)  # the streams send it apart from the pieces: checked as one stream checks it
    read_more = getattr(stream, "read1", stream.read)

    def deal() -> None:
        call.deal(scanner.pieces(start[len(header):], read_more), advance)

    written = run_streams(session, call, lambda conn, k: _LoadStream(call, k, conn), deal)
    return sum(s.read for s in call.streams if isinstance(s, _LoadStream)), written


# -- the call: dealing the records ---------------------------------------------------------------------------


class _LoadCall(_Coordinator):
    """One attempt of ``dbp load --jobs N`` by COPY."""

    passthrough = (Fallback, _Conflict)  # the caller reads the file again (staged, or in Python)

    def __init__(
        self, the_plan: Plan, mode: str, twophase: bool, jobs: int, header: bytes, staged: bool
    ) -> None:
        label = f"dbp load --jobs {jobs}"
        super().__init__(the_plan.table.name, mode, twophase, jobs, label, action="dbp load", rerun="load")
        self.plan = the_plan
        self.header = header
        self.staged = staged
        table = the_plan.table
        columns = _deal_columns(table) if table.primary_key else ()
        self.key_at = [the_plan.columns.index(c) for c in columns]
        # A key column whose text is not its value (an integer's "05" is 5): hashed as the column reads it.
        self.readers: list[Callable[[str], Any] | None] = [
            None if table.columns[c].type.kind == "text" else table.columns[c].type.from_text for c in columns
        ]
        # The inline dealing of deal(): one text key column, not the last (whose field ends in the \r of a
        # CRLF line end, which _fields drops).
        self.fast = (
            len(self.key_at) == 1 and self.readers[0] is None and self.key_at[0] < len(the_plan.columns) - 1
        )
        d = re.escape(the_plan.delimiter.encode("ascii"))
        self.field = re.compile(rb'"([^"]*+(?:""[^"]*+)*+)"|([^"' + d + rb"]*+)")

    def deal(self, pieces: Iterator[bytes], advance: Callable[[int], None]) -> None:
        """Hand the records of ``pieces`` (checked blocks of the file after its header, each ending at a
        record's end but perhaps the last) to the streams, a piece per stream and block."""
        streams = self.streams
        n = len(streams)
        d = self.plan.delimiter.encode("ascii")
        turn = 0
        carry = b""
        for block in itertools.chain(pieces, (b"",)):
            if self.abort.is_set():
                raise _Aborted
            final = not block
            if carry:
                block = carry + block
            if final and block:
                if block.endswith(b"\r"):
                    raise Fallback("a last line ending in a lone carriage return")
                block += b"\n"  # the last record, without its line end: its stream may get more after it
            lines = block.split(b"\n")
            carry = lines.pop()  # after the last line end: b"" but for a piece cut between \r and \n
            lone = block.count(b"\r") - block.count(b"\r\n") - carry.endswith(b"\r")
            if lone:  # PostgreSQL ends a line at a lone \r too; the records would be cut wrongly
                raise Fallback("a carriage return that is not before a line feed")
            quoted = b'"' in block
            if quoted:
                lines, rest = _records(lines)
                if rest:
                    carry = rest + b"\n" + carry
                    if len(carry) > _MAX_CARRY:
                        raise Fallback("a quoted field longer than the csv reader takes")
            if not lines:
                continue
            advance(len(lines))
            if not self.key_at:  # no key: blocks in turn
                streams[turn].put([b"\n".join(lines) + b"\n"])
                turn = (turn + 1) % n
                continue
            buckets: list[list[bytes]] = [[] for _ in range(n)]
            if quoted or not self.fast:
                self._deal_slow(lines, buckets, d)
            else:  # the common case inline: one text key column, no quote in the block
                k = self.key_at[0]
                cut = k + 1
                appends = [b.append for b in buckets]
                for rec in lines:
                    f = rec.split(d, cut)
                    appends[hash(f[k]) % n if len(f) > k else 0](rec)
            for s, bucket in enumerate(buckets):
                if bucket:
                    streams[s].put([b"\n".join(bucket) + b"\n"])
        for stream in streams:
            stream.put(_DONE)

    def _deal_slow(self, lines: list[bytes], buckets: list[list[bytes]], d: bytes) -> None:
        n = len(buckets)
        width = max(self.key_at) + 1
        field = self.field
        for rec in lines:
            fields = _fields(rec, field, d, width)
            if len(fields) < width:
                buckets[0].append(rec)  # too few fields: the server refuses it, in stream 0
                continue
            key = tuple(_canonical(fields[k], r) for k, r in zip(self.key_at, self.readers, strict=True))
            buckets[hash(key) % n].append(rec)


def _records(lines: list[bytes]) -> tuple[list[bytes], bytes]:
    """``lines`` (split at every line feed) joined into records: a line with an odd number of quotes opens a
    quoted field that the next such line closes. Returns the records and what an open field left over."""
    out: list[bytes] = []
    open_: list[bytes] = []
    for line in lines:
        odd = line.count(b'"') % 2
        if open_:
            open_.append(line)
            if odd:
                out.append(b"\n".join(open_))
                open_ = []
        elif odd:
            open_ = [line]
        else:
            out.append(line)
    return out, b"\n".join(open_)


def _fields(rec: bytes, field: re.Pattern[bytes], d: bytes, width: int) -> list[bytes]:
    """The first ``width`` fields of a well-formed CSV record (fewer if it has fewer), unquoted (``""`` inside
    read as ``"``), the last without the ``\r`` of a CRLF line end."""
    out: list[bytes] = []
    pos = 0
    end = len(rec)
    while True:
        m = field.match(rec, pos)
        assert m is not None  # the pattern matches the empty string
        pos = m.end()
        last = pos >= end or rec[pos : pos + 1] != d
        quoted = m.group(1)
        if quoted is not None:
            out.append(quoted.replace(b'""', b'"'))
        else:
            out.append(m.group(2).removesuffix(b"\r") if last else m.group(2))
        if last or len(out) == width:
            return out
        pos += 1


def _canonical(field: bytes, read: Callable[[str], Any] | None) -> Any:
    """A key field as it is stored: its bytes for text, else the column type's value (bytes if unreadable:
    the server refuses it then)."""
    if read is None:
        return field
    try:
        value = read(field.decode("utf-8", "replace").strip())
        hash(value)
    except (ValueError, TypeError, ArithmeticError):
        return field
    return value


# -- the streams ---------------------------------------------------------------------------------------------


class _LoadStream(_StreamBase):
    """One COPY stream of ``dbp load --jobs N``: the header, then the pieces dealt to it."""

    call: _LoadCall

    def __init__(self, call: _LoadCall, number: int, conn: psycopg.Connection[Any]) -> None:
        super().__init__(call, number, conn)
        self.read = 0

    def _work(self) -> int:
        pieces = self._rows()
        first = next(pieces, _DONE)
        if first is _DONE:
            return 0  # nothing dealt to this stream: no transaction
        self.began = True
        call = self.call
        the_plan = call.plan
        mode = call.mode
        direct = not call.staged
        conn = self.conn
        cur = conn.cursor()
        self.busy = True
        try:
            self._begin(cur)
            if direct and mode != "error":
                # a key held by a concurrent caller: go through staging soon, as one stream does (loadcopy)
                cur.execute("SELECT set_config('lock_timeout', %s, true)", (_LOCK_WAIT,))
            target = sql.Identifier(the_plan.table.name)
            stage = None
            if call.staged:
                stage = sql.Identifier(f"_dbp_ljob_{uuid.uuid4().hex[:20]}")
                cur.execute(sql.SQL("CREATE UNLOGGED TABLE {} (LIKE {})").format(stage, target))
            fileno = conn.fileno()
            complete = False
            with cur.copy(the_plan.copy_statement(stage or target)) as copy:
                copy.write(call.header)
                for piece in itertools.chain((first,), pieces):
                    copy.write(piece)
                    if readable(fileno):
                        break  # the server refused something: it ignores the rest, end the COPY to hear why
                else:
                    complete = True
            if not complete:  # the server's message was not an error (a NOTICE): the COPY lacks the rest
                raise Fallback("the server spoke during the COPY")
            self.read = max(cur.rowcount, 0)
            written = self.read
            if stage is not None:
                written = _move(cur, the_plan, stage, target, mode)
                cur.execute(sql.SQL("DROP TABLE {}").format(stage))
            if call.twophase:
                self._prepare(cur)
            return written
        except (pge.UniqueViolation, pge.LockNotAvailable, pge.DeadlockDetected) as exc:
            if direct and mode != "error":
                raise _Conflict() from exc
            raise Fallback(f"the server said: {exc}") from exc
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) and (conn.closed or conn.broken):
                raise  # the server went away: no second reading would do better
            raise Fallback(f"the server said: {exc}") from exc
        finally:
            self.busy = False
