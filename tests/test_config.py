"""Settings: environment, file, precedence, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from meshauth.config import Settings, async_database_url


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
    [{"leeway": 3600}, {"signing_alg": "HS256"}, {"issuer": "ftp://x"}, {"redis_prefix": "nocolon"}, {"unknown": 1}],
)
def test_invalid_settings(kwargs: dict[str, object]) -> None:
    """Out-of-range or unknown settings are refused with a validation error."""
    with pytest.raises(ValidationError):
        Settings(**kwargs)  # type: ignore[arg-type]


def test_admin_token_is_hidden_in_repr() -> None:
    """The admin token never shows in logs."""
    assert "topsecret" not in repr(Settings(admin_token="topsecret"))  # type: ignore[arg-type]


def test_unsupported_database_scheme() -> None:
    """Only PostgreSQL and SQLite URLs are accepted."""
    with pytest.raises(ValueError, match="mysql"):
        async_database_url("mysql://x")
