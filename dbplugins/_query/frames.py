"""``Query.to_dataframe()``: a pandas DataFrame of the matching rows, built column by column.

Fetching rows costs a Python object per value (psycopg makes each float, int and bool), and then a frame costs
a pass over them again: 100,000 detections (30 columns) took 0.2 s to fetch as tuples and as long again to
turn into columns (measured here). So the numeric columns do not come as values at all: the query selects
them first, packed into one ``bytea`` per row by the server's binary send functions (``float8send``,
``int8send``, ...: the exact IEEE / two's-complement bytes, big-endian; see
:func:`dbplugins._query.shapes.packed_sql`), and numpy reads the joined bytes as a structured array, one
vectorised step per column. The other columns (text, timestamps, numeric, arrays, ...) come as values and
go to pandas as lists, as before.

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

__all__ = ["frame_layout", "packed_frame", "plain_frame"]

_FLOATS = frozenset({"double precision", "real"})
_INTS = frozenset({"smallint", "integer", "bigint"})
_CODES = {
    "double precision": "f8",
    "real": "f4",
    "smallint": "i8",
    "integer": "i8",
    "bigint": "i8",
    "boolean": "b",
}
# the numpy fields of each code, as shapes.packed_sql lays them out
_FIELDS: dict[str, list[str]] = {"f8": [">f8"], "f4": [">f4"], "i8": [">i8", ">i2"], "b": [">i2"]}

_NAN = float("nan")


def frame_layout(table: Table, columns: Sequence[str], distinct: bool) -> tuple[tuple[str, str], ...]:
    """The ``(column, code)`` pairs of ``columns`` to fetch packed (none for a ``distinct()`` query)."""
    if distinct:
        return ()
    packed = []
    for name in columns:
        sql_type = table.columns[name].sql_type
        code = None if sql_type.endswith("[]") else _CODES.get(base_type(sql_type))
        if code is not None:
            packed.append((name, code))
    return tuple(packed)


def packed_frame(
    pd: Any,
    table: Table,
    columns: Sequence[str],
    packed: tuple[tuple[str, str], ...],
    plain: Sequence[str],
    rows: list[Any],
) -> Any:
    """The frame of ``rows``: each row the packed ``bytea`` first, then the ``plain`` columns (the rest of
    ``columns``, in their order)."""
    import numpy as np

    if not rows:
        return plain_frame(pd, table, columns, [])
    fields: list[tuple[str, str]] = []
    for k, (_, code) in enumerate(packed):
        fields.extend((f"c{k}_{j}", fmt) for j, fmt in enumerate(_FIELDS[code]))
    by_column = list(zip(*rows, strict=True))
    grid = np.frombuffer(b"".join(by_column[0]), dtype=np.dtype(fields))
    data: dict[str, Any] = {}
    for k, (name, code) in enumerate(packed):
        values = grid[f"c{k}_0"]
        if code in ("f8", "f4"):  # a float4 widened exactly, as psycopg's binary loader does
            data[name] = values.astype(np.float64)
        elif code == "i8":
            nulls = grid[f"c{k}_1"] != 0
            if nulls.any():
                floats = values.astype(np.float64)
                floats[nulls] = np.nan
                data[name] = floats
            else:
                data[name] = values.astype(np.int64)
        elif (values == 2).any():  # a boolean column holding a NULL: pandas infers from the values
            data[name] = [None if v == 2 else v == 1 for v in values.tolist()]
        else:
            data[name] = values == 1
    for name, column in zip(plain, by_column[1:], strict=True):
        data[name] = _column(np, pd, table.columns[name].sql_type, column)
    return pd.DataFrame(data, columns=list(columns))


def plain_frame(pd: Any, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> Any:
    """The frame of ``rows``, tuples of ``columns`` (no packed part)."""
    import numpy as np

    names = list(columns)
    if not rows:
        return pd.DataFrame({n: pd.Series(dtype=object) for n in names}, columns=names)
    data = {
        name: _column(np, pd, table.columns[name].sql_type, values)
        for name, values in zip(names, zip(*rows, strict=True), strict=True)
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
    return list(values)


def _floats(np: Any, values: Sequence[Any]) -> Any:
    """A float64 array of ``values``, None as NaN. ``np.fromiter`` reads the floats directly; ``np.array``
    first inspects every element for nested sequences, about twice as slow on a 50,000-row column
    (measured here)."""
    try:
        return np.fromiter(values, np.float64, len(values))
    except TypeError:  # a NULL
        return np.fromiter((_NAN if v is None else v for v in values), np.float64, len(values))
