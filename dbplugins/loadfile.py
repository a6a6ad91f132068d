"""``dbp load TABLE FILE``: a CSV or JSON-lines file into a model's table, through ``bulk_insert`` (COPY).

    dbp load detection detections.csv                      # header row; empty field = NULL
    dbp load object objects.jsonl --on-conflict update     # one JSON object per line
    zcat big.csv.gz | dbp load detection - --format csv    # stdin; .gz files are read directly too

Rows stream from the file into one ``bulk_insert`` call: constant memory, no pre-count, all or nothing. CSV
text is converted to each column's type from the model (``t``/``true``/``1`` for booleans, ISO 8601 for
timestamps, JSON or ``{a,b}`` for arrays, ``nan``/``inf`` for floats); an empty field is NULL in a nullable
column. JSON values are taken as they are, except strings for timestamp, date, uuid and bytea columns.
A progress bar (rows, rows/s) goes to stderr when it is a terminal, unless ``--silent``; the summary line to
stdout. Failures are one ``Error: ...`` line and exit code 1.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import gzip
import io
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any, cast

import click

from .errors import DataError, DbpError, UnknownColumnError
from .schema import ColumnDef, Table, table_of

__all__ = ["load_file", "find_table", "guess_format"]

Converter = Callable[[str], Any]


# -- reading text as column values ----------------------------------------------------------------------------

_TRUE = frozenset({"t", "true", "1", "y", "yes", "on"})
_FALSE = frozenset({"f", "false", "0", "n", "no", "off"})


def _to_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("not a boolean (t/true/1/yes or f/false/0/no)")


def _to_datetime(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.strip())


def _to_date(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text.strip())


def _to_time(text: str) -> datetime.time:
    return datetime.time.fromisoformat(text.strip())


def _to_bytes(text: str) -> bytes:
    body = text.strip()
    if body.startswith("\\x"):
        body = body[2:]
    return bytes.fromhex(body)


def _to_int(text: str) -> int:
    return int(text.strip())


def _to_float(text: str) -> float:
    return float(text)


def _array_of(element: Converter) -> Converter:
    """A JSON list (``["a", null]``) or a PostgreSQL array literal (``{a,"b c",NULL}``), one dimension."""

    def convert(text: str) -> list[Any]:
        body = text.strip()
        if body.startswith("["):
            items = json.loads(body)
            if not isinstance(items, list):
                raise ValueError("not a JSON list")
            return [item if item is None or not isinstance(item, str) else element(item) for item in items]
        if not (body.startswith("{") and body.endswith("}")):
            raise ValueError("not an array: give a JSON list [..] or a {..} literal")
        return [None if item is None else element(item) for item in _parse_pg_array(body[1:-1])]

    return convert


def _parse_pg_array(body: str) -> list[str | None]:
    items: list[str | None] = []
    i, n = 0, len(body)
    while i < n:
        while i < n and body[i] == " ":
            i += 1
        if i < n and body[i] == '"':
            i += 1
            out = []
            while i < n and body[i] != '"':
                if body[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(body[i])
                i += 1
            if i >= n:
                raise ValueError("unterminated quoted array element")
            items.append("".join(out))
            i += 1
            while i < n and body[i] == " ":
                i += 1
        else:
            start = i
            while i < n and body[i] != ",":
                i += 1
            raw = body[start:i].strip()
            items.append(None if raw.upper() == "NULL" else raw)
        if i < n:
            if body[i] != ",":
                raise ValueError(f"unexpected {body[i]!r} in array literal")
            i += 1
            if i == n:
                raise ValueError("array literal ends with a comma")
    return items


_SCALARS: dict[str, Converter] = {
    "smallint": _to_int,
    "integer": _to_int,
    "bigint": _to_int,
    "double precision": _to_float,
    "real": _to_float,
    "numeric": decimal.Decimal,
    "boolean": _to_bool,
    "timestamp without time zone": _to_datetime,
    "timestamp with time zone": _to_datetime,
    "date": _to_date,
    "time without time zone": _to_time,
    "bytea": _to_bytes,
    "uuid": uuid.UUID,
    "json": json.loads,
    "jsonb": json.loads,
}
_TEXT = frozenset({"character varying", "character", "text"})
# In JSON lines, these types arrive as strings; everything else is used as JSON gives it.
_FROM_JSON_STRINGS = frozenset(
    {
        "timestamp without time zone",
        "timestamp with time zone",
        "date",
        "time without time zone",
        "bytea",
        "uuid",
    }
)


def _base(sql_type: str) -> tuple[str, bool]:
    array = sql_type.endswith("[]")
    base = sql_type[:-2] if array else sql_type
    return base.split("(", 1)[0].strip(), array


def _csv_converter(col: ColumnDef) -> Converter | None:
    """Text -> value for a CSV field of ``col`` (None: keep the text)."""
    base, array = _base(col.sql_type)
    scalar = _SCALARS.get(base)
    if array:
        return _array_of(scalar or str)
    return scalar


def _json_converter(col: ColumnDef) -> Converter | None:
    """str -> value for a JSON string in ``col`` (None: keep JSON's value)."""
    base, array = _base(col.sql_type)
    if base not in _FROM_JSON_STRINGS:
        return None
    scalar = _SCALARS[base]
    return _array_of(scalar) if array else scalar


def _bad_value(table: Table, column: str, index: int, where: str, text: str, exc: Exception) -> DataError:
    sql_type = table.columns[column].sql_type
    shown = text if len(text) <= 60 else text[:57] + "..."
    return DataError(
        f"cannot read {shown!r} as {sql_type} for column {column!r} of model {table.name!r} "
        f"in row {index} ({where}): {exc}",
        model=table.name,
        column=column,
        row=index,
    )


# -- the readers ------------------------------------------------------------------------------------------------


def _csv_rows(table: Table, text: IO[str], source: str) -> Iterator[dict[str, Any]]:
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [h.strip() for h in header]
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    for name in header:
        if name not in table.columns:
            raise UnknownColumnError(
                f"{source}: header names column {name!r}, which model {table.name!r} does not have "
                f"(columns: {', '.join(table.columns)})",
                model=table.name,
                column=name,
            )
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise DbpError(f"{source}: column {dup!r} appears twice in the header", model=table.name, column=dup)
    cols = [table.columns[name] for name in header]
    plan = [
        (name, _csv_converter(col), col.nullable or _base(col.sql_type)[0] not in _TEXT)
        for name, col in zip(header, cols, strict=True)
    ]
    width = len(header)
    for index, fields in enumerate(reader):
        if not fields:
            continue  # a blank line
        if len(fields) != width:
            raise DataError(
                f"{source}: line {reader.line_num} has {len(fields)} fields, the header {width}",
                model=table.name,
                row=index,
            )
        row: dict[str, Any] = {}
        for (name, convert, empty_is_null), text_value in zip(plan, fields, strict=True):
            if text_value == "" and empty_is_null:
                row[name] = None
            elif convert is None:
                row[name] = text_value
            else:
                try:
                    row[name] = convert(text_value)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    raise _bad_value(
                        table, name, index, f"line {reader.line_num} of {source}", text_value, exc
                    ) from None
        yield row


def _jsonl_rows(table: Table, text: IO[str], source: str) -> Iterator[dict[str, Any]]:
    converters = {name: c for name, col in table.columns.items() if (c := _json_converter(col)) is not None}
    index = 0
    for line_no, line in enumerate(text, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DataError(
                f"{source}: line {line_no} is not valid JSON: {exc}", model=table.name, row=index
            ) from None
        if not isinstance(row, dict):
            raise DataError(
                f"{source}: line {line_no} is a JSON {type(row).__name__}, not an object",
                model=table.name,
                row=index,
            )
        for name, convert in converters.items():
            value = row.get(name)
            if isinstance(value, str):
                try:
                    row[name] = convert(value)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    raise _bad_value(table, name, index, f"line {line_no} of {source}", value, exc) from None
        yield row
        index += 1


# -- progress -------------------------------------------------------------------------------------------------


class _Progress:
    """Rows read, rows/s and (for a regular file) a bar by bytes read, redrawn on stderr at most 5 times/s."""

    every = 1024  # rows between clock readings
    interval = 0.2  # seconds between redraws

    def __init__(self, raw: IO[bytes], size: int | None, enabled: bool) -> None:
        self.raw = raw
        self.size = size
        self.enabled = enabled
        self.rows = 0
        self.start = time.monotonic()
        self._next = self.start + self.interval
        self._drawn = False

    def count(self, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for row in rows:
            self.rows += 1
            if self.enabled and not self.rows % self.every and time.monotonic() >= self._next:
                self.draw()
            yield row

    def draw(self) -> None:
        now = time.monotonic()
        self._next = now + self.interval
        rate = self.rows / max(now - self.start, 1e-9)
        text = f"{self.rows:,} rows  {rate:,.0f} rows/s"
        if self.size:
            try:
                done = min(self.raw.tell() / self.size, 1.0)
            except (OSError, ValueError):
                done = 0.0
            filled = int(done * 30)
            text = f"[{'#' * filled}{'-' * (30 - filled)}] {done:4.0%}  " + text
        click.echo("\r" + text + "\x1b[K", err=True, nl=False)
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            click.echo("\r\x1b[K", err=True, nl=False)


# -- the command --------------------------------------------------------------------------------------------


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def find_table(name: str, models: list[type]) -> Table:
    """The table ``name`` among ``models`` then every model registered in this process (first one wins)."""
    from . import models as _builtin  # noqa: F401 - registers the built-in models
    from .schema import registered_models

    tables: dict[str, Table] = {}
    for m in [*models, *registered_models()]:
        tables.setdefault(table_of(m).name, table_of(m))
    if name not in tables:
        raise DbpError(f"no model has table {name!r} (tables: {', '.join(sorted(tables))})")
    return tables[name]


def guess_format(path: str) -> str | None:
    """"csv" or "jsonl" from the file name (``.gz`` allowed), or None."""
    name = path.lower().removesuffix(".gz")
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return None


def _open(path: str) -> tuple[IO[bytes], IO[bytes], int | None]:
    """(the byte stream to decode, the raw file whose position drives the bar, its size or None)."""
    if path == "-":
        stdin = sys.stdin.buffer
        return stdin, stdin, None
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    size = os.fstat(raw.fileno()).st_size or None
    if path.lower().endswith(".gz"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")), raw, size
    return raw, raw, size


def load_file(
    table: Table, file: str, fmt: str, on_conflict: Any, chunk_size: int | None, silent: bool, conninfo: str
) -> None:
    """Stream ``file`` (CSV or JSON lines, ``-`` for stdin) into ``table`` with one ``bulk_insert`` call.

    A progress bar goes to stderr on a terminal unless ``silent``; a one-line summary goes to stdout.
    """
    from .connection import SQLConnection

    source = "stdin" if file == "-" else os.path.basename(file)
    stream, raw, size = _open(file)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="" if fmt == "csv" else None)
    progress = _Progress(raw, size, enabled=not silent and _stderr_is_terminal())
    reader = _csv_rows if fmt == "csv" else _jsonl_rows
    assert table.cls is not None
    db = SQLConnection()
    try:
        db.connect(dsn=conninfo, min_size=1, max_size=1)
        started = time.monotonic()
        try:
            if on_conflict == "bulk_update":  # dbp load --update
                written = db.query(table.cls).bulk_update(progress.count(reader(table, text, source)))
            else:
                written = db.query(table.cls).bulk_insert(
                    progress.count(reader(table, text, source)), on_conflict=on_conflict, chunk_size=chunk_size
                )
        finally:
            progress.close()
        elapsed = time.monotonic() - started
    finally:
        db.close()
        if file != "-":
            text.close()
            raw.close()
    read = progress.rows
    rate = read / elapsed if elapsed > 0 else 0.0
    if on_conflict == "bulk_update":
        what = f"{_rows(written)} updated"
    elif on_conflict == "update":
        what = f"{_rows(written)} inserted or changed"
    else:
        what = f"{_rows(written)} loaded"
    skipped = read - written
    tail = ""
    if skipped and on_conflict == "ignore":
        tail = f", {skipped:,} already present"
    elif skipped and on_conflict == "bulk_update":
        tail = f", {skipped:,} with no stored key"
    elif skipped and on_conflict == "update":
        tail = f", {skipped:,} unchanged"
    click.echo(
        f"{what} into {table.name} from {source} ({read:,} read{tail}) in {elapsed:.1f} s, {rate:,.0f} rows/s"
    )
