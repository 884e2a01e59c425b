"""RFC 7662 introspection and RFC 7009 revocation."""

from __future__ import annotations

import time
from pathlib import Path

from redis.asyncio import Redis

from tests.auth.conftest import PASSWORD, SECRET, Harness, basic, claims, make_settings, sign, start_harness


async def test_introspect_active_access_token(auth: Harness) -> None:
    """A live access token introspects as active with its claims."""
    await auth.add_client()
    token = (await auth.token(scope="read"))["access_token"]
    r = await auth.http.post("/oauth2/introspect", data={"token": token}, headers=basic("svc", SECRET))
    assert r.status_code == 200
    body = r.json()
    assert body["active"] is True
    assert body["client_id"] == "svc" and body["sub"] == "svc" and body["scope"] == "read"
    assert body["token_type"] == "Bearer"
    assert {"exp", "iat", "iss", "aud", "jti"} <= body.keys()


async def test_introspect_garbage_is_inactive(auth: Harness) -> None:
    """Anything that is not a live token is just {"active": false}."""
    await auth.add_client()
    for token in ("garbage", "a.b.c", "x" * 10_000):
        r = await auth.http.post("/oauth2/introspect", data={"token": token}, headers=basic("svc", SECRET))
        assert r.json() == {"active": False}


async def test_introspect_expired_token_within_the_leeway_is_inactive(auth_sqlite: Harness) -> None:
    """Past its ``exp`` a token is not active (RFC 7662 §2.2), though the verifiers' clock-skew leeway
    still accepts it: introspection is this server reading its own clock. It answered ``active: true``
    with an ``exp`` in the past for up to ``MESHAUTH_LEEWAY`` (at most 300 s) after expiry."""
    h = auth_sqlite
    await h.add_client()
    now = int(time.time())
    for exp in (now - 5, now):
        token = sign(h, claims(h, sub="svc", iat=now - 900, exp=exp))
        r = await h.http.post("/oauth2/introspect", data={"token": token}, headers=basic("svc", SECRET))
        assert r.json() == {"active": False}, exp - now
    live = sign(h, claims(h, sub="svc", iat=now - 900, exp=now + 60))
    r = await h.http.post("/oauth2/introspect", data={"token": live}, headers=basic("svc", SECRET))
    assert r.json()["active"] is True


async def test_introspect_requires_client_auth(auth: Harness) -> None:
    """Introspection is for authenticated clients only."""
    r = await auth.http.post("/oauth2/introspect", data={"token": "x"})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


async def test_introspect_requires_token(auth: Harness) -> None:
    """A request without token is invalid_request."""
    await auth.add_client()
    r = await auth.http.post("/oauth2/introspect", data={}, headers=basic("svc", SECRET))
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


async def test_introspect_refresh_token(auth: Harness) -> None:
    """A live refresh token introspects as active; a used one as inactive."""
    await auth.add_client()
    await auth.add_user()
    first = await auth.token(grant_type="password", username="alice", password=PASSWORD)
    r = await auth.http.post(
        "/oauth2/introspect",
        data={"token": first["refresh_token"], "token_type_hint": "refresh_token"},
        headers=basic("svc", SECRET),
    )
    assert r.json()["active"] is True and r.json()["sub"] == "alice"
    await auth.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    r = await auth.http.post("/oauth2/introspect", data={"token": first["refresh_token"]}, headers=basic("svc", SECRET))
    assert r.json() == {"active": False}


async def test_revoke_access_token(auth: Harness) -> None:
    """A revoked access token is refused by the gate and introspects inactive."""
    await auth.add_client()
    token = (await auth.token())["access_token"]
    assert (await auth.gate(token)).status_code == 200
    r = await auth.http.post("/oauth2/revoke", data={"token": token}, headers=basic("svc", SECRET))
    assert r.status_code == 200
    gate = await auth.gate(token)
    assert gate.status_code == 401
    assert "revoked" in gate.headers["www-authenticate"]
    r = await auth.http.post("/oauth2/introspect", data={"token": token}, headers=basic("svc", SECRET))
    assert r.json() == {"active": False}


async def test_revoke_persists_in_redis(auth: Harness) -> None:
    """Revocation writes the jti to Redis with a TTL no longer than the token's remaining life."""
    await auth.add_client()
    token = (await auth.token())["access_token"]
    await auth.http.post("/oauth2/revoke", data={"token": token}, headers=basic("svc", SECRET))
    identity = await auth.app.service.verifier.verify(token)
    key = auth.app.service.rkeys.revoked(identity.jti)
    ttl = await auth.app.service.redis.ttl(key)
    assert 0 < ttl <= auth.app.settings.access_token_ttl + auth.app.settings.leeway


async def test_revoke_unknown_token_is_ok(auth: Harness) -> None:
    """RFC 7009 §2.2: an invalid token still gets 200."""
    await auth.add_client()
    r = await auth.http.post("/oauth2/revoke", data={"token": "nonsense"}, headers=basic("svc", SECRET))
    assert r.status_code == 200


async def test_revoke_other_clients_token_refused(auth: Harness) -> None:
    """A client cannot revoke another client's token."""
    await auth.add_client("svc")
    await auth.add_client("other")
    token = (await auth.token("svc"))["access_token"]
    r = await auth.http.post("/oauth2/revoke", data={"token": token}, headers=basic("other", SECRET))
    assert r.status_code == 400
    assert r.json()["error"] == "unauthorized_client"
    assert (await auth.gate(token)).status_code == 200


async def test_revoke_refresh_token_revokes_family(auth: Harness) -> None:
    """Revoking a refresh token ends it and the access tokens of its grant (RFC 7009 §2.1)."""
    await auth.add_client()
    await auth.add_user()
    first = await auth.token(grant_type="password", username="alice", password=PASSWORD)
    r = await auth.http.post(
        "/oauth2/revoke",
        data={"token": first["refresh_token"], "token_type_hint": "refresh_token"},
        headers=basic("svc", SECRET),
    )
    assert r.status_code == 200
    assert (await auth.gate(first["access_token"])).status_code == 401
    r = await auth.http.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        headers=basic("svc", SECRET),
    )
    assert r.json()["error"] == "invalid_grant"


async def test_revoke_requires_client_auth(auth: Harness) -> None:
    """Revocation needs client authentication."""
    r = await auth.http.post("/oauth2/revoke", data={"token": "x"})
    assert r.status_code == 401


async def test_wrong_hint_still_finds_token(auth: Harness) -> None:
    """A wrong token_type_hint does not hide a live token (RFC 7662 §2.1)."""
    await auth.add_client()
    await auth.add_user()
    first = await auth.token(grant_type="password", username="alice", password=PASSWORD)
    for token, hint in ((first["access_token"], "refresh_token"), (first["refresh_token"], "access_token")):
        r = await auth.http.post(
            "/oauth2/introspect", data={"token": token, "token_type_hint": hint}, headers=basic("svc", SECRET)
        )
        assert r.json()["active"] is True


async def test_revoke_with_wrong_hint_still_revokes(auth_sqlite: Harness) -> None:
    """RFC 7009: an access token revoked with token_type_hint=refresh_token is revoked all the same."""
    h = auth_sqlite
    await h.add_client()
    token = (await h.token())["access_token"]
    r = await h.http.post(
        "/oauth2/revoke", data={"token": token, "token_type_hint": "refresh_token"}, headers=basic("svc", SECRET)
    )
    assert r.status_code == 200
    assert (await h.gate(token)).status_code == 401


async def test_introspection_before_revocations_load_is_inactive(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """A replica whose revocation mirror has not loaded (here: the stream key holds a string, so every
    resync fails) knows no revocation: the gate answers 503 for a token, and introspection must not
    answer ``active: true`` for one that was revoked — a resource server would accept it."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path)
    async for h in start_harness(settings):
        await h.add_client()
        token = (await h.token())["access_token"]
        r = await h.http.post("/oauth2/revoke", data={"token": token}, headers=basic("svc", SECRET))
        assert r.status_code == 200
    stream = f"{settings.redis_prefix}invalidations"
    await redis.delete(stream)
    await redis.set(stream, "not a stream")
    async for h in start_harness(settings):
        assert not h.app.service.listener.synced
        assert (await h.gate(token)).status_code == 503
        r = await h.http.post("/oauth2/introspect", data={"token": token}, headers=basic("svc", SECRET))
        assert r.json() == {"active": False}
