"""The auth service as `meshauth serve auth` runs it, under granian (ASGI, its one interface)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshauth.local.health import wait_healthy
from tests.served import free_port

ADMIN = "served-admin-token-0123456789"


def call(
    method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def raw_get(base: str, path: str, lines: list[tuple[str, str]]) -> tuple[int, dict[str, str]]:
    """GET with header lines sent as given, repeated names included (urllib merges them)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("GET", path)
        for name, value in lines:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


@pytest.fixture(params=["asgi", "default"])
def served(request: pytest.FixtureRequest, sqlite_url: str, valkey_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_")}
    env.update(
        MESHAUTH_DATABASE_URL=sqlite_url,
        MESHAUTH_REDIS_URL=valkey_url,
        MESHAUTH_VAR_DIR=str(tmp_path),
        MESHAUTH_ADMIN_TOKEN=ADMIN,
        MESHAUTH_AUTH_PORT=str(port),
        MESHAUTH_GRPC_PORT=str(free_port()),
        MESHAUTH_ARGON2_TIME_COST="1",
        MESHAUTH_ARGON2_MEMORY_KIB="8",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshauth", "serve", "auth"]
        + ([] if request.param == "default" else ["--interface", request.param]),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{base}/healthz", proc, timeout=30, name="meshauth serve auth")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_served_flow(served: str) -> None:
    """Admin, token, gate (allow, deny, oversized), sessions and errors as served (and the default is
    ASGI: the one that sees every header line)."""
    admin = {"authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
    client = {
        "client_id": "svc",
        "client_secret": "long-secret",
        "scopes": ["read"],
        "grant_types": ["client_credentials"],
    }
    assert call("POST", f"{served}/admin/clients", body=json.dumps(client).encode(), headers=admin)[0] == 201
    user = {"username": "alice", "password": "long-password"}
    assert call("POST", f"{served}/admin/users", body=json.dumps(user).encode(), headers=admin)[0] == 201

    basic = {"authorization": "Basic " + base64.b64encode(b"svc:long-secret").decode()}
    form = {"content-type": "application/x-www-form-urlencoded", **basic}
    status, headers, body = call("POST", f"{served}/oauth2/token", body=b"grant_type=client_credentials", headers=form)
    assert status == 200
    assert headers["cache-control"] == "no-store"
    token = json.loads(body)["access_token"]

    for _ in range(2):  # cold, then warm
        status, headers, _ = call("GET", f"{served}/ext_authz/orders/1", headers={"authorization": f"Bearer {token}"})
        assert status == 200
        assert headers["x-meshauth-subject"] == "svc"
        assert headers["x-meshauth-scope"] == "read"
    status, headers, _ = call("POST", f"{served}/ext_authz/orders/1")
    assert status == 401
    assert headers["www-authenticate"] == 'Bearer realm="meshauth"'
    status, _, _ = call("GET", f"{served}/ext_authz/x", headers={"authorization": "Bearer " + "a" * 9000})
    assert status == 401

    status, headers, body = call(
        "POST", f"{served}/v1/sessions", body=json.dumps(user).encode(), headers={"content-type": "application/json"}
    )
    assert status == 201
    cookie = headers["set-cookie"].split(";", 1)[0]
    status, headers, _ = call("GET", f"{served}/ext_authz/app", headers={"cookie": f"theme=dark; {cookie}"})
    assert status == 200
    assert headers["x-meshauth-subject"] == "alice"

    # Repeated header lines: every one is read.
    status, headers = raw_get(served, "/ext_authz/app", [("cookie", "theme=dark"), ("cookie", cookie)])
    assert (status, headers.get("x-meshauth-subject")) == (200, "alice")
    for pair in (f"Bearer {token}", "Bearer forged"), ("Bearer forged", f"Bearer {token}"):
        status, headers = raw_get(served, "/ext_authz/orders/1", [("authorization", v) for v in pair])
        assert status == 401
        assert 'error="invalid_request"' in headers["www-authenticate"]

    # A line with a byte >= 0x80 (obs-text) is still a line: with a session cookie it is no fallback.
    status, _ = raw_get(served, "/ext_authz/app", [("authorization", "Bearer forg\xffed"), ("cookie", cookie)])
    assert status == 401
    for pair in (f"Bearer {token}", "Bearer forg\xffed"), ("Bearer forg\xffed", f"Bearer {token}"):
        assert raw_get(served, "/ext_authz/orders/1", [("authorization", v) for v in pair])[0] == 401

    status, _, body = call("POST", f"{served}/oauth2/token", body=b"x" * 70_000, headers=form)
    assert status == 413
    assert json.loads(body)["error"] == "request_too_large"
    assert call("GET", f"{served}/nope")[0] == 404


def test_serve_auth_refuses_the_rsgi_interface_and_says_why() -> None:
    """The auth service has one transport: ``--interface rsgi`` is a usage error naming the reason,
    before anything is migrated or bound."""
    done = subprocess.run(
        [sys.executable, "-m", "meshauth", "serve", "auth", "--no-migrate", "--interface", "rsgi"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "ASGI only" in done.stderr
    assert "visible ASCII" in done.stderr
