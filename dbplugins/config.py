"""Where the connection settings come from, resolved into one frozen :class:`ConnectionSettings`.

Precedence: an explicit argument (a config dict or a DSN) > the ``DBP_DSN`` or ``DATABASE_URL``
environment variable > ``settings.py`` (``DB_CONFIG["SQL"]``, in the current directory or ``settings_path``) >
the embedded server.

``DB_CONFIG["SQL"]`` takes the documented keys ``ENGINE, HOST, USER, PASSWORD, PORT, DB_NAME``, or a ready DSN
under ``DSN`` or ``SQLALCHEMY_DATABASE_URL`` (SQLAlchemy URLs such as ``postgresql+psycopg2://`` are
accepted). DSNs are built with libpq's own escaping, so any password works; the caller's dict is never
modified, and the password never appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote, unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import ConfigurationError

__all__ = [
    "ConnectionSettings",
    "resolve",
    "from_mapping",
    "from_dsn",
    "load_settings_module",
    "mask_dsn",
    "MAP_KEYS",
]

MAP_KEYS = frozenset({"HOST", "USER", "PASSWORD", "PORT", "DB_NAME", "ENGINE"})
_ENV_VARS = ("DBP_DSN", "DATABASE_URL")
_URL_SCHEME = re.compile(r"^(postgres(?:ql)?)(\+[a-z0-9_]+)?://", re.IGNORECASE)


@dataclass(frozen=True)
class ConnectionSettings:
    """A resolved connection target.

    ``params`` are libpq keywords (host, port, user, password, dbname, ...). ``source`` says where they came
    from (``"argument"``, ``"env:DBP_DSN"``, ``"settings:/path/settings.py"``, ``"embedded"``).
    """

    params: Mapping[str, str] = field(repr=False)
    source: str = "argument"

    @property
    def conninfo(self) -> str:
        """The libpq DSN, password included: hand it to psycopg only, never print it."""
        return make_conninfo(**self.params)

    @property
    def safe_dsn(self) -> str:
        """The DSN with the password masked, for messages and logs."""
        shown = {k: ("********" if k == "password" else v) for k, v in self.params.items()}
        return make_conninfo(**shown)

    @property
    def password(self) -> str | None:
        return self.params.get("password")

    @property
    def target(self) -> str:
        """Where these settings connect, for messages: database, user, host and port, never the password.

        What the settings leave out is filled in as libpq would (``PGHOST``, ``PGPORT``, ... then its
        defaults)::

            >>> ConnectionSettings({"host": "db", "port": "5433", "user": "u", "dbname": "ztf"}).target
            "database 'ztf' as user 'u' on db port 5433"
        """
        defaults = _libpq_defaults()
        p = self.params
        user = p.get("user") or defaults.get("user") or "?"
        dbname = p.get("dbname") or defaults.get("dbname") or user
        host = p.get("host") or p.get("hostaddr") or defaults.get("host") or "the default socket"
        port = p.get("port") or defaults.get("port") or "5432"
        where = f"{host} port {port}"
        text = f"database {dbname!r} as user {user!r} on {where}"
        if self.source != "argument":
            text += f" (settings from {self.source})"
        return text

    def url(self, scheme: str = "postgresql+psycopg") -> str:
        """A URL form (for yoyo): every part percent-escaped; other libpq keywords go in the query string.

        yoyo's ``parse_uri`` unquotes user and password but neither the host nor the database path, and passes
        query arguments to ``psycopg.connect`` as keywords. So a Unix-socket directory, a multi-host list, an
        IPv6 address or a database name that needs escaping travel in the query string, where ``parse_qsl``
        decodes them::

            >>> ConnectionSettings({"host": "/run/pg", "port": "5432", "user": "u", "dbname": "d"}).url()
            'postgresql+psycopg://u@/d?host=%2Frun%2Fpg&port=5432'
        """
        p = dict(self.params)
        user = quote(p.pop("user", ""), safe="")
        password = p.pop("password", None)
        host = p.pop("host", "")
        port = p.pop("port", "")
        dbname = p.pop("dbname", "")
        auth = user + (":" + quote(password, safe="") if password is not None else "")
        netloc = auth + "@" if auth else ""
        query: dict[str, str] = dict(p)
        if host and quote(host, safe="") != host:  # socket dir, "h1,h2", "::1": not a plain host name
            query["host"] = host
            host = ""
        netloc += host
        if port and host:
            netloc += f":{port}"
        elif port:
            query["port"] = port
        path = dbname
        if quote(dbname, safe="") != dbname:
            query["dbname"] = dbname  # overrides the (empty) path in yoyo's connect()
            path = ""
        qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.items())
        return f"{scheme}://{netloc}/{path}" + (f"?{qs}" if qs else "")

    def with_dbname(self, dbname: str) -> ConnectionSettings:
        return ConnectionSettings({**self.params, "dbname": dbname}, self.source)

    def __repr__(self) -> str:
        return f"ConnectionSettings({self.safe_dsn!r}, source={self.source!r})"

    __str__ = __repr__


def mask_dsn(text: str, password: str | None) -> str:
    """Remove ``password`` (raw and percent-encoded) from ``text``."""
    if not password:
        return text
    for form in {password, quote(password, safe=""), quote(password)}:
        text = text.replace(form, "********")
    return text


def from_dsn(dsn: str, source: str = "argument") -> ConnectionSettings:
    """Parse a libpq key/value DSN or a URL (``postgresql://``,
    ``postgresql+psycopg2://``, ``postgres://``)."""
    text = dsn.strip()
    if not text:
        raise ConfigurationError("empty DSN")
    match = _URL_SCHEME.match(text)
    if match:
        text = "postgresql://" + text[match.end():]
    try:
        params = conninfo_to_dict(text)
    except psycopg.ProgrammingError as exc:
        # libpq's parse message says what is wrong ('missing "=" after "not"'), but it may quote the DSN (a
        # URL with a bad IPv6 host is quoted whole): mask anything that looks like its password. Not chained:
        # the original message would show it unmasked in a traceback.
        reason = " ".join(str(exc).split())
        for secret in _password_candidates(text):
            reason = mask_dsn(reason, secret)
        raise ConfigurationError(f"invalid DSN from {source}: {reason}") from None
    return ConnectionSettings({k: str(v) for k, v in params.items() if v is not None}, source)


_KV_PASSWORD = re.compile(r"""password\s*=\s*('(?:[^'\\]|\\.)*'?|\S+)""", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"^[a-z0-9+.-]+://[^:/@\s]*:([^@\s]*)@", re.IGNORECASE)


def _password_candidates(text: str) -> list[str]:
    """What could be a password in an unparsable DSN: ``password=...`` values and a URL's
    ``user:password@``."""
    found = []
    for m in _KV_PASSWORD.finditer(text):
        value = m.group(1)
        found.append(value)
        found.append(value.strip("'"))
    url = _URL_PASSWORD.match(text)
    if url:
        found.append(url.group(1))
        found.append(unquote(url.group(1)))
    # Longest first, so a password is masked whole before a shorter candidate inside it.
    return sorted({f for f in found if f}, key=len, reverse=True)


def _libpq_defaults() -> dict[str, str]:
    """libpq's value for each option a DSN leaves out: environment (PGHOST...) first, then compiled-in."""
    return {
        opt.keyword.decode(): opt.val.decode()
        for opt in psycopg.pq.Conninfo.get_defaults()
        if opt.val is not None and opt.keyword != b"password"
    }


@functools.cache
def libpq_keywords() -> frozenset[str]:
    """Every connection option this libpq knows (host, sslmode, connect_timeout, application_name, ...)."""
    return frozenset(opt.keyword.decode() for opt in psycopg.pq.Conninfo.get_defaults())


def from_mapping(config: Mapping[str, Any], source: str = "argument") -> ConnectionSettings:
    """Read a db-plugins ``DB_CONFIG["SQL"]`` dict (or a dict with ``DSN``) without modifying it."""
    if not isinstance(config, Mapping):
        raise ConfigurationError(f"config must be a dict, got {type(config).__name__}")
    cfg = dict(config)  # never touch the caller's dict
    _check_keys(cfg, source)
    for key in ("DSN", "SQLALCHEMY_DATABASE_URL"):
        if cfg.get(key) and not MAP_KEYS <= cfg.keys():
            return _with_options(from_dsn(str(cfg[key]), source), cfg)
    missing = sorted(MAP_KEYS - cfg.keys())
    if missing:
        if cfg.get("DSN") or cfg.get("SQLALCHEMY_DATABASE_URL"):
            return _with_options(from_dsn(str(cfg.get("DSN") or cfg["SQLALCHEMY_DATABASE_URL"]), source), cfg)
        raise ConfigurationError(
            f"incomplete database config from {source}: missing {', '.join(missing)} "
            "(give ENGINE, HOST, USER, PASSWORD, PORT, DB_NAME, or a DSN)"
        )
    engine = str(cfg["ENGINE"]).lower()
    if not engine.startswith("postgres"):
        raise ConfigurationError(f"unsupported ENGINE {cfg['ENGINE']!r} from {source}: only postgresql")
    params = {
        "host": str(cfg["HOST"]),
        "port": str(cfg["PORT"]),
        "user": str(cfg["USER"]),
        "dbname": str(cfg["DB_NAME"]),
    }
    if cfg["PASSWORD"] is not None and cfg["PASSWORD"] != "":
        params["password"] = str(cfg["PASSWORD"])
    return _with_options(ConnectionSettings(params, source), cfg)


_DSN_KEYS = ("DSN", "SQLALCHEMY_DATABASE_URL")


def _check_keys(cfg: Mapping[str, Any], source: str) -> None:
    """Refuse a key that is neither one of db-plugins' nor a libpq option: a typo must not be ignored."""
    for key in cfg:
        if not isinstance(key, str):
            raise ConfigurationError(f"database config from {source}: key {key!r} is not a string")
        if key in MAP_KEYS or key in _DSN_KEYS:
            continue
        if key.lower() in libpq_keywords() and key in (key.lower(), key.upper()):  # sslmode or SSLMODE
            continue
        raise ConfigurationError(
            f"unknown key {key!r} in the database config from {source}: use ENGINE, HOST, USER, PASSWORD, "
            "PORT, DB_NAME, or DSN / SQLALCHEMY_DATABASE_URL, plus libpq options such as sslmode or "
            "connect_timeout"
        )


def _with_options(settings: ConnectionSettings, cfg: Mapping[str, Any]) -> ConnectionSettings:
    """Add the dict's extra libpq options (``sslmode``, ``SSLMODE``,
    ``connect_timeout``...) to ``settings``."""
    extra = {
        key.lower(): str(value)
        for key, value in cfg.items()
        if key not in MAP_KEYS and key not in _DSN_KEYS and value is not None
    }
    if not extra:
        return settings
    return ConnectionSettings({**settings.params, **extra}, settings.source)


@contextlib.contextmanager
def _importable_from(directory: Path) -> Iterator[None]:
    """Put ``directory`` first on ``sys.path`` for the duration, then restore path and module cache."""
    before_path = list(sys.path)
    before_modules = set(sys.modules)
    sys.path.insert(0, str(directory))
    try:
        yield
    finally:
        sys.path[:] = before_path
        for name in set(sys.modules) - before_modules:
            mod = sys.modules.get(name)
            origin = getattr(mod, "__file__", None) or ""
            if origin and Path(origin).resolve().is_relative_to(directory.resolve()):
                del sys.modules[name]


def load_settings_module(settings_path: str | os.PathLike[str] | None = None) -> ModuleType | None:
    """Load ``settings.py`` from the directory ``settings_path`` (default: the current directory).

    Returns ``None`` when ``settings_path`` is not given and there is no ``./settings.py``; raises
    ``ConfigurationError`` when an explicitly given directory has none. The directory does not stay on
    ``sys.path`` and no module named ``settings`` is left in ``sys.modules``.
    """
    explicit = settings_path is not None
    directory = Path(os.path.expanduser(str(settings_path))) if explicit else Path.cwd()
    if directory.is_file() and directory.name.endswith(".py"):
        path = directory
        directory = directory.parent
    else:
        path = directory / "settings.py"
    if not path.is_file():
        if explicit:
            raise ConfigurationError(f"settings file not found: {path}")
        return None
    spec = importlib.util.spec_from_file_location("_dbp_settings", path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
        raise ConfigurationError(f"cannot load settings file {path}")
    module = importlib.util.module_from_spec(spec)
    with _importable_from(directory):
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigurationError(f"error while loading {path}: {type(exc).__name__}: {exc}") from exc
    module.__dict__.setdefault("__dbp_dir__", str(directory.resolve()))
    return module


def settings_from_module(module: ModuleType, *, embedded: bool = True) -> ConnectionSettings:
    """``DB_CONFIG["SQL"]`` of a loaded settings module.

    A settings file that only names ``MODELS`` (or ``MIGRATIONS_DIR``) and no ``DB_CONFIG`` is fine: the
    database then comes from the next source, the embedded server
    (the caller has already looked at the environment).
    """
    origin = getattr(module, "__file__", "settings.py")
    db_config = getattr(module, "DB_CONFIG", None)
    if db_config is None and (hasattr(module, "MODELS") or hasattr(module, "MIGRATIONS_DIR")):
        return _embedded_settings(embedded)
    if not isinstance(db_config, Mapping) or "SQL" not in db_config:
        raise ConfigurationError(f"{origin}: DB_CONFIG must be a dict with an 'SQL' entry")
    return from_mapping(db_config["SQL"], source=f"settings:{origin}")


def resolve(
    config: Mapping[str, Any] | str | None = None,
    *,
    dsn: str | None = None,
    settings_path: str | os.PathLike[str] | None = None,
    embedded: bool = True,
) -> ConnectionSettings:
    """Resolve the connection settings by precedence: argument > environment > settings.py > embedded."""
    if dsn is not None:
        return from_dsn(dsn)
    if isinstance(config, str):
        return from_dsn(config)
    if config is not None:
        return from_mapping(config)
    for var in _ENV_VARS:
        value = os.environ.get(var)
        if value:
            return from_dsn(value, source=f"env:{var}")
    module = load_settings_module(settings_path)
    if module is not None:
        return settings_from_module(module, embedded=embedded)
    return _embedded_settings(embedded)


def _embedded_settings(embedded: bool) -> ConnectionSettings:
    """The last resort: the embedded server (started if need be), unless ``embedded`` is false."""
    if not embedded:
        raise ConfigurationError("no database configured: pass a DSN, set DBP_DSN, or write settings.py")
    from .embedded import ensure_server

    server = ensure_server()
    return ConnectionSettings(conninfo_to_dict(server.dsn()), source="embedded")  # type: ignore[arg-type]
