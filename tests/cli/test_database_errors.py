"""Commands that use the database, when it cannot be reached: one line, exit 1, no traceback, no password."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.cli.conftest import meshauth, problem_lines


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


COMMANDS = [["db", "upgrade"], ["admin", "users", "list"], ["admin", "rotate-keys"], ["admin", "users", "disable", "x"]]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_database_nobody_listens_on(tmp_path: Path, args: list[str]) -> None:
    url = f"postgresql://app:hunter2@127.0.0.1:{closed_port()}/test"
    result = meshauth(tmp_path, *args, DATABASE_URL=url)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    [line] = problem_lines(result.stderr)
    assert "database" in line and "refused" in line.lower(), line
    assert "hunter2" not in result.stderr + result.stdout


def test_a_database_that_refuses_the_login(tmp_path: Path) -> None:
    """A role that does not exist: PostgreSQL's own reason, on one line."""
    result = meshauth(
        tmp_path, "admin", "users", "list", DATABASE_URL="postgresql://no_such_role:hunter2@127.0.0.1:5432/test"
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    [line] = problem_lines(result.stderr)
    assert "no_such_role" in line, line
    assert "hunter2" not in result.stderr + result.stdout


def test_db_upgrade_to_a_revision_that_does_not_exist(tmp_path: Path) -> None:
    """A mistyped revision: alembic's reason on one line, exit 2 (a usage error), not its traceback."""
    result = meshauth(tmp_path, "db", "upgrade", "nonsense")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    [line] = problem_lines(result.stderr)
    assert "nonsense" in line, line
