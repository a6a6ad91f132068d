"""Configuration: every source, precedence, escaping and password masking."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from dbplugins import ConfigurationError, SQLConnection
from dbplugins.config import from_dsn, from_mapping, load_settings_module, resolve

HOSTILE_PASSWORD = "p@ss/w:rd#%40 'x\"\\y"

DB_CONFIG = {
    "ENGINE": "postgresql",
    "HOST": "db.example.org",
    "USER": "alerce",
    "PASSWORD": HOSTILE_PASSWORD,
    "PORT": 5433,
    "DB_NAME": "ztf",
}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DBP_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)


def test_dict_keys_build_escaped_dsn_without_mutating_the_dict() -> None:
    original = copy.deepcopy(DB_CONFIG)
    settings = resolve(DB_CONFIG)
    assert DB_CONFIG == original  # db-plugins wrote SQLALCHEMY_DATABASE_URL into the caller's dict
    params = conninfo_to_dict(settings.conninfo)
    assert params == {
        "host": "db.example.org",
        "port": "5433",
        "user": "alerce",
        "dbname": "ztf",
        "password": HOSTILE_PASSWORD,
    }
    # The URL form (for yoyo) round-trips every character of the password too.
    assert from_dsn(settings.url()).params == settings.params


@pytest.mark.parametrize(
    "key", ["DSN", "SQLALCHEMY_DATABASE_URL"], ids=["DSN", "SQLALCHEMY_DATABASE_URL"]
)
def test_dict_with_a_url(key: str) -> None:
    settings = resolve({key: "postgresql+psycopg2://u:s%40cret@h:6543/d"})
    assert settings.params == {"user": "u", "password": "s@cret", "host": "h", "port": "6543", "dbname": "d"}


def test_incomplete_dict_names_missing_keys() -> None:
    with pytest.raises(ConfigurationError, match="missing DB_NAME, PORT"):
        from_mapping({"ENGINE": "postgresql", "HOST": "h", "USER": "u", "PASSWORD": "p"})


def test_non_postgres_engine_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="only postgresql"):
        from_mapping({**DB_CONFIG, "ENGINE": "sqlite"})


def test_invalid_dsn_says_why_without_echoing_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        from_dsn("host=h password='s3cr3t")
    assert "unterminated quoted string" in str(info.value)
    assert "s3cr3t" not in str(info.value)
    with pytest.raises(ConfigurationError, match='missing "=" after "not"'):
        from_dsn("not a dsn")
    # libpq quotes a URL with a broken IPv6 host whole: its password is masked.
    with pytest.raises(ConfigurationError, match=r"IPv6 host address") as info:
        from_dsn("postgresql://u:s3cr%40t@[::1/d")
    assert "s3cr" not in str(info.value)
    # no unmasked original in a traceback
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("key", ["bogus", "DB_NAM", "Host", "SCHEMA"])
def test_unknown_config_key_is_named(key: str) -> None:
    with pytest.raises(ConfigurationError, match=f"unknown key '{key}'"):
        from_mapping({**DB_CONFIG, key: "x"})
    with pytest.raises(ConfigurationError, match=f"unknown key '{key}'"):
        SQLConnection().connect({"DSN": "host=h dbname=d", key: "x"})


def test_libpq_options_in_a_config_dict_in_either_case() -> None:
    settings = from_mapping({**DB_CONFIG, "SSLMODE": "require", "connect_timeout": 3})
    assert settings.params["sslmode"] == "require" and settings.params["connect_timeout"] == "3"
    # With a DSN the options are added too (they were silently dropped before).
    settings = from_mapping(
        {"DSN": "postgresql://u@h/d", "sslmode": "verify-full", "application_name": "step"}
    )
    assert settings.params == {
        "user": "u",
        "host": "h",
        "dbname": "d",
        "sslmode": "verify-full",
        "application_name": "step",
    }


def test_target_names_database_user_host_port_not_password() -> None:
    text = resolve(DB_CONFIG).target
    assert text == "database 'ztf' as user 'alerce' on db.example.org port 5433"
    assert "p@ss" not in text


def test_precedence_argument_over_env_over_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "settings.py").write_text(
        "DB_CONFIG = {'SQL': {'ENGINE': 'postgresql', 'HOST': 'fromsettings', 'USER': 'u',"
        " 'PASSWORD': 'p', 'PORT': 5432, 'DB_NAME': 'd'}}\n"
    )
    assert resolve().params["host"] == "fromsettings"
    assert resolve().source.startswith("settings:")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@fromdatabaseurl/d")
    assert resolve().params["host"] == "fromdatabaseurl"
    monkeypatch.setenv("DBP_DSN", "host=fromenv dbname=d")
    assert resolve().params["host"] == "fromenv"
    assert resolve().source == "env:DBP_DSN"
    assert resolve(dsn="host=fromarg").params["host"] == "fromarg"
    assert resolve(DB_CONFIG).params["host"] == "db.example.org"


def test_settings_path_does_not_leak_onto_sys_path(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "helper_mod.py").write_text("HOST = 'viahelper'\n")
    (conf / "settings.py").write_text(
        "from helper_mod import HOST\nDB_CONFIG = {'SQL': {'DSN': f'postgresql://u@{HOST}/d'}}\n"
    )
    before = list(sys.path)
    assert resolve(settings_path=str(conf)).params["host"] == "viahelper"
    assert sys.path == before
    assert "settings" not in sys.modules and "helper_mod" not in sys.modules


def test_missing_settings_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="settings file not found"):
        load_settings_module(tmp_path / "nowhere")


def test_settings_without_db_config(tmp_path: Path) -> None:
    (tmp_path / "settings.py").write_text("X = 1\n")
    with pytest.raises(ConfigurationError, match="DB_CONFIG"):
        resolve()


def test_settings_with_models_but_no_db_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_dsn: str
) -> None:
    """Only MODELS: the database comes from the environment, else the embedded server; not an error."""
    (tmp_path / "settings.py").write_text("MODELS = ['mymodels']\n")
    monkeypatch.setenv("DBP_DSN", "host=fromenv dbname=d")
    assert resolve().source == "env:DBP_DSN"
    monkeypatch.delenv("DBP_DSN")
    with pytest.raises(ConfigurationError, match="no database configured"):
        resolve(embedded=False)
    if os.environ.get("DBP_TEST_DSN"):
        pytest.skip("the suite runs against DBP_TEST_DSN, not the embedded server")
    settings = resolve()
    assert settings.source == "embedded"
    with psycopg.connect(settings.conninfo) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_cli_accepts_settings_with_models_but_no_db_config(tmp_path: Path, server_dsn: str) -> None:
    from click.testing import CliRunner

    from dbplugins.cli import cli

    if os.environ.get("DBP_TEST_DSN"):
        pytest.skip("the suite runs against DBP_TEST_DSN, not the embedded server")
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "settings.py").write_text("MODELS = []\n")
    result = CliRunner().invoke(cli, ["migrate", "--list", "--settings_path", str(conf)])
    assert result.exit_code == 0, result.output
    assert "DB_CONFIG" not in result.output


def test_password_never_in_repr_or_str() -> None:
    settings = resolve(DB_CONFIG)
    for text in (repr(settings), str(settings), settings.safe_dsn):
        assert HOSTILE_PASSWORD not in text
        assert "p@ss" not in text
    db = SQLConnection(DB_CONFIG)
    assert "p@ss" not in repr(db)


def test_embedded_is_the_last_resort(server_dsn: str) -> None:
    if os.environ.get("DBP_TEST_DSN"):
        pytest.skip("the suite runs against DBP_TEST_DSN, not the embedded server")
    settings = resolve()
    assert settings.source == "embedded"
    with psycopg.connect(settings.conninfo) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_real_password_auth_with_hostile_password(server_dsn: str) -> None:
    """A role whose password holds @ / : # % ' and a backslash connects through every config path."""
    role = "dbp_cfg_user"
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(HOSTILE_PASSWORD)
            )
        )
    try:
        server = conninfo_to_dict(server_dsn)
        base = {**server, "user": role, "password": HOSTILE_PASSWORD}
        cfg = {
            "ENGINE": "postgresql",
            "HOST": base.get("host", "localhost"),
            "USER": role,
            "PASSWORD": HOSTILE_PASSWORD,
            "PORT": base.get("port", 5432),
            "DB_NAME": base.get("dbname", "postgres"),
        }
        settings = resolve(cfg)
        for target in (settings.conninfo, from_dsn(settings.url("postgresql")).conninfo):
            with psycopg.connect(target) as conn:
                assert conn.execute("select current_user").fetchone() == (role,)
        wrong = resolve({**cfg, "PASSWORD": "wrong"})
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(wrong.conninfo).close()
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
