"""A ``var_dir`` that cannot be created or written (read-only, under a file): one line naming it, exit 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import meshauth, problem_lines
from tests.served import free_port


@pytest.mark.parametrize(
    "args", [["up", "--no-demo"], ["db", "upgrade"], ["admin", "users", "list"], ["admin", "rotate-keys"]], ids=" ".join
)
def test_a_var_dir_under_a_file(tmp_path: Path, args: list[str]) -> None:
    """As root, file modes do not stop anyone: a path under a regular file fails for every user alike."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    var = blocker / "var"
    env: dict[str, Any] = {f"MESHAUTH_{p}_PORT": str(free_port()) for p in ("AUTH", "GRPC", "POLICY")}
    result = meshauth(tmp_path, *args, MESHAUTH_VAR_DIR=str(var), **env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    [line] = problem_lines(result.stderr)
    assert str(var) in line and "Not a directory" in line, line
