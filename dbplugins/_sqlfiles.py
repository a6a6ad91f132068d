"""The hand-written SQL shipped with the package: the built-in schema's DDL (``sql/schema/*.sql``) and its
versioned migrations (``migrations/``).

In a source checkout the files live in the repository's top-level ``sql/`` and ``migrations/``; the wheel
carries them as ``dbplugins/_sql`` and ``dbplugins/_migrations``.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigurationError

__all__ = ["sql_dir", "schema_files", "schema_script", "package_migrations_dir"]


def _data_dir(packaged: str, source: str) -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / packaged, here.parent / source):
        if candidate.is_dir():
            return candidate
    raise ConfigurationError(f"cannot find the package's {source}/ directory (looked in {here})")


def sql_dir() -> Path:
    """The directory holding ``schema/``."""
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
