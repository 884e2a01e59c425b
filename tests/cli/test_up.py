"""``meshauth up`` from an empty directory: it starts everything and its walkthrough works as printed."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc

from meshauth.local.walkthrough import BEGIN, END
from tests.conftest import PG_URL
from tests.served import free_port


def assert_grpc_ext_authz(tmp_path: Path, http_port: int, grpc_port: int) -> None:
    """The gRPC listener inside the served process answers Check: allowed with a token, denied without."""
    secret = (tmp_path / "var" / "demo-client-secret").read_text().strip()
    req = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/oauth2/token", data=b"grant_type=client_credentials", method="POST"
    )
    req.add_header("authorization", "Basic " + base64.b64encode(f"demo:{secret}".encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        token = json.load(resp)["access_token"]

    def check(headers: dict[str, str]) -> external_auth_pb2.CheckResponse:
        http = attribute_context_pb2.AttributeContext.HttpRequest(method="GET", path="/x", headers=headers)
        request = external_auth_pb2.CheckRequest(
            attributes=attribute_context_pb2.AttributeContext(
                request=attribute_context_pb2.AttributeContext.Request(http=http)
            )
        )
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            return external_auth_pb2_grpc.AuthorizationStub(channel).Check(request, timeout=10)

    allowed = check({"authorization": f"Bearer {token}"})
    assert allowed.HasField("ok_response")
    assert {o.header.key: o.header.value for o in allowed.ok_response.headers}["x-meshauth-subject"] == "demo"
    denied = check({})
    assert denied.denied_response.status.code == 401


def assert_worker_handled(port: int, group: str) -> None:
    pattern = re.compile(rf'^meshauth_bus_handled_total{{group="{group}",stream="audit"}} ([0-9.e+]+)$', re.M)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                found = pattern.search(resp.read().decode())
            if found and float(found.group(1)) > 0:
                return
        except OSError:
            pass  # the worker is not listening yet
        assert time.monotonic() < deadline, f"the {group} worker's /metrics showed nothing handled"
        time.sleep(0.2)


def up_env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_") and k not in ("REDIS_URL", "DATABASE_URL")
    }
    env.update(
        MESHAUTH_AUTH_PORT=str(free_port()),
        MESHAUTH_GRPC_PORT=str(free_port()),
        MESHAUTH_POLICY_PORT=str(free_port()),
        MESHAUTH_AUDIT_WORKER_METRICS_PORT=str(free_port()),
        MESHAUTH_ANALYTICS_WORKER_METRICS_PORT=str(free_port()),
        # Keep the suite quick; production hashing parameters are the defaults.
        MESHAUTH_ARGON2_TIME_COST="1",
        MESHAUTH_ARGON2_MEMORY_KIB="1024",
    )
    return env


@contextmanager
def running_up(tmp_path: Path, env: dict[str, str], *args: str) -> Iterator[str]:
    """``meshauth up`` in ``tmp_path`` until it prints its walkthrough; yields its output so far."""
    out = tmp_path / "out.txt"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshauth", "up", *args],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "Press Ctrl-C" not in out.read_text():
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        yield out.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0, out.read_text()
    assert not (tmp_path / "var" / "redis-url").exists(), "the embedded Valkey was not stopped"


def run_walkthrough(text: str) -> str:
    script = text[text.index(BEGIN) : text.index(END) + len(END)]
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="the printed walkthrough uses curl")
def test_up_walkthrough_works_as_printed(tmp_path: Path) -> None:
    """Every step of the printed walkthrough gives the answer its comment promises."""
    env = up_env()
    with running_up(tmp_path, env) as text:
        assert oct((tmp_path / "var" / "admin-token").stat().st_mode & 0o777) == "0o600"
        assert "--routes examples/routes.yaml" in text  # step 7 says how to restart in authz mode
        walk = run_walkthrough(text)
        responses = walk.split("HTTP/1.1 ")
        assert len(responses) == 4, walk  # step 7 is comments only without --routes
        assert responses[1].startswith("200") and "x-meshauth-subject: demo" in responses[1]
        assert '"active":true' in responses[1]
        assert responses[2].startswith("401") and "revoked" in responses[2]
        assert responses[3].startswith("200") and "x-meshauth-subject: alice" in responses[3]
        assert '"activated":true' in walk
        decisions = [line for line in walk.splitlines() if line.startswith('{"decision"')]
        assert [d.startswith('{"decision":true') for d in decisions] == [True, False], walk
        assert_grpc_ext_authz(tmp_path, int(env["MESHAUTH_AUTH_PORT"]), int(env["MESHAUTH_GRPC_PORT"]))
        # The walkthrough's requests were audited: the audit worker counts them on its own /metrics.
        assert f"audit :{env['MESHAUTH_AUDIT_WORKER_METRICS_PORT']}" in text
        assert_worker_handled(int(env["MESHAUTH_AUDIT_WORKER_METRICS_PORT"]), "audit")


@pytest.mark.skipif(shutil.which("curl") is None, reason="the printed walkthrough uses curl")
def test_up_with_routes_walkthrough_shows_authz_mode(tmp_path: Path) -> None:
    """``meshauth up --routes examples/routes.yaml``: the earlier steps answer as in authn mode, and
    step 7 shows one request allowed (200) and one denied by the policy (403) in authz mode."""
    example = Path(__file__).resolve().parents[2] / "examples" / "routes.yaml"
    (tmp_path / "examples").mkdir()
    shutil.copy(example, tmp_path / "examples" / "routes.yaml")
    with running_up(tmp_path, up_env(), "--routes", "examples/routes.yaml") as text:
        assert "authz mode" in text
        walk = run_walkthrough(text)
        responses = walk.split("HTTP/1.1 ")
        assert len(responses) == 6, walk
        assert responses[1].startswith("200") and "x-meshauth-subject: demo" in responses[1]
        assert responses[2].startswith("401")
        assert responses[3].startswith("200") and "x-meshauth-subject: alice" in responses[3]
        assert responses[4].startswith("200") and "x-meshauth-subject: alice" in responses[4]
        assert responses[5].startswith("403") and "x-meshauth-reason: policy_denied" in responses[5]


def test_up_with_an_invalid_route_file_stops_with_the_line(tmp_path: Path) -> None:
    """A bad route table: one configuration-error line naming the file and line, exit 2, nothing started."""
    bad = tmp_path / "routes.yaml"
    bad.write_text(
        "routes:\n  - method: GET\n    path: /documents/{id}\n    action: read\n    resource: {type: D, id: '{x}'}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "meshauth", "up", "--routes", str(bad)],
        cwd=tmp_path,
        env=up_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert f"{bad}:5: resource id: {{x}} is not a placeholder of the path" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "var").exists()


def test_up_refuses_a_busy_port(tmp_path: Path) -> None:
    """If the auth port is taken, up says so and exits non-zero instead of hanging."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_")}
        env.update(
            MESHAUTH_AUTH_PORT=str(busy.getsockname()[1]),
            MESHAUTH_GRPC_PORT=str(free_port()),
            MESHAUTH_POLICY_PORT=str(free_port()),
            MESHAUTH_ARGON2_TIME_COST="1",
            MESHAUTH_ARGON2_MEMORY_KIB="1024",
        )
        result = subprocess.run(
            [sys.executable, "-m", "meshauth", "up", "--no-demo"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    assert result.returncode != 0
    assert "auth" in result.stderr


def test_up_does_not_print_the_passwords_in_its_urls(tmp_path: Path) -> None:
    """``meshauth up`` lists the database and Redis it uses: with their passwords masked, as ``config check``
    shows them. (PostgreSQL here trusts local connections: the password is given and ignored.)"""
    env = up_env()
    user_and_rest = PG_URL.split("://", 1)[1]
    user, _, rest = user_and_rest.partition("@")
    env["DATABASE_URL"] = f"postgresql://{user}:hunter2@{rest}"
    with running_up(tmp_path, env, "--no-demo") as text:
        assert "hunter2" not in text
        assert f"{user}:***@" in text
