"""The ``dbplugins.sql`` logger: every statement the library sends, at DEBUG, like SQLAlchemy's ``echo``.

    >>> import logging
    >>> logging.basicConfig()
    >>> logging.getLogger("dbplugins.sql").setLevel(logging.DEBUG)

Each record's message is the statement text (placeholders, never the bound values, so no secret leaks), its
row count and its duration; the record also carries them as ``statement``, ``rowcount`` and ``duration_ms``
for structured handlers. A failed statement is logged with the error's class and SQLSTATE only: the server's
message can quote a value (``Key (oid)=(...) already exists``).

It is done once, where every statement passes: :class:`LoggedCursor` is the ``cursor_factory`` of the pooled
connections, so ``execute``, ``executemany`` and ``copy`` of every module are covered, and
:class:`LoggedCommands`, mixed into the pooled connections' class, adds the transaction commands psycopg sends
itself (``BEGIN``, ``COMMIT``, ``SAVEPOINT``...). When DEBUG is off a call
costs one ``isEnabledFor`` check (a cached dict lookup) and one extra Python frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import Row

__all__ = ["LoggedCursor", "LoggedCommands", "log"]

log = logging.getLogger("dbplugins.sql")

# A statement longer than this is cut in the log (the built-in schema script is ~40 KB; a batched
# get_or_create_many statement grows with its batch). The record says how long the whole text was.
MAX_LOGGED_CHARS = 2000


def statement_text(query: Any, conn: psycopg.Connection[Any] | None) -> str:
    """The text of ``query`` as the library wrote it: placeholders, never the values bound to them."""
    try:
        if isinstance(query, sql.Composable):
            text = query.as_string(conn)
        elif isinstance(query, (bytes, bytearray, memoryview)):
            text = bytes(query).decode("utf-8", "replace")
        else:
            text = str(query)
    except Exception as exc:  # never let logging break a statement
        return f"<statement not renderable: {type(exc).__name__}>"
    text = " ".join(text.split())
    if len(text) > MAX_LOGGED_CHARS:
        text = f"{text[:MAX_LOGGED_CHARS]}... ({len(text):,} chars)"
    return text


def _emit(kind: str, query: Any, cur: psycopg.Cursor[Any], started: float, exc: BaseException | None) -> None:
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    text = statement_text(query, cur.connection)
    rowcount = cur.rowcount
    extra = {"statement": text, "rowcount": rowcount, "duration_ms": elapsed_ms, "sql_kind": kind}
    prefix = "" if kind == "execute" else f"[{kind}] "
    if exc is None:
        rows = f"{rowcount} row{'s' if rowcount != 1 else ''}, " if rowcount >= 0 else ""  # BEGIN has none
        log.debug("%s%s -- %s%.2f ms", prefix, text, rows, elapsed_ms, extra=extra)
    else:
        state = getattr(exc, "sqlstate", None)
        failed = type(exc).__name__ + (f" (SQLSTATE {state})" if state else "")
        log.debug("%s%s -- failed: %s, %.2f ms", prefix, text, failed, elapsed_ms, extra=extra)


class LoggedCommands:
    """Mixin for the pooled connection class: logs the commands psycopg sends itself (BEGIN, COMMIT, ROLLBACK,
    SAVEPOINT, RELEASE, from ``conn.transaction()``, ``commit()`` and ``rollback()``), which bypass cursors.

    They all pass through psycopg's internal ``_exec_command`` generator; if a psycopg release renames it,
    this override is simply never called and only these transaction commands drop out of the log.
    """

    def _exec_command(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        gen = super()._exec_command(command, *args, **kwargs)  # type: ignore[misc]
        if not log.isEnabledFor(logging.DEBUG):
            return gen
        return self._dbp_logged_command(command, gen)

    def _dbp_logged_command(self, command: Any, gen: Any) -> Any:
        started = time.perf_counter()
        try:
            result = yield from gen
        except BaseException as exc:
            _emit_command(command, self, started, exc)
            raise
        _emit_command(command, self, started, None)
        return result


def _emit_command(command: Any, conn: Any, started: float, exc: BaseException | None) -> None:
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    text = statement_text(command, conn)
    extra = {"statement": text, "rowcount": -1, "duration_ms": elapsed_ms, "sql_kind": "command"}
    if exc is None:
        log.debug("%s -- %.2f ms", text, elapsed_ms, extra=extra)
    else:
        log.debug("%s -- failed: %s, %.2f ms", text, type(exc).__name__, elapsed_ms, extra=extra)


class LoggedCursor(psycopg.Cursor[Row]):
    """A psycopg cursor that reports each statement to the ``dbplugins.sql`` logger at DEBUG."""

    __module__ = "dbplugins._session.sqllog"

    def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> LoggedCursor[Row]:
        if not log.isEnabledFor(logging.DEBUG):
            super().execute(query, params, prepare=prepare, binary=binary)
            return self
        started = time.perf_counter()
        try:
            super().execute(query, params, prepare=prepare, binary=binary)
        except BaseException as exc:
            _emit("execute", query, self, started, exc)
            raise
        _emit("execute", query, self, started, None)
        return self

    def executemany(self, query: Any, params_seq: Iterable[Any], *, returning: bool = False) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return super().executemany(query, params_seq, returning=returning)
        started = time.perf_counter()
        try:
            super().executemany(query, params_seq, returning=returning)
        except BaseException as exc:
            _emit("executemany", query, self, started, exc)
            raise
        _emit("executemany", query, self, started, None)

    @contextmanager
    def copy(self, statement: Any, params: Any = None, *, writer: Any = None) -> Iterator[psycopg.Copy]:
        if not log.isEnabledFor(logging.DEBUG):
            with super().copy(statement, params, writer=writer) as copy:
                yield copy
            return
        started = time.perf_counter()
        try:
            with super().copy(statement, params, writer=writer) as copy:
                yield copy
        except BaseException as exc:
            _emit("copy", statement, self, started, exc)
            raise
        _emit("copy", statement, self, started, None)
