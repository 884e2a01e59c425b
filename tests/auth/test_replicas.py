"""Several auth replicas sharing one Redis: revocations and logouts reach all of them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from redis.asyncio import Redis

from tests.auth.conftest import PASSWORD, SECRET, Harness, basic, make_settings, start_harness


async def wait_for_status(h: Harness, token: str, status: int, timeout: float = 2.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if (await h.gate(token)).status_code == status:
            return time.perf_counter() - start
        await asyncio.sleep(0.002)
    raise AssertionError(f"replica did not answer {status} within {timeout}s")


async def test_revocation_reaches_every_replica(sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    """A token revoked at replica A is refused by replicas B and C, whose caches had it as valid."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path)
    async for a in start_harness(settings):
        async for b in start_harness(settings):
            async for c in start_harness(settings):
                await a.add_client()
                token = (await a.token())["access_token"]
                for replica in (a, b, c):
                    assert (await replica.gate(token)).status_code == 200  # warm in every cache
                r = await a.http.post("/oauth2/revoke", data={"token": token}, headers=basic("svc", SECRET))
                assert r.status_code == 200
                await wait_for_status(b, token, 401)
                await wait_for_status(c, token, 401)


async def test_new_replica_loads_existing_revocations(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """A replica started after a revocation refuses the token from its first request."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path)
    async for a in start_harness(settings):
        await a.add_client()
        token = (await a.token())["access_token"]
        await a.http.post("/oauth2/revoke", data={"token": token}, headers=basic("svc", SECRET))
        async for late in start_harness(settings):
            assert (await late.gate(token)).status_code == 401


async def test_logout_evicts_cached_session_on_other_replica(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """A session cached by replica B (long cache TTL) is dropped when replica A logs it out."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path, session_cache_ttl=300)
    async for a in start_harness(settings):
        async for b in start_harness(settings):
            await a.add_user()
            r = await a.http.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
            cookie = {"cookie": f"meshauth_session={r.cookies['meshauth_session']}"}
            assert (await b.http.get("/ext_authz/", headers=cookie)).status_code == 200
            assert (await a.http.delete("/v1/sessions/current", headers=cookie)).status_code == 204
            start = time.perf_counter()
            while (await b.http.get("/ext_authz/", headers=cookie)).status_code != 401:
                assert time.perf_counter() - start < 2
                await asyncio.sleep(0.002)
