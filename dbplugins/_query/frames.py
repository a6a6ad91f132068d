"""``Query.to_dataframe()``: a pandas DataFrame of the matching rows, built column by column.

Fetching rows costs a Python object per value (psycopg makes each float, int and bool), and then a frame costs
a pass over them again: 100,000 detections (30 columns) took 0.2 s to fetch as tuples and as long again to
turn into columns (measured here). So the numeric columns do not come as values at all: the query selects
them first, packed into one ``bytea`` per row by the server's binary send functions (``float8send``,
``int8send``, ...: the exact IEEE / two's-complement bytes, big-endian; see
:func:`dbplugins._query.shapes.packed_sql`), and numpy reads the joined bytes as a structured array, one
vectorised step per column. The other columns (text, timestamps, numeric, arrays, ...) come as values.

The rows are streamed (:func:`dbplugins._query.results.stream_tuples`) and taken apart chunk by chunk as they
arrive (:class:`FrameParts`), so the client's work overlaps the server's instead of waiting for all of it.

What each column becomes (the same as without packing, which :func:`plain_frame` still does for
``distinct()`` queries, where packing would change which rows are distinct: NULL and NaN, 0.0 and -0.0):

- ``double precision`` / ``real``: float64; NULL is NaN;
- ``smallint`` / ``integer`` / ``bigint``: int64, or float64 with NaN when the column holds a NULL (as
  ``pd.read_sql`` gives);
- ``boolean``: bool, or object (``True`` / ``False`` / ``None``) when the column holds a NULL;
- anything else: what pandas infers from the values; array columns stay object columns of lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._types.schema import Table
from .results import base_type

__all__ = ["FrameParts", "frame_layout", "packed_frame", "plain_frame"]

_FLOATS = frozenset({"double precision", "real"})
_INTS = frozenset({"smallint", "integer", "bigint"})
_TEXTS = frozenset({"character varying", "text", "character"})
_KINDS = {**dict.fromkeys(_FLOATS, "f"), **dict.fromkeys(_INTS, "i"), "boolean": "b"}  # see frame_layout
# the numpy fields of each code, as shapes.packed_sql lays them out: a value, and a NULL flag if one is sent
_FIELDS: dict[str, list[str]] = {
    "f": [">f8"],
    "fn": [">f8"],
    "i": [">i8"],
    "in": [">i8", "u1"],
    "b": ["u1"],
    "bn": ["u1"],
}

_NAN = float("nan")


def frame_layout(table: Table, columns: Sequence[str], distinct: bool) -> tuple[tuple[str, str], ...]:
    """The ``(column, code)`` pairs of ``columns`` to fetch packed (none for a ``distinct()`` query).

    The code is the column's kind (``f``, ``i``, ``b``), with ``n`` added when the model lets it hold NULL.
    """
    if distinct:
        return ()
    packed = []
    for name in columns:
        column = table.columns[name]
        kind = None if column.is_array else _KINDS.get(base_type(column.sql_type))
        if kind is not None:
            packed.append((name, kind + "n" if column.nullable else kind))
    return tuple(packed)


class FrameParts:
    """The fetched rows of a frame, kept as columns: each chunk of rows is taken apart as it arrives.

    With ``packed``, each row's first value is the packed ``bytea``: a chunk's are joined into one ``bytes``
    (``blobs``); the other values go to one list per column (``columns``). ``broken`` records a NULL packed
    value (a column the model declares NOT NULL held a NULL): the frame must then be read plainly.
    """

    def __init__(self, width: int, packed: bool) -> None:
        self.packed = packed
        self.blobs: list[bytes] = []
        self.columns: list[list[Any]] = [[] for _ in range(width - 1 if packed else width)]
        self.count = 0
        self.broken = False

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        """Take apart one chunk of rows."""
        if not rows:
            return
        by_column = zip(*rows, strict=True)
        if self.packed:
            try:
                self.blobs.append(b"".join(next(by_column)))
            except TypeError:  # a None among the bytes
                self.broken = True
        for values, column in zip(by_column, self.columns, strict=True):
            column.extend(values)
        self.count += len(rows)


def packed_frame(
    pd: Any,
    table: Table,
    columns: Sequence[str],
    packed: tuple[tuple[str, str], ...],
    plain: Sequence[str],
    parts: FrameParts,
) -> Any:
    """The frame of ``parts`` (the packed ``bytea`` first, then the ``plain`` columns: the rest of
    ``columns``, in their order). None when ``parts`` is broken: the caller reads the rows plainly instead."""
    import numpy as np

    if parts.broken:
        return None
    if not parts.count:
        return plain_frame(pd, table, columns, FrameParts(len(columns), False))
    fields: list[tuple[str, str]] = []
    for k, (_, code) in enumerate(packed):
        fields.extend((f"c{k}_{j}", fmt) for j, fmt in enumerate(_FIELDS[code]))
    grid = np.frombuffer(b"".join(parts.blobs), dtype=np.dtype(fields))
    data: dict[str, Any] = {}
    for k, (name, code) in enumerate(packed):
        values = grid[f"c{k}_0"]
        if code[0] == "f":
            data[name] = values.astype(np.float64)
        elif code[0] == "i":
            nulls = grid[f"c{k}_1"] != 0 if code == "in" else None
            if nulls is not None and nulls.any():
                floats = values.astype(np.float64)
                floats[nulls] = np.nan
                data[name] = floats
            else:
                data[name] = values.astype(np.int64)
        elif code == "bn" and (values == 2).any():  # a NULL: pandas infers from the values
            data[name] = [None if v == 2 else v == 1 for v in values.tolist()]
        else:
            data[name] = values == 1
    for name, column in zip(plain, parts.columns, strict=True):
        data[name] = _column(np, pd, table.columns[name].sql_type, column)
    return pd.DataFrame(data, columns=list(columns))


def plain_frame(pd: Any, table: Table, columns: Sequence[str], parts: FrameParts) -> Any:
    """The frame of ``parts``, the values of ``columns`` (no packed part)."""
    import numpy as np

    names = list(columns)
    if not parts.count:
        return pd.DataFrame({n: pd.Series(dtype=object) for n in names}, columns=names)
    data = {
        name: _column(np, pd, table.columns[name].sql_type, values)
        for name, values in zip(names, parts.columns, strict=True)
    }
    return pd.DataFrame(data, columns=names)


def _column(np: Any, pd: Any, sql_type: str, values: Sequence[Any]) -> Any:
    """One column of values as the frame holds it (see the module docstring)."""
    base = base_type(sql_type)
    if sql_type.endswith("[]"):
        return pd.Series(values, dtype=object)
    if base in _FLOATS:
        return _floats(np, values)
    if base in _INTS:
        try:
            return np.fromiter(values, np.int64, len(values))
        except TypeError:  # a NULL: float64 with NaN, as pd.read_sql gives
            return _floats(np, values)
    if base in _TEXTS:
        # an object array, not a list: pandas infers the same dtype from it (str, or object when every value
        # is NULL) in half the time (4 text columns of 100,000 rows: 9 ms against 18 ms, measured here)
        return np.fromiter(values, object, len(values))
    return list(values)


def _floats(np: Any, values: Sequence[Any]) -> Any:
    """A float64 array of ``values``, None as NaN. ``np.fromiter`` reads the floats directly; ``np.array``
    first inspects every element for nested sequences, about twice as slow on a 50,000-row column
    (measured here)."""
    try:
        return np.fromiter(values, np.float64, len(values))
    except TypeError:  # a NULL
        return np.fromiter((_NAN if v is None else v for v in values), np.float64, len(values))
