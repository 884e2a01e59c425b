"""Hostile request bodies against both services as served (granian), over both interfaces: invalid
UTF-8 inside JSON strings is a 400 naming the problem, and a client that goes away mid-body is
closed quietly (no traceback, at most one log line), counted, and the server keeps serving."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.served import ADMIN, Served, call, metric, serve

ADMIN_JSON = {"authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
BAD = b"\xff\xfe"  # never valid UTF-8
DISCONNECTS = "meshauth_http_client_disconnects_total"


@pytest.fixture(scope="module", params=["asgi"])
def auth(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[Served]:
    with serve("auth", request.param, tmp_path_factory.mktemp(f"auth-{request.param}"), valkey_url) as s:
        yield s


@pytest.fixture(scope="module", params=["rsgi", "asgi"])
def policy(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, valkey_url: str
) -> Iterator[Served]:
    with serve("policy", request.param, tmp_path_factory.mktemp(f"policy-{request.param}"), valkey_url) as s:
        assert call("PUT", s.url + "/admin/stores/s1", headers=ADMIN_JSON)[0] in (200, 201)
        yield s


def _decision(field: bytes) -> bytes:
    return (
        b'{"subject":{"type":"User","id":"' + field + b'"},"action":{"name":"view"},'
        b'"resource":{"type":"Doc","id":"d1"},"context":{"note":"' + field + b'"}}'
    )


POLICY_DECISIONS = [
    "/access/v1/evaluation",
    "/access/v1/evaluations",
    "/stores/s1/access/v1/evaluation",
    "/stores/s1/access/v1/evaluations",
]


def _assert_names_utf8(status: int, body: bytes) -> None:
    assert status == 400, body
    error = json.loads(body)
    assert error["error"] == "invalid_request"
    assert "UTF-8" in error["error_description"]


@pytest.mark.parametrize("path", POLICY_DECISIONS)
@pytest.mark.parametrize("where", ["typed", "context", "batch item"])
def test_invalid_utf8_in_a_decision_is_a_400(policy: Served, path: str, where: str) -> None:
    """Invalid UTF-8 in a JSON string, in a typed field or a free-form one, is a 400 on every
    decision endpoint (bad bytes in a batch item fail the request: the body is not JSON)."""
    if where == "typed":
        body = _decision(BAD)
    elif where == "context":
        body = _decision(b"ok").replace(b'"note":"ok"', b'"note":"' + BAD + b'"')
    else:
        body = b'{"evaluations":[' + _decision(b"ok") + b"," + _decision(BAD) + b"]}"
    status, raw = call("POST", policy.url + path, body=body, headers={"content-type": "application/json"})
    _assert_names_utf8(status, raw)
    assert "Traceback" not in policy.log()


AUTH_JSON = [
    ("/v1/sessions", {"content-type": "application/json"}, b'{"username":"' + BAD + b'","password":"pw-123456"}'),
    ("/admin/clients", ADMIN_JSON, b'{"client_id":"' + BAD + b'","client_secret":"long-secret"}'),
    ("/admin/users", ADMIN_JSON, b'{"username":"' + BAD + b'","password":"long-password"}'),
]


@pytest.mark.parametrize(("path", "headers", "body"), AUTH_JSON, ids=[p for p, _, _ in AUTH_JSON])
def test_invalid_utf8_in_auth_json_is_a_400(auth: Served, path: str, headers: dict[str, str], body: bytes) -> None:
    """The auth service's JSON endpoints answer invalid UTF-8 with a 400 naming it (shared reader)."""
    status, raw = call("POST", auth.url + path, body=body, headers=headers)
    _assert_names_utf8(status, raw)
    assert "Traceback" not in auth.log()


UPLOADS = [
    pytest.param("/admin/stores/s1/policies", b"permit(principal, action, resource) // " + BAD, id="policies-text"),
    pytest.param("/admin/stores/s1/schema", b'{"": {"entityTypes": {"' + BAD + b'": {}}}}', id="schema"),
    pytest.param(
        "/admin/stores/s1/policies",
        b'{"policies":"permit(principal, action, resource) when { context.a == \\"' + BAD + b'\\" };"}',
        id="policies-json",
    ),
    pytest.param(
        "/admin/stores/s1/entities",
        b'[{"uid":{"type":"User","id":"' + BAD + b'"},"attrs":{},"parents":[]}]',
        id="entities",
    ),
]


@pytest.mark.parametrize(("path", "body"), UPLOADS)
def test_invalid_utf8_in_an_admin_upload_is_a_400(policy: Served, path: str, body: bytes) -> None:
    """The policy and entity uploads answer invalid UTF-8 in a JSON string with a 400 naming it."""
    media = "text/plain" if path.endswith("policies") and not body.startswith(b"{") else "application/json"
    method = "PUT" if path.endswith("schema") else "POST"
    headers = {**ADMIN_JSON, "content-type": media}
    status, raw = call(method, policy.url + path, body=body, headers=headers)
    _assert_names_utf8(status, raw)


def _padded_length(port: int, path: str, length: bytes, body: bytes) -> tuple[int, bytes]:
    """One request whose ``Content-Length`` line is exactly ``length``; the status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {ADMIN}\r\n".encode()
            + b"Content-Length: "
            + length
            + b"\r\n\r\n"
            + body
        )
        data = b""
        while chunk := s.recv(65_536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), payload


@pytest.mark.parametrize("path", [*POLICY_DECISIONS, "/admin/stores/s1/policies"])
def test_content_length_padded_with_zeros_is_its_value(policy: Served, path: str) -> None:
    """A ``Content-Length`` written with 5,000 leading zeros (1*DIGIT allows them) is read as its
    value — the request is answered — and one over the limit is a 413: never a 500 or a traceback."""
    body = _decision(b"u") if "access" in path else b'{"policies": "permit(principal, action, resource);"}'
    log_before = policy.log()
    status, raw = _padded_length(policy.port, path, b"0" * 5_000 + str(len(body)).encode(), body)
    assert status in (200, 201), raw
    status, raw = _padded_length(policy.port, path, b"0" * 5_000 + b"99000000", body)
    assert status == 413, raw
    assert json.loads(raw)["error"] == "request_too_large"
    assert "Traceback" not in policy.log()[len(log_before) :]


BODY_PATHS = {
    "auth": ["/v1/sessions", "/oauth2/token", "/admin/clients"],
    "policy": ["/access/v1/evaluation", "/stores/s1/access/v1/evaluations", "/admin/stores/s1/policies"],
}
CONNECTIONS = 100  # per path


def _abandon_body(port: int, path: str) -> None:
    """Headers promising 1,000 bytes, 10 of them, then close."""
    media = "application/x-www-form-urlencoded" if path == "/oauth2/token" else "application/json"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {media}\r\n"
            f"Authorization: Bearer {ADMIN}\r\nContent-Length: 1000\r\n\r\n".encode()
            + b'{"subject"'
        )


def test_auth_clients_leaving_mid_body_are_closed_quietly_and_counted(auth: Served) -> None:
    """Hundreds of clients that leave mid-body: no traceback, at most one log line, each one counted,
    and the server still answers."""
    _abandon_bodies_quietly(auth)


def test_policy_clients_leaving_mid_body_are_closed_quietly_and_counted(policy: Served) -> None:
    """The same for the policy service: its native decision paths and its Starlette routes."""
    _abandon_bodies_quietly(policy)


def _abandon_bodies_quietly(served: Served) -> None:
    paths = BODY_PATHS[served.service]
    before = metric(served, DISCONNECTS)
    log_before = served.log()
    for path in paths:
        for _ in range(CONNECTIONS):
            _abandon_body(served.port, path)
    expected = before + CONNECTIONS * len(paths)
    deadline = time.monotonic() + 10
    while metric(served, DISCONNECTS) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(served, DISCONNECTS) == expected
    added = served.log()[len(log_before) :]
    assert "Traceback" not in added
    assert len(added.splitlines()) <= 1, added
    assert call("GET", served.url + "/healthz")[0] == 200


def test_a_disconnect_line_names_what_happened(tmp_path: Path, valkey_url: str) -> None:
    """The one line logged for clients leaving mid-body says so, without a traceback."""
    with serve("policy", "rsgi", tmp_path, valkey_url) as s:
        for _ in range(20):
            _abandon_body(s.port, "/access/v1/evaluation")
        deadline = time.monotonic() + 10
        while metric(s, DISCONNECTS) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        lines = [line for line in s.log().splitlines() if "went away" in line]
        assert len(lines) == 1, s.log()
        assert "Traceback" not in s.log()
