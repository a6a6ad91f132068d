"""Bounded lock waits for migration DDL, and naming the session that blocks it.

An ``ALTER TABLE`` waits for an ACCESS EXCLUSIVE lock; behind it, every plain ``SELECT`` on that table queues
too. So a migration must not wait forever behind another session's open transaction: every connection a
migration opens carries PostgreSQL's ``lock_timeout`` (set through libpq ``options``, so the connections yoyo
opens for each migration get it as well), and each one is tagged with an ``application_name`` of its own.

While the migration runs, :class:`LockWatch` polls ``pg_locks`` / ``pg_blocking_pids()`` /
``pg_stat_activity`` from a separate connection for tagged sessions waiting on a lock, and keeps the last
:class:`Blocker` it saw, so that when the server cancels the statement (SQLSTATE 55P03) the error can name the
table and the blocking process: its pid, user, state and statement.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import psycopg

from ..config import ConnectionSettings

__all__ = ["Blocker", "LockWatch", "with_lock_timeout", "LOCK_NOT_AVAILABLE"]

log = logging.getLogger("dbplugins.migrations")

#: SQLSTATE of "canceling statement due to lock timeout".
LOCK_NOT_AVAILABLE = "55P03"

_WAITING = """
SELECT w.relation::regclass::text, w.locktype, w.mode, b.pid, b.usename, b.state,
       left(regexp_replace(b.query, '\\s+', ' ', 'g'), 120),
       extract(epoch FROM now() - coalesce(b.xact_start, b.query_start))::float8
FROM pg_stat_activity me
JOIN pg_locks w ON w.pid = me.pid AND NOT w.granted
CROSS JOIN LATERAL unnest(pg_blocking_pids(me.pid)) AS bp(pid)
JOIN pg_stat_activity b ON b.pid = bp.pid
WHERE me.application_name = %s
ORDER BY b.pid
LIMIT 1
"""


@dataclass(frozen=True)
class Blocker:
    """A session that held a lock a migration statement waited for."""

    table: str | None
    locktype: str
    mode: str
    pid: int
    user: str | None
    state: str | None
    query: str | None
    seconds: float | None

    def describe(self) -> str:
        """One line: the table, the lock wanted, and who holds it doing what."""
        what = f"table {self.table}" if self.table else f"a {self.locktype} lock"
        doing = self.state or "unknown state"
        if self.seconds is not None:
            doing += f" for {self.seconds:.0f} s"
        if self.query:
            doing += f", last statement {self.query!r}"
        return (
            f"{what} ({self.mode} wanted) is locked by process {self.pid} (user {self.user or '?'}, {doing})"
        )


def with_lock_timeout(settings: ConnectionSettings, seconds: float, tag: str) -> ConnectionSettings:
    """``settings`` whose every connection has ``lock_timeout`` = ``seconds`` and ``application_name`` =
    ``tag``."""
    ms = max(1, round(seconds * 1000))
    params = dict(settings.params)
    options = params.get("options", "")
    params["options"] = f"{options} -c lock_timeout={ms}".strip()
    params["application_name"] = tag
    return ConnectionSettings(params, settings.source)


class LockWatch:
    """Context manager: a thread that records who blocks the sessions tagged ``tag`` (see the module doc).

    Best effort: if its connection cannot be opened, nothing is recorded and the migration runs as it would.
    """

    def __init__(self, settings: ConnectionSettings, tag: str, interval: float = 0.1) -> None:
        self.settings = settings
        self.tag = tag
        self.interval = interval
        self.blocker: Blocker | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def new_tag() -> str:
        return f"dbp-migrate-{uuid.uuid4().hex[:12]}"

    def __enter__(self) -> LockWatch:
        try:
            self._conn: psycopg.Connection[Any] | None = psycopg.connect(
                self.settings.conninfo, autocommit=True, connect_timeout=10, application_name="dbp-lock-watch"
            )
        except psycopg.Error as exc:
            log.debug("lock watch disabled: %s", type(exc).__name__)
            self._conn = None
            return self
        self._thread = threading.Thread(target=self._run, name="dbp-lock-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._conn is not None
        while not self._stop.wait(self.interval):
            try:
                row = self._conn.execute(_WAITING, [self.tag]).fetchone()
            except psycopg.Error:
                return
            if row:
                self.blocker = Blocker(*row)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._conn is not None:
            self._conn.close()
