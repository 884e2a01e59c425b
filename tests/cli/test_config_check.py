"""``meshauth config check``: every setting, its effective value (secrets masked) and where it came from."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import meshauth, problem_lines


def rows(stdout: str) -> dict[str, tuple[str, str]]:
    """setting -> (value, source), from the table's fixed columns."""
    lines = stdout.splitlines()
    header = lines[0]
    value_at, source_at = header.index("value"), header.index("source")
    table = {}
    for line in lines[1:]:
        if not line.strip() or line.startswith("configuration is"):
            continue
        table[line[:value_at].strip()] = (line[value_at:source_at].strip(), line[source_at:].strip())
    return table


def test_check_names_the_source_of_every_value(tmp_path: Path) -> None:
    """Defaults, file values and environment values are told apart; the environment wins over the file."""
    conf = tmp_path / "meshauth.toml"
    conf.write_text('audience = "orders"\naccess_token_ttl = 120\npolicy_port = 8100\n')
    result = meshauth(
        tmp_path,
        "config",
        "check",
        MESHAUTH_CONFIG_FILE=str(conf),
        MESHAUTH_ACCESS_TOKEN_TTL="60",
        DATABASE_URL="postgresql://app:hunter2@db.internal/app",
        MESHAUTH_TRUSTED_PROXIES='["10.0.0.0/8"]',
    )
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    assert table["audience"] == ("orders", f"file {conf}")
    assert table["policy_port"] == ("8100", f"file {conf}")
    assert table["access_token_ttl"] == ("60", "environment MESHAUTH_ACCESS_TOKEN_TTL")
    assert table["database_url"] == ("postgresql://app:***@db.internal/app", "environment DATABASE_URL")
    assert table["trusted_proxies"] == ('["10.0.0.0/8"]', "environment MESHAUTH_TRUSTED_PROXIES")
    assert table["auth_port"] == ("8080", "default")
    assert table["cookie_secure"] == ("true", "default")
    assert "hunter2" not in result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("configuration is valid")


def test_check_masks_secrets(tmp_path: Path) -> None:
    """Secret settings show as *** wherever they come from; unset ones say what unset means."""
    conf = tmp_path / "meshauth.toml"
    conf.write_text('key_encryption_key = "kek-from-file"\n')
    result = meshauth(
        tmp_path,
        "config",
        "check",
        MESHAUTH_CONFIG_FILE=str(conf),
        MESHAUTH_ADMIN_TOKEN="admin-from-env",
        REDIS_URL="redis://:cachepass@cache:6379/0",
    )
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    assert table["admin_token"] == ("***", "environment MESHAUTH_ADMIN_TOKEN")
    assert table["key_encryption_key"] == ("***", f"file {conf}")
    assert table["redis_url"] == ("redis://:***@cache:6379/0", "environment REDIS_URL")
    assert table["database_url"][0].startswith("(unset")
    for secret in ("admin-from-env", "kek-from-file", "cachepass"):
        assert secret not in result.stdout + result.stderr


def test_check_of_an_invalid_configuration_exits_2(tmp_path: Path) -> None:
    """Invalid values are marked in the table and listed one line each on stderr; exit status 2."""
    conf = tmp_path / "meshauth.toml"
    conf.write_text("policy_port = 70000\n")
    result = meshauth(tmp_path, "config", "check", MESHAUTH_CONFIG_FILE=str(conf), MESHAUTH_AUTH_PORT="abc")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(problem_lines(result.stderr)) == 2, result.stderr
    table = rows(result.stdout)
    assert table["auth_port"] == ("abc", "environment MESHAUTH_AUTH_PORT   <- invalid")
    assert table["policy_port"] == ("70000", f"file {conf}   <- invalid")
    assert table["grpc_port"] == ("9001", "default")


def test_check_warns_about_a_variable_that_names_no_setting(tmp_path: Path) -> None:
    """A misspelt MESHAUTH_ variable is ignored by the settings, so check says so (and still exits 0)."""
    result = meshauth(tmp_path, "config", "check", MESHAUTH_AUTH_PROT="9000")
    assert result.returncode == 0, result.stderr
    assert "MESHAUTH_AUTH_PROT is set but names no setting" in result.stderr


def test_check_masks_passwords_in_url_query_strings(tmp_path: Path) -> None:
    """A password given as a URL query parameter (``?password=``, ``sslkey``, ``token``…) is masked too."""
    result = meshauth(
        tmp_path,
        "config",
        "check",
        DATABASE_URL="postgresql://pg@h/db?password=QueryPW&sslmode=require&sslkey=/k/KeyPath",
        REDIS_URL="redis://h/0?password=QueryPW2&socket_timeout=5&auth_token=Tok3",
    )
    assert result.returncode == 0, result.stderr
    assert "postgresql://pg@h/db?password=***&sslmode=require&sslkey=***" in result.stdout
    assert "redis://h/0?password=***&socket_timeout=5&auth_token=***" in result.stdout
    for secret in ("QueryPW", "QueryPW2", "KeyPath", "Tok3"):
        assert secret not in result.stdout + result.stderr


def test_check_masks_the_password_of_a_url_that_does_not_parse(tmp_path: Path) -> None:
    """An invalid URL is shown as given in the problem line and the table, but never with its password."""
    result = meshauth(tmp_path, "config", "check", DATABASE_URL="postgresql://u:Hunter3@[::1/db?secret=S4")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Hunter3" not in result.stdout + result.stderr
    assert "S4" not in result.stdout + result.stderr
    assert "postgresql://u:***@[::1/db?secret=***" in result.stdout
