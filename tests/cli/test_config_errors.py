"""Configuration errors: one line per problem naming the setting and the accepted form, exit status 2."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import clean_env, meshauth, problem_lines
from tests.served import free_port

ENTRY_POINTS = [
    ["up", "--no-demo"],
    ["serve", "auth"],
    ["serve", "policy"],
    ["db", "upgrade"],
    ["admin", "clients", "list"],
    ["admin", "rotate-keys"],
    ["policy", "versions", "default"],
    ["entities", "load", "--store", "default", "nothing.json"],
    ["bench", "auth", "--seconds", "1"],
]


def test_bad_port_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    """A port that is not a number: exit 2, no traceback, one line with the variable, value and accepted form."""
    result = meshauth(tmp_path, "db", "upgrade", MESHAUTH_AUTH_PORT="abc")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = problem_lines(result.stderr)
    assert "MESHAUTH_AUTH_PORT" in line
    assert "'abc'" in line
    assert "integer" in line
    assert "0 to 65535" in line


def test_unsupported_database_url_names_the_scheme_and_hides_the_password(tmp_path: Path) -> None:
    """DATABASE_URL=mysql://…: one line naming DATABASE_URL, the scheme and the accepted forms; no password."""
    result = meshauth(tmp_path, "db", "upgrade", DATABASE_URL="mysql://app:hunter2@db/app")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = problem_lines(result.stderr)
    assert line.startswith("meshauth: configuration error: DATABASE_URL=")
    assert "'mysql'" in line
    assert "postgresql://" in line and "sqlite://" in line
    assert "hunter2" not in line


def test_two_bad_settings_give_two_lines(tmp_path: Path) -> None:
    """Every problem is reported at once, one line each."""
    result = meshauth(
        tmp_path, "db", "upgrade", MESHAUTH_AUTH_PORT="abc", DATABASE_URL="mysql://db/app", MESHAUTH_LEEWAY="9999"
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = problem_lines(result.stderr)
    assert len(lines) == 3, lines
    for name in ("MESHAUTH_AUTH_PORT", "DATABASE_URL", "MESHAUTH_LEEWAY"):
        assert sum(name in x for x in lines) == 1, (name, lines)
    assert any("0 to 300" in x for x in lines if "LEEWAY" in x)


def test_a_list_setting_that_is_not_json(tmp_path: Path) -> None:
    """A list setting given as plain text is reported like any other problem, with the JSON form expected."""
    result = meshauth(tmp_path, "db", "upgrade", MESHAUTH_TRUSTED_PROXIES="10.0.0.0/8", MESHAUTH_AUTH_PORT="x")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = problem_lines(result.stderr)
    assert len(lines) == 2, lines
    proxies = next(x for x in lines if "MESHAUTH_TRUSTED_PROXIES" in x)
    assert "JSON list" in proxies


def test_problems_in_the_config_file_name_the_file(tmp_path: Path) -> None:
    """A bad value and an unknown key in the TOML file: one line each, naming the key and the file."""
    conf = tmp_path / "meshauth.toml"
    conf.write_text('policy_port = "high"\nauht_port = 1\n')
    result = meshauth(tmp_path, "db", "upgrade", MESHAUTH_CONFIG_FILE=str(conf))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = problem_lines(result.stderr)
    assert len(lines) == 2, lines
    assert any("policy_port" in x and str(conf) in x and "0 to 65535" in x for x in lines), lines
    assert any("auht_port" in x and "unknown setting" in x for x in lines), lines


@pytest.mark.parametrize("text", ["audience = \n", "x = [1,\n"])
def test_a_config_file_that_is_not_toml(tmp_path: Path, text: str) -> None:
    """A file that does not parse: one line naming MESHAUTH_CONFIG_FILE and the parse error."""
    conf = tmp_path / "meshauth.toml"
    conf.write_text(text)
    result = meshauth(tmp_path, "db", "upgrade", MESHAUTH_CONFIG_FILE=str(conf))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = problem_lines(result.stderr)
    assert "MESHAUTH_CONFIG_FILE" in line and "TOML" in line


def test_a_missing_config_file(tmp_path: Path) -> None:
    """A config file that does not exist: one line, exit 2."""
    result = meshauth(tmp_path, "db", "upgrade", MESHAUTH_CONFIG_FILE=str(tmp_path / "absent.toml"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = problem_lines(result.stderr)
    assert "MESHAUTH_CONFIG_FILE" in line and "does not exist" in line


@pytest.mark.parametrize("args", ENTRY_POINTS, ids=lambda a: " ".join(a[:2]))
def test_every_entry_point_reports_config_errors(tmp_path: Path, args: list[str]) -> None:
    """Each command reports a bad setting the same way, before doing anything else."""
    result = meshauth(tmp_path, *args, MESHAUTH_AUTH_PORT="abc")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = problem_lines(result.stderr)
    assert "MESHAUTH_AUTH_PORT" in line
    assert not (tmp_path / "var").exists(), "a command acted before its configuration was checked"


BAD_URLS = [
    ("DATABASE_URL", "postgresql://u:p@x:notaport/db"),
    ("DATABASE_URL", "postgresql://u@[::1"),
    ("DATABASE_URL", "postgresql://u:p@x:0/db"),
    ("DATABASE_URL", "postgresql://u:p@x:70000/db"),
    ("REDIS_URL", "redis://x:99999"),
    ("REDIS_URL", "redis://:pw@x:abc"),
    ("REDIS_URL", "rediss://[::1/0"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_URLS, ids=[v for _n, v in BAD_URLS])
@pytest.mark.parametrize("args", [["db", "upgrade"], ["serve", "auth"]], ids=" ".join)
def test_a_url_that_does_not_parse_is_a_configuration_error(
    tmp_path: Path, args: list[str], variable: str, value: str
) -> None:
    """A URL whose port is not 1-65535 or whose host does not parse: one line naming the variable, exit 2,
    before anything starts (not a ValueError traceback, not a crash-looping worker)."""
    result = meshauth(tmp_path, *args, timeout=30, **{variable: value})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = problem_lines(result.stderr)
    assert line.startswith(f"meshauth: configuration error: {variable}="), line
    assert ":p@" not in line and ":pw@" not in line, "the password is shown"
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize(("variable", "value"), BAD_URLS[:1] + BAD_URLS[4:5], ids=["database", "redis"])
def test_config_check_calls_a_url_that_does_not_parse_invalid(tmp_path: Path, variable: str, value: str) -> None:
    """``meshauth config check`` reports the same URLs invalid (exit 2), not "configuration is valid"."""
    env: dict[str, Any] = {variable: value}  # Any: mypy cannot tell this holds no "timeout" key
    result = meshauth(tmp_path, "config", "check", **env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "configuration is valid" not in result.stdout
    assert "<- invalid" in next(x for x in result.stdout.splitlines() if x.startswith(variable.lower()))
    assert any(variable in x for x in problem_lines(result.stderr))


def test_serve_auth_without_redis_is_one_line(tmp_path: Path) -> None:
    """``meshauth serve auth`` with no Redis known fails at start with one line and exit 2, before granian
    starts (its worker used to crash-loop on ``RuntimeError: no Redis configured``)."""
    result = meshauth(tmp_path, "serve", "auth", "--no-migrate", timeout=30)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = problem_lines(result.stderr)
    assert "meshauth serve auth needs REDIS_URL" in line
    assert "meshauth up" in line


@pytest.mark.parametrize("host", ["", " ", "\t"])
def test_an_empty_worker_metrics_host_is_refused(tmp_path: Path, host: str) -> None:
    """MESHAUTH_WORKER_METRICS_HOST="" used to bind the workers' /metrics on every interface, silently:
    now exit 2 with one line naming the variable and the two usual values."""
    result = meshauth(
        tmp_path,
        "worker",
        "audit",
        timeout=30,
        MESHAUTH_WORKER_METRICS_HOST=host,
        MESHAUTH_REDIS_URL="redis://127.0.0.1:1",
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = problem_lines(result.stderr)
    assert line.startswith(f"meshauth: configuration error: MESHAUTH_WORKER_METRICS_HOST={host!r}: ")
    assert "0.0.0.0" in line and "127.0.0.1" in line


@pytest.mark.parametrize(
    ("service", "variable"),
    [("auth", "MESHAUTH_AUTH_PORT"), ("auth", "MESHAUTH_GRPC_PORT"), ("policy", "MESHAUTH_POLICY_PORT")],
)
def test_a_port_another_server_listens_on_is_refused(tmp_path: Path, service: str, variable: str) -> None:
    """granian listens with SO_REUSEPORT, so a second server on a busy port started and the kernel split
    the connections between the two (a stale instance answering half the decisions): now refused."""
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as granian's own listener does
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env: dict[str, Any] = {
            "MESHAUTH_AUTH_PORT": str(free_port()),
            "MESHAUTH_GRPC_PORT": str(free_port()),
            "MESHAUTH_POLICY_PORT": str(free_port()),
            variable: str(port),
            "MESHAUTH_AUTH_HOST": "127.0.0.1",
            "MESHAUTH_POLICY_HOST": "127.0.0.1",
        }
        # Its own session, killed whole if it serves after all: a server that started (the bug) held its
        # ports after the test, as granian's workers outlived a timed-out ``subprocess.run``.
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshauth", "serve", service],
            cwd=tmp_path,
            env=clean_env(REDIS_URL="redis://127.0.0.1:6379/15", **env),
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError(f"meshauth serve {service} started on a port another server holds") from None
    assert proc.returncode == 2, stderr[-2000:]
    assert "Traceback" not in stderr
    [line] = problem_lines(stderr)
    assert line.startswith(f"meshauth: configuration error: {variable}={port}: ")
    assert "in use" in line
