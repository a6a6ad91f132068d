"""ScopedSession: one :class:`Session` per live thread (or per ``scope_func()`` value),
for ``use_scoped=True``.

A thread's session lives in a ``threading.local``; when the thread ends, its open transaction is rolled back
and its connection returned to the pool (docs/sessions.md).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from .compat import ScopedCompat
from .session import Conn, Session

__all__ = ["ScopedSession"]

log = logging.getLogger("dbplugins.session")


class _ThreadSlot:
    """Holds one thread's scoped session in a ``threading.local``.

    Python drops a thread's locals when the thread ends (before ``join()`` returns), and with them this slot:
    its finalizer rolls the session's open transaction back and returns its connection to the pool. A session
    keyed by ``threading.get_ident()`` outlived its thread,
    and a new thread given the same ident inherited it.
    """

    def __init__(self, registry: ScopedSession, session: Session) -> None:
        self.session = session
        self.finalizer = weakref.finalize(self, _thread_ended, weakref.ref(registry), session)
        self.finalizer.atexit = False  # at interpreter exit the pool goes away anyway


def _thread_ended(registry_ref: weakref.ref[ScopedSession], session: Session) -> None:
    try:
        registry = registry_ref()
        if registry is not None:
            registry._forget(session)
        if session.in_transaction:
            log.info("a thread ended with an uncommitted transaction: rolled back")
        session._end()
    except Exception as exc:  # a finalizer must not raise; the pool replaces a connection left broken
        log.warning("closing the session of an ended thread failed: %s", type(exc).__name__)


class ScopedSession(ScopedCompat):
    """A registry of sessions, one per scope: per live thread by default, or per ``scope_func()`` value.

    ``db.session`` is this object when ``use_scoped=True``; every method acts on the current scope's session.
    A thread's session lives in a ``threading.local``: a new thread never inherits another's (Python reuses
    thread idents), and when a thread ends its uncommitted transaction is rolled back and its connection
    returned to the pool. ``scope_func()`` sessions live until ``remove()`` in their scope
    (or ``db.close()``).
    """

    def __init__(
        self,
        factory: Callable[[], Session],
        scope_func: Callable[[], Hashable] | None = None,
    ) -> None:
        self._factory = factory
        self._scope = scope_func
        self._sessions: dict[Hashable, Session] = {}  # scope_func() value -> session
        self._local = threading.local()  # .slot: the current thread's _ThreadSlot
        self._live: dict[int, Session] = {}  # id -> every session not yet removed, for remove_all()
        self._finalizers: dict[int, weakref.finalize[Any, Any]] = {}  # id -> its thread's end hook
        self._lock = threading.Lock()

    def current(self) -> Session:
        """The session of the current scope, created on first use."""
        if self._scope is None:
            slot: _ThreadSlot | None = getattr(self._local, "slot", None)
            if slot is None or slot.session._closed:
                slot = self._local.slot = _ThreadSlot(self, self._new())
                with self._lock:
                    self._finalizers[id(slot.session)] = slot.finalizer
            return slot.session
        key = self._scope()
        with self._lock:
            session = self._sessions.get(key)
            if session is None or session._closed:
                session = self._sessions[key] = self._factory()
                self._live[id(session)] = session
        return session

    def _new(self) -> Session:
        session = self._factory()
        with self._lock:
            self._live[id(session)] = session
        return session

    def _forget(self, session: Session) -> None:
        with self._lock:
            self._live.pop(id(session), None)
            self._finalizers.pop(id(session), None)

    def __call__(self) -> Session:
        return self.current()

    def remove(self) -> None:
        """Close and forget the current scope's session."""
        session: Session | None
        if self._scope is None:
            slot: _ThreadSlot | None = self._local.__dict__.pop("slot", None)
            session = None
            if slot is not None:
                slot.finalizer.detach()
                session = slot.session
        else:
            key = self._scope()
            with self._lock:
                session = self._sessions.pop(key, None)
        if session is not None:
            self._forget(session)
            session.remove()

    def remove_all(self) -> None:
        """Close every scope's session (``db.close()``): their uncommitted transactions are rolled back."""
        with self._lock:
            sessions = list(self._live.values())
            finalizers = list(self._finalizers.values())
            self._live, self._sessions, self._finalizers = {}, {}, {}
        for finalizer in finalizers:
            finalizer.detach()  # nothing left for the threads' ends to do (and the sessions can be freed)
        for session in sessions:
            session._end()

    # Delegation: the unit-of-work API of the current scope's session.
    def commit(self) -> None:
        self.current().commit()

    def rollback(self) -> None:
        self.current().rollback()

    def close(self) -> None:
        self.current().close()

    def transaction(self) -> contextlib.AbstractContextManager[Session]:
        return self.current().transaction()

    def connection(self) -> contextlib.AbstractContextManager[Conn]:
        return self.current().connection()

    def atomic(self, *, persist: bool = True) -> contextlib.AbstractContextManager[Conn]:
        return self.current().atomic(persist=persist)

    def begin(self) -> Conn:
        return self.current().begin()

    @property
    def in_transaction(self) -> bool:
        return self.current().in_transaction

    @property
    def in_explicit_transaction(self) -> bool:
        return self.current().in_explicit_transaction

    def __repr__(self) -> str:
        return f"<dbplugins.ScopedSession {len(self._live)} scope(s)>"
