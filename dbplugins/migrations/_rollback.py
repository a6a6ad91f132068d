"""Rolling back migrations, safely: a plan first (what, and whether it is built-in or loses data), then the
undo.

:func:`plan_rollback` says what :func:`rollback` would undo, without changing anything; ``dbp migrate
rollback`` prints it, asks for confirmation of built-in or destructive steps, then calls :func:`rollback` with
the plan it showed (``expect``), so nothing other than what was confirmed is undone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConnectionSettings
from ..errors import MigrationError
from ._yoyo import (
    DEFAULT_LOCK_TIMEOUT,
    Notify,
    _applied_hashes,
    _backend,
    _bounded,
    _failure,
    _is_builtin,
    _locked,
    _tracking,
    load,
)

__all__ = ["RollbackStep", "RollbackNotConfirmed", "destructive_reasons", "plan_rollback", "undo"]


# What makes a rollback step destructive: it removes data. Comments are stripped first; the marker render.py
# puts on data-losing steps counts as well.
# A name as SQL spells it: bare or double-quoted (generated migrations quote every identifier), maybe
# qualified.
_PART = r'(?:"(?:[^"]|"")+"|[\w$]+)'
_NAME = rf"({_PART}(?:\s*\.\s*{_PART})*)"
_DESTRUCTIVE = [
    (re.compile(rf"\bDROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?{_NAME}", re.I), "drops table {}"),
    (re.compile(rf"\bDROP\s+COLUMN\s+(?:IF\s+EXISTS\s+)?{_NAME}", re.I), "drops column {}"),
    (re.compile(r"\bDROP\s+(SCHEMA|DATABASE|OWNED)\b", re.I), "drops {}"),
    (re.compile(r"\b(TRUNCATE|DELETE\s+FROM)\b", re.I), "runs {}"),
    (re.compile(r"\bDROP\b[^;]*\b(CASCADE)\b", re.I), "drops with {}"),  # dependants go too, columns included
]
# ALTER TABLE t DROP c: COLUMN is optional in PostgreSQL.
_ALTER_TABLE = re.compile(r"\bALTER\s+TABLE\b[^;]*", re.I)
_BARE_DROP = re.compile(
    rf"\bDROP\s+(?!(?:COLUMN|CONSTRAINT|DEFAULT|NOT|IDENTITY|EXPRESSION)\b)(?:IF\s+EXISTS\s+)?{_NAME}", re.I
)


def _shown(text: str) -> str:
    """A name as the reader knows it (``"user"`` -> ``user``, ``public."We""ird"`` -> ``public.We"ird``);
    other matched words single-spaced."""
    if not re.fullmatch(_NAME, text):
        return " ".join(text.split())
    parts = re.findall(_PART, text)
    return ".".join(p[1:-1].replace('""', '"') if p.startswith('"') else p for p in parts)


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"--[^\n]*", " ", text)


def destructive_reasons(sql_text: str) -> tuple[str, ...]:
    """Why running ``sql_text`` loses data (``()`` if it does not): the tables and columns it drops, etc.

    >>> destructive_reasons("ALTER TABLE w DROP note; DROP INDEX ix_w; -- DROP TABLE x")
    ('drops column note',)
    """
    body = _strip_comments(sql_text)
    found = [
        label.format(_shown(match.group(1)))
        for pattern, label in _DESTRUCTIVE
        for match in pattern.finditer(body)
    ]
    for statement in _ALTER_TABLE.finditer(body):
        found += [f"drops column {_shown(m.group(1))}" for m in _BARE_DROP.finditer(statement.group(0))]
    reasons = list(dict.fromkeys(found))  # in order, once each
    if not reasons and re.search(r"^--\s*DESTRUCTIVE", sql_text, flags=re.M):
        reasons.append("marked DESTRUCTIVE")
    return tuple(reasons)


@dataclass(frozen=True)
class RollbackStep:
    """One migration a rollback would undo, with its rollback SQL and why it needs confirmation (if it
    does)."""

    id: str
    path: Path
    builtin: bool
    sql: str
    reasons: tuple[str, ...]

    @property
    def rollback_path(self) -> Path:
        return self.path.with_name(self.id + ".rollback.sql")

    @property
    def destructive(self) -> bool:
        return bool(self.reasons)

    @property
    def needs_confirmation(self) -> bool:
        """Built-in migrations and destructive steps are only undone when the caller said yes."""
        return self.builtin or self.destructive

    def describe(self) -> str:
        """``<id> (built-in; drops table object, ...)``: one line for listings and prompts."""
        notes = ["built-in"] if self.builtin else []
        dropped: dict[str, list[str]] = {"table": [], "column": []}
        for reason in self.reasons:
            kind = reason.split(" ")[1] if reason.startswith("drops ") else ""
            if kind in dropped:
                dropped[kind].append(reason.split(" ", 2)[2])
            else:
                notes.append(reason)
        for kind, names in dropped.items():
            if names:
                shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
                notes.append(f"drops {kind}{'s' if len(names) > 1 else ''} {shown}")
        return self.id + (f" ({'; '.join(notes)})" if notes else "")


class RollbackNotConfirmed(MigrationError):
    """A rollback would undo a built-in migration or lose data, and the caller did not allow it."""


def _step(m: Any) -> RollbackStep:
    path = Path(m.path)
    if path.suffix == ".py":  # a yoyo Python migration: its rollback is code we cannot inspect
        text = path.read_text(encoding="utf-8")
        return RollbackStep(m.id, path, _is_builtin(path), text, ("runs Python rollback code",))
    rb = path.with_name(m.id + ".rollback.sql")
    text = rb.read_text(encoding="utf-8") if rb.is_file() else ""
    return RollbackStep(m.id, path, _is_builtin(path), text, destructive_reasons(text))


def _select(candidates: Sequence[Any], count: int | None, to: str | None) -> list[Any]:
    """The first ``count`` of ``candidates`` (most recent first), or those applied after migration ``to``."""
    if to is not None and count is not None:
        raise MigrationError("give either count or to, not both")
    if to is None:
        n = 1 if count is None else count
        if n < 1:
            raise MigrationError(f"count must be at least 1, not {n}")
        return list(candidates)[:n]
    ids = [m.id for m in candidates]
    matches = [i for i in ids if i == to] or [i for i in ids if i.startswith(to)]
    if len(matches) != 1:
        known = "no applied migration" if not matches else f"{len(matches)} applied migrations"
        raise MigrationError(
            f"{known} matches {to!r}: --to takes the id of an applied migration (see dbp migrate --list)"
        )
    return list(candidates)[: ids.index(matches[0])]


def plan_rollback(
    settings: ConnectionSettings, user_dir: Path | None, *, count: int | None = None, to: str | None = None
) -> list[RollbackStep]:
    """What :func:`rollback` with the same arguments would undo, most recent first. Changes nothing.

    ``count`` (default 1) takes the most recent applied migrations; ``to`` takes every migration applied after
    the migration of that id (or unique id prefix), which itself stays applied.
    """
    from yoyo.migrations import topological_sort

    migrations = load(user_dir)
    applied = _applied_hashes(settings)
    candidates = list(reversed(list(topological_sort(m for m in migrations if m.hash in applied))))
    return [_step(m) for m in _select(candidates, count, to)]


def undo(
    settings: ConnectionSettings,
    user_dir: Path | None,
    *,
    count: int | None = None,
    to: str | None = None,
    allow_destructive: bool = True,
    expect: Sequence[str] | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    notify: Notify | None = None,
) -> list[RollbackStep]:
    """:func:`rollback`, returning the steps undone (with their SQL) rather than their ids."""
    migrations = load(user_dir)
    done: list[RollbackStep] = []
    with _bounded(settings, lock_timeout) as (bounded, watch):
        with _backend(bounded) as backend, _locked(backend, lock_timeout, notify):
            candidates = _select(list(backend.to_rollback(migrations)), count, to)  # inside the lock
            if expect is not None and [m.id for m in candidates] != list(expect):
                raise MigrationError(
                    "the applied migrations changed since the rollback was planned (another process ran "
                    "migrate or rollback); now it would undo: "
                    f"{', '.join(m.id for m in candidates) or 'nothing'}"
                )
            steps = [_step(m) for m in candidates]
            risky = [s for s in steps if s.needs_confirmation]
            if risky and not allow_destructive:
                raise RollbackNotConfirmed(
                    "refusing to roll back without confirmation: " + ", ".join(s.describe() for s in risky)
                )
            for m, step in zip(candidates, steps, strict=True):
                with _tracking() as tracker:
                    try:
                        backend.rollback_one(m)
                    except backend.DatabaseError as exc:
                        rb = Path(m.path).with_name(m.id + ".rollback.sql")
                        error = _failure(exc, f"rollback of {m.id}", str(rb), tracker, watch, lock_timeout)
                        raise MigrationError(
                            f"{error}. Nothing of it was undone; it is still applied"
                            + (
                                f"; {len(done)} migration(s) rolled back before it stay rolled back"
                                if done
                                else ""
                            ),
                            sqlstate=error.sqlstate,
                        ) from exc
                done.append(step)
    return done
