"""Settings: environment, file, precedence, validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from meshauth.config import Settings
from meshauth.config_checks import async_database_url
from meshauth.config_display import mask_url
from meshauth.config_load import ConfigError, load_settings


def test_defaults_use_embedded_sqlite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without DATABASE_URL the database is a SQLite file under var/."""
    for name in ("DATABASE_URL", "MESHAUTH_DATABASE_URL", "MESHAUTH_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    s = Settings(var_dir=tmp_path)
    assert s.sqlalchemy_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/meshauth.db"


def test_unprefixed_platform_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """DATABASE_URL and REDIS_URL are honoured without the prefix."""
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db/x")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    s = Settings()
    assert s.sqlalchemy_url == "postgresql+asyncpg://u@db/x"
    assert s.redis_url == "redis://cache:6379/0"


def test_file_then_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The TOML file sets values; the environment overrides it."""
    conf = tmp_path / "meshauth.toml"
    conf.write_text('audience = "orders"\naccess_token_ttl = 120\n')
    monkeypatch.setenv("MESHAUTH_CONFIG_FILE", str(conf))
    monkeypatch.setenv("MESHAUTH_ACCESS_TOKEN_TTL", "60")
    s = Settings()
    assert s.audience == "orders"
    assert s.access_token_ttl == 60


def test_missing_config_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """A named config file that does not exist is an error, not silently ignored."""
    monkeypatch.setenv("MESHAUTH_CONFIG_FILE", "/nonexistent/meshauth.toml")
    with pytest.raises(FileNotFoundError):
        Settings()


def test_settings_are_frozen() -> None:
    """Settings cannot change after start."""
    s = Settings()
    with pytest.raises(ValidationError):
        s.audience = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"leeway": 3600},
        {"signing_alg": "HS256"},
        {"issuer": "ftp://x"},
        {"issuer": "http://x\n.evil"},  # a control character would go into every token and the metadata
        {"issuer": "http://x y"},
        {"session_cookie_name": "a;b=c\r\nSet-Cookie: x"},  # not an RFC 6265 token: breaks Set-Cookie
        {"session_cookie_name": ""},
        {"session_cookie_name": "a b"},
        {"policy_public_url": "ftp://pdp"},
        {"policy_public_url": "https://pdp/?q=1"},
        {"policy_public_url": "https://pdp/#x"},
        {"policy_public_url": "pdp.mesh:8090"},
        {"redis_prefix": "nocolon"},
        {"unknown": 1},
        {"bus_flush_gap": -0.01},
        {"bus_flush_gap": 5.5},
        {"bus_flush_gap": "soon"},
        {"bus_flush_gap": float("nan")},
        {"policy_warm_window": -0.1},
        {"policy_warm_window": 5.5},
        {"policy_warm_window": float("nan")},
        {"policy_warm_window": float("inf")},
        {"policy_warm_window": "soon"},
    ],
)
def test_invalid_settings(kwargs: dict[str, object]) -> None:
    """Out-of-range or unknown settings are refused with a validation error."""
    with pytest.raises(ValidationError):
        Settings(**kwargs)  # type: ignore[arg-type]


def test_policy_public_url_is_kept_without_its_trailing_slash() -> None:
    assert Settings(policy_public_url="https://pdp.mesh.example/").policy_public_url == "https://pdp.mesh.example"
    assert Settings().policy_public_url is None


def test_admin_token_is_hidden_in_repr() -> None:
    """The admin token never shows in logs."""
    assert "topsecret" not in repr(Settings(admin_token="topsecret"))


def test_unsupported_database_scheme() -> None:
    """Only PostgreSQL and SQLite URLs are accepted."""
    with pytest.raises(ValueError, match="mysql"):
        async_database_url("mysql://x")


def test_database_url_is_checked_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unsupported DATABASE_URL fails when the settings load, not later when an engine is built."""
    monkeypatch.setenv("DATABASE_URL", "mysql://db/app")
    with pytest.raises(ValidationError, match="mysql"):
        Settings()


def test_redis_url_scheme_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """REDIS_URL must be a URL a Redis client can use."""
    monkeypatch.setenv("REDIS_URL", "cache:6379")
    with pytest.raises(ValidationError, match="redis://"):
        Settings()
    monkeypatch.setenv("REDIS_URL", "valkey://cache:6379")
    assert Settings().redis_url == "valkey://cache:6379"


def test_load_settings_lists_every_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_settings raises ConfigError with one line per problem, each naming its variable."""
    monkeypatch.delenv("MESHAUTH_CONFIG_FILE", raising=False)
    monkeypatch.setenv("MESHAUTH_AUTH_PORT", "abc")
    monkeypatch.setenv("MESHAUTH_COOKIE_SAMESITE", "sometimes")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert len(caught.value.problems) == 2
    assert any("MESHAUTH_AUTH_PORT='abc'" in p and "0 to 65535" in p for p in caught.value.problems)
    assert any("MESHAUTH_COOKIE_SAMESITE" in p and "lax, strict, none" in p for p in caught.value.problems)


def test_load_settings_names_an_explicit_argument() -> None:
    """A bad keyword argument is reported under its field name."""
    with pytest.raises(ConfigError, match="leeway=3600"):
        load_settings(leeway=3600)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:pw@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("redis://:pw@cache/0", "redis://:***@cache/0"),
        ("postgresql://app@db/x", "postgresql://app@db/x"),
        ("sqlite:///var/m.db", "sqlite:///var/m.db"),
    ],
)
def test_passwords_in_urls_are_masked(url: str, shown: str) -> None:
    """Only the password of a URL is hidden."""
    assert mask_url(url) == shown


def test_worker_metrics_host_must_name_an_address() -> None:
    """Empty (or blank) would bind every interface: every interface is asked for as 0.0.0.0."""
    for host in ("", "  "):
        with pytest.raises(ConfigError, match="worker_metrics_host="):
            load_settings(worker_metrics_host=host)
    assert load_settings(worker_metrics_host="0.0.0.0").worker_metrics_host == "0.0.0.0"
    assert load_settings().worker_metrics_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MESHAUTH_AUDIENCE", b"mesh\xffauth"),
        ("MESHAUTH_SESSION_COOKIE_NAME", b"\xe9"),
        ("MESHAUTH_TRUSTED_PROXIES", b'["10.0.0.0/8", "\xff"]'),
        ("MESHAUTH_KEY_ENCRYPTION_KEY", b"s3cret\xff-kek-value"),
    ],
)
def test_a_variable_that_is_not_utf8_is_a_problem(monkeypatch: pytest.MonkeyPatch, variable: str, value: bytes) -> None:
    """Bytes that are not UTF-8 (Python keeps them as surrogates) were taken as valid text, then every token,
    cookie or key encryption failed with UnicodeEncodeError: refused at load, naming the variable, secrets hidden."""
    monkeypatch.delenv("MESHAUTH_CONFIG_FILE", raising=False)
    monkeypatch.setenv(variable, os.fsdecode(value))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    [problem] = caught.value.problems
    assert variable in problem and "UTF-8" in problem, problem
    assert "s3cret" not in problem


def test_passwords_in_url_lists_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    """MESHAUTH_POLICY_URLS holds URLs too: ``config check`` and problem lines mask their passwords as well."""
    from meshauth.config_report import check

    monkeypatch.delenv("MESHAUTH_CONFIG_FILE", raising=False)
    monkeypatch.setenv("MESHAUTH_POLICY_URLS", '["http://gate:hunter2@policy:8090"]')
    [row] = [r for r in check().rows if r.name == "policy_urls"]
    assert "hunter2" not in row.value and "gate:***@policy" in row.value, row.value
    monkeypatch.setenv("MESHAUTH_POLICY_URLS", '["http://gate:hunter2@policy:8090", "ftp://gate:hunter2@policy"]')
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "hunter2" not in "\n".join(caught.value.problems), caught.value.problems


def test_a_samesite_none_cookie_must_be_secure() -> None:
    """Browsers drop a ``SameSite=None`` cookie without ``Secure``: every login would seem to work and
    no session would ever come back. Refused at start, naming the setting."""
    with pytest.raises(ConfigError, match="cookie_samesite='none'") as caught:
        load_settings(cookie_samesite="none", cookie_secure=False)
    assert "cookie_secure" in str(caught.value)
    assert load_settings(cookie_samesite="none", cookie_secure=True).cookie_samesite == "none"
    assert load_settings(cookie_samesite="lax", cookie_secure=False).cookie_secure is False
