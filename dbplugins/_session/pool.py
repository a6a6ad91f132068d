"""The pool behind ``SQLConnection``: the connect-time probe, failure messages, and a pool whose timeout names
its cause.

A connection that cannot be made fails with ``ConnectionFailedError``: one line naming database, user, host
and port (never the password) and the server's or libpq's reason, with the psycopg error chained.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .. import config as _config
from ..errors import ConnectionFailedError
from .sqllog import LoggedCommands

__all__ = ["probe", "failure_message", "Failures", "recording_class", "Pool", "close_pool"]


class Failures:
    """The outcome of the pool's latest attempt to open a connection: its error, or None if it succeeded."""

    def __init__(self) -> None:
        self.error: psycopg.Error | None = None


def recording_class(base: type[psycopg.Connection[Any]], failures: Failures) -> type[psycopg.Connection[Any]]:
    """A subclass of the pool's connection class that notes in ``failures`` whether each new connection failed
    (and logs its transaction commands to ``dbplugins.sql``)."""

    class PooledConnection(LoggedCommands, base):  # type: ignore[valid-type,misc]
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            try:
                conn = super().connect(conninfo, **kwargs)
            except psycopg.Error as exc:
                failures.error = exc
                raise
            failures.error = None
            return conn

    PooledConnection.__qualname__ = PooledConnection.__name__ = base.__name__
    return PooledConnection


class Pool(ConnectionPool[Any]):
    """The pool, whose timeout names its cause when it waited because new connections kept failing.

    After ``connect()`` succeeded the server can still go away, or a password change lock the application out:
    the pool then retries in the background and a caller waits for its ``timeout``. That wait ends in
    ``ConnectionFailedError`` with the server's reason when the pool's latest attempt to connect failed,
    rather than in a bare ``PoolTimeout``; a pool that is merely busy still raises ``PoolTimeout``.
    """

    dbp_settings: _config.ConnectionSettings
    dbp_failures: Failures

    def getconn(self, timeout: float | None = None) -> Any:
        try:
            return super().getconn(timeout)
        except PoolTimeout:
            failure = self.dbp_failures.error
            if failure is None:
                raise
            waited = self.timeout if timeout is None else timeout
            raise ConnectionFailedError(
                f"{failure_message(self.dbp_settings, failure)} (no pooled connection within {waited:g} s)"
            ) from failure


def close_pool(pool: ConnectionPool[Any], pid: int) -> None:
    """Close a pool that its SQLConnection left open (the finalizer of :meth:`SQLConnection.connect`).

    Only in the process that opened it: a forked child that exits must not close its parent's connections
    (each close sends the server a Terminate message on the socket both processes share).
    """
    if os.getpid() != pid:
        return
    # RuntimeError: in the rare case the collector runs this in one of the pool's own workers, which cannot
    # join itself; the pool is marked closed by then, so its __del__ stays quiet.
    with contextlib.suppress(RuntimeError, psycopg.Error):
        pool.close(timeout=5.0)


def probe(
    settings: _config.ConnectionSettings,
    connection_class: type[psycopg.Connection[Any]],
    kwargs: Mapping[str, Any],
) -> None:
    """Open and close one connection as the pool will (same class and keywords); raise
    ``ConnectionFailedError`` saying why it failed."""
    try:
        connection_class.connect(settings.conninfo, **{**kwargs, "autocommit": True}).close()
    except psycopg.Error as exc:
        raise ConnectionFailedError(failure_message(settings, exc)) from exc


# libpq's framing around the server's reason: 'connection failed: connection to server on socket
# "/x/.s.PGSQL.1" failed: FATAL:  password authentication failed for user "u"'. We name the target ourselves,
# once.
_FRAMING = re.compile(
    r'(?:connection (?:failed|is bad): )'
    r'|(?:connection to server (?:on socket "[^"]*"|at "[^"]*"(?: \([^)]*\))?, port \d+) failed: )'
    r"|(?:(?:FATAL|ERROR):\s+)"
)


def failure_message(settings: _config.ConnectionSettings, exc: BaseException) -> str:
    """One line: which server, database and user could not be reached, and the server's
    (or libpq's) reason."""
    reasons: list[str] = []
    for line in str(exc).splitlines():
        line = _FRAMING.sub("", line).strip().lstrip("-").strip()
        if not line or line.startswith("multiple connection attempts failed"):
            continue
        if line.startswith("Is the server running"):  # libpq's hint for refused ports and missing sockets
            line = f"({line[0].lower()}{line[1:]})"
        if line not in reasons:
            reasons.append(line)
    reason = " ".join(reasons) or type(exc).__name__
    return _config.mask_dsn(f"cannot connect to {settings.target}: {reason}", settings.password)
