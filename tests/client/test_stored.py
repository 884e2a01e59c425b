"""L2 works per batch (``_stored.py``): one ``MGET`` for a batch's lookups, one pipelined write for
its fills, a bounded write buffer, and no trust in L2 after the state follower's connection broke
until the service has answered again. Real Valkey."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from meshauth.client import Check, PolicyClient, State, at_least
from meshauth.client._cache import DecisionL2, _encode, _Stored
from meshauth.client._config import CacheConfig
from meshauth.client._keys import l2_key
from meshauth.client._models import Decision
from meshauth.client._stored import WRITE_BUFFER, WRITE_DELAY, DecisionStore
from tests.client.mock import MockTransport

ALICE = {"type": "User", "id": "alice"}


def doc(i: int) -> dict[str, str]:
    return {"type": "Doc", "id": f"d{i}"}


async def command_calls(redis: Redis, name: str) -> int:
    """Calls of command ``name`` that ran (a first EVALSHA refused with NOSCRIPT is not one)."""
    stats: dict[str, Any] = await redis.info("commandstats")
    got = stats.get(f"cmdstat_{name}", {})
    return int(got.get("calls", 0)) - int(got.get("failed_calls", 0)) - int(got.get("rejected_calls", 0))


class CountingRedis(Redis):
    """A real connection that counts pipelines (one pipeline = one round trip)."""

    pipelines = 0

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        type(self).pipelines += 1
        return super().pipeline(transaction, shard_hint)


async def test_a_batch_of_cold_checks_costs_one_mget_and_one_write(valkey_url: str, redis: Redis) -> None:
    """20 concurrent cold checks: one MGET (no GET), one write (a script) of 20 entries, one call."""
    counting = CountingRedis.from_url(valkey_url.replace("valkey://", "redis://", 1))
    CountingRedis.pipelines = 0
    t = MockTransport(revision=1)
    try:
        # A generous Redis timeout: on a loaded machine 20 ms can pass before the MGET is even sent.
        slow_ok = CacheConfig(l2_timeout=2.0)
        async with PolicyClient(["http://pdp"], transport=t, redis=counting, warming=None, cache=slow_ok) as client:
            client.advance(State(1))
            await redis.config_resetstat()
            ds = await asyncio.gather(*(client.check(ALICE, "view", doc(i)) for i in range(20)))
        assert {d.source for d in ds} == {"service"} and len(t.calls) == 1
        assert (await command_calls(redis, "mget"), await command_calls(redis, "get")) == (1, 0)
        assert (await command_calls(redis, "set"), CountingRedis.pipelines) == (20, 0)
        assert await command_calls(redis, "evalsha") == 1
        assert len(await redis.keys("meshauth:decision:*")) == 20
    finally:
        await counting.aclose()


async def test_a_batch_mixes_l2_hits_and_service_answers(redis: Redis) -> None:
    """Another replica's entries answer from L2; only the other questions of the batch go out."""
    async with PolicyClient(["http://pdp"], transport=MockTransport(), redis=redis, warming=None) as first:
        first.advance(State(1))
        await asyncio.gather(*(first.check(ALICE, "view", doc(i)) for i in range(0, 10, 2)))
    t = MockTransport()
    async with PolicyClient(["http://pdp"], transport=t, redis=redis, warming=None) as second:
        second.advance(State(1))
        ds = await asyncio.gather(*(second.check(ALICE, "view", doc(i)) for i in range(10)))
        again = await second.check(ALICE, "view", doc(0))
    assert [d.source for d in ds] == ["l2", "service"] * 5
    assert all(d.decision for d in ds) and again.source == "l1"
    assert [e["resource"]["id"] for e in t.calls[0][1]["evaluations"]] == [f"d{i}" for i in range(1, 10, 2)]


async def test_l2_is_not_trusted_after_invalidate_until_the_service_answers(redis: Redis) -> None:
    """After ``invalidate`` (the follower's connection broke) an entry L2 holds does not answer; the
    first service answer restores trust (its state is the service's current one)."""
    async with PolicyClient(["http://pdp"], transport=MockTransport(), redis=redis, warming=None) as first:
        first.advance(State(1))
        await asyncio.gather(*(first.check(ALICE, "view", doc(i)) for i in range(2)))
    t = MockTransport()
    async with PolicyClient(["http://pdp"], transport=t, redis=redis, warming=None) as second:
        second.advance(State(1))
        second.invalidate()
        untrusted = await second.check(ALICE, "view", doc(0))
        trusted = await second.check(ALICE, "view", doc(1))
    assert (untrusted.source, trusted.source, len(t.calls)) == ("service", "l2", 1)


async def test_the_write_buffer_is_bounded(redis: Redis) -> None:
    """Fills beyond ``WRITE_BUFFER`` waiting for one write are dropped, never queued without bound."""
    cfg = CacheConfig()
    store = DecisionStore(None, DecisionL2(redis, prefix=cfg.l2_prefix, timeout=1.0), cfg)
    d = Decision(decision=True, revision=1)
    for i in range(WRITE_BUFFER + 100):
        store.put(f"q{i}".encode(), d, State(1))
    await store.aclose()
    assert len(await redis.keys("meshauth:decision:*")) == WRITE_BUFFER


async def test_a_redis_that_is_gone_is_a_miss_and_the_check_is_answered(redis: Redis) -> None:
    """L2 unreachable: the batch's lookup is a miss, the service answers, the write is dropped."""
    gone = Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.01)
    t = MockTransport()
    async with PolicyClient(["http://pdp"], transport=t, redis=gone, warming=None) as client:
        client.advance(State(1))
        ds = await asyncio.gather(*(client.check(ALICE, "view", doc(i)) for i in range(3)))
    await gone.aclose()
    assert [(d.decision, d.source) for d in ds] == [(True, "service")] * 3


async def test_fills_reach_l2_while_the_client_is_open(redis: Redis) -> None:
    """Fills are written after at most ``WRITE_DELAY`` (not left for ``aclose``), one write per batch at
    most: two batches answered one after the other cost one or two writes (one when the second comes
    within ``WRITE_DELAY`` of the first: that sharing is timing-dependent, measured by the benchmark)."""
    cache = CacheConfig(l2_timeout=2.0)
    async with PolicyClient(["http://pdp"], transport=MockTransport(), redis=redis, warming=None, cache=cache) as c:
        c.advance(State(1))
        await redis.config_resetstat()
        await asyncio.gather(*(c.check(ALICE, "view", doc(i)) for i in range(3)))
        await asyncio.gather(*(c.check(ALICE, "view", doc(i)) for i in range(3, 5)))
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 5.0
        while len(await redis.keys("meshauth:decision:*")) < 5:
            assert loop.time() < give_up, "the fills never reached L2"
            await asyncio.sleep(WRITE_DELAY)
        assert 1 <= await command_calls(redis, "evalsha") <= 2


@contextlib.asynccontextmanager
async def backed_off_and_another(valkey_url: str) -> AsyncIterator[tuple[PolicyClient, PolicyClient]]:
    """Two clients (replicas) on the real Valkey, the first one's L2 backed off: it has looked up
    READ_PROBE new questions, none found."""
    from meshauth.client._stored import READ_PROBE

    t = MockTransport(revision=1)
    conn = Redis.from_url(valkey_url.replace("valkey://", "redis://", 1))
    other_conn = Redis.from_url(valkey_url.replace("valkey://", "redis://", 1))
    cfg = CacheConfig(l2_timeout=2.0)
    try:
        async with (
            PolicyClient(["http://pdp"], transport=t, redis=conn, warming=None, cache=cfg) as client,
            PolicyClient(["http://pdp"], transport=t, redis=other_conn, warming=None, cache=cfg) as other,
        ):
            client.advance(State(1))
            other.advance(State(1))
            for start in range(0, READ_PROBE, 64):  # batches of 64 new questions: all L2 misses
                await asyncio.gather(*(client.check(ALICE, "view", doc(i)) for i in range(start, start + 64)))
            yield client, other
    finally:
        await conn.aclose()
        await other_conn.aclose()


async def test_l2_reads_back_off_while_they_never_hit_and_resume_on_a_hit(valkey_url: str, redis: Redis) -> None:
    """READ_PROBE keys without a hit: then one batch in READ_SKIP reads L2, at most one per BACKED_OFF_GAP;
    the first hit restores every read."""
    from meshauth.client._stored import BACKED_OFF_GAP, READ_SKIP

    async with backed_off_and_another(valkey_url) as (client, other):
        await asyncio.sleep(BACKED_OFF_GAP)
        await redis.config_resetstat()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(4 * READ_SKIP):  # one check per batch: four would read by count, one per gap does
            await client.check(ALICE, "view", doc(10_000 + i))
        gaps = int((loop.time() - started) / BACKED_OFF_GAP)  # 0 unless the machine is very slow
        reads = await command_calls(redis, "mget")
        assert 1 <= reads <= min(4, 1 + gaps)
        await asyncio.sleep(BACKED_OFF_GAP)
        for i in range(READ_SKIP):  # a gap later: one more
            await client.check(ALICE, "view", doc(11_000 + i))
        assert await command_calls(redis, "mget") == reads + 1
        await asyncio.sleep(BACKED_OFF_GAP)
        # Another replica's answers in L2: the next reading batch hits, and reads resume.
        for i in range(2 * READ_SKIP):
            await other.check(ALICE, "edit", doc(i))
        await other.aclose()  # its buffered fills written
        sources = [(await client.check(ALICE, "edit", doc(i))).source for i in range(2 * READ_SKIP)]
    assert "l2" in sources and sources[-READ_SKIP:] == ["l2"] * READ_SKIP


async def test_l2_fills_back_off_with_the_reads_and_resume_on_a_hit(valkey_url: str, redis: Redis) -> None:
    """While reads are backed off, one answer in READ_SKIP is written to L2 (every one stays in L1);
    the first read that hits restores every fill."""
    from meshauth.client._stored import READ_SKIP

    async def keys_in_l2() -> int:
        return len([k async for k in redis.scan_iter(match=b"*")])

    async with backed_off_and_another(valkey_url) as (client, other):
        await asyncio.sleep(0.1)  # the buffered fills written
        await redis.flushall()
        n = 8 * READ_SKIP
        for start in range(0, n, 16):  # backed off: new answers, 1 in READ_SKIP goes to L2
            await asyncio.gather(*(client.check(ALICE, "view", doc(20_000 + i)) for i in range(start, start + 16)))
        await asyncio.sleep(0.1)
        assert await keys_in_l2() == n // READ_SKIP
        again = [(await client.check(ALICE, "view", doc(20_000 + i))).source for i in range(n)]
        assert again == ["l1"] * n  # L1 kept every answer
        # Another replica's answers in L2: a read hits, and fills resume in full.
        for i in range(2 * READ_SKIP):
            await other.check(ALICE, "edit", doc(i))
        await other.aclose()
        sources = [(await client.check(ALICE, "edit", doc(i))).source for i in range(2 * READ_SKIP)]
        assert "l2" in sources
        await redis.flushall()
        for i in range(16):
            await client.check(ALICE, "view", doc(30_000 + i))
        await asyncio.sleep(0.1)
        assert await keys_in_l2() == 16


async def test_backed_off_fills_share_a_write_per_gap(valkey_url: str, redis: Redis) -> None:
    """While backed off, the fills still written wait BACKED_OFF_GAP for company: batches answered within
    one gap cost one write (WRITE_DELAY's pace made one every 5 ms)."""
    from meshauth.client._stored import BACKED_OFF_GAP

    async with backed_off_and_another(valkey_url) as (client, _other):
        await asyncio.sleep(2 * BACKED_OFF_GAP)  # the back-off's own fills written
        await redis.config_resetstat()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for start in range(0, 160, 16):
            await asyncio.gather(*(client.check(ALICE, "view", doc(40_000 + i)) for i in range(start, start + 16)))
            await asyncio.sleep(0.002)
        gaps = int((loop.time() - started) / BACKED_OFF_GAP)  # 0 unless the machine is very slow
        await asyncio.sleep(2 * BACKED_OFF_GAP)
        assert 1 <= await command_calls(redis, "evalsha") <= 1 + gaps


async def test_a_floor_no_key_can_encode_fails_only_its_own_check(redis: Redis) -> None:
    """``at_least`` a state past 2**64 (a caller's garbage) is that check's problem alone: its L2 key
    cannot be encoded, so it is a miss (and the service's older answer is refused, as for any floor
    ahead of the service). The batch's MGET built every key at once, so the OverflowError failed
    every check batched with it as ``policy_unavailable``."""
    t = MockTransport()
    async with PolicyClient(["http://pdp"], transport=t, redis=redis) as c:
        await c.check(ALICE, "view", doc(0))
        far, near = await asyncio.gather(
            c.check(ALICE, "view", doc(1), consistency=at_least(State(2**64))),
            c.check(ALICE, "view", doc(2)),
        )
        assert (far.decision, far.error) == (False, "policy_unavailable")
        assert "older than one already seen" in far.errors[0]
        assert (near.decision, near.error, near.source) == (True, None, "service")
        [many_far, many_near] = await c.check_many(
            [Check(ALICE, "view", doc(3)), Check(ALICE, "view", doc(4))], consistency=at_least(State(1))
        )
        assert many_far.decision and many_near.decision
        # Its key is one no real state has (the numbers in hex), and the same each time.
        far_key = l2_key("p:", (2**64, None, b"q"))
        assert far_key == l2_key("p:", (2**64, None, b"q")) != l2_key("p:", (0, None, b"q"))


@pytest.mark.parametrize("expires", [float("nan"), float("inf"), 1e12])
async def test_an_l2_entry_lives_in_l1_no_longer_than_the_clients_own_ttl(redis: Redis, expires: float) -> None:
    """An L2 value's expiry that is no time (NaN, infinite) is an unreadable value (a miss); one far
    ahead (another host's clock, a writer's garbage) fills L1 for at most this client's own ``ttl``.
    Both made the entry answer from L1 for as long as the client stayed at that state: a NaN expiry
    is never "past", and a far one never comes. Here the entry claims an allow the service no
    longer gives."""
    t = MockTransport()
    async with PolicyClient(
        ["http://pdp"], transport=t, redis=redis, cache=CacheConfig(ttl=0.2, deny_ttl=0.2), warming=None
    ) as c:
        await c.check(ALICE, "view", doc(0))  # the client is at revision 1
        key = l2_key("meshauth:decision:", (1, None, c.question(ALICE, "view", doc(1)).key))
        # Redis itself drops it after 250 ms (as the writer's PX would): from then on only L1 can answer.
        await redis.set(key, _encode(_Stored(True, ("p",), (), 1, None, expires)), px=250)
        t.allow = False
        d = await c.check(ALICE, "view", doc(1))
        if math.isnan(expires) or math.isinf(expires):
            assert (d.decision, d.source) == (False, "service")
            return
        assert (d.decision, d.source) == (True, "l2")
        await asyncio.sleep(0.35)
        d = await c.check(ALICE, "view", doc(1))
    assert (d.decision, d.source) == (False, "service")


@pytest.mark.parametrize(
    "value",
    [
        [True, ["p"], [], 1, None, 1e12, "a field of another format"],  # another (later) layout
        [True, ["p"], [], 1, None],  # truncated
        [1, ["p"], [], 1, None, 1e12],  # not a bool
        {"decision": True, "revision": 1},  # a map
    ],
)
async def test_an_l2_value_of_another_layout_is_a_miss(redis: Redis, value: object) -> None:
    """Only a value of exactly this layout answers from L2: one with a field more (another version of
    the client writing its own layout under the same prefix — whatever that field means there, e.g.
    that the allow is not to be used) was read as a plain allow, the extra field dropped."""
    t = MockTransport()
    async with PolicyClient(["http://pdp"], transport=t, redis=redis, warming=None) as c:
        await c.check(ALICE, "view", doc(0))  # the client is at revision 1
        key = l2_key("meshauth:decision:", (1, None, c.question(ALICE, "view", doc(1)).key))
        await redis.set(key, msgspec.msgpack.encode(value), px=5000)
        t.allow = False
        d = await c.check(ALICE, "view", doc(1))
    assert (d.decision, d.source) == (False, "service")
