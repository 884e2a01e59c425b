"""Guessing throttle: per account and per client address, shared through Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path

import httpx
from redis.asyncio import Redis

from tests.auth.conftest import PASSWORD, SECRET, Harness, basic, make_settings, start_harness


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


def from_address(h: Harness, address: str) -> httpx.AsyncClient:
    """Another client of the same service, connecting from ``address``."""
    transport = httpx.ASGITransport(app=h.app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def wrong_login(http: httpx.AsyncClient) -> int:
    r = await http.post("/v1/sessions", json={"username": "alice", "password": "wrong-wrong"})
    return r.status_code


async def test_strangers_guesses_do_not_lock_out_a_known_address(
    db_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """Wrong passwords from elsewhere — past the per-address and the total limit — leave the user's
    right password working from an address they logged in from before, on sessions and the password grant."""
    settings = make_settings(db_url, valkey_url, tmp_path, throttle_max_per_account_total=10)
    async for h in start_harness(settings):
        await h.add_client()
        await h.add_user()
        async with from_address(h, "192.0.2.10") as home:
            r = await home.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
            assert r.status_code == 201
            for i in range(4):
                async with from_address(h, f"198.51.100.{i}") as stranger:
                    codes = [await wrong_login(stranger) for _ in range(8)]
                    assert codes.count(429) >= 3  # each stranger is throttled on its own
            r = await home.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
            assert r.status_code == 201, r.text
            form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
            r = await home.post("/oauth2/token", data=form, headers=basic("svc", SECRET))
            assert r.status_code == 200, r.text


async def test_guessing_from_a_known_address_is_throttled_per_account_and_address(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """A known address is no free pass: its own failures throttle it (429 + Retry-After), and only it."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path, throttle_max_per_account=3, throttle_window=60)
    async for h in start_harness(settings):
        await h.add_user()
        async with from_address(h, "192.0.2.10") as home, from_address(h, "192.0.2.77") as elsewhere:
            assert (
                await home.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
            ).status_code == 201
            assert [await wrong_login(home) for _ in range(3)] == [400, 400, 400]
            r = await home.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
            assert r.status_code == 429
            assert r.json()["error"] == "too_many_requests"
            assert 0 < int(r.headers["retry-after"]) <= 60
            r = await elsewhere.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
            assert r.status_code == 201


async def test_distributed_guessing_is_bounded(sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    """Guesses spread over many addresses get at most the total limit of answers per window; then every
    unknown address gets 429 + Retry-After, while the user's known address still logs in."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path, throttle_max_per_account_total=10)
    async for h in start_harness(settings):
        await h.add_user()
        async with from_address(h, "192.0.2.10") as home:
            assert (
                await home.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
            ).status_code == 201
            codes = []
            for i in range(30):
                async with from_address(h, f"203.0.113.{i}") as guesser:
                    codes.append(await wrong_login(guesser))
            assert codes.count(400) == 10
            assert codes.count(429) == 20
            async with from_address(h, "203.0.113.200") as newcomer:
                r = await newcomer.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
                assert r.status_code == 429
                assert 0 < int(r.headers["retry-after"]) <= 3600
            r = await home.post("/v1/sessions", json={"username": "alice", "password": PASSWORD})
            assert r.status_code == 201


async def test_ipv6_guesser_counted_by_its_64(sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    """Addresses of one IPv6 /64 share their counters: a fresh address per guess gains nothing."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path, throttle_max_per_account=3)
    async for h in start_harness(settings):
        await h.add_user()
        codes = []
        for i in range(6):
            async with from_address(h, f"2001:db8:1:2::{i + 1:x}") as guesser:
                codes.append(await wrong_login(guesser))
        assert codes == [400, 400, 400, 429, 429, 429]


async def test_concurrent_right_client_secrets_are_never_throttled(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """Many workers sending the right secret at once against a cold cache all get tokens: attempts in
    flight are not failures."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path)  # the default limits: 5 per account
    async for h in start_harness(settings):
        for n in range(3):
            await h.add_client(f"svc{n}")
            form = {"grant_type": "client_credentials"}
            responses = await asyncio.gather(
                *(h.http.post("/oauth2/token", data=form, headers=basic(f"svc{n}", SECRET)) for _ in range(16))
            )
            assert [r.status_code for r in responses] == [200] * 16, [r.text for r in responses if r.status_code != 200]


async def test_concurrent_right_passwords_are_never_throttled(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """The same for a user's right password, on the password grant and on sessions."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path)
    async for h in start_harness(settings):
        await h.add_client()
        await h.add_user()
        form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        grants = [h.http.post("/oauth2/token", data=form, headers=basic("svc", SECRET)) for _ in range(12)]
        logins = [h.http.post("/v1/sessions", json={"username": "alice", "password": PASSWORD}) for _ in range(12)]
        responses = await asyncio.gather(*grants, *logins)
        assert [r.status_code for r in responses] == [200] * 12 + [201] * 12


async def test_right_password_behind_parallel_guesses_does_not_slip_through(
    sqlite_url: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """The right password sent while the limit's worth of wrong guesses is in flight waits for them, and
    is refused when they fail: parallel guessing cannot get more answers than the limit."""
    settings = make_settings(sqlite_url, valkey_url, tmp_path, throttle_max_per_account=5)
    async for h in start_harness(settings):
        await h.add_client()
        await h.add_user()

        def grant(password: str, http: httpx.AsyncClient = h.http) -> Awaitable[httpx.Response]:
            form = {"grant_type": "password", "username": "alice", "password": password}
            return http.post("/oauth2/token", data=form, headers=basic("svc", SECRET))

        wrong = asyncio.gather(*(grant(f"wrong-guess-{i}") for i in range(29)))
        reserved = h.app.service.rkeys.throttle("user", "alice|10.1.2.3") + ":reserved"
        for _ in range(5000):  # until the limit's worth of guesses holds reservations (at most ~5 s)
            if await redis.zcard(reserved) >= 5:
                break
            await asyncio.sleep(0.001)
        right = await grant(PASSWORD)
        codes = [r.status_code for r in await wrong]
        assert right.status_code == 429
        assert codes.count(400) == 5
        assert codes.count(429) == 24


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
