"""``meshauth admin users|clients`` given hostile arguments: one error line and a non-zero exit, no traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meshauth.cli import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("REDIS_URL", "MESHAUTH_REDIS_URL", "DATABASE_URL", "MESHAUTH_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return {"MESHAUTH_VAR_DIR": str(tmp_path), "MESHAUTH_ARGON2_TIME_COST": "1", "MESHAUTH_ARGON2_MEMORY_KIB": "8"}


def refused(env: dict[str, str], *args: str) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    "attributes",
    [
        '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",  # deeper than the JSON parser's recursion limit
        '{"a": NaN}',  # not JSON: stored, it would end up in claims no JSON parser reads
        '{"a": Infinity}',
        os.fsdecode(b'{"a": "\xff"}'),  # a non-UTF-8 argument
    ],
    ids=["deep", "nan", "infinity", "not-utf8"],
)
def test_users_create_with_attributes_that_are_not_json(env: dict[str, str], attributes: str) -> None:
    line = refused(env, "admin", "users", "create", "alice", "--password", "correct-horse", "--attributes", attributes)
    assert "attributes" in line, line


def test_users_create_with_a_password_that_is_not_utf8(env: dict[str, str]) -> None:
    line = refused(env, "admin", "users", "create", "alice", "--password", os.fsdecode(b"\xff\xfecorrect-horse"))
    assert "password" in line and "UTF-8" in line, line
    assert "correct-horse" not in line


def test_clients_create_with_a_secret_that_is_not_utf8(env: dict[str, str]) -> None:
    line = refused(env, "admin", "clients", "create", "svc", "--secret", os.fsdecode(b"\xff\xfes3cret-value"))
    assert "UTF-8" in line, line
    assert "s3cret" not in line


@pytest.mark.parametrize("command", ["disable", "delete"])
@pytest.mark.parametrize("kind", ["users", "clients"])
def test_offboarding_a_name_that_is_not_utf8(env: dict[str, str], kind: str, command: str) -> None:
    """No account can have such a name: "no user …", not a UnicodeEncodeError from the database driver."""
    line = refused(env, "admin", kind, command, os.fsdecode(b"bad\xff"))
    assert line.startswith("error: no "), line
