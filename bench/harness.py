"""What every ``make bench`` section shares: the timed case, the clock, the log, the bench databases and keys.

:mod:`bench.run` (the bulk loads, ``get_or_create``, the original library), :mod:`bench.reads` (light-curve
reads) and :mod:`bench.citus` (the local Citus cluster) all build :class:`Case` objects that
:func:`bench.run.run_cases` repeats; they import from here, not from each other.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

Timing = tuple[int, float]  # (items, seconds)
Row = dict[str, Any]


@dataclass
class Case:
    """One timed operation: ``run(rep)`` returns ``{metric: (items, seconds)}``; ``setup(rep)`` is untimed.

    ``warm_up=False``: the untimed warm-up repetition leaves the case out (a case that starts a fresh process
    every time has nothing to warm, and its warm-up would only cost time).
    """

    name: str
    run: Callable[[int], dict[str, Timing]]
    setup: Callable[[int], None] | None = None
    warm_up: bool = True


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)``."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def object_keys(template: Row, tag: str, rep: int, n: int) -> list[Row]:
    """``n`` object rows with oids no other case or repetition uses."""
    return [{**template, "oid": f"BENCH{tag}{rep}_{i:07d}"} for i in range(n)]


def chunks(rows: Sequence[Row], size: int) -> Iterator[Sequence[Row]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def recreate_database(server: str, name: str) -> str:
    """Drop and create database ``name`` (empty); return its DSN."""
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    return make_conninfo(server, dbname=name)


def scratch_database(prefix: str) -> tuple[str, str, str]:
    """A new database ``<prefix>_<random>`` with the built-in schema on the embedded server (started if need
    be), for the measurement scripts: ``(server DSN, name, its DSN)``; drop it with :func:`drop_database`."""
    from dbplugins._sqlfiles import schema_script
    from dbplugins.embedded import ensure_server

    server = ensure_server(announce=False)
    server.wait_ready()
    base = server.dsn()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    dsn = recreate_database(base, name)
    with psycopg.connect(dsn) as conn:
        conn.execute(schema_script())
    return base, name, dsn


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
