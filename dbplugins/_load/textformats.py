"""Reading the text formats of ``dbp load``: decoding with line numbers, CSV that keeps ``""`` apart from
NULL, JSON lines and streamed JSON arrays. Nothing here knows about tables; :mod:`dbplugins._load.files` maps
the values.

Every error is a :class:`~dbplugins.errors.DataError` whose message starts with the file name and names the
line.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import re
from collections import deque
from collections.abc import Iterable, Iterator
from typing import IO, Any

from ..errors import DataError

__all__ = ["decoded", "split_lines", "peek", "csv_records", "json_lines", "json_array", "check_encoding"]

#: Bytes asked of the file per read. 64 KiB: large enough that decoding and splitting run in C, small enough
#: that a slow pipe (``tail -f | dbp load``) is not held back (``read1`` returns what is there).
CHUNK = 64 * 1024
#: The largest element of a JSON array (one row): the reader holds at most about twice this much text.
MAX_JSON_ELEMENT = 64 * 1024 * 1024
#: The longest CSV field, in characters (Python's ``csv`` module stops at 131,072 by default; PostgreSQL reads
#: fields up to 1 GB). The COPY path of ``dbp load`` leaves any record this long to this reader, so both
#: agree.
MAX_CSV_FIELD = 64 * 1024 * 1024


def check_encoding(name: str) -> str:
    """The codec's canonical name for ``name`` (``latin1`` -> ``iso8859-1``); ValueError if there is none."""
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise ValueError(f"unknown encoding {name!r} (try utf-8, latin-1, cp1252, utf-16)") from None


def decoded(stream: IO[bytes], encoding: str, source: str, model: str | None = None) -> Iterator[str]:
    """The text of ``stream`` in pieces of about :data:`CHUNK` characters.

    A byte sequence that is not valid in ``encoding`` raises a DataError naming ``source``, the line and the
    byte, and suggesting ``--encoding``. With UTF-8 a leading byte-order mark is dropped.
    """
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    read = getattr(stream, "read1", stream.read)
    utf8 = codecs.lookup(encoding).name == "utf-8"
    newlines = 0  # newlines in the text given out so far: the line of a bad byte is counted from here
    first = True
    while True:
        data = read(CHUNK)
        final = not data
        try:
            text = decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            # exc.object is what the codec saw (its pending bytes + data); a newline byte is never part of a
            # multi-byte character in the ASCII-compatible encodings, so counting them gives the line.
            line = newlines + exc.object[: exc.start].count(b"\n") + 1
            bad = exc.object[exc.start : exc.end][:4].hex(" ")
            raise DataError(
                f"{source}: line {line} is not valid {encoding} (byte {bad}: {exc.reason}); give the file's "
                f"encoding with --encoding, for example --encoding latin-1 or --encoding cp1252",
                model=model,
            ) from None
        if text:
            if first and utf8 and text.startswith("\ufeff"):
                text = text[1:]
            first = False
            newlines += text.count("\n")
            yield text
        if final:
            return


def peek(chunks: Iterable[str]) -> tuple[str, Iterator[str]]:
    """(the first non-blank character or ``""`` for a blank text, the same chunks from the start)."""
    seen: list[str] = []
    it = iter(chunks)
    for chunk in it:
        seen.append(chunk)
        stripped = chunk.lstrip()
        if stripped:
            return stripped[0], _chain(seen, it)
    return "", iter(seen)


def _chain(head: list[str], tail: Iterator[str]) -> Iterator[str]:
    yield from head
    yield from tail


def split_lines(chunks: Iterable[str]) -> Iterator[str]:
    """Lines (ending with ``\\n``, the last one maybe not) of a text given in pieces.

    Only ``\\n`` ends a line (``\\r\\n`` keeps its ``\\r`` for the CSV reader to drop), unlike
    ``str.splitlines``, which would also cut at ``\\x1c``, ``\\u2028``... inside a field.
    """
    pending: list[str] = []
    for chunk in chunks:
        parts = chunk.split("\n")
        if len(parts) == 1:
            pending.append(chunk)  # a long line: joined once, when it ends (no quadratic concatenation)
            continue
        head = parts[0]
        if pending:
            pending.append(head)
            head = "".join(pending)
            pending.clear()
        yield head + "\n"
        for part in parts[1:-1]:
            yield part + "\n"
        if parts[-1]:
            pending.append(parts[-1])
    if pending:
        yield "".join(pending)


# -- CSV -----------------------------------------------------------------------------------------------------


def csv_records(
    chunks: Iterable[str], delimiter: str, source: str, model: str | None = None
) -> Iterator[tuple[int, list[str | None]]]:
    """``(line, fields)`` for each record of a CSV text; ``line`` is where the record ends.

    PostgreSQL's CSV rule: an unquoted empty field is ``None`` (NULL), a quoted one (``""``) the empty string.
    Python's ``csv`` reader gives ``""`` for both: ``QUOTE_NOTNULL`` exists since 3.12, but its reader honours
    it only from 3.13 (CPython gh-113732; 3.12's reader ignores it, gh-116633), and we support 3.10. So the
    lines the reader takes are kept until their records are done, and for a record holding both an empty
    field and the characters ``""`` (rare), :func:`quoted_fields` finds which fields were quoted. The lines
    reach the reader through ``itertools.chain`` (no Python call per line): a record's lines are found again
    from ``reader.line_num``. Blank lines are skipped.
    """
    held: deque[tuple[int, list[str], bool]] = deque()  # (number of the first line, the lines, has "")
    state = {"done": 0, "quotes": False}  # lines of finished records; any held chunk holds ""

    def line_lists() -> Iterator[list[str]]:
        first = 0
        for chunk_lines, quotes in _line_lists(chunks):
            while held and held[0][0] + len(held[0][1]) <= state["done"]:
                held.popleft()  # lines of finished records are not needed any more
            held.append((first, chunk_lines, quotes))
            state["quotes"] = any(q for _f, _l, q in held)
            first += len(chunk_lines)
            yield chunk_lines

    if csv.field_size_limit() < MAX_CSV_FIELD:
        csv.field_size_limit(MAX_CSV_FIELD)  # process-wide: only ever raised
    reader = csv.reader(
        itertools.chain.from_iterable(line_lists()),
        delimiter=delimiter,
        quotechar='"',
        doublequote=True,
        strict=False,
    )
    while True:
        try:
            fields: list[Any] = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{source}: line {reader.line_num}: {exc}", model=model) from None
        start, state["done"] = state["done"], reader.line_num
        if not fields:
            continue
        if "" in fields:
            quoted: list[bool] | None = None
            if state["quotes"]:
                record = _record_text(_lines(held, start, reader.line_num))
                if '""' in record:
                    quoted = quoted_fields(record, delimiter)
                    if len(quoted) != len(fields):  # cannot happen for what csv accepted; never guess NULL
                        raise DataError(
                            f"{source}: line {reader.line_num}: cannot tell quoted fields apart", model=model
                        )
            if quoted is None:
                fields = [None if f == "" else f for f in fields]
            else:
                fields = [None if f == "" and not q else f for f, q in zip(fields, quoted, strict=True)]
        yield reader.line_num, fields


def _line_lists(chunks: Iterable[str]) -> Iterator[tuple[list[str], bool]]:
    """The lines ending in each chunk (cut as :func:`split_lines` cuts them), and whether they hold ``""``."""
    pending: list[str] = []
    for chunk in chunks:
        parts = chunk.split("\n")
        if len(parts) == 1:
            pending.append(chunk)
            continue
        quotes = '""' in chunk
        if pending:
            pending.append(parts[0])
            parts[0] = "".join(pending)
            quotes = quotes or '""' in parts[0]  # a "" cut in two by the chunk boundary
            pending = []
        last = parts.pop()
        if last:
            pending.append(last)
        yield [part + "\n" for part in parts], quotes
    if pending:
        text = "".join(pending)
        yield [text], '""' in text


def _lines(held: Iterable[tuple[int, list[str], bool]], start: int, end: int) -> list[str]:
    """Lines ``start`` (0-based) up to ``end`` from the held chunks."""
    out: list[str] = []
    for first, lines, _quotes in held:
        if first + len(lines) > start and first < end:
            out.extend(lines[max(start - first, 0) : end - first])
    return out


def _record_text(lines: list[str]) -> str:
    text = "".join(lines)
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    return text


def quoted_fields(record: str, delimiter: str, quote: str = '"') -> list[bool]:
    """For each field of one CSV record (without its line end): whether it starts with a quote.

    Follows the states of CPython's ``_csv.c`` (non-strict): a quote opens a quoted field only as the field's
    first character; inside, a doubled quote is a quote; after the closing quote, text up to the delimiter
    belongs to the field; in an unquoted field a quote is an ordinary character.
    """
    flags: list[bool] = []
    i, n = 0, len(record)
    while True:
        if i < n and record[i] == quote:
            flags.append(True)
            i += 1
            while True:
                j = record.find(quote, i)
                if j < 0:
                    return flags  # unterminated: the rest of the record is this field
                if j + 1 < n and record[j + 1] == quote:
                    i = j + 2
                    continue
                i = j + 1
                break
        else:
            flags.append(False)
        j = record.find(delimiter, i)
        if j < 0:
            return flags
        i = j + 1


# -- JSON ----------------------------------------------------------------------------------------------------


def json_lines(
    chunks: Iterable[str], source: str, model: str | None = None, *, hint: str = ""
) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """``(line, index, object)`` for each non-blank line of a JSON-lines text."""
    index = 0
    for line_no, line in enumerate(split_lines(chunks), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise DataError(
                f"{source}: line {line_no} is not valid JSON: {exc}{hint}", model=model, row=index
            ) from None
        if not isinstance(value, dict):
            more = (
                " (for a file holding one JSON array, use --format json)" if isinstance(value, list) else ""
            )
            raise DataError(
                f"{source}: line {line_no} is a JSON {_kind(value)}, not an object{more}",
                model=model,
                row=index,
            )
        yield line_no, index, value
        index += 1


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__


_WS = re.compile(r"[ \t\n\r]*")


class _Buffer:
    """The unread text of a stream, with the line number of any position in it."""

    def __init__(self, chunks: Iterable[str]) -> None:
        self.chunks = iter(chunks)
        self.text = ""
        self.pos = 0
        self.eof = False
        self._line = 1  # the line of text[_counted]
        self._counted = 0

    def line(self, at: int) -> int:
        if at >= self._counted:
            self._line += self.text.count("\n", self._counted, at)
        else:
            self._line -= self.text.count("\n", at, self._counted)
        self._counted = at
        return self._line

    def more(self, at_least: int = 1) -> bool:
        """Drop the text before ``pos``, append at least ``at_least`` more characters; False at the end."""
        self.line(self.pos)
        pieces = [self.text[self.pos :]]
        got = 0
        for chunk in self.chunks:
            pieces.append(chunk)
            got += len(chunk)
            if got >= at_least:
                break
        else:
            self.eof = True
        self.text = "".join(pieces)
        self.pos = self._counted = 0
        return got > 0

    def skip_blank(self) -> str:
        """The next non-blank character (``""`` at the end), with ``pos`` on it."""
        while True:
            blank = _WS.match(self.text, self.pos)
            assert blank is not None  # the pattern matches the empty string
            self.pos = blank.end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            if self.eof or not self.more():
                return ""


def json_array(
    chunks: Iterable[str], source: str, model: str | None = None
) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """``(line, index, object)`` for each element of a text holding one JSON array of objects, streamed.

    Memory stays about one element (the text is decoded a chunk at a time, each element with
    ``JSONDecoder.raw_decode`` as soon as it is complete); an element over :data:`MAX_JSON_ELEMENT` characters
    is refused rather than read without bound.
    """
    buf = _Buffer(chunks)
    decoder = json.JSONDecoder()
    if buf.skip_blank() != "[":
        raise DataError(f"{source}: line {buf.line(buf.pos)} does not start a JSON array ([)", model=model)
    buf.pos += 1
    index = 0
    while True:
        char = buf.skip_blank()
        if char == "]" and index == 0:
            buf.pos += 1
            break
        if char == "":
            after = f" after element {index - 1}" if index else ""
            raise DataError(f"{source}: the JSON array is not closed (no ]){after}", model=model)
        start_line = buf.line(buf.pos)
        while True:
            try:
                value, end = decoder.raw_decode(buf.text, buf.pos)
                break
            except json.JSONDecodeError as exc:
                size = len(buf.text) - buf.pos
                if buf.eof or size > MAX_JSON_ELEMENT or not buf.more(max(size, 1)):
                    if size > MAX_JSON_ELEMENT:
                        reason = f"longer than {MAX_JSON_ELEMENT:,} characters"
                    else:
                        at = buf.line(exc.pos)
                        reason = f"not valid JSON: {exc.msg}" + (f" at line {at}" if at != start_line else "")
                    raise DataError(
                        f"{source}: element {index} of the JSON array (line {start_line}) is {reason}",
                        model=model,
                        row=index,
                    ) from None
        if not isinstance(value, dict):
            raise DataError(
                f"{source}: element {index} of the JSON array (line {start_line}) is a JSON {_kind(value)}, "
                "not an object",
                model=model,
                row=index,
            )
        buf.pos = end
        yield start_line, index, value
        index += 1
        char = buf.skip_blank()
        if char == ",":
            buf.pos += 1
        elif char == "]":
            buf.pos += 1
            break
        else:
            found = f"found {char!r}" if char else "the file ends"
            raise DataError(
                f"{source}: line {buf.line(buf.pos)}: expected , or ] after element {index - 1} of the JSON "
                f"array, {found}",
                model=model,
                row=index - 1,
            )
    if buf.skip_blank():
        raise DataError(
            f"{source}: line {buf.line(buf.pos)}: text after the end of the JSON array", model=model
        )
