"""State announcements: a policy activation or entity change reaches every client, in this process
and in three others, through a real Valkey."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from meshauth.client import PolicyClient, State, StateFollower, announce
from meshauth.local.valkey import EmbeddedValkey
from meshauth.redis_client import connect
from tests.client.mock import MockTransport

ALICE = {"type": "User", "id": "alice"}
DOC = {"type": "Doc", "id": "d"}


async def following(valkey_url: str, client: PolicyClient) -> tuple[StateFollower, asyncio.Queue[State]]:
    seen: asyncio.Queue[State] = asyncio.Queue()
    follower = StateFollower(valkey_url, [client], on_state=lambda _store, st: seen.put_nowait(st))
    await follower.start()
    return follower, seen


async def test_announced_activation_retires_cached_decisions(valkey_url: str, redis: Redis) -> None:
    """After a new revision is announced, the next check asks the service instead of the old entry."""
    t = MockTransport(revision=1)
    async with PolicyClient(["http://pdp"], transport=t) as client:
        follower, seen = await following(valkey_url, client)
        try:
            await client.check(ALICE, "view", DOC)
            assert (await client.check(ALICE, "view", DOC)).source == "l1"
            t.revision = 2
            await announce(redis, "default", State(2))
            assert await asyncio.wait_for(seen.get(), 5) == State(2)
            d = await client.check(ALICE, "view", DOC)
        finally:
            await follower.stop()
    assert (d.source, d.revision) == ("service", 2)


async def test_announced_entity_change_retires_cached_decisions(valkey_url: str, redis: Redis) -> None:
    """An entities_version announcement forces a fresh answer, which is then cached under it."""
    t = MockTransport(revision=1)
    async with PolicyClient(["http://pdp"], transport=t) as client:
        follower, seen = await following(valkey_url, client)
        try:
            await client.check(ALICE, "view", DOC)
            await announce(redis, "default", State(1, 7))
            await asyncio.wait_for(seen.get(), 5)
            fresh = await client.check(ALICE, "view", DOC)
            cached = await client.check(ALICE, "view", DOC)
        finally:
            await follower.stop()
    assert (fresh.source, cached.source, len(t.calls)) == ("service", "l1", 2)
    assert client.state == State(1, 7)


async def test_resync_flushes_l1_and_applies_stored_states(valkey_url: str, redis: Redis) -> None:
    """A follower that (re)connects flushes L1 and takes the newest stored state of its store."""
    t = MockTransport(revision=3)
    async with PolicyClient(["http://pdp"], transport=t) as client:
        await client.check(ALICE, "view", DOC)
        await announce(redis, "default", State(3, 9))
        await announce(redis, "other", State(50))
        follower, seen = await following(valkey_url, client)
        try:
            assert {await asyncio.wait_for(seen.get(), 5), await asyncio.wait_for(seen.get(), 5)} == {
                State(3, 9),
                State(50),
            }
            d = await asyncio.wait_for(client.check(ALICE, "view", DOC), 5)
            assert client.state == State(3, 9) and d.source == "service" and follower.resyncs == 1
            # Stop only once the listener is reading the stream: stopping it mid-connect can hang
            # (bus.invalidations, reported, not fixed here).
            await announce(redis, "default", State(3, 9))
            await asyncio.wait_for(seen.get(), 5)
        finally:
            await asyncio.wait_for(follower.stop(), 5)


async def test_malformed_announcements_are_ignored(valkey_url: str, redis: Redis) -> None:
    """Entries that are not [store, int, int|null] change nothing and stop nothing."""
    async with PolicyClient(["http://pdp"], transport=MockTransport()) as client:
        follower, seen = await following(valkey_url, client)
        try:
            for bad in ("not json", '["default", "2", null]', '["default"]', '{"store": 1}', '["default", true, null]'):
                await redis.xadd("meshauth:policy-state:stream", {"k": "policy_state", "v": bad, "x": "0"})
            await announce(redis, "default", State(4))
            assert await asyncio.wait_for(seen.get(), 5) == State(4)
        finally:
            await follower.stop()
    assert client.state == State(4)


CHILD = """
import asyncio, sys, time
from meshauth.client import PolicyClient, StateFollower

async def main() -> None:
    client = PolicyClient(["http://127.0.0.1:9"], store="default")
    follower = StateFollower(sys.argv[1], [client], on_state=lambda s, st: print(st.revision, time.time(), flush=True))
    await follower.start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.timeout(60)
async def test_announcement_reaches_three_processes(valkey_url: str, redis: Redis) -> None:
    """Every announcement reaches every one of three other processes; prints p50/p99/max latency."""
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, valkey_url, stdout=asyncio.subprocess.PIPE)
        for _ in range(3)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            while (await asyncio.wait_for(p.stdout.readline(), 20)).strip() != b"ready":
                pass
        sent: dict[int, float] = {}
        n = 100
        for rev in range(1000, 1000 + n):
            sent[rev] = time.time()
            await announce(redis, "default", State(rev))
            await asyncio.sleep(0.01)  # a steady stream of changes (100/s) is what is measured, not a burst
        latencies: list[float] = []
        for p in procs:
            assert p.stdout is not None
            got: dict[int, float] = {}
            while len(got) < n:
                line = await asyncio.wait_for(p.stdout.readline(), 10)
                rev_s, at = line.split()
                if int(rev_s) in sent:
                    got[int(rev_s)] = float(at)
            latencies += [got[r] - sent[r] for r in sent]
    finally:
        for p in procs:
            p.kill()
            await p.wait()
    latencies.sort()
    q: Any = statistics.quantiles(latencies, n=100)
    p50, p99, top = q[49] * 1e3, q[98] * 1e3, latencies[-1] * 1e3
    print(f"\ninvalidation across 3 processes: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {top:.2f} ms")
    assert len(latencies) == 3 * n
    assert latencies[-1] < 1.0


async def test_l2_hits_under_an_announced_entities_version(redis: Redis) -> None:
    """An entry stored under an announced entities_version (which the answer does not report) is an
    L2 hit for another client at that state."""
    first_t, second_t = MockTransport(revision=1), MockTransport(revision=1)
    async with PolicyClient(["http://pdp"], transport=first_t, redis=redis) as first:
        first.advance(State(1, 7))
        await first.check(ALICE, "view", DOC)
    async with PolicyClient(["http://pdp"], transport=second_t, redis=redis) as second:
        second.advance(State(1, 7))
        d = await second.check(ALICE, "view", DOC)
    assert (d.source, second_t.calls) == ("l2", [])


async def test_nothing_cached_before_a_redis_restart_answers_after_it(tmp_path: Path) -> None:
    """A change made while Redis was away is announced to nobody, and Valkey's append-only file keeps
    the old L2 entry. Once the follower is back, neither L1 nor L2 answers from before: the next
    check goes to the service and gets the new decision; after that answer L2 is used again."""
    valkey = EmbeddedValkey(tmp_path / "valkey")
    valkey.start()
    t = MockTransport(revision=1)
    redis = connect(valkey.url)
    try:
        # The stream exists and survives the restart (append-only file): the listener resumes
        # from where it was, without a resync — the reconnection alone must invalidate.
        await announce(redis, "default", State(1))
        async with PolicyClient(["http://pdp"], transport=t, redis=redis, warming=None) as client:
            follower = StateFollower(valkey.url, [client])
            await follower.start()
            try:
                await client.check(ALICE, "view", DOC)
                deadline = time.monotonic() + 5
                while not await redis.keys("meshauth:decision:*"):  # the L2 fill, written in the background
                    assert time.monotonic() < deadline, "the L2 fill was not written"
                    await asyncio.sleep(0.01)
                valkey.stop()
                assert (await client.check(ALICE, "view", DOC)).source == "l1", "L1 stopped serving"
                t.revision, t.allow = 2, False  # the change, made while Redis is away
                await asyncio.to_thread(valkey.start)
                # The client's L2 connection is back too (its first command after the restart fails).
                with contextlib.suppress(RedisError):
                    await redis.ping()
                assert await redis.keys("meshauth:decision:*"), "the old L2 entry did not survive"
                deadline = time.monotonic() + 10
                while follower.connects < 2:
                    assert time.monotonic() < deadline, "the follower did not reconnect"
                    await asyncio.sleep(0.01)
                after = await client.check(ALICE, "view", DOC)
            finally:
                await follower.stop()
    finally:
        await redis.aclose()
        valkey.close()
    assert follower.resyncs == 1, "the restart caused a resync: this test would not test the reconnection"
    assert (after.decision, after.source, after.revision, len(t.calls)) == (False, "service", 2, 2)


NESTED = "[" * 100_000  # json.loads raises RecursionError (not ValueError) on this


async def test_garbage_in_the_states_hash_neither_stalls_the_follower_nor_fails_a_start(
    valkey_url: str, redis: Redis
) -> None:
    """A value in the states hash nested past the recursion limit (or huge, or a state no store can
    have) is a malformed announcement like any other: ignored. It raised out of the resync, so the
    follower rebuilt, failed and rebuilt forever — no announcement was ever applied again, and every
    client's L1 was flushed at each attempt — and out of warming on start, so ``async with
    PolicyClient(...)`` raised."""
    await redis.hset("meshauth:policy-state", "default", NESTED)
    await redis.hset("meshauth:policy-state", "other", '["other", ' + "1" * 5000 + ", null]")
    async with PolicyClient(["http://pdp"], transport=MockTransport(), redis=redis) as client:
        assert client.state is None
        follower, seen = await following(valkey_url, client)
        try:
            await announce(redis, "default", State(4, 2))
            assert await asyncio.wait_for(seen.get(), 5) == State(4, 2)
        finally:
            await follower.stop()
    assert client.state == State(4, 2)


@pytest.mark.parametrize(
    "bad",
    [
        NESTED,
        '["default", ' + "9" * 5000 + ", null]",
        '["default", 18446744073709551616, null]',
        '["default", 9223372036854775808, 1]',
        '["default", 5, 18446744073709551616]',
        '["default", -1, null]',
        '["default", 5, ' + "[" * 50 + "]" * 50 + "]",
        '["default", 5, null' + " " * 10_000 + "]",
    ],
)
async def test_an_announced_state_no_store_can_have_is_ignored(valkey_url: str, redis: Redis, bad: str) -> None:
    """A revision or entities version past SQL BIGINT (or negative), deep nesting or a huge value on
    the stream is ignored and logged, without a rebuild (each rebuild flushes every client's L1). One
    past 2**64 adopted made every check of the client fail for good: its L2 keys could not be built,
    and every answer of the service was "older than one already seen"."""
    async with PolicyClient(["http://pdp"], transport=MockTransport(), redis=redis) as client:
        follower, seen = await following(valkey_url, client)
        try:
            await redis.xadd("meshauth:policy-state:stream", {"k": "policy_state", "v": bad, "x": "0"})
            await announce(redis, "default", State(1))
            assert await asyncio.wait_for(seen.get(), 5) == State(1)
            assert follower.resyncs == 1  # the first one only
            d = await client.check(ALICE, "view", DOC)
        finally:
            await follower.stop()
    assert (d.decision, d.error, client.state) == (True, None, State(1))
