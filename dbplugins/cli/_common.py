"""What every ``dbp`` command shares: the failure handling of the groups, the database options, and the
environment a command works in (settings.py, the connection, the models, the migrations directory)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import click

from .._session.redact import format_traceback, secrets_in_dsn, secrets_in_settings_file
from ..config import (
    ConnectionSettings,
    _importable_from,
    load_settings_module,
    mask_dsn,
    resolve,
    settings_from_module,
)
from ..embedded import embedded_allowed
from ..errors import ConfigurationError, DbpError

__all__ = [
    "_Group",
    "_db_options",
    "_verbose_option",
    "_migrations_dir_option",
    "_Env",
    "_env",
    "_warn",
    "_note",
]

F = TypeVar("F", bound=Callable[..., Any])

_VERBOSE = "dbp.verbose"
_SECRETS = "dbp.secrets"
_ENV_VARS = ("DBP_DSN", "DATABASE_URL")


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[_VERBOSE] = True
    return value


_verbose_option = click.option(
    "-v",
    "--verbose",
    is_flag=True,
    expose_value=False,
    callback=_set_verbose,
    help="Show the full traceback when something fails.",
)


def _secrets(ctx: click.Context) -> set[str]:
    found: set[str] = ctx.meta.setdefault(_SECRETS, set())
    return found


def _mask(ctx: click.Context, text: str) -> str:
    """``text`` with every secret this command has seen masked (longest first, so no fragment survives)."""
    for secret in sorted(_secrets(ctx), key=len, reverse=True):
        text = mask_dsn(text, secret)
    return text


class _Group(click.Group):
    """A group that turns any failure into one ``Error: ...`` line and exit code 1 (traceback with -v)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except Exception as exc:  # everything else: one line, no traceback unless asked
            if ctx.meta.get(_VERBOSE):
                click.echo(_mask(ctx, format_traceback(exc)), err=True)
            message = str(exc) if isinstance(exc, DbpError) else f"{type(exc).__name__}: {exc}"
            raise click.ClickException(_mask(ctx, " ".join(message.split()))) from None


def _db_options(func: F) -> F:
    """``--settings_path``, ``--dsn`` and ``--verbose``, as on every database command."""
    func = click.option(
        "--dsn",
        default=None,
        metavar="DSN",
        help="Database to use (libpq DSN or postgresql:// URL); overrides DBP_DSN and settings.py.",
    )(func)
    func = click.option(
        "--settings_path",
        "--settings-path",
        "settings_path",
        default=None,
        metavar="DIR",
        help="Directory holding settings.py (DB_CONFIG['SQL'], optional MODELS). Default: current directory.",
    )(func)
    return _verbose_option(func)


def _migrations_dir_option(func: F) -> F:
    return click.option(
        "--migrations-dir",
        "--migrations_dir",
        "migrations_dir",
        default=None,
        type=click.Path(file_okay=False, path_type=Path),
        help="Directory of your migrations. Default: migrations/ beside settings.py.",
    )(func)


class _Env:
    """What a command works with: the settings module (if any), the connection, models and migrations dir."""

    def __init__(
        self,
        ctx: click.Context,
        settings_path: str | None,
        dsn: str | None,
        migrations_dir: Path | None = None,
    ) -> None:
        self.ctx = ctx
        self.dsn = dsn
        secrets = _secrets(ctx)
        for text in (dsn, *(os.environ.get(v) for v in _ENV_VARS)):
            secrets.update(secrets_in_dsn(text))
        if os.environ.get("PGPASSWORD"):  # libpq reads it; it must not show up either
            secrets.add(os.environ["PGPASSWORD"])
        # Before loading it: if settings.py raises, its message or traceback must not show its password.
        secrets.update(secrets_in_settings_file(settings_path))
        self.module: ModuleType | None = load_settings_module(settings_path)
        if self.module is not None:
            self.base_dir = Path(str(self.module.__dbp_dir__))
        else:
            self.base_dir = Path(settings_path).expanduser().resolve() if settings_path else Path.cwd()
        configured = getattr(self.module, "MIGRATIONS_DIR", None) if self.module is not None else None
        if migrations_dir is not None:
            self.migrations_dir = migrations_dir.expanduser().resolve()
        elif configured:
            self.migrations_dir = (self.base_dir / str(configured)).resolve()
        else:
            self.migrations_dir = self.base_dir / "migrations"

    @functools.cached_property
    def settings(self) -> ConnectionSettings:
        """Connection settings by precedence: --dsn > DBP_DSN / DATABASE_URL > settings.py > embedded."""
        if self.dsn is None and self.module is not None and not any(os.environ.get(v) for v in _ENV_VARS):
            cs = settings_from_module(self.module)
        else:
            cs = resolve(dsn=self.dsn, embedded=embedded_allowed())
        if cs.password:
            _secrets(self.ctx).add(cs.password)
        return cs

    @functools.cached_property
    def user_models(self) -> list[type]:
        """The model classes of the modules named in settings.py's ``MODELS``, importable from its
        directory."""
        names = getattr(self.module, "MODELS", None) if self.module is not None else None
        if not names:
            return []
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise ConfigurationError("settings.py: MODELS must be a list of module names, e.g. ['mymodels']")
        import importlib

        found: list[type] = []
        with _importable_from(self.base_dir):
            for name in names:
                try:
                    module = importlib.import_module(str(name))
                except Exception as exc:
                    raise ConfigurationError(
                        f"cannot import model module {name!r} named in settings.py MODELS "
                        f"(looked in {self.base_dir} and sys.path): {type(exc).__name__}: {exc}"
                    ) from exc
                for value in vars(module).values():
                    # Only classes declared with @model themselves (not subclasses inheriting __table__).
                    if isinstance(value, type) and "__table__" in vars(value) and value not in found:
                        found.append(value)
        return found

    def models(self) -> list[type]:
        """The built-in models followed by the user's."""
        from ..migrations import models_of

        return models_of(self.user_models)


def _env(
    ctx: click.Context, settings_path: str | None, dsn: str | None, migrations_dir: Path | None = None
) -> _Env:
    """Build the environment, taking options given to a parent group (``dbp migrate --dsn X rollback``)."""
    parent = ctx.parent.params if ctx.parent is not None else {}
    return _Env(
        ctx,
        settings_path if settings_path is not None else parent.get("settings_path"),
        dsn if dsn is not None else parent.get("dsn"),
        migrations_dir if migrations_dir is not None else parent.get("migrations_dir"),
    )


def _warn(text: str) -> None:
    click.echo(f"Warning: {text}", err=True)


def _note(text: str) -> None:
    click.echo(f"dbp: {text}", err=True)
