"""The policy app under granian's RSGI interface (a real server): decisions natively, everything
else through the ASGI shim, with the same statuses and shapes as under ASGI."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.policy.conftest import served

TOKEN = "rsgi-test-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m meshauth.policy`` (RSGI) on a free port over a fresh SQLite file."""
    with served(
        ["-m", "meshauth.policy"],
        tmp_path_factory.mktemp("var"),
        TOKEN,
        MESHAUTH_POLICY_MAX_REQUEST_BYTES="4096",
    ) as url:
        yield url


def call(url: str, method: str, path: str, body: Any = None, *, admin: bool = False) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    headers = {"content-type": "application/json"}
    if admin:
        headers["authorization"] = f"Bearer {TOKEN}"
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def ask(subject: str) -> dict[str, Any]:
    return {
        "subject": {"type": "User", "id": subject},
        "action": {"name": "view"},
        "resource": {"type": "Doc", "id": "d"},
    }


def test_admin_and_decisions_over_rsgi(server: str) -> None:
    """Admin writes go through the shim; decisions, batches and their errors are answered natively."""
    status, body = call(
        server,
        "POST",
        "/admin/stores/r/policies",
        {"policies": 'forbid(principal == User::"bob", action, resource);\npermit(principal, action, resource);'},
        admin=True,
    )
    assert (status, body["version"]) == (201, 1)
    status, decision = call(server, "POST", "/stores/r/access/v1/evaluation", ask("alice"))
    assert (status, decision["decision"], decision["context"]["revision"]) == (200, True, 1)
    status, batch = call(server, "POST", "/stores/r/access/v1/evaluations", {"evaluations": [ask("alice"), ask("bob")]})
    assert [e["decision"] for e in batch["evaluations"]] == [True, False]


def test_errors_keep_their_shape_over_rsgi(server: str) -> None:
    """404, 400 naming the field, 413, 401, 405 and unknown paths all answer in the error shape."""
    assert call(server, "POST", "/stores/none/access/v1/evaluation", ask("a"))[0] == 404
    status, body = call(server, "POST", "/access/v1/evaluation", {"subject": {"type": "User"}})
    assert (status, body["field"]) == (400, "subject.id")
    status, body = call(server, "POST", "/access/v1/evaluation", b"x" * 5000)
    assert (status, body["error"]) == (413, "request_too_large")
    assert call(server, "GET", "/admin/stores")[0] == 401
    assert call(server, "GET", "/access/v1/evaluation")[0] == 405
    assert call(server, "GET", "/nowhere")[1]["error"] == "not_found"


def test_well_known_over_rsgi(server: str) -> None:
    """The AuthZEN metadata is served through the shim with the request's host."""
    status, meta = call(server, "GET", "/.well-known/authzen-configuration")
    assert status == 200
    assert meta["access_evaluation_endpoint"] == f"{server}/access/v1/evaluation"


def test_chunked_bodies_over_rsgi(server: str) -> None:
    """A body sent without Content-Length (chunked) is read, and refused with 413 past the limit."""
    import http.client
    from urllib.parse import urlparse

    target = urlparse(server)
    assert target.hostname is not None
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
    good = json.dumps(ask("alice")).encode()
    conn.request("POST", "/access/v1/evaluation", body=iter([good[:10], good[10:]]), encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200
    assert "decision" in json.loads(resp.read())
    conn.request("POST", "/access/v1/evaluation", body=iter([b"x" * 3000, b"y" * 3000]), encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 413
    resp.read()
    conn.close()


class _Scope:
    """Just enough of granian's RSGI scope for ``DecisionFront.__rsgi__``."""

    def __init__(self, method: str, path: str, headers: dict[str, str]) -> None:
        self.proto, self.method, self.path, self.headers = "http", method, path, headers
        self.http_version, self.scheme, self.query_string = "1.1", "http", ""
        self.client, self.server = "127.0.0.1:5000", "127.0.0.1:8090"


class _Protocol:
    """An RSGI protocol whose body is ``body``; records the response status."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.status: int | None = None

    async def __call__(self) -> bytes:
        return self.body

    def response_bytes(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status


async def _post_rsgi(front: Any, path: str, body: bytes, authorization: str | None) -> int | None:
    headers = {"content-type": "application/json", "content-length": str(len(body))}
    if authorization is not None:
        headers["authorization"] = authorization
    protocol = _Protocol(body)
    await front.__rsgi__(_Scope("POST", path, headers), protocol)
    return protocol.status


async def test_rsgi_buffers_only_request_sized_bodies_without_the_admin_token(make_app) -> None:  # type: ignore[no-untyped-def]
    """A non-decision request without the admin token is held to the request limit, not the upload
    limit: an unauthenticated body between the two is refused (413) before it is buffered."""
    big = b"[" + b" " * 8000 + b"]"
    async with make_app(policy_max_request_bytes=1024) as (front, _client):
        assert await _post_rsgi(front, "/admin/stores/default/entities", big, None) == 413
        assert await _post_rsgi(front, "/admin/stores/default/entities", big, "Bearer wrong") == 413
        assert await _post_rsgi(front, "/healthz", big, "Bearer test-admin-token") == 413


async def test_rsgi_admin_token_unlocks_the_upload_limit(make_app) -> None:  # type: ignore[no-untyped-def]
    """With the admin token an admin upload larger than the request limit is accepted."""
    big = b"[" + b" " * 8000 + b"]"
    async with make_app(policy_max_request_bytes=1024) as (front, _client):
        assert await _post_rsgi(front, "/admin/stores/default/entities", big, "Bearer test-admin-token") == 200


def test_entity_ids_are_url_decoded_once_over_rsgi(server: str) -> None:
    """Over RSGI too, ``…/entities/User/a%2541`` names the id ``a%41`` and ``x%2Fy`` the id ``x/y``."""
    entities = [
        {"uid": {"type": "User", "id": "a%41"}, "attrs": {"n": 1}, "parents": []},
        {"uid": {"type": "User", "id": "aA"}, "attrs": {"n": 2}, "parents": []},
        {"uid": {"type": "User", "id": "x/y"}, "attrs": {"n": 3}, "parents": []},
    ]
    assert call(server, "POST", "/admin/stores/ids/entities", entities, admin=True)[0] == 200
    for path, n in (("a%2541", 1), ("aA", 2), ("x%2Fy", 3)):
        status, body = call(server, "GET", f"/admin/stores/ids/entities/User/{path}", admin=True)
        assert status == 200, body
        assert body["attrs"] == {"n": n}


def test_two_workers_read_each_others_writes(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Two worker processes behind one port, refresh tick 60 s: a write through either is answered
    by both at once, through the shared write signal alone."""
    var = tmp_path_factory.mktemp("two-workers")
    env = {"MESHAUTH_POLICY_WORKERS": "2", "MESHAUTH_POLICY_REFRESH_INTERVAL": "60"}
    with served(["-m", "meshauth.policy.server"], var, TOKEN, **env) as url:
        for text, want in (
            ("forbid(principal, action, resource);", False),
            ("permit(principal, action, resource);", True),
        ):
            status, _ = call(url, "POST", "/admin/stores/w/policies", {"policies": text, "activate": True}, admin=True)
            assert status == 201
            # A new connection per request: the kernel spreads them over both workers.
            answers = [call(url, "POST", "/stores/w/access/v1/evaluation", ask("u"))[1]["decision"] for _ in range(40)]
            assert answers == [want] * 40
