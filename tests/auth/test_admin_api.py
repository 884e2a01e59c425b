"""/admin/: users and clients behind the admin token."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.auth.conftest import PASSWORD, SECRET, Harness, basic, claims, make_settings, sign, start_harness


async def test_admin_requires_token(auth: Harness) -> None:
    """Without the admin token, or with a wrong one, the admin API answers 401."""
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic YWRtaW4="}):
        r = await auth.http.get("/admin/clients", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized"


async def test_client_lifecycle(auth: Harness) -> None:
    """Create, list, disable and delete a client; the secret is never echoed."""
    await auth.add_client("svc")
    listed = (await auth.http.get("/admin/clients", headers=auth.admin)).json()["clients"]
    assert [c["client_id"] for c in listed] == ["svc"]
    assert "secret" not in str(listed)
    assert (await auth.http.post("/admin/clients/svc/disable", headers=auth.admin)).json()["disabled"] is True
    assert (await auth.http.delete("/admin/clients/svc", headers=auth.admin)).status_code == 204
    assert (await auth.http.delete("/admin/clients/svc", headers=auth.admin)).status_code == 404


async def test_user_lifecycle(auth: Harness) -> None:
    """Create, list, disable and delete a user; attributes round-trip, the password hash never leaves."""
    await auth.add_user("alice", {"department": "eng", "level": 3})
    users = (await auth.http.get("/admin/users", headers=auth.admin)).json()["users"]
    assert users[0]["username"] == "alice" and users[0]["attributes"] == {"department": "eng", "level": 3}
    assert "argon2" not in str(users)
    assert (await auth.http.post("/admin/users/alice/disable", headers=auth.admin)).status_code == 200
    assert (await auth.http.delete("/admin/users/alice", headers=auth.admin)).status_code == 204
    assert (await auth.http.post("/admin/users/alice/disable", headers=auth.admin)).status_code == 404


async def test_duplicate_is_conflict(auth: Harness) -> None:
    """Creating an existing client is 409 and changes nothing."""
    await auth.add_client("svc")
    r = await auth.http.post(
        "/admin/clients",
        headers=auth.admin,
        json={
            "client_id": "svc",
            "client_secret": "another-secret",
            "scopes": [],
            "grant_types": ["client_credentials"],
        },
    )
    assert r.status_code == 409
    assert (await auth.token("svc"))["access_token"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"client_id": "bad id", "client_secret": "longenough"}, "client_id"),
        ({"client_id": "x\r\nx-meshauth-subject: root", "client_secret": "longenough"}, "client_id"),
        ({"client_id": "ok", "client_secret": "short"}, "client_secret"),
        ({"client_id": "ok", "client_secret": "longenough", "scopes": "read"}, "scopes"),
        ({"client_id": "ok", "client_secret": "longenough", "scopes": ["has space"]}, "scopes"),
        ({"client_id": "ok", "client_secret": "longenough", "grant_types": ["implicit"]}, "grant_types"),
        ({"client_id": "ok", "client_secret": "longenough", "grant_types": []}, "grant_types"),
        ({"client_id": "ok", "client_secret": "longenough", "role": "admin"}, "role"),
    ],
)
async def test_invalid_client_fields(auth: Harness, body: dict[str, object], field: str) -> None:
    """Bad client fields are 400 naming the field; nothing is written."""
    r = await auth.http.post("/admin/clients", headers=auth.admin, json=body)
    assert r.status_code == 400
    assert field in r.json()["error_description"]
    assert (await auth.http.get("/admin/clients", headers=auth.admin)).json()["clients"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "../etc", "password": "longenough"}, "username"),
        ({"username": "bob", "password": 12345678}, "password"),
        ({"username": "bob", "password": "longenough", "attributes": [1]}, "attributes"),
    ],
)
async def test_invalid_user_fields(auth: Harness, body: dict[str, object], field: str) -> None:
    """Bad user fields are 400 naming the field; nothing is written."""
    r = await auth.http.post("/admin/users", headers=auth.admin, json=body)
    assert r.status_code == 400
    assert field in r.json()["error_description"]
    assert (await auth.http.get("/admin/users", headers=auth.admin)).json()["users"] == []


async def test_malformed_admin_bodies(auth: Harness) -> None:
    """Non-JSON, non-object and oversized bodies are refused with a clear error."""
    for content, ctype, status in (
        (b"{", "application/json", 400),
        (b'"str"', "application/json", 400),
        (b"a=b", "text/plain", 415),
        (b'{"a":"' + b"x" * 70_000 + b'"}', "application/json", 413),
    ):
        r = await auth.http.post("/admin/users", headers={**auth.admin, "content-type": ctype}, content=content)
        assert r.status_code == status
        assert r.json()["error"]


async def test_disabling_a_user_ends_sessions_and_tokens(auth: Harness) -> None:
    """Disable ends the user's sessions, refresh tokens and the access tokens issued with them."""
    await auth.add_client()
    await auth.add_user()
    login = await auth.http.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
    cookie = {"cookie": f"meshauth_session={login.cookies['meshauth_session']}"}
    grant = await auth.token(grant_type="password", username="alice", password=PASSWORD)
    assert (await auth.http.get("/ext_authz/", headers=cookie)).status_code == 200
    r = await auth.http.post("/admin/users/alice/disable", headers=auth.admin)
    assert r.json()["ended"] == 2
    assert (await auth.http.get("/ext_authz/", headers=cookie)).status_code == 401
    assert (await auth.gate(login.json()["access_token"])).status_code == 401
    assert (await auth.gate(grant["access_token"])).status_code == 401
    r = await auth.http.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]},
        headers=basic("svc", SECRET),
    )
    assert r.json()["error"] == "invalid_grant"


async def test_deleting_a_user_ends_sessions(auth_sqlite: Harness) -> None:
    """Delete ends sessions too: a user re-created with the same name inherits nothing."""
    h = auth_sqlite
    await h.add_user()
    login = await h.http.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
    cookie = {"cookie": f"meshauth_session={login.cookies['meshauth_session']}"}
    assert (await h.http.delete("/admin/users/alice", headers=h.admin)).status_code == 204
    await h.add_user()
    assert (await h.http.get("/ext_authz/", headers=cookie)).status_code == 401


async def test_client_and_user_names_do_not_collide(auth: Harness) -> None:
    """A name cannot be both a client id and a username, and the session client id is reserved."""
    await auth.add_user("alice")
    body = {"client_id": "alice", "client_secret": "longenough", "grant_types": ["client_credentials"]}
    assert (await auth.http.post("/admin/clients", headers=auth.admin, json=body)).status_code == 409
    body["client_id"] = "meshauth-session"
    assert (await auth.http.post("/admin/clients", headers=auth.admin, json=body)).status_code == 409
    await auth.add_client("svc")
    r = await auth.http.post("/admin/users", headers=auth.admin, json={"username": "svc", "password": "longenough"})
    assert r.status_code == 409


async def test_disabling_a_client_refuses_its_tokens_everywhere(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """Tokens a client already holds are refused on every replica once it is disabled, and on new ones."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path)
    async for a in start_harness(settings):
        async for b in start_harness(settings):
            await a.add_client()
            token = (await a.token())["access_token"]
            assert (await b.gate(token)).status_code == 200
            assert (await a.http.post("/admin/clients/svc/disable", headers=a.admin)).status_code == 200
            deadline = time.monotonic() + 2
            while (await b.gate(token)).status_code != 401:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.005)
            async for late in start_harness(settings):
                assert (await late.gate(token)).status_code == 401


async def test_disabled_user_tokens_from_any_grant_refused(auth_sqlite: Harness) -> None:
    """Every token whose subject is a disabled user is refused, not only the ones tracked by jti."""
    h = auth_sqlite
    await h.add_user()
    untracked = h.app.service.issuer.issue(subject="alice", client_id="meshauth-session", scope="").token
    assert (await h.gate(untracked)).status_code == 200
    await h.http.post("/admin/users/alice/disable", headers=h.admin)
    assert (await h.gate(untracked)).status_code == 401
    # A token issued after the cut-off second is not covered by it (iat two seconds on, within leeway).
    later = int(time.time()) + 2
    fresh = sign(h, claims(h, sub="alice", client_id="meshauth-session", scope="", iat=later))
    assert (await h.gate(fresh)).status_code == 200


async def test_two_authorization_lines_are_refused(auth: Harness) -> None:
    """Two Authorization lines are one credential too many, whichever carries the token (a proxy
    reading the other line would see another caller): 401, as the policy service's guard answers."""
    token = auth.admin["authorization"]
    for lines in ([token, "Bearer wrong"], ["Bearer wrong", token], [token, token]):
        r = await auth.http.get("/admin/clients", headers=[("authorization", v) for v in lines])
        assert r.status_code == 401, lines
        assert r.json()["error"] == "unauthorized"
