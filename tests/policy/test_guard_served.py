"""The decision API's protection on real servers (granian), RSGI (the default) and ASGI, with header
bytes sent as a hostile client would: raw on a socket."""

from __future__ import annotations

import json
import socket
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.policy.conftest import served

ADMIN_TOKEN = "served-admin-token"
TOKEN = "served-decision-token-0123456789"
PERMIT = json.dumps({"policies": "permit(principal, action, resource);", "activate": True}).encode()
ASK = json.dumps(
    {"subject": {"type": "User", "id": "u"}, "action": {"name": "view"}, "resource": {"type": "Doc", "id": "d"}}
).encode()
PATHS = (
    "/access/v1/evaluation",
    "/access/v1/evaluations",
    "/stores/default/access/v1/evaluation",
    "/stores/default/access/v1/evaluations",
)
COMMANDS = {
    "rsgi": ["-m", "meshauth.policy.server"],
    "asgi": ["-m", "meshauth", "serve", "policy", "--interface", "asgi"],
}


@pytest.fixture(scope="module", params=["rsgi", "asgi"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A protected policy server (one token) with a permit-all default store."""
    with served(
        COMMANDS[request.param],
        tmp_path_factory.mktemp(request.param),
        ADMIN_TOKEN,
        MESHAUTH_DECISION_API_TOKENS=json.dumps([TOKEN]),
    ) as url:
        status, _, _ = raw(
            url, "POST", "/admin/stores/default/policies", [(b"authorization", b"Bearer served-admin-token")], PERMIT
        )
        assert status == 201
        yield url


def raw(
    url: str, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request with exactly these header lines; the status, headers and body."""
    target = urllib.parse.urlparse(url)
    lines = [f"{method} {path} HTTP/1.1".encode(), f"host: {target.netloc}".encode(), b"connection: close"]
    lines += [b"content-type: application/json", f"content-length: {len(body)}".encode()]
    lines += [name + b": " + value for name, value in headers]
    with socket.create_connection((target.hostname, target.port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65_536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, payload


def test_unauthenticated_is_401_on_every_path(server: str) -> None:
    """No credential: 401 with ``www-authenticate: Bearer`` and the JSON error contract."""
    for path in PATHS:
        status, headers, body = raw(server, "POST", path, [], ASK)
        assert status == 401, path
        assert headers["www-authenticate"].startswith("Bearer ")
        assert json.loads(body)["error"] == "unauthorized"


def test_wrong_token_is_401(server: str) -> None:
    status, _, body = raw(server, "POST", PATHS[2], [(b"authorization", b"Bearer wrong-wrong-wrong-wrong")], ASK)
    assert (status, json.loads(body)["error"]) == (401, "invalid_token")


def test_token_gets_a_decision(server: str) -> None:
    for path in PATHS:
        status, _, body = raw(server, "POST", path, [(b"authorization", f"Bearer {TOKEN}".encode())], ASK)
        assert status == 200, (path, body)
        assert b'"decision":true' in body


def test_two_authorization_lines_are_refused(server: str) -> None:
    good = (b"authorization", f"Bearer {TOKEN}".encode())
    status, _, body = raw(server, "POST", PATHS[0], [good, good], ASK)
    assert (status, json.loads(body)["error"]) == (401, "invalid_request")


def test_non_ascii_authorization_is_refused(server: str) -> None:
    """Bytes ≥ 0x80 (granian's RSGI hides such a value; ASGI passes it): 401 either way, never a 500."""
    for value in (b"Bearer \xff\xfe", f"Bearer {TOKEN}\xe9".encode("latin-1"), b"\xc3\xa9"):
        status, _, body = raw(server, "POST", PATHS[0], [(b"authorization", value)], ASK)
        assert status == 401, value
        assert json.loads(body)["error"] in ("invalid_token", "invalid_request")


def test_huge_authorization_is_refused(server: str) -> None:
    """A 32 KiB Authorization line is refused, without a 500 or a decision."""
    status, _, _ = raw(server, "POST", PATHS[0], [(b"authorization", b"Bearer " + b"a" * 32_768)], ASK)
    assert status == 401


def test_metadata_stays_open(server: str) -> None:
    status, _, _ = raw(server, "GET", "/.well-known/authzen-configuration", [])
    assert status == 200
