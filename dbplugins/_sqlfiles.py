"""The hand-written SQL shipped with the package: ``sql/schema/*.sql`` (DDL) and ``sql/queries/*.sql``.

In a source checkout the files live in the repository's top-level ``sql/``; the wheel carries them as
``dbplugins/_sql``. Named statements in ``sql/queries`` follow aiosql's convention::

    -- name: object_aggregates
    -- Recompute an object's aggregates from its detections.
    UPDATE object SET ... WHERE oid = %(oid)s;

Names must be unique and bodies non-empty; a violation raises ``ConfigurationError`` naming file and line.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigurationError

__all__ = ["sql_dir", "schema_files", "schema_script", "NamedQuery", "queries", "query", "package_migrations_dir"]


def _data_dir(packaged: str, source: str) -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / packaged, here.parent / source):
        if candidate.is_dir():
            return candidate
    raise ConfigurationError(f"cannot find the package's {source}/ directory (looked in {here})")


def sql_dir() -> Path:
    """The directory holding ``schema/`` and ``queries/``."""
    return _data_dir("_sql", "sql")


def package_migrations_dir() -> Path:
    """The directory of the built-in schema's versioned yoyo migrations."""
    return _data_dir("_migrations", "migrations")


def schema_files() -> list[Path]:
    """The DDL files in the order they must run (file names carry a numeric prefix for FK order)."""
    directory = sql_dir() / "schema"
    return sorted(directory.glob("*.sql")) if directory.is_dir() else []


def schema_script() -> str:
    """All of ``sql/schema`` as one script."""
    return "\n".join(p.read_text() for p in schema_files())


@dataclass(frozen=True)
class NamedQuery:
    """One statement of ``sql/queries``: its name, docstring, SQL and where it was defined."""

    name: str
    doc: str
    sql: str
    path: Path
    line: int


_NAME = re.compile(r"^--\s*name:\s*([A-Za-z_][\w-]*)\s*$")


def _parse(path: Path) -> list[NamedQuery]:
    out: list[NamedQuery] = []
    current: tuple[str, int] | None = None
    doc: list[str] = []
    body: list[str] = []

    def flush() -> None:
        if current is None:
            return
        text = "\n".join(body).strip()
        if not text:
            raise ConfigurationError(f"empty query for: {current[0]} at {path}:{current[1]}")
        out.append(NamedQuery(current[0].replace("-", "_"), "\n".join(doc).strip(), text, path, current[1]))

    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        m = _NAME.match(line.strip())
        if m:
            flush()
            current, doc, body = (m.group(1), lineno), [], []
        elif current is not None and not body and line.strip().startswith("--"):
            doc.append(line.strip()[2:].strip())
        elif current is not None:
            body.append(line)
    flush()
    return out


@functools.cache
def queries() -> dict[str, NamedQuery]:
    """Every named statement of ``sql/queries``, by name."""
    found: dict[str, NamedQuery] = {}
    directory = sql_dir() / "queries"
    for path in sorted(directory.glob("*.sql")) if directory.is_dir() else []:
        for q in _parse(path):
            if q.name in found:
                other = found[q.name]
                raise ConfigurationError(
                    f"duplicate query name {q.name!r} at {q.path}:{q.line} (first at {other.path}:{other.line})"
                )
            found[q.name] = q
    return found


def query(name: str) -> NamedQuery:
    """The named statement ``name``; ``ConfigurationError`` if there is none."""
    try:
        return queries()[name]
    except KeyError:
        raise ConfigurationError(f"no query named {name!r} in {sql_dir() / 'queries'}") from None
