"""The admin API's error contract: every failure is a JSON ``{"error", "error_description"}``
answer with a deliberate status — bad path values 400/404, a read-only database 503, a bug 500 —
never an empty 500."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from meshauth.policy.admin import Admin
from tests.policy.conftest import ADMIN, TOKEN, push, served

ALLOW = "permit(principal, action, resource);"


@pytest.mark.parametrize("path", ["policies/%C2%B2", "policies/%C2%B2/activate", "policies/%D9%A3"])
async def test_non_ascii_digit_version_is_400(client: httpx.AsyncClient, path: str) -> None:
    """A version that is a Unicode digit (``²``, ``٣``) but not an ASCII number is a 400."""
    await push(client, ALLOW)
    method = client.post if path.endswith("activate") else client.get
    r = await method(f"/admin/stores/default/{path}", headers=ADMIN)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"


@pytest.mark.parametrize("suffix", ["", "/activate"])
async def test_huge_version_is_404(client: httpx.AsyncClient, suffix: str) -> None:
    """A 26-digit version cannot exist: 404, not a database overflow."""
    await push(client, ALLOW)
    method = client.post if suffix else client.get
    r = await method(f"/admin/stores/default/policies/{'9' * 26}{suffix}", headers=ADMIN)
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"


@pytest.mark.parametrize("suffix", ["", "/activate"])
async def test_version_padded_with_zeros_is_its_number(client: httpx.AsyncClient, suffix: str) -> None:
    """A version written with 5,000 leading zeros is that version (past ``int()``'s 4,300 digits: not a 500)."""
    await push(client, ALLOW)
    method = client.post if suffix else client.get
    r = await method(f"/admin/stores/default/policies/{'0' * 5_000}1{suffix}", headers=ADMIN)
    assert r.status_code == 200, r.text
    r = await method(f"/admin/stores/default/policies/{'0' * 5_000}2{suffix}", headers=ADMIN)
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/stores/default/policies", b'{"policies": "permit(principal, action, resource);\xff"}'),
        ("/admin/stores/default/entities", b'[{"uid": {"type": "User", "id": "\xc3"}, "attrs": {}, "parents": []}]'),
    ],
)
async def test_invalid_utf8_in_a_json_upload_is_400(client: httpx.AsyncClient, path: str, body: bytes) -> None:
    """Invalid UTF-8 inside a JSON string of an admin upload is a 400 naming the problem."""
    r = await client.post(path, content=body, headers={**ADMIN, "content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    assert "UTF-8" in r.json()["error_description"]


async def test_uncaught_error_is_a_json_500(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in an admin route answers the generic JSON 500 (and leaks nothing)."""

    async def broken(self: Admin, store: str) -> dict[str, Any]:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Admin, "versions", broken)
    r = await client.get("/admin/stores/default/policies", headers=ADMIN)
    assert r.status_code == 500
    assert r.json()["error"] == "server_error"
    assert "secret" not in r.text


async def test_read_only_database_is_503(make_app: Any, tmp_path: Path, sqlite_url: str) -> None:
    """With the database read-only, policy and entity writes answer 503 temporarily_unavailable;
    reads still work."""
    async with make_app(database_url=sqlite_url) as (_app, client):
        await push(client, ALLOW)
    path = sqlite_url.split(":///", 1)[1]
    read_only = f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"
    async with make_app(database_url=read_only) as (_app, client):
        r = await client.post("/admin/stores/default/policies", json={"policies": ALLOW}, headers=ADMIN)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "temporarily_unavailable"
        r = await client.post("/admin/stores/default/entities", json=[], headers=ADMIN)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "temporarily_unavailable"
        r = await client.get("/admin/stores/default/policies", headers=ADMIN)
        assert r.status_code == 200, r.text


def test_served_read_only_database_is_a_json_503(tmp_path: Path, sqlite_template: Path) -> None:
    """Under the real server (granian, RSGI), a write to a read-only database answers a JSON 503,
    not an empty 500."""
    db = tmp_path / "m.db"
    shutil.copy(sqlite_template, db)
    read_only = f"sqlite:///file:{db}?mode=ro&uri=true"
    args = ["-m", "meshauth", "serve", "policy", "--no-migrate", "--interface", "rsgi"]
    with served(args, tmp_path, TOKEN, MESHAUTH_DATABASE_URL=read_only) as url:
        r = httpx.post(f"{url}/admin/stores/default/policies", json={"policies": ALLOW}, headers=ADMIN, timeout=10)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "temporarily_unavailable"


class _RsgiScope:
    """The fields of granian's RSGI scope that ``meshauth.rsgi_bridge.forward`` reads."""

    proto = "http"
    http_version = "1.1"
    scheme = "http"
    client = "127.0.0.1:5000"
    server = "127.0.0.1:8090"
    query_string = ""

    def __init__(self, method: str, path: str, headers: dict[str, str]) -> None:
        self.method = method
        self.path = path
        self.headers = headers


class _RsgiProtocol:
    """Records what the app answers through granian's ``response_bytes``."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, list[tuple[str, str]], bytes]] = []

    async def __call__(self) -> bytes:
        return b""

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.answers.append((status, headers, body))


async def test_uncaught_error_under_rsgi_is_a_json_500(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the RSGI bridge (what ``meshauth serve policy`` runs), a bug in an admin route
    answers the JSON 500: Starlette's re-raise no longer escapes before the answer is passed on."""
    from granian.rsgi import HTTPProtocol, Scope

    from meshauth.rsgi_bridge import forward

    async def broken(self: Admin, store: str) -> dict[str, Any]:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Admin, "versions", broken)
    async with make_app() as (app, _client):
        scope = _RsgiScope(
            "GET", "/admin/stores/default/policies", {"authorization": f"Bearer {TOKEN}", "content-length": "0"}
        )
        protocol = _RsgiProtocol()
        # The two fakes carry what forward reads; granian's own classes cannot be built outside granian.
        await forward(app.app, cast("Scope", scope), cast("HTTPProtocol", protocol), max_body=1024)
    ((status, _headers, body),) = protocol.answers
    assert status == 500
    assert b'"server_error"' in body
    assert b"secret" not in body


async def test_two_authorization_lines_are_refused(client: httpx.AsyncClient) -> None:
    """Two Authorization lines are refused whichever carries the token, as the decision guard does."""
    token = ADMIN["authorization"]
    for lines in ([token, "Bearer wrong"], ["Bearer wrong", token], [token, token]):
        r = await client.get("/admin/stores", headers=[("authorization", v) for v in lines])
        assert r.status_code == 401, lines
        assert r.json()["error"] == "invalid_token"
        r = await client.put("/admin/stores/s2", headers=[("authorization", v) for v in lines])
        assert r.status_code == 401, lines


async def test_a_trailing_slash_is_a_404_not_a_redirect(client: httpx.AsyncClient) -> None:
    """``DELETE …/entities/User/a/`` was a 307 with no body to the path without the slash."""
    r = await client.delete("/admin/stores/default/entities/User/a/", headers=ADMIN)
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    r = await client.post("/admin/stores/default/policies/", json={"policies": ""}, headers=ADMIN)
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
