"""``dbp load TABLE FILE``: a CSV, TSV, JSON-lines or JSON-array file into a model's table, through
``bulk_insert`` (COPY).

    dbp load detection detections.csv                      # header row; unquoted empty field = NULL
    dbp load detection detections.tsv                      # tab-separated (or --delimiter ';' for CSV)
    dbp load object objects.jsonl --on-conflict update     # one JSON object per line
    dbp load object objects.json                           # a JSON array of objects (or JSON lines)
    dbp load object legacy.csv --encoding latin-1          # bytes in another encoding than UTF-8
    zcat big.csv.gz | dbp load detection - --format csv    # stdin; .gz files are read directly too

A CSV/TSV file whose header names the table's columns goes to the server as it is (``COPY ... FORMAT csv``, as
``psql \\copy``; :mod:`dbplugins._load.loadcopy`), where that gives the answer this module would give;
otherwise rows stream from the file into one ``bulk_insert`` call: constant memory, no pre-count, all or
nothing. CSV text is converted to each column's type from the model (``t``/``true``/``1`` for booleans, ISO
8601 for timestamps, JSON or ``{a,b}`` for arrays, ``nan``/``inf`` for floats). PostgreSQL's CSV rule: an
unquoted empty field is NULL, a quoted one (``""``) the empty string. JSON values are taken as they are,
except strings for timestamp, date, uuid and bytea columns. Progress goes to stderr unless ``--silent`` (a bar
on a terminal, a line every few seconds otherwise); the summary line to stdout. Failures are one ``Error:
...`` line, naming the file and line, and exit code 1. The guide is docs/load.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

import click

from .._types.schema import ColumnDef, Table, table_of
from ..errors import DataError, DbpError, UnknownColumnError, context
from . import loadcopy, loadjobs, loadsource, textformats
from .progress import DEFAULT_INTERVAL, Progress

__all__ = [
    "load_file",
    "load_into",
    "find_table",
    "guess_format",
    "check_delimiter",
    "check_encoding",
    "FORMATS",
]

Converter = Callable[[str], Any]


# -- reading text as column values ---------------------------------------------------------------------------
# Delegated to the column-type layer (ColumnDef.type, dbplugins._types.column), so a loaded value follows the
# rules of every other path: ColumnType.from_text for CSV fields, ColumnType.from_json for JSON strings.

_TEXT = frozenset({"character varying", "character", "text"})


def _base(sql_type: str) -> tuple[str, bool]:
    array = sql_type.endswith("[]")
    base = sql_type[:-2] if array else sql_type
    return base.split("(", 1)[0].strip(), array


def _csv_converter(col: ColumnDef) -> Converter | None:
    """Text -> value for a CSV field of ``col``: the column type's ``from_text``."""
    return col.type.from_text


def _json_converter(col: ColumnDef) -> Converter | None:
    """str -> value for a JSON string in ``col``: the column type's ``from_json``."""
    return col.type.from_json


def _bad_value(table: Table, column: str, index: int, where: str, text: str, exc: Exception) -> DataError:
    sql_type = table.columns[column].sql_type
    shown = text if len(text) <= 60 else text[:57] + "..."
    return DataError(
        f"cannot read {shown!r} as {sql_type} ({where}): {exc}"
        + context(model=table.name, column=column, row=index),
        model=table.name,
        column=column,
        row=index,
    )


# -- the readers ---------------------------------------------------------------------------------------------

_QUOTED_EMPTY_HINT = ' (a quoted empty field "" is an empty string, not NULL: leave the field empty for NULL)'


def _csv_rows(
    table: Table, chunks: Iterable[str], source: str, delimiter: str, seen: _Seen
) -> Iterator[dict[str, Any]]:
    records = textformats.csv_records(chunks, delimiter, source, table.name)
    try:
        _line, raw_header = next(records)
    except StopIteration:
        return
    seen.header = True
    header = [(h or "").strip() for h in raw_header]
    for name in header:
        if name not in table.columns:
            hint = ""
            if len(header) == 1 and delimiter == "," and ("\t" in name or ";" in name):
                hint = "; is the file separated by something else? give --delimiter (or --format tsv)"
            raise UnknownColumnError(
                f"{source}: header names column {name!r}, which model {table.name!r} does not have "
                f"(columns: {', '.join(table.columns)}){hint}",
                model=table.name,
                column=name,
            )
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise DbpError(f"{source}: column {dup!r} appears twice in the header", model=table.name, column=dup)
    cols = [table.columns[name] for name in header]
    # An unquoted empty field is NULL (PostgreSQL's CSV rule), except in a NOT NULL text column, where it has
    # always loaded as the empty string; a quoted "" is the empty string, read by the column's converter.
    plan = [
        (name, _csv_converter(col), not col.nullable and _base(col.sql_type)[0] in _TEXT)
        for name, col in zip(header, cols, strict=True)
    ]
    width = len(header)
    for index, (line, fields) in enumerate(records):
        if len(fields) != width:
            raise DataError(
                f"{source}: line {line} has {len(fields)} fields, the header {width}",
                model=table.name,
                row=index,
            )
        row: dict[str, Any] = {}
        for (name, convert, empty_is_text), value in zip(plan, fields, strict=True):
            if value is None:
                row[name] = "" if empty_is_text else None
            elif convert is None:
                row[name] = value
            else:
                try:
                    row[name] = convert(value)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    error = _bad_value(table, name, index, f"line {line} of {source}", value, exc)
                    if value == "":
                        error = DataError(
                            error.message + _QUOTED_EMPTY_HINT, model=table.name, column=name, row=index
                        )
                    raise error from None
        yield row


def _json_rows(
    table: Table, objects: Iterator[tuple[int, int, dict[str, Any]]], source: str
) -> Iterator[dict[str, Any]]:
    converters = {name: c for name, col in table.columns.items() if (c := _json_converter(col)) is not None}
    for line, index, row in objects:
        for name, convert in converters.items():
            value = row.get(name)
            if isinstance(value, str):
                try:
                    row[name] = convert(value)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    raise _bad_value(table, name, index, f"line {line} of {source}", value, exc) from None
        yield row


class _Seen:
    """What the reader met, for the summary of a load that found no rows."""

    def __init__(self) -> None:
        self.text = False  # any non-blank character
        self.header = False


def _read(
    table: Table, chunks: Iterable[str], fmt: str, source: str, delimiter: str | None, seen: _Seen
) -> Iterator[dict[str, Any]]:
    first, chunks = textformats.peek(chunks)
    if not first:
        return
    seen.text = True
    if fmt in ("csv", "tsv"):
        yield from _csv_rows(table, chunks, source, delimiter or ("\t" if fmt == "tsv" else ","), seen)
    elif fmt == "json" and first == "[":
        yield from _json_rows(table, textformats.json_array(chunks, source, table.name), source)
    else:
        hint = ""
        if fmt == "json":
            hint = " (a .json file holds one JSON array of objects, or one object per line)"
        yield from _json_rows(table, textformats.json_lines(chunks, source, table.name, hint=hint), source)


# -- the command --------------------------------------------------------------------------------------------

#: Seconds between progress lines on stderr when it is not a terminal (a parameter of :func:`load_file`).
PROGRESS_INTERVAL = DEFAULT_INTERVAL

FORMATS = ("csv", "tsv", "json", "jsonl")


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def _progress_file() -> TextIO:
    """Where the progress goes (a function, so a test can hand in a terminal)."""
    return sys.stderr


def find_table(name: str, models: list[type]) -> Table:
    """The table ``name`` among ``models`` then every model registered in this process (first one wins)."""
    from .. import models as _builtin  # noqa: F401 - registers the built-in models
    from .._types.schema import registered_models

    tables: dict[str, Table] = {}
    for m in [*models, *registered_models()]:
        tables.setdefault(table_of(m).name, table_of(m))
    if name not in tables:
        raise DbpError(f"no model has table {name!r} (tables: {', '.join(sorted(tables))})")
    return tables[name]


def guess_format(path: str) -> str | None:
    """One of :data:`FORMATS` from the file name (``.gz`` allowed), or None.

    ``.json`` is "json": a JSON array of objects, or (if the file does not start with ``[``) JSON lines.
    """
    name = path.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".tsv", ".tab")):
        return "tsv"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".json"):
        return "json"
    return None


def check_encoding(name: str) -> str:
    """The canonical name of the encoding ``name``; ValueError naming some good ones if Python has none."""
    return textformats.check_encoding(name)


def check_delimiter(text: str) -> str:
    """The one-character CSV delimiter ``text`` names (``\\t`` or ``tab`` for a tab); ValueError if none."""
    named = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
    delimiter = named.get(text.lower(), text)
    if len(delimiter) != 1:
        raise ValueError(f"{text!r} is not one character (for a tab, give '\\t' or tab)")
    if delimiter in '"\r\n':
        raise ValueError(f"{text!r} cannot separate fields (it is the quote or a line end)")
    return delimiter


def load_file(
    table: Table,
    file: str,
    fmt: str,
    on_conflict: Any,
    chunk_size: int | None,
    silent: bool,
    conninfo: str,
    *,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    progress_interval: float | None = None,
    jobs: int = 1,
) -> None:
    """Stream ``file`` (``-`` for stdin) in format ``fmt`` (one of :data:`FORMATS`) into ``table`` in one
    transaction.

    A CSV/TSV file whose header names the table's columns goes to the server as it is (COPY ... FORMAT csv,
    see :mod:`dbplugins._load.loadcopy`); any other file, or one the server would read differently, is read
    here and written with one ``bulk_insert`` call: the same answer either way.

    ``delimiter`` separates CSV fields (default ``,``; a tab for "tsv"); ``encoding`` decodes the bytes (a
    byte not valid in it is a DataError naming the line). Progress goes to stderr unless ``silent``: a bar on
    a terminal, else a line every ``progress_interval`` seconds (default :data:`PROGRESS_INTERVAL`). A
    one-line summary goes to stdout, its rate the bar's final one. ``jobs``: COPY streams on as many
    connections (:mod:`dbplugins._load.loadjobs`; docs/parallel.md).
    """
    from .._session.connection import SQLConnection

    if fmt not in FORMATS:
        raise DbpError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
    if delimiter is not None and fmt not in ("csv", "tsv"):
        raise DbpError(f"--delimiter applies to csv and tsv files, not {fmt}")
    try:
        encoding = check_encoding(encoding)
    except ValueError as exc:
        raise DbpError(str(exc)) from None
    db = SQLConnection()
    try:
        db.connect(dsn=conninfo, min_size=1, max_size=max(1, jobs))
        load_into(
            db,
            table,
            file,
            fmt,
            on_conflict,
            chunk_size=chunk_size,
            silent=silent,
            delimiter=delimiter,
            encoding=encoding,
            progress_interval=progress_interval,
            jobs=jobs,
        )
    finally:
        db.close()


def load_into(
    db: Any,
    table: Table,
    file: str,
    fmt: str,
    on_conflict: Any,
    *,
    chunk_size: int | None = None,
    silent: bool = True,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    progress_interval: float | None = None,
    jobs: int = 1,
) -> tuple[int, int]:
    """:func:`load_file` on a connected ``SQLConnection`` ``db``: loads, prints the summary, and returns
    ``(rows read, rows written)``. ``jobs > 1`` needs a pool of at least ``jobs`` connections."""
    twophase = loadjobs.check_jobs(db, table, on_conflict, jobs)
    source_name = "stdin" if file == "-" else os.path.basename(file)
    source = loadsource.Source(file)
    seen = _Seen()
    assert table.cls is not None
    size = source.size()
    progress = Progress(
        total=size,
        position=source.position if size else None,
        unit="rows",
        label=f"dbp load {table.name}",
        file=_progress_file(),
        enabled=not silent,
        interval=PROGRESS_INTERVAL if progress_interval is None else progress_interval,
    )
    try:
        result: tuple[int, int] | None = None
        how = loadcopy.mode()
        if how == "require" and fmt not in ("csv", "tsv"):
            raise loadcopy.Fallback(f"{fmt} is read in Python")
        if fmt in ("csv", "tsv") and how != "off" and on_conflict != "bulk_update":
            try:
                sep = delimiter or ("\t" if fmt == "tsv" else ",")
                if jobs > 1:
                    result = loadjobs.copy_load_jobs(
                        db.current_session(), source, table, sep, encoding, on_conflict, progress.advance,
                        jobs=jobs, twophase=twophase,
                    )
                else:
                    result = loadcopy.copy_load(
                        db.session.atomic, source, table, sep, encoding, on_conflict, progress.advance
                    )
            except loadcopy.Fallback:
                if how == "require":
                    raise
                progress.done = 0
        if result is not None:
            read, written = result
            progress.done = read
            seen.text = seen.header = True
        else:
            stream = source.open()
            chunks = textformats.decoded(stream, encoding, source_name, table.name)
            rows = progress.count(_read(table, chunks, fmt, source_name, delimiter, seen))
            if on_conflict == "bulk_update":  # dbp load --update
                written = db.query(table.cls).bulk_update(rows)
            else:
                written = db.query(table.cls).bulk_insert(
                    rows, on_conflict=on_conflict, chunk_size=chunk_size, parallel=jobs
                )
    finally:
        progress.close()
        source.close()
    _summary(table, source_name, on_conflict, progress, written, seen)
    return progress.done, written


def _summary(
    table: Table, source: str, on_conflict: Any, progress: Progress, written: int, seen: _Seen
) -> None:
    read = progress.done
    if read == 0:
        if not seen.text:
            why = "the file is empty"
        elif seen.header:
            why = "the file has a header and no rows"
        else:
            why = "the file holds no rows"
        click.echo(f"0 rows loaded into {table.name} from {source}: {why}")
        return
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
        f"{what} into {table.name} from {source} ({read:,} read{tail}) in {progress.elapsed:.1f} s, "
        f"{progress.rate:,.0f} rows/s"
    )
