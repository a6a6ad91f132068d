"""Turning fetched rows into results fast: model instances without a per-row ``__init__``, projection rows.

Reads fetch plain tuples in binary format on a cursor kept per connection, then build the results in bulk:

* model instances as ``object.__new__(cls)`` with their ``__dict__`` set from the row: what the dataclass
  ``__init__`` would have done for a row holding every column (about 3x cheaper per row than
  ``cls(**dict(zip(names, row)))``, which psycopg's ``class_row`` does). Models with a ``__post_init__`` or
  ``__slots__`` keep the ``__init__`` path, since skipping it would change what they hold.
* projection rows (``db.query(M.a, M.b)``) as instances of a tuple subclass with one property per column:
  built by the C tuple constructor (``namedtuple``'s ``_make`` is a Python call per row); ``row.a``,
  ``row[0]``, unpacking, ``_fields`` and ``_asdict()`` work.

Binary results are used only when every column's type has a binary loader in psycopg that returns the same
Python value as the text one (the types of the model layer); otherwise rows are fetched as text.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import operator
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from .._types.schema import Table

__all__ = [
    "fetch_tuples",
    "stream_tuples",
    "instances",
    "row_class",
    "binary_ok",
    "gc_paused",
    "prepare_flag",
]

# Base types whose binary loaders give the same values as the text ones.
_BINARY_TYPES = frozenset(
    {
        "smallint",
        "integer",
        "bigint",
        "double precision",
        "real",
        "numeric",
        "character varying",
        "character",
        "text",
        "boolean",
        "timestamp without time zone",
        "timestamp with time zone",
        "date",
        "time without time zone",
        "interval",
        "bytea",
        "jsonb",
        "json",
        "uuid",
    }
)


_gc_lock = threading.Lock()
_gc_depth = 0  # reads in progress that paused the collector


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a result is fetched and built.

    A read of 50,000 rows allocates 50,000 tuples (and as many instances or rows), none of them cyclic; with
    the collector on, each 700 allocations trigger a young-generation pass over the growing result: building
    50,000 projection rows took 15-40 ms with it and 4.5 ms without (measured here), which made
    ``db.query(M.a, M.b)`` 0.33x psycopg's binary tuples. Nested and concurrent reads share one pause (a depth
    count); the collector is switched back on when the last one ends,
    and only if it was on when the first one began.
    """
    global _gc_depth
    with _gc_lock:
        if _gc_depth == 0:
            _gc_paused_state[0] = gc.isenabled()
            gc.disable()
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_paused_state[0]:
                gc.enable()


_gc_paused_state = [False]  # whether the collector was on when the first paused read began


def base_type(sql_type: str) -> str:
    """The base name of a column type: ``character varying(5)[]`` -> ``character varying``."""
    base = sql_type[:-2] if sql_type.endswith("[]") else sql_type
    return base.split("(", 1)[0].strip()


@functools.lru_cache(maxsize=1024)
def _binary_ok(table_id: int, types: tuple[str, ...]) -> bool:
    return all(base_type(t) in _BINARY_TYPES for t in types)


def binary_ok(table: Table, columns: Iterable[str]) -> bool:
    """Whether ``columns`` of ``table`` can be fetched in binary format with unchanged values."""
    return _binary_ok(id(table), tuple(table.columns[c].sql_type for c in columns))


def prepare_flag(params: Sequence[Any]) -> bool | None:
    """``prepare=`` for a statement: ``False`` when a parameter is an array (an ``in_`` list), else psycopg's
    default (prepared from its fifth execution on).

    A prepared statement gets PostgreSQL's generic plan after five executions, planned without the values. For
    ``col = ANY($1)`` that plan cannot hash the array: every row is compared with each element in turn. With
    1,000 oids over 100,000 detections the generic plan ran 600 ms against 18 ms for the custom one
    (EXPLAIN ANALYZE here), and the bench's ``in_`` read became 2x slower from its sixth repetition on.
    Unprepared, each execution is planned with its values, a fraction of a millisecond for such statements.
    """
    for value in params:
        if isinstance(value, (list, tuple)):
            return False
    return None


# Rows per chunk of a streamed result: large enough that a chunk's fixed cost (a result, a wake-up) is small
# beside its rows, small enough that the client is never long idle while the server produces the next one
# (100 to 1,000 measured the same here; 10,000 lost a third of the gain).
STREAM_CHUNK = 1000


def stream_tuples(
    conn: psycopg.Connection[Any],
    stmt: str,
    params: Sequence[Any],
    *,
    binary: bool,
    make: type[tuple[Any, ...]] | None = None,
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``stmt`` as lists of tuples, ``STREAM_CHUNK`` rows at a time, while the server is still
    producing the next ones (libpq's chunked rows mode).

    ``fetch_tuples`` waits for the whole result before loading its first row: the client idles while the
    server works, then the server idles while the client loads. Streamed, the two overlap on two cores. The
    caller must consume (or close) the iterator before using ``conn`` again; closing it early cancels the
    query (psycopg's ``Cursor.stream``). With a libpq older than 17 (no chunked mode), the whole result comes
    as one chunk. ``make`` as for :func:`fetch_tuples`.

    A streamed statement is never prepared: use it for those that run unprepared anyway (see
    :func:`prepare_flag`) or whose rows cost more than their planning.
    """
    if not _chunked_rows() or conn.pgconn.pipeline_status:  # psycopg streams outside pipeline mode only
        yield fetch_tuples(conn, stmt, params, binary=binary, make=make)
        return
    cur = _cursor(conn, binary)
    cur.row_factory = tuple_row if make is None else (lambda _cursor: make)
    chunk: list[tuple[Any, ...]] = []
    append = chunk.append
    for row in cur.stream(stmt, params, binary=binary, size=STREAM_CHUNK):
        append(row)
        if len(chunk) == STREAM_CHUNK:
            yield chunk
            chunk = []
            append = chunk.append
    if chunk:
        yield chunk


def _cursor(conn: psycopg.Connection[Any], binary: bool) -> psycopg.Cursor[Any]:
    """The cursor kept on ``conn`` for reads in one format."""
    key = "_dbp_bin_cursor" if binary else "_dbp_txt_cursor"
    cur: psycopg.Cursor[Any] | None = conn.__dict__.get(key)
    if cur is None or cur.closed:
        cur = conn.__dict__[key] = conn.cursor(row_factory=tuple_row, binary=binary)
    return cur


@functools.cache
def _chunked_rows() -> bool:
    return psycopg.capabilities.has_stream_chunked()


def fetch_tuples(
    conn: psycopg.Connection[Any],
    stmt: str,
    params: Sequence[Any],
    *,
    binary: bool,
    make: type[tuple[Any, ...]] | None = None,
) -> list[tuple[Any, ...]]:
    """Run ``stmt`` on a tuple-row cursor kept on ``conn`` (binary or text results) and fetch every row.

    A cursor per connection and format, reused: a new cursor resolves the loaders of every column again. Safe
    because a pooled connection serves one thread at a time and the cursor never leaves this function.
    """
    cur = _cursor(conn, binary)
    # ``make`` (a tuple subclass, see row_class) builds each row straight from psycopg's loaded values: no
    # intermediate tuple per row to allocate and then track through a collection (0.7x -> ~0.9x psycopg's
    # plain tuples for a 4-column projection of 100,000 rows, measured here).
    cur.row_factory = tuple_row if make is None else (lambda _cursor: make)
    cur.execute(stmt, params, prepare=prepare_flag(params))
    rows: list[tuple[Any, ...]] = cur.fetchall()
    return rows


@functools.lru_cache(maxsize=1024)
def _plain(cls: type) -> bool:
    return not hasattr(cls, "__post_init__") and not any("__slots__" in vars(k) for k in cls.__mro__[:-1])


def instances(cls: type, names: Sequence[str], rows: list[tuple[Any, ...]]) -> list[Any]:
    """Model instances of ``cls`` from ``rows`` holding the columns ``names`` (every field of the model)."""
    if not rows:
        return []
    if not _plain(cls):
        return [cls(**dict(zip(names, r, strict=True))) for r in rows]
    new = object.__new__
    objs: list[Any] = [new(cls) for _ in range(len(rows))]
    dicts = map(dict, map(zip, itertools.repeat(names), rows))
    if getattr(cls, "__setattr__", None) is object.__setattr__:
        for obj, values in zip(objs, dicts, strict=True):
            obj.__dict__ = values
    else:  # a frozen dataclass refuses attribute assignment, __dict__ included; its dict can still be filled
        for obj, values in zip(objs, dicts, strict=True):
            obj.__dict__.update(values)
    return objs


@functools.lru_cache(maxsize=1024)
def row_class(names: tuple[str, ...]) -> type[tuple[Any, ...]]:
    """A tuple subclass with attribute access for ``names`` (cached per column list)."""
    ns: dict[str, Any] = {"__slots__": (), "_fields": names}
    for i, name in enumerate(names):
        if name.isidentifier() and not name.startswith("_"):
            ns[name] = property(operator.itemgetter(i), doc=f"column {name!r}")

    def _asdict(self: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(names, self, strict=True))

    def __repr__(self: tuple[Any, ...]) -> str:
        return "Row(" + ", ".join(f"{n}={v!r}" for n, v in zip(names, self, strict=True)) + ")"

    ns["_asdict"] = _asdict
    ns["__repr__"] = __repr__
    return type("Row", (tuple,), ns)
