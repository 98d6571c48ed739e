"""Settings: declared once, validated at start, errors name the setting."""

from __future__ import annotations

import pytest

from klasblik.server.settings import SETTINGS, SettingsError, load_settings

BASE = {"KLASBLIK_ENROLLMENT_TOKEN": "t"}


def _error(env=None, **kw):
    with pytest.raises(SettingsError) as info:
        load_settings(env={**BASE, **(env or {})}, **kw)
    return str(info.value)


def test_defaults_load():
    """With only a token, every setting has its documented default."""
    s = load_settings(env=BASE)
    for setting in SETTINGS:
        if setting.name != "enrollment_token":
            assert getattr(s, setting.name) == setting.default, setting.name


@pytest.mark.parametrize(
    "env,words",
    [
        ({"KLASBLIK_PORT": "eighty"}, ["port", "KLASBLIK_PORT", "whole number", "eighty"]),
        ({"KLASBLIK_PORT": "70000"}, ["port", "between"]),
        ({"KLASBLIK_DEMO": "maybe"}, ["demo", "true or false"]),
        ({"KLASBLIK_DATABASE_URL": "mysql://x"}, ["database_url", "sqlite+aiosqlite"]),
        ({"KLASBLIK_BLOB_STORE": "s3:bucket"}, ["blob_store", "file:PATH"]),
        ({"KLASBLIK_BLOB_STORE": "azure:c"}, ["azure_connection_string", "required"]),
        ({"KLASBLIK_ENCODING": "gif"}, ["encoding", "jpeg"]),
        ({"KLASBLIK_TRUSTED_PROXIES": "10.0.0.0/8 nonsense"}, ["trusted_proxies", "nonsense"]),
        (
            {"KLASBLIK_GRID_WIDTH": "1900", "KLASBLIK_FOCUS_WIDTH": "800"},
            ["grid_width", "focus_width"],
        ),
        ({"KLASBLIK_ENROLLMENT_TOKEN": ""}, ["enrollment_token", "required outside demo mode"]),
    ],
)
def test_bad_values_name_the_setting(env, words):
    """Each bad value is refused with a message naming the setting and the problem."""
    message = _error(env)
    for word in words:
        assert word in message


def test_demo_mode_makes_its_own_token():
    """Demo mode needs no configured token: it makes a random one."""
    s = load_settings(env={"KLASBLIK_DEMO": "1"})
    assert s.enrollment_token.startswith("demo-") and len(s.enrollment_token) > 15


def test_config_file_and_precedence(tmp_path):
    """The TOML file sets values; the environment beats it; overrides beat both."""
    cfg = tmp_path / "k.toml"
    cfg.write_text('port = 9001\ngrid_quality = 40\ntrusted_proxies = ["10.0.0.1"]\n')
    s = load_settings(env={**BASE, "KLASBLIK_GRID_QUALITY": "45"}, config_file=cfg)
    assert (s.port, s.grid_quality, s.trusted_proxies) == (9001, 45, ("10.0.0.1/32",))
    s = load_settings(env=BASE, config_file=cfg, overrides={"port": 9002})
    assert s.port == 9002


def test_config_file_problems(tmp_path):
    """A missing file, broken TOML, unknown names and wrong types are each explained."""
    assert "does not exist" in _error(config_file=tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("port = \n")
    assert "not valid TOML" in _error(config_file=bad)
    bad.write_text("prot = 8080\n")
    assert "unknown setting(s): prot" in _error(config_file=bad)
    bad.write_text('port = "8080x"\n')
    assert "port" in _error(config_file=bad)
    bad.write_text("demo = 1\n")
    assert "demo" in _error(config_file=bad)


def test_secrets_are_hidden_in_descriptions():
    """describe() never shows a secret's value."""
    s = load_settings(env={**BASE, "KLASBLIK_AZURE_CONNECTION_STRING": "AccountKey=sekrit"})
    shown = s.describe()
    assert shown["enrollment_token"] == "***"
    assert "sekrit" not in repr(shown)


def test_typed_settings_match_the_declarations():
    """Settings has one typed attribute per declared setting, in the same order, and
    load_settings gives each a value of that type (no untyped attribute look-ups)."""
    import dataclasses
    import typing

    from klasblik.server.settings import SETTINGS, Settings

    fields = dataclasses.fields(Settings)
    assert [f.name for f in fields] == [s.name for s in SETTINGS]
    hints = typing.get_type_hints(Settings)
    loaded = load_settings(env={}, overrides={"enrollment_token": "t"})
    for s in SETTINGS:
        expected = typing.get_origin(hints[s.name]) or hints[s.name]
        assert isinstance(s.default, expected), s.name
        assert isinstance(getattr(loaded, s.name), expected), s.name
    assert not hasattr(Settings, "__getattr__")
    with pytest.raises(AttributeError):
        loaded.no_such_setting  # noqa: B018


def test_secret_from_a_file(tmp_path):
    """KLASBLIK_<SECRET>_FILE reads the secret from a file, without its final newline;
    setting the variable as well is refused; a missing file names the setting."""
    token = tmp_path / "token"
    token.write_text("s3cr3t/+=\n")
    s = load_settings(env={"KLASBLIK_ENROLLMENT_TOKEN_FILE": str(token)})
    assert s.enrollment_token == "s3cr3t/+="
    both = {"KLASBLIK_ENROLLMENT_TOKEN_FILE": str(token), "KLASBLIK_ENROLLMENT_TOKEN": "t"}
    with pytest.raises(SettingsError, match="not both"):
        load_settings(env=both)
    with pytest.raises(SettingsError, match="enrollment_token.*cannot read"):
        load_settings(env={"KLASBLIK_ENROLLMENT_TOKEN_FILE": str(tmp_path / "missing")})
    # only secrets have a _FILE form
    assert load_settings(env={**BASE, "KLASBLIK_PORT_FILE": str(token)}).port == 8080


@pytest.mark.parametrize("password", ["a/b@c:d%e+f=", "plain", "with space?#&"])
def test_passwords_are_encoded_into_their_urls(password):
    """database_password and redis_password reach the drivers intact, whatever characters
    a generated key has: the server percent-encodes them into the URL."""
    from redis.connection import parse_url
    from sqlalchemy.engine import make_url

    s = load_settings(
        env={
            **BASE,
            "KLASBLIK_DATABASE_URL": "postgresql+asyncpg://klasblik@db.example:5432/klasblik?ssl=require",
            "KLASBLIK_DATABASE_PASSWORD": password,
            "KLASBLIK_REDIS_URL": "rediss://cache.example:10000/0",
            "KLASBLIK_REDIS_PASSWORD": password,
        }
    )
    url = make_url(s.database_url)
    assert (url.username, url.password, url.host, url.database) == (
        "klasblik",
        password,
        "db.example",
        "klasblik",
    )
    assert url.query == {"ssl": "require"}
    redis = parse_url(s.redis_url)
    assert (redis["password"], redis["host"], redis["port"]) == (password, "cache.example", 10000)
    assert s.replace(port=9000).database_url == s.database_url  # loading again keeps it
    assert password not in str(s.describe())


def test_a_password_in_two_places_is_refused():
    """A URL with a password of its own plus the password setting is refused by name."""
    env = {
        **BASE,
        "KLASBLIK_DATABASE_URL": "postgresql+asyncpg://k:old@h/db",
        "KLASBLIK_DATABASE_PASSWORD": "new",
    }
    assert "database_password" in _error(env)


def test_azure_account_url_or_connection_string():
    """blob_store = azure:… takes an account URL (managed identity) or a connection
    string, never both; the URL must be https."""
    s = load_settings(
        env={
            **BASE,
            "KLASBLIK_BLOB_STORE": "azure:klasblik",
            "KLASBLIK_AZURE_ACCOUNT_URL": "https://acct.blob.core.windows.net/",
        }
    )
    assert s.azure_account_url.startswith("https://")
    both = {
        "KLASBLIK_BLOB_STORE": "azure:k1",
        "KLASBLIK_AZURE_ACCOUNT_URL": "https://acct.blob.core.windows.net/",
        "KLASBLIK_AZURE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=a",
    }
    assert "not both" in _error(both)
    assert "https" in _error({"KLASBLIK_AZURE_ACCOUNT_URL": "http://acct.example/"})
    assert "log_format" in _error({"KLASBLIK_LOG_FORMAT": "xml"})
