"""Behaviours found missing in review: each was a way to be let in, or to crash, that is now closed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from redis.asyncio import Redis

from meshauth.auth import keys
from tests.auth.conftest import PASSWORD, SECRET, Harness, basic, make_settings, start_harness
from tests.auth.test_token_security import b64, claims, sign


async def test_revoked_token_stays_refused_through_the_leeway(auth_sqlite: Harness) -> None:
    """A revoked token past its exp but within the leeway is still refused (the denial outlives exp)."""
    h = auth_sqlite
    token = sign(h, claims(h, exp=int(time.time()) + 1))
    identity = await h.app.service.verifier.verify(token)
    await h.app.service.denylist.revoke(identity.jti, identity.exp)
    await asyncio.sleep(2.2)
    assert (await h.gate(token)).status_code == 401
    assert await h.app.service.redis.ttl(h.app.service.rkeys.revoked(identity.jti)) > 0


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


async def test_deeply_nested_token_header(auth_sqlite: Harness) -> None:
    """A header of thousands of nested arrays is a 401, not a RecursionError."""
    h = auth_sqlite
    for depth in (500, 5000):
        header = b64(b"[" * depth)
        r = await h.gate(f"{header}.{b64(b'{}')}.AA")
        assert r.status_code == 401


async def test_deeply_nested_json_body(auth_sqlite: Harness) -> None:
    """A JSON body nested past the parser's depth is a 400."""
    body = b"[" * 5000 + b"]" * 5000
    r = await auth_sqlite.http.post("/v1/sessions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


async def test_concurrent_guesses_are_throttled(sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    """Guesses sent in parallel cannot slip past the per-account limit: attempts are counted first."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path, throttle_max_per_account=5)
    async for h in start_harness(settings):
        await h.add_client()
        await h.add_user()
        form = {"grant_type": "password", "username": "alice", "password": "wrong-wrong"}
        responses = await asyncio.gather(
            *(h.http.post("/oauth2/token", data=form, headers=basic("svc", SECRET)) for _ in range(30))
        )
        codes = [r.status_code for r in responses]
        assert codes.count(400) <= 5
        assert codes.count(429) >= 25


async def test_gate_fails_closed_before_revocations_load(
    sqlite_url: str, valkey_server_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A replica that could not load the revocation list refuses bearer tokens with 503 and is not ready."""
    server = valkey_server_factory()
    url = f"redis://127.0.0.1:{server.port}"
    server.stop()
    async for h in start_harness(make_settings(sqlite_url, url, tmp_path)):
        token = h.app.service.issuer.issue(subject="svc", client_id="svc", scope="").token
        r = await h.gate(token)
        assert r.status_code == 503
        assert (await h.http.get("/readyz")).json()["checks"]["revocations"] != "ok"


async def test_forged_kids_cause_one_reload(auth_sqlite: Harness) -> None:
    """Many concurrent unknown kids trigger one key-table reload, not one each."""
    h = auth_sqlite
    store = h.app.service.keys
    loads = 0
    original = store._load

    async def counting() -> None:
        nonlocal loads
        loads += 1
        await original()

    store._load = counting  # type: ignore[method-assign]
    store._last_load = 0.0
    tokens = [sign(h, claims(h), kid=f"forged{i:04d}") for i in range(50)]
    responses = await asyncio.gather(*(h.gate(t) for t in tokens))
    assert {r.status_code for r in responses} == {401}
    assert loads == 1


async def test_forged_kid_with_database_down_is_401(auth_sqlite: Harness) -> None:
    """With the database gone, an unknown kid is still a plain 401 (no 500)."""
    h = auth_sqlite
    await h.app.service.engine.dispose()
    db = Path(h.app.settings.sqlalchemy_url.split(":///", 1)[1])
    db.unlink()
    db.mkdir()
    h.app.service.keys._last_load = 0.0
    r = await h.gate(sign(h, claims(h), kid="forgedkid"))
    assert r.status_code == 401


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


async def test_session_cookie_found_among_odd_cookies(auth_sqlite: Harness) -> None:
    """Other apps' unusual cookies on the same domain do not hide the session cookie."""
    h = auth_sqlite
    await h.add_user()
    login = await h.http.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
    sid = login.cookies["meshauth_session"]
    for before in ('x={"a":1}', "pref=a b", 'a=b"c', "junk"):
        r = await h.http.get("/ext_authz/", headers={"cookie": f"{before}; meshauth_session={sid}"})
        assert r.status_code == 200, before


async def test_trusted_proxy_forwards_the_real_address(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """Behind a trusted sidecar, one guesser is throttled by its own address, not everyone's."""
    settings = make_settings(
        sqlite_url, valkey_url, tmp_path, throttle_max_per_address=2, trusted_proxies=("10.0.0.0/8",)
    )
    async for h in start_harness(settings):  # the harness's peer address is 10.1.2.3
        await h.add_client()
        for i in range(3):
            form = {"grant_type": "password", "username": f"u{i}", "password": "guess-guess"}
            r = await h.http.post(
                "/oauth2/token", data=form, headers={**basic("svc", SECRET), "x-forwarded-for": "203.0.113.9"}
            )
        assert r.status_code == 429
        form = {"grant_type": "password", "username": "u9", "password": "guess-guess"}
        r = await h.http.post(
            "/oauth2/token", data=form, headers={**basic("svc", SECRET), "x-forwarded-for": "198.51.100.7, 10.0.0.5"}
        )
        assert r.status_code == 400


async def test_empty_parameter_means_omitted(auth_sqlite: Harness) -> None:
    """scope= (no value) is treated as no scope parameter: the default scope (RFC 6749 §3.1)."""
    h = auth_sqlite
    await h.add_client()
    r = await h.http.post(
        "/oauth2/token", data={"grant_type": "client_credentials", "scope": ""}, headers=basic("svc", SECRET)
    )
    assert r.status_code == 200
    assert r.json()["scope"] == "read write"


async def test_rotation_announcement_reaches_running_replica(auth_sqlite: Harness) -> None:
    """A 'keys' invalidation makes a running replica load the new signer without waiting for its timer."""
    h = auth_sqlite
    from meshauth.auth.service import KEYS_KIND
    from meshauth.bus.invalidations import publish

    new_kid, _ = await keys.rotate(h.app.service.engine, "ES256", overlap=h.app.service.key_overlap)
    await publish(h.app.service.redis, h.app.service.rkeys.invalidations, KEYS_KIND, new_kid)
    deadline = time.monotonic() + 2
    while h.app.service.keys.signer.kid != new_kid:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


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
    await asyncio.sleep(1.1)  # tokens issued after the cut-off second are not covered by it
    fresh = h.app.service.issuer.issue(subject="alice", client_id="meshauth-session", scope="").token
    assert (await h.gate(fresh)).status_code == 200
