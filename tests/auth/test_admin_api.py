"""/admin/: users and clients behind the admin token."""

from __future__ import annotations

import pytest

from tests.auth.conftest import Harness


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
