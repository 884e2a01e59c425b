"""Bulk admin operations (issue 11): /admin/users:bulk, /admin/clients:bulk and /oauth2/revoke:bulk."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher, Type
from redis.asyncio import Redis

from tests.auth.conftest import PASSWORD, SECRET, Harness, basic, make_settings, start_harness

MIGRATED_PASSWORD = "migrated password 1"
MIGRATED = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1, type=Type.ID).hash(MIGRATED_PASSWORD)


@pytest.fixture
async def bulk(db_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> AsyncIterator[Harness]:
    """An auth service on both databases, with small bulk limits and a two-process hashing pool."""
    settings = make_settings(
        db_url, valkey_url, tmp_path, bulk_max_items=50, bulk_max_bytes=64 * 1024, bulk_hash_processes=2
    )
    async for h in start_harness(settings):
        yield h


async def _users(h: Harness, items: Any, *, partial: str | None = None, raw: bytes | None = None) -> Any:
    params = {"partial": partial} if partial is not None else {}
    headers = {**h.admin, "content-type": "application/json"}
    return await h.http.post(
        "/admin/users:bulk", params=params, headers=headers, content=raw if raw is not None else json.dumps(items)
    )


async def _names(h: Harness) -> dict[str, Any]:
    users = (await h.http.get("/admin/users", headers=h.admin)).json()["users"]
    return {u["username"]: u for u in users}


async def _login(h: Harness, username: str, password: str) -> int:
    r = await h.http.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": username, "password": password},
        headers=basic("svc", SECRET),
    )
    return r.status_code


async def test_users_created_then_updated_and_can_log_in(bulk: Harness) -> None:
    """Plain passwords are hashed, PHC hashes stored as given; a second bulk updates attributes."""
    await bulk.add_client("svc")
    items = [
        {"username": "alice", "password": PASSWORD, "attributes": {"team": "a"}},
        {"username": "mig", "password_hash": MIGRATED},
    ]
    r = await _users(bulk, items)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "committed": True,
        "created": [{"index": 0, "username": "alice"}, {"index": 1, "username": "mig"}],
        "updated": [],
        "refused": [],
    }
    assert await _login(bulk, "alice", PASSWORD) == 200
    assert await _login(bulk, "mig", MIGRATED_PASSWORD) == 200  # verified against the migrated hash
    stored = await bulk.app.service.accounts.get_user("mig")
    assert stored is not None and stored.password_hash == MIGRATED  # not re-hashed
    r = await _users(bulk, [{"username": "alice", "password": PASSWORD, "attributes": {"team": "b"}}])
    assert r.json()["updated"] == [{"index": 0, "username": "alice"}]
    assert (await _names(bulk))["alice"]["attributes"] == {"team": "b"}


async def test_all_or_none_by_default(bulk: Harness) -> None:
    """One bad item: 422 listing it by index with its reason, and nothing written."""
    items = [
        {"username": "ok1", "password": PASSWORD},
        {"username": "bad name", "password": PASSWORD},
        {"username": "ok2", "password_hash": "$argon2i$v=19$m=65536,t=3,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"},
    ]
    r = await _users(bulk, items)
    assert r.status_code == 422
    body = r.json()
    assert body["committed"] is False and body["error"] == "invalid_request"
    assert [x["index"] for x in body["refused"]] == [1, 2]
    assert "username must be" in body["refused"][0]["reason"]
    assert "only argon2id" in body["refused"][1]["reason"]
    assert await _names(bulk) == {}


async def test_partial_writes_the_valid_items(bulk: Harness) -> None:
    """?partial=true writes the valid items and refuses the others."""
    items = [{"username": "ok1", "password": PASSWORD}, {"username": "x", "password": "short"}, {"nope": 1}]
    r = await _users(bulk, items, partial="true")
    assert r.status_code == 200
    body = r.json()
    assert body["created"] == [{"index": 0, "username": "ok1"}]
    assert [(x["index"], x["reason"][:8]) for x in body["refused"]] == [(1, "password"), (2, "unknown ")]
    assert set(await _names(bulk)) == {"ok1"}


async def test_duplicates_and_other_kind_are_refused(bulk: Harness) -> None:
    """A name twice in one bulk is refused at both places; a name held by a client is refused."""
    await bulk.add_client("svc")
    items = [
        {"username": "dup", "password": PASSWORD},
        {"username": "svc", "password": PASSWORD},
        {"username": "dup", "password": PASSWORD + "x"},
        {"username": "fine", "password_hash": MIGRATED},
    ]
    body = (await _users(bulk, items, partial="true")).json()
    reasons = {x["index"]: x["reason"] for x in body["refused"]}
    assert set(reasons) == {0, 1, 2}
    assert "appears more than once (items 0, 2)" in reasons[0]
    assert "already taken by a client" in reasons[1]
    assert set(await _names(bulk)) == {"fine"}


@pytest.mark.parametrize(
    ("raw", "status", "text"),
    [
        (b"\xff\xfe[]", 400, "UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, 413, "over 65536 bytes"),
        (b"[" * 3000 + b"]" * 3000, 400, "nested too deeply"),
        (b'{"username": "a"}', 400, "JSON array"),
        (b"[1, 2", 400, "not valid JSON"),
        (json.dumps([{"username": f"u{n}", "password_hash": MIGRATED} for n in range(51)]).encode(), 413, "51 items"),
    ],
)
async def test_hostile_bodies(bulk: Harness, raw: bytes, status: int, text: str) -> None:
    """Non-UTF-8, over the byte limit, deeply nested, not an array, truncated, over the item limit."""
    r = await _users(bulk, None, raw=raw)
    assert r.status_code == status, r.text
    assert text in r.json()["error_description"]
    assert await _names(bulk) == {}


async def test_nul_and_bad_partial_and_no_token(bulk: Harness) -> None:
    """NUL characters refuse their item; ``partial`` must be true or false; the admin token is required."""
    items = [
        {"username": "a\x00b", "password": PASSWORD},
        {"username": "c", "password": PASSWORD, "attributes": {"k\x00": "v"}},
    ]
    body = (await _users(bulk, items, partial="true")).json()
    assert [x["index"] for x in body["refused"]] == [0, 1]
    assert all("NUL" in x["reason"] for x in body["refused"])
    assert (await _users(bulk, [], partial="yes")).status_code == 400
    r = await bulk.http.post("/admin/users:bulk", json=[])
    assert r.status_code == 401


async def test_bulk_update_racing_a_disable_leaves_the_user_disabled(bulk: Harness) -> None:
    """An admin bulk update and a disable of one of its users, at once: the user ends disabled and
    cannot log in, whichever committed first."""
    await bulk.add_client("svc")
    items = [{"username": f"u{n}", "password_hash": MIGRATED} for n in range(40)]
    assert (await _users(bulk, items)).status_code == 200
    for _ in range(3):
        update, disable, login = await asyncio.gather(
            _users(bulk, [{**i, "attributes": {"v": 2}} for i in items]),
            bulk.http.post("/admin/users/u7/disable", headers=bulk.admin),
            _login(bulk, "u7", MIGRATED_PASSWORD),
        )
        assert update.status_code == 200 and disable.status_code == 200
        assert login in (200, 400, 401)
        assert (await _names(bulk))["u7"]["disabled"] is True
        assert await _login(bulk, "u7", MIGRATED_PASSWORD) != 200


async def test_clients_bulk_creates_updates_and_refuses(bulk: Harness) -> None:
    """Clients: created with a hashed secret, updated (new secret works), reserved and bad items refused."""
    r = await bulk.http.post(
        "/admin/clients:bulk",
        headers=bulk.admin,
        json=[
            {"client_id": "c1", "client_secret": SECRET, "scopes": ["read"]},
            {"client_id": "meshauth-session", "client_secret": SECRET},
            {"client_id": "c2", "client_secret": SECRET, "grant_types": ["bogus"]},
        ],
        params={"partial": "true"},
    )
    body = r.json()
    assert body["created"] == [{"index": 0, "client_id": "c1"}]
    assert [x["index"] for x in body["refused"]] == [1, 2]
    ok = await bulk.http.post("/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("c1", SECRET))
    assert ok.status_code == 200
    r = await bulk.http.post(
        "/admin/clients:bulk", headers=bulk.admin, json=[{"client_id": "c1", "client_secret": "another-secret-1"}]
    )
    assert r.json()["updated"] == [{"index": 0, "client_id": "c1"}]
    new = await bulk.http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("c1", "another-secret-1")
    )
    assert new.status_code == 200
    old = await bulk.http.post("/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("c1", SECRET))
    assert old.status_code == 401


async def test_revoke_bulk(bulk: Harness) -> None:
    """Access tokens, refresh tokens and bare jtis revoked in one call; junk refused by index."""
    await bulk.add_client("svc")
    await bulk.add_user("alice")
    access = (await bulk.token())["access_token"]
    grant = await bulk.token(grant_type="password", username="alice", password=PASSWORD)
    other = (await bulk.token())["access_token"]
    assert (await bulk.gate(other)).status_code == 200
    r = await bulk.http.post(
        "/oauth2/revoke:bulk",
        headers=bulk.admin,
        json={"tokens": [access, grant["refresh_token"], "junk", 7], "jtis": ["some-jti", ""]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(x["field"], x["index"], x["kind"]) for x in body["revoked"]] == [
        ("tokens", 0, "access_token"),
        ("tokens", 1, "refresh_token"),
        ("jtis", 0, "jti"),
    ]
    assert [(x["field"], x["index"]) for x in body["refused"]] == [("tokens", 2), ("tokens", 3), ("jtis", 1)]
    assert (await bulk.gate(access)).status_code == 401
    assert (await bulk.gate(grant["access_token"])).status_code == 401  # issued from the revoked refresh token
    assert (await bulk.gate(other)).status_code == 200
    assert "some-jti" in bulk.app.service.denylist
    refreshed = await bulk.http.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]},
        headers=basic("svc", SECRET),
    )
    assert refreshed.status_code == 400
    assert (await bulk.http.post("/oauth2/revoke:bulk", json={"jtis": ["x"]})).status_code == 401
    bad = await bulk.http.post("/oauth2/revoke:bulk", headers=bulk.admin, json={"tokens": "x"})
    assert bad.status_code == 400
