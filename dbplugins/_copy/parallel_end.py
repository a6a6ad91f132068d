"""How a parallel call ends (see :mod:`dbplugins._copy.parallel`): the failure that stops its streams, the
wait, the commit of every stream (``COMMIT PREPARED`` after each prepared, or stream after stream) or the roll
back of all, and the error raised. ``bulk_insert(..., parallel=N)``
(:class:`dbplugins._copy.parallel_call._Call`) and ``dbp load --jobs N`` (:mod:`dbplugins._load.loadjobs`)
share it."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Literal

import psycopg
from psycopg import sql

from ..errors import ConnectionError, DbpError, wrap_db_error
from .parallel_stream import _POLL, _Aborted, _StreamBase

if TYPE_CHECKING:
    from typing import Any

    from .._session.session import Session

log = logging.getLogger("dbplugins.bulk")

# After a failure: how long the other streams get to stop once their statements are cancelled (seconds).
_STOP_WAIT = 30.0
# Tries (each bounded by the pool's timeout) to reach the server to resolve the prepared transactions.
_RESOLVE_TRIES = 3


class _Coordinator:
    """One parallel call's streams and how it ends: the failure that stops them, the wait, the commit (every
    stream prepared then COMMIT PREPARED, or stream after stream) or the roll back. ``bulk_insert(...,
    parallel=N)`` (:class:`_Call`) and ``dbp load --jobs N`` (:mod:`dbplugins._load.loadjobs`) deal their
    input differently and end the same way.

    ``label`` names the call in messages (``bulk_insert(parallel=3)``); ``table`` is the model's table;
    ``action`` prefixes a server error's message; ``rerun`` is what the user runs again to complete a call
    that failed between its commits.
    """

    def __init__(
        self,
        table: str,
        mode: str,
        twophase: bool,
        parallel: int,
        label: str,
        *,
        action: str = "bulk_insert",
        rerun: str = "call",
    ) -> None:
        self.table = table
        self.action = action  # the prefix of a wrapped server error's message
        self.rerun = rerun  # what the user runs again to complete a partial call: "call", "load"
        self.mode = mode
        self.twophase = twophase
        self.parallel = parallel
        self.label = label
        self.gid_prefix = f"dbp-copy-{uuid.uuid4().hex}"
        self.abort = threading.Event()
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.failed_stream: _StreamBase | None = None
        self.streams: list[_StreamBase] = []

    def failed(self, stream: _StreamBase | None, exc: BaseException) -> None:
        """Record the first real failure of the call (an _Aborted is the echo of another) and stop
        everything."""
        with self.lock:
            if self.error is None and not isinstance(exc, _Aborted):
                self.error = exc
                self.failed_stream = stream
        self.abort.set()

    def wait(self) -> None:
        """Wait for every stream; after a failure, cancel the statements of those still running.

        A stream still running ``_STOP_WAIT`` seconds after its cancel (a server that stopped answering) is
        left behind: its connection is not given back to the pool, and the call fails without waiting longer.
        """
        deadline: float | None = None
        for stream in self.streams:
            while stream.thread.is_alive():
                stream.thread.join(_POLL)
                if self.abort.is_set() and deadline is None:
                    self._cancel()
                    deadline = time.monotonic() + _STOP_WAIT
                if deadline is not None and time.monotonic() > deadline and stream.thread.is_alive():
                    log.warning(
                        "%s: COPY stream %d did not stop after its cancel", self.label, stream.number + 1
                    )
                    stream.stuck = True
                    self.failed(
                        stream,
                        ConnectionError(
                            f"{self.label}: stream {stream.number + 1} did not stop "
                            f"within {_STOP_WAIT:g} s of its cancel",
                            model=self.table,
                        ),
                    )
                    break

    def _cancel(self) -> None:
        for stream in self.streams:
            if stream.thread.is_alive() and stream.busy and not stream.conn.closed:
                with contextlib.suppress(Exception):
                    stream.conn.cancel_safe(timeout=5.0)

    # -- ending ----------------------------------------------------------------------------------------------

    def commit(self, session: Session) -> int:
        """All streams did their work: make it durable, all of it (2PC) or stream after stream."""
        active = [s for s in self.streams if s.began]
        done: list[_StreamBase] = []
        if self.twophase:
            pending = [s.gid for s in active if s.gid is not None]
            try:
                self._resolve(session, "COMMIT PREPARED", pending)
            except DbpError as exc:
                raise type(exc)(
                    f"{exc.message}; every stream of this {self.label} was "
                    "prepared, so the call is decided and its rows will land: COMMIT PREPARED the "
                    f"transactions still listed in pg_prepared_xacts with gid LIKE '{self.gid_prefix}-%'",
                    model=self.table,
                ) from exc
            return sum(s.count for s in self.streams)
        for stream in active:
            try:
                stream.conn.execute("COMMIT")
            except psycopg.Error as exc:
                err = wrap_db_error(exc, model=self.table, action=self.action)
                self.roll_back(session)  # the streams after this one
                raise self._partial(err, done) from exc
            done.append(stream)
        return sum(s.count for s in self.streams)

    def roll_back(self, session: Session) -> str:
        """Undo every stream that did not commit; return what the error should add about the outcome."""
        for stream in self.streams:
            conn = stream.conn
            if stream.stuck or stream.released or conn.closed or conn.broken:
                continue
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
        if not self.twophase:
            return "nothing was written"
        gids = [s.gid for s in self.streams if s.gid is not None]
        if not gids:
            return "nothing was written"
        try:
            self._resolve(session, "ROLLBACK PREPARED", gids)
        except DbpError as exc:
            return (
                f"the streams' prepared transactions could not be rolled back ({exc.message}): nothing of "
                "this call is visible, but ROLLBACK PREPARED the transactions listed in pg_prepared_xacts "
                f"with gid LIKE '{self.gid_prefix}-%'"
            )
        return "nothing was written"

    def _resolve(self, session: Session, command: _Resolution, gids: list[str]) -> None:
        """``COMMIT PREPARED`` / ``ROLLBACK PREPARED`` each of ``gids`` that the server holds.

        Prepared transactions outlive connections and server restarts: after a lost connection a fresh one
        from the pool looks them up in ``pg_prepared_xacts`` (a PREPARE whose answer was lost may or may not
        have happened) and finishes the job.
        """
        last: BaseException | None = None
        for _ in range(_RESOLVE_TRIES):
            self.release_broken(session)
            idle = [s.conn for s in self.streams if s.usable()]
            try:
                if idle:
                    _finish_prepared(idle[0], command, gids)
                else:
                    with session.connection() as conn:
                        _finish_prepared(conn, command, gids)
                return
            except (psycopg.Error, DbpError) as exc:
                last = exc
        assert last is not None
        if isinstance(last, DbpError):
            raise last
        raise wrap_db_error(last, model=self.table, action=command) from last

    def release_broken(self, session: Session) -> None:
        """Give the pool back the streams' dead connections now (it replaces them), so a fresh one can be
        had."""
        for stream in self.streams:
            if not stream.released and not stream.stuck and (stream.conn.closed or stream.conn.broken):
                stream.release(session)

    #: Errors of a stream given back as they are (the caller of the call handles them).
    passthrough: tuple[type[BaseException], ...] = ()

    def final_error(self, outcome: str) -> BaseException:
        """The error the call raises, after its streams were rolled back (``outcome`` says how that went)."""
        error = self.error
        assert error is not None
        stream = self.failed_stream
        if stream is None or isinstance(error, self.passthrough):  # the caller's own input raised
            return error
        if isinstance(error, psycopg.Error):
            error = wrap_db_error(error, model=self.table, action=self.action)
        if isinstance(error, DbpError):
            return self.located(error, stream, outcome)
        if isinstance(error, Exception):
            return DbpError(
                f"{self.label}: stream {stream.number + 1} failed: {type(error).__name__}: {error} "
                f"({outcome})",
                model=self.table,
            )
        return error

    def located(self, err: DbpError, stream: _StreamBase, outcome: str) -> DbpError:
        """``err`` of ``stream``, its message completed with the stream and the outcome."""
        return type(err)(
            f"{err.message} ({self.label}, stream {stream.number + 1} failed; {outcome})",
            model=err.model,
            column=err.column,
            row=err.row,
            sqlstate=err.sqlstate,
            constraint=err.constraint,
        )

    def _partial(self, err: DbpError, committed: list[_StreamBase]) -> DbpError:
        """``err`` saying which streams committed (without prepared transactions) and that a re-run
        completes."""
        rows = sum(s.count for s in committed)
        note = (
            f'; {self.label} ran without prepared transactions (the server has '
            f'max_prepared_transactions = 0): {len(committed)} of its streams had committed ({rows} rows) '
            f'when this happened, the others rolled back; running the same {self.rerun} again completes it, '
            f'each row exactly once (on_conflict="{self.mode}" skips or updates what is there)'
        )
        return type(err)(
            err.message + note,
            model=err.model,
            column=err.column,
            row=err.row,
            sqlstate=err.sqlstate,
            constraint=err.constraint,
        )


_Resolution = Literal["COMMIT PREPARED", "ROLLBACK PREPARED"]


def _finish_prepared(conn: psycopg.Connection[Any], command: _Resolution, gids: list[str]) -> None:
    cur = conn.execute("SELECT gid FROM pg_prepared_xacts WHERE gid = ANY(%s)", (gids,))
    held = {row[0] for row in cur.fetchall()}
    for gid in gids:
        if gid in held:
            conn.execute(sql.SQL("{} {}").format(sql.SQL(command), sql.Literal(gid)))
