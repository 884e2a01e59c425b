"""Guessing throttle: per account and per client address, shared through Redis."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from tests.auth.conftest import PASSWORD, SECRET, basic, make_settings, start_harness


async def test_password_guessing_throttled_per_account(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """After N failures on one account, even the right password gets 429 with Retry-After."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path, throttle_max_per_account=3, throttle_window=60)
    async for h in start_harness(settings):
        await h.add_client()
        await h.add_user()
        form = {"grant_type": "password", "username": "alice"}
        for _ in range(3):
            r = await h.http.post(
                "/oauth2/token", data={**form, "password": "guess-guess"}, headers=basic("svc", SECRET)
            )
            assert r.status_code == 400
        r = await h.http.post("/oauth2/token", data={**form, "password": PASSWORD}, headers=basic("svc", SECRET))
        assert r.status_code == 429
        assert r.json()["error"] == "too_many_requests"
        assert 0 < int(r.headers["retry-after"]) <= 60
        # Sessions use the same counter.
        r = await h.http.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
        assert r.status_code == 429


async def test_throttle_is_shared_between_replicas(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """Failures counted by one replica count on another (the counter is in Redis)."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path, throttle_max_per_account=2)
    async for a in start_harness(settings):
        async for b in start_harness(settings):
            await a.add_client()
            await a.add_user()
            form = {"grant_type": "password", "username": "alice", "password": "wrong-wrong"}
            assert (await a.http.post("/oauth2/token", data=form, headers=basic("svc", SECRET))).status_code == 400
            assert (await b.http.post("/oauth2/token", data=form, headers=basic("svc", SECRET))).status_code == 400
            r = await a.http.post("/oauth2/token", data=form, headers=basic("svc", SECRET))
            assert r.status_code == 429


async def test_client_secret_guessing_throttled(sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    """Client-secret guessing is throttled per client."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path, throttle_max_per_account=2)
    async for h in start_harness(settings):
        await h.add_client()
        form = {"grant_type": "client_credentials"}
        for _ in range(2):
            r = await h.http.post("/oauth2/token", data=form, headers=basic("svc", "bad-secret"))
            assert r.status_code == 401
        r = await h.http.post("/oauth2/token", data=form, headers=basic("svc", SECRET))
        assert r.status_code == 429
        assert "retry-after" in r.headers


async def test_throttled_per_address(sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    """One address guessing across many accounts is throttled too."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path, throttle_max_per_address=4)
    async for h in start_harness(settings):
        await h.add_client()
        for i in range(4):
            form = {"grant_type": "password", "username": f"user{i}", "password": "guess-guess"}
            assert (await h.http.post("/oauth2/token", data=form, headers=basic("svc", SECRET))).status_code == 400
        form = {"grant_type": "password", "username": "user9", "password": "guess-guess"}
        assert (await h.http.post("/oauth2/token", data=form, headers=basic("svc", SECRET))).status_code == 429


async def test_success_resets_account_counter(sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    """A successful login clears the account's failures."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path, throttle_max_per_account=2)
    async for h in start_harness(settings):
        await h.add_client()
        await h.add_user()
        bad = {"grant_type": "password", "username": "alice", "password": "wrong-wrong"}
        good = {**bad, "password": PASSWORD}
        for _ in range(3):
            assert (await h.http.post("/oauth2/token", data=bad, headers=basic("svc", SECRET))).status_code == 400
            assert (await h.http.post("/oauth2/token", data=good, headers=basic("svc", SECRET))).status_code == 200
