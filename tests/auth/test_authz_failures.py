"""Authz mode when the policy service or Redis fails: real processes (granian), real Valkey.

The gate is ``meshauth serve auth`` with a route table; the policy service a ``meshauth.policy.server``
process in its own process group (SIGSTOP/SIGKILL reach its workers). Timings asserted here are wide
bounds for a shared 2-core machine; the latency figures themselves come from the benchmark."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from meshauth.client import State, announce
from meshauth.local.valkey import EmbeddedValkey
from meshauth.redis_client import connect
from tests.auth.authz_processes import Load, breaker_state, client_token, policy_process, served_gate
from tests.served import call

DEADLINE = 0.1  # the gate's policy_check_deadline (the default)
# The deadline plus the HTTP round trip through a loaded test process: a 503 takes no longer.
ANSWER_BOUND = DEADLINE + 0.4
# The state follower's reconnection backoff is at most 2 s; the margin is for a loaded machine.
RECONNECTED_WITHIN = 3.5


async def warm(load: Load, http_kinds: tuple[str, ...] = ("hot", "secret", "delete")) -> None:
    async with aiohttp.ClientSession() as http:
        for kind in http_kinds:
            await load.one(http, kind)
    assert [o.status for o in load.outcomes] == [200, 403, 403][: len(http_kinds)], load.outcomes
    load.outcomes.clear()


async def wait_for(predicate: object, timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until ``predicate()`` (sync, run in a thread) holds, or None after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await asyncio.to_thread(predicate):  # type: ignore[arg-type]
            return time.monotonic() - started
        await asyncio.sleep(interval)
    return None


def assert_never_allowed_by_error(load: Load) -> None:
    bad = [o for o in load.outcomes if o.kind in ("secret", "delete") and o.status == 200]
    assert not bad, f"{len(bad)} requests the policy denies were allowed"
    assert all(o.status in (200, 403, 503) for o in load.outcomes), {o.status for o in load.outcomes}


async def test_policy_service_sigstop_under_load(tmp_path: Path, valkey_url: str, redis: Redis) -> None:
    """SIGSTOP: no policy-denied request passes, uncached checks are 503 policy_unavailable within
    the deadline, cached allows keep serving, the breaker opens within a second and closes after SIGCONT."""
    with policy_process(tmp_path / "pdp") as pdp, served_gate(tmp_path / "gate", valkey_url, pdp.url) as gate:
        load = Load(gate, await asyncio.to_thread(client_token, gate))
        await warm(load)
        pdp.signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        running = asyncio.create_task(load.run(("hot", "secret", "delete", "uncached")))
        opened = await wait_for(lambda: breaker_state(gate) == 2, timeout=3.0)
        await asyncio.sleep(0.5)
        load.stop()
        await running
        assert opened is not None and opened <= 1.0, f"breaker open after {opened} s"
        assert_never_allowed_by_error(load)
        uncached = [o for o in load.outcomes if o.kind == "uncached"]
        assert uncached and all((o.status, o.reason) == (503, "policy_unavailable") for o in uncached)
        assert max(o.seconds for o in uncached) <= ANSWER_BOUND, max(o.seconds for o in uncached)
        hot = [o for o in load.outcomes if o.kind == "hot" and o.at - stopped_at < 4.0]  # allow TTL: 5 s
        assert hot and all(o.status == 200 for o in hot), "L1 stopped serving a cached allow"

        pdp.signal(signal.SIGCONT)
        load = Load(gate, load.token)
        running = asyncio.create_task(load.run(("uncached",), workers=2))
        closed = await wait_for(lambda: breaker_state(gate) == 0, timeout=10.0)
        load.stop()
        await running
        assert closed is not None, "the breaker did not close after SIGCONT"
        assert load.outcomes[-1].status == 200, load.outcomes[-1]


@pytest.mark.parametrize("transport", ["h1", "aiohttp"])
async def test_the_gate_stops_with_checks_in_flight_to_a_stopped_policy_service(
    tmp_path: Path, valkey_url: str, redis: Redis, transport: str
) -> None:
    """SIGTERM while checks wait on a SIGSTOPped policy service (its connections open, nothing
    answered): the gate still exits (``serve`` waits 10 s for it, then fails the test). The gate did
    not, once, on branch cold2 — the cause was its main process's final collection, not the transport
    (tests/test_granian_server.py); this holds the whole shutdown path, client and transport included."""
    with policy_process(tmp_path / "pdp") as pdp:
        with served_gate(tmp_path / "gate", valkey_url, pdp.url, MESHAUTH_POLICY_TRANSPORT=transport) as gate:
            load = Load(gate, await asyncio.to_thread(client_token, gate))
            await warm(load)
            pdp.signal(signal.SIGSTOP)
            running = asyncio.create_task(load.run(("uncached", "hot"), workers=8))
            await wait_for(lambda: len(load.outcomes) >= 16, timeout=5.0)
        load.stop()
        await asyncio.gather(running, return_exceptions=True)  # calls to the gone gate fail: expected
        pdp.signal(signal.SIGCONT)
    assert any((o.status, o.reason) == (503, "policy_unavailable") for o in load.outcomes if o.kind == "uncached")


async def test_policy_service_killed_and_restarted(tmp_path: Path, valkey_url: str, redis: Redis) -> None:
    """SIGKILL: same guarantees (503 fast, never an allow by error); restarted on its port, decisions resume."""
    with policy_process(tmp_path / "pdp") as pdp, served_gate(tmp_path / "gate", valkey_url, pdp.url) as gate:
        load = Load(gate, await asyncio.to_thread(client_token, gate))
        await warm(load)
        pdp.kill()
        running = asyncio.create_task(load.run(("hot", "secret", "delete", "uncached")))
        opened = await wait_for(lambda: breaker_state(gate) == 2, timeout=3.0)
        load.stop()
        await running
        assert opened is not None and opened <= 1.0, f"breaker open after {opened} s"
        assert_never_allowed_by_error(load)
        uncached = [o for o in load.outcomes if o.kind == "uncached"]
        assert uncached and all((o.status, o.reason) == (503, "policy_unavailable") for o in uncached)
        assert max(o.seconds for o in uncached) <= ANSWER_BOUND

        await asyncio.to_thread(pdp.start)  # same port, same database: the same policies
        load = Load(gate, load.token)
        running = asyncio.create_task(load.run(("uncached", "secret"), workers=2))
        resumed = await wait_for(
            lambda: any(o.kind == "uncached" and o.status == 200 for o in load.outcomes[-4:]), timeout=10.0
        )
        load.stop()
        await running
        assert resumed is not None, "decisions did not resume after the restart"
        assert_never_allowed_by_error(load)
        assert any(o.kind == "secret" and o.status == 403 and o.reason == "policy_denied" for o in load.outcomes)


@pytest.mark.parametrize("transport", ["h1", "aiohttp"])
async def test_slow_policy_service_never_exceeds_the_deadline(
    tmp_path: Path, valkey_url: str, redis: Redis, transport: str
) -> None:
    """A policy service that accepts and reads but answers only after 2 s: every check is 503
    policy_unavailable at the deadline, none waits for the answer — over either of the client's transports."""

    writers: set[asyncio.StreamWriter] = set()
    heads: list[bytes] = []

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        with contextlib.suppress(OSError):
            while got := await reader.read(65536):
                if got.startswith(b"POST "):  # a request's head (its body may come in another read)
                    heads.append(got.partition(b"\r\n\r\n")[0].lower())
                await asyncio.sleep(2.0)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")

    server = await asyncio.start_server(slow, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        with served_gate(tmp_path / "gate", valkey_url, url, MESHAUTH_POLICY_TRANSPORT=transport) as gate:
            load = Load(gate, await asyncio.to_thread(client_token, gate))
            running = asyncio.create_task(load.run(("uncached", "hot", "secret"), workers=8))
            await asyncio.sleep(2.0)
            load.stop()
            await running
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()
    assert load.outcomes
    assert all((o.status, o.reason) == (503, "policy_unavailable") for o in load.outcomes)
    assert max(o.seconds for o in load.outcomes) <= ANSWER_BOUND, max(o.seconds for o in load.outcomes)
    # The setting reached the gate's client: aiohttp adds "Accept: */*", H1Transport sends only the client's headers.
    assert heads and {b"\r\naccept: */*" in h for h in heads} == {transport == "aiohttp"}


async def test_redis_restart(tmp_path: Path) -> None:
    """Redis (its own Valkey) stopped and restarted: L1 keeps serving while it is away, nothing cached
    before it went away answers once the gate's state follower is back, and invalidations resume.

    The change made while Redis was away is announced to nobody (this policy service has no Redis;
    one with Redis could not publish either), and Valkey's append-only file keeps the old L2 entry.
    On reconnecting, the follower flushes L1 and the client distrusts L2 until the service answers
    again, so the change shows within the follower's reconnection (its backoff is at most 2 s), not
    after the 5 s allow TTL — and once it shows, no stale allow comes back."""
    valkey = EmbeddedValkey(tmp_path / "valkey")
    valkey.start()
    try:
        with policy_process(tmp_path / "pdp") as pdp, served_gate(tmp_path / "gate", valkey.url, pdp.url) as gate:
            load = Load(gate, await asyncio.to_thread(client_token, gate))
            await warm(load, ("hot",))
            valkey.stop()
            async with aiohttp.ClientSession() as http:
                for _ in range(5):
                    assert (await load.one(http, "hot")).status == 200, "L1 stopped serving without Redis"
                await asyncio.to_thread(pdp.push, '@id("none") forbid(principal, action, resource);')
                await asyncio.to_thread(valkey.start)
                restarted_at = time.monotonic()
                while time.monotonic() - restarted_at < RECONNECTED_WITHIN:
                    out = await load.one(http, "hot")
                    if out.status == 403:
                        break
                    await asyncio.sleep(0.02)
                stale_for = time.monotonic() - restarted_at
                assert out.status == 403, f"the change made while Redis was away was not seen ({stale_for:.2f} s)"
                # Visible once, visible for good: no answer from before the outage comes back (the
                # old L2 entry outlives this loop: its TTL counts from the warm-up, 5 s).
                visible_at = time.monotonic()
                while time.monotonic() - visible_at < 1.0:
                    assert (await load.one(http, "hot")).status == 403, "a stale allow came back"

                # Invalidations resume: an announced state reaches the gate at once (no TTL wait).
                revision = await asyncio.to_thread(pdp.push, '@id("all") permit(principal, action, resource);')
                redis = connect(valkey.url)
                try:
                    await announce(redis, "default", State(revision))
                finally:
                    await redis.aclose()
                seen = await wait_for(lambda: _status_sync(gate.url, load.token) == 200, timeout=3.0)
                assert seen is not None and seen < 1.0, f"announcement not applied ({seen})"
    finally:
        valkey.close()


def _status_sync(url: str, token: str) -> int:
    status, _ = call("GET", url + "/ext_authz/documents/hot", headers={"authorization": f"Bearer {token}"})
    return status
