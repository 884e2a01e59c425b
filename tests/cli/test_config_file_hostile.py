"""Config files and URLs an operator gets wrong: one line each, exit 2, no traceback, no hang, no password."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import meshauth, problem_lines


def _one_config_error(tmp_path: Path, conf: Path, *words: str) -> None:
    result = meshauth(tmp_path, "db", "upgrade", timeout=20, MESHAUTH_CONFIG_FILE=str(conf))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = problem_lines(result.stderr)
    assert "MESHAUTH_CONFIG_FILE" in line, line
    for word in words:
        assert word in line, line
    assert not (tmp_path / "var").exists()


def test_a_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    """A Latin-1 file (TOML is UTF-8): one line saying so, not a UnicodeDecodeError traceback."""
    conf = tmp_path / "meshauth.toml"
    conf.write_bytes(b'audience = "caf\xe9"\n')
    _one_config_error(tmp_path, conf, "UTF-8")


def test_a_config_file_nested_too_deeply(tmp_path: Path) -> None:
    """100,000 nested arrays: one line, not a RecursionError traceback."""
    conf = tmp_path / "meshauth.toml"
    conf.write_text("audience = " + "[" * 100_000 + "]" * 100_000 + "\n")
    _one_config_error(tmp_path, conf, "nested")


def test_a_config_file_that_is_a_fifo(tmp_path: Path) -> None:
    """A FIFO (nobody writing) is refused at once instead of blocking the command forever."""
    conf = tmp_path / "meshauth.toml"
    os.mkfifo(conf)
    _one_config_error(tmp_path, conf, "not a regular file")


def test_a_huge_config_file_is_refused_unread(tmp_path: Path) -> None:
    """A config file far larger than any configuration (a log or a dump named by mistake) is refused by size."""
    conf = tmp_path / "meshauth.toml"
    with conf.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)
    _one_config_error(tmp_path, conf, "larger than")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_URL", "redis:/app:hunter2@cache:6379"),
        ("REDIS_URL", "redis:app:hunter2@cache:6379"),
        ("DATABASE_URL", "postgresql:/app:hunter2@db/app"),
        ("DATABASE_URL", "postgresql//app:hunter2@db/app"),
        ("DATABASE_URL", "app:hunter2@db/app"),
    ],
)
def test_a_url_missing_its_slashes_does_not_show_the_password(tmp_path: Path, variable: str, value: str) -> None:
    """A typo in the scheme separator (``redis:/``, ``postgresql//``): the problem line and ``config check``
    must still hide the password."""
    env: dict[str, Any] = {variable: value}  # Any: mypy cannot tell this holds no "timeout" key
    result = meshauth(tmp_path, "db", "upgrade", **env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = problem_lines(result.stderr)
    assert variable in line
    assert "hunter2" not in line, line
    checked = meshauth(tmp_path, "config", "check", **env)
    assert checked.returncode == 2
    assert "hunter2" not in checked.stdout + checked.stderr
