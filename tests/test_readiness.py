"""``meshauth.readiness``: a storm of ``/readyz`` probes in one process shares one in-flight check per
dependency, so it holds one database (and Redis) connection rather than one per probe, and every probe
still answers within ``READY_CHECK_TIMEOUT`` — against real PostgreSQL, healthy and frozen."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from meshauth.readiness import OK, READY_CHECK_TIMEOUT, STILL_CLEANING, ReadyChecks
from tests.auth.conftest import make_settings, start_harness
from tests.conftest import PG_URL
from tests.freezable import freezable
from tests.policy.conftest import running, settings_for

STORM = 100


async def test_concurrent_checks_share_one_probe_and_each_answers_within_the_bound() -> None:
    """A probe that never answers is started once for a storm; callers that join late wait only for
    what is left of it, so none waits longer than the bound; the next check afterwards starts afresh."""
    checks = ReadyChecks()
    started = 0
    release = asyncio.Event()

    async def frozen() -> None:
        nonlocal started
        started += 1
        await release.wait()

    t0 = time.monotonic()
    first = asyncio.ensure_future(checks.check("database", frozen))
    await asyncio.sleep(READY_CHECK_TIMEOUT / 2)
    late = [asyncio.ensure_future(checks.check("database", frozen)) for _ in range(STORM - 1)]
    answers = await asyncio.gather(first, *late)
    elapsed = time.monotonic() - t0
    assert started == 1
    assert set(answers) == {f"unavailable: no answer within {READY_CHECK_TIMEOUT:.0f}s"}
    assert READY_CHECK_TIMEOUT <= elapsed < READY_CHECK_TIMEOUT + 1.0

    release.set()
    assert await checks.check("database", frozen) == OK
    assert started == 2


async def test_a_probe_slow_to_cancel_still_answers_within_the_bound() -> None:
    """A probe out of time is cancelled but not waited for: a query cancelled on a frozen PostgreSQL
    connection took another 2 s to close it, and the probe answered after 4 s."""
    cleaned_up = asyncio.Event()

    async def frozen_and_slow_to_cancel() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(READY_CHECK_TIMEOUT)  # closing a connection nothing answers on
            cleaned_up.set()

    t0 = time.monotonic()
    answer = await ReadyChecks().check("database", frozen_and_slow_to_cancel)
    assert answer == f"unavailable: no answer within {READY_CHECK_TIMEOUT:.0f}s"
    assert time.monotonic() - t0 < READY_CHECK_TIMEOUT + 1.0
    await asyncio.wait_for(cleaned_up.wait(), READY_CHECK_TIMEOUT + 1)  # it still finished, later


async def test_no_new_check_while_a_timed_out_one_is_still_cancelling() -> None:
    """Against a frozen dependency a probe that timed out may take long to cancel; the probes after it
    answer "unavailable" at once instead of piling up one more hung check each, and once the old check
    has finished cancelling the next probe checks again."""
    checks = ReadyChecks()
    started = 0
    release_cleanup = asyncio.Event()
    cleaned_up = asyncio.Event()
    healthy = False

    async def probe() -> None:
        nonlocal started
        started += 1
        if healthy:
            return
        try:
            await asyncio.Event().wait()
        finally:
            await release_cleanup.wait()
            cleaned_up.set()  # the task ends in this same step, before any waiter resumes

    async def fine() -> None:
        return None

    first = await checks.check("database", probe)
    assert first == f"unavailable: no answer within {READY_CHECK_TIMEOUT:.0f}s"
    t0 = time.monotonic()
    later = await asyncio.gather(*(checks.check("database", probe) for _ in range(10)))
    assert set(later) == {STILL_CLEANING}
    assert time.monotonic() - t0 < 0.5
    assert started == 1
    assert await checks.check("redis", fine) == OK  # another dependency is not held up
    healthy = True
    release_cleanup.set()
    await cleaned_up.wait()
    assert await checks.check("database", probe) == OK


async def test_each_dependency_has_its_own_flight() -> None:
    """One dependency's slow check does not hold up another's answer."""
    checks = ReadyChecks()
    release = asyncio.Event()

    async def slow() -> None:
        await release.wait()

    async def fast() -> None:
        return None

    slow_answer = asyncio.ensure_future(checks.check("database", slow))
    assert await asyncio.wait_for(checks.check("redis", fast), 0.5) == OK
    release.set()
    assert await slow_answer == OK


async def test_a_failing_probe_is_reported_to_every_caller() -> None:
    checks = ReadyChecks()

    async def refused() -> None:
        await asyncio.sleep(0.01)
        raise ConnectionRefusedError

    answers = await asyncio.gather(*(checks.check("database", refused) for _ in range(10)))
    assert set(answers) == {"unavailable: ConnectionRefusedError"}


async def test_an_unexpected_error_is_not_ready_not_an_exception() -> None:
    """A probe failing in a way no driver was expected to (a bug, a library's own error type) makes
    the dependency "unavailable" — the service answers 503, not ready — never an exception (a 500)."""
    checks = ReadyChecks()

    async def broken() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("no reachable node")

    answers = await asyncio.gather(*(checks.check("redis", broken) for _ in range(3)))
    assert set(answers) == {"unavailable: RuntimeError"}


async def _database_connections(name: str) -> int:
    conn = await asyncpg.connect(PG_URL, timeout=3)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name)
        return count
    finally:
        await conn.close()


async def _storm(client: httpx.AsyncClient) -> list[httpx.Response]:
    return list(await asyncio.gather(*(client.get("/readyz") for _ in range(STORM))))


@pytest.mark.postgres
async def test_policy_storm_holds_one_database_connection(pg_database: str, tmp_path: Path) -> None:
    """100 probes at once against a healthy PostgreSQL: all ready, and the service's pool did not
    open a connection per probe (before: up to 20, the pool's size plus overflow; 10 stay open)."""
    name = pg_database.rsplit("/", 1)[1]
    async with running(settings_for(pg_database, tmp_path, policy_refresh_interval=30.0)) as (_app, client):
        assert (await client.get("/readyz")).status_code == 200
        answers = await _storm(client)
        held = await _database_connections(name)
    assert {r.status_code for r in answers} == {200}
    assert held <= 2, f"{held} connections to {name} after a storm of {STORM} probes"


@pytest.mark.postgres
async def test_auth_storm_holds_one_database_and_one_redis_connection(
    pg_database: str, valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """The auth service's probe pings the database and Redis: a storm opens neither pool wide."""
    name = pg_database.rsplit("/", 1)[1]
    async for h in start_harness(make_settings(pg_database, valkey_url, tmp_path)):
        assert (await h.http.get("/readyz")).status_code == 200
        redis_before = len(await redis.client_list())
        answers = await _storm(h.http)
        held = await _database_connections(name)
        redis_after = len(await redis.client_list())
    assert {r.status_code for r in answers} == {200}
    assert held <= 2, f"{held} connections to {name} after a storm of {STORM} probes"
    assert redis_after - redis_before <= 1, (redis_before, redis_after)


@pytest.mark.postgres
async def test_policy_storm_against_a_frozen_database(pg_database: str, tmp_path: Path) -> None:
    """Frozen PostgreSQL: 100 probes at once all answer 503 within the bound, through at most one new
    connection; thawed, the service is ready again promptly."""
    async with (
        freezable(pg_database) as (proxy, url),
        running(settings_for(url, tmp_path, policy_refresh_interval=30.0)) as (_app, client),
    ):
        assert (await client.get("/readyz")).status_code == 200
        before = proxy.connections
        proxy.freeze()
        started = time.monotonic()
        answers = await _storm(client)
        took = time.monotonic() - started
        opened = proxy.connections - before
        proxy.thaw()
        thawed = time.monotonic()
        deadline = thawed + 5
        while (await client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, "not ready 5 s after the database thawed"
            await asyncio.sleep(0.02)
        again = time.monotonic() - thawed
    assert {r.status_code for r in answers} == {503}
    assert took < READY_CHECK_TIMEOUT + 1, took
    assert opened <= 1, f"{opened} new connections opened by a storm of {STORM} probes"
    assert again < 1.0, again
