"""The invalidation stream (``meshauth.bus.invalidations``) on a real embedded Valkey."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio import Redis

from meshauth.auth.revocation import Denylist
from meshauth.bus.invalidations import InvalidationListener, append, publish
from meshauth.redis_client import Keys
from tests.bus.conftest import CuttableProxy, cuttable_proxy

STREAM = "t:invalidations"


class _Replica:
    """A listener applying ``jti`` entries to a denylist mirror, counting its rebuilds from Redis."""

    def __init__(self, redis: Redis, url: str) -> None:
        self.denylist = Denylist(redis, Keys("t:"), leeway=0, token_ttl=60)
        self.resyncs = 0
        self.applied = asyncio.Event()
        self.resynced = asyncio.Event()  # set by every rebuild after the first
        self.listener = InvalidationListener(url, STREAM, self._handle, self._resync)

    def _handle(self, kind: str, value: str, exp: int) -> None:
        self.denylist.add_local(value, exp)
        self.applied.set()

    async def _resync(self) -> None:
        self.resyncs += 1
        if self.resyncs > 1:
            self.resynced.set()


async def _disconnect(proxy: CuttableProxy, replica: _Replica) -> None:
    await proxy.sever()
    await asyncio.wait_for(proxy.refused.wait(), timeout=10)  # it noticed, and cannot come back yet
    assert not replica.listener.connected


async def test_a_revocation_published_while_disconnected_is_applied_on_reconnect(redis: Redis, valkey_url: str) -> None:
    """A short disconnect: the listener resumes after the last id it saw, so an entry written in the
    gap reaches the mirror (the stream still holds it), without a rebuild from Redis."""
    async with cuttable_proxy(valkey_url) as proxy:
        replica = _Replica(redis, proxy.url)
        await replica.listener.start()
        try:
            await publish(redis, STREAM, "jti", "before", 4_000_000_000)
            await asyncio.wait_for(replica.applied.wait(), timeout=10)
            await _disconnect(proxy, replica)
            replica.applied.clear()
            await publish(redis, STREAM, "jti", "in-the-gap", 4_000_000_000)
            proxy.restore()
            await asyncio.wait_for(replica.applied.wait(), timeout=10)
            assert "in-the-gap" in replica.denylist
            assert replica.resyncs == 1  # the first connect only
        finally:
            await replica.listener.stop()


async def test_a_listener_whose_gap_was_trimmed_rebuilds_from_redis(redis: Redis, valkey_url: str) -> None:
    """Entries after its last id are gone from the stream: resuming would miss them, so it resyncs."""
    async with cuttable_proxy(valkey_url) as proxy:
        replica = _Replica(redis, proxy.url)
        await replica.listener.start()
        try:
            await publish(redis, STREAM, "jti", "before", 4_000_000_000)
            await asyncio.wait_for(replica.applied.wait(), timeout=10)
            await _disconnect(proxy, replica)
            await publish(redis, STREAM, "jti", "trimmed", 4_000_000_000)
            await redis.xtrim(STREAM, maxlen=0, approximate=False)
            proxy.restore()
            await asyncio.wait_for(replica.resynced.wait(), timeout=10)
            assert replica.resyncs == 2
        finally:
            await replica.listener.stop()


async def test_append_trims_the_stream_to_about_maxlen(redis: Redis) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(1000):
            append(pipe, STREAM, "jti", f"j{i}", 0, maxlen=10)
        await pipe.execute()
    # Approximate trimming drops whole nodes (100 entries by default): cheap, and bounded.
    assert await redis.xlen(STREAM) <= 110
    newest = await redis.xrevrange(STREAM, count=1)
    assert newest is not None
    assert newest[0][1] == {b"k": b"jti", b"v": b"j999", b"x": b"0"}


async def test_a_handler_that_fails_makes_the_listener_rebuild_and_read_on(redis: Redis, valkey_url: str) -> None:
    """A bug in one consumer's handler must neither kill the listener (every later invalidation would
    be lost on this replica) nor skip the entry silently: the listener rebuilds, as after a gap."""
    replica = _Replica(redis, valkey_url)
    handle = replica._handle

    def fragile(kind: str, value: str, exp: int) -> None:
        if value == "poison":
            raise RuntimeError("a handler bug")
        handle(kind, value, exp)

    replica.listener = InvalidationListener(valkey_url, STREAM, fragile, replica._resync)
    await replica.listener.start()
    try:
        await publish(redis, STREAM, "jti", "poison", 4_000_000_000)
        await asyncio.wait_for(replica.resynced.wait(), timeout=10)
        await publish(redis, STREAM, "jti", "after", 4_000_000_000)
        await asyncio.wait_for(replica.applied.wait(), timeout=10)
        assert "after" in replica.denylist
        assert replica.listener.connected
    finally:
        await replica.listener.stop()


def test_a_malformed_entry_is_logged_cut_not_whole(caplog: pytest.LogCaptureFixture) -> None:
    """Whoever can write to Redis can add an entry: a malformed one with a 1 MB value was logged whole."""
    listener = InvalidationListener("redis://unused", STREAM, lambda *a: None, lambda: None)  # type: ignore[arg-type,return-value]
    with caplog.at_level(logging.WARNING):
        listener._dispatch({b"k": b"\xff" * 10, b"v": b"x" * 1_000_000})
    [record] = caplog.records
    assert "malformed" in record.getMessage() and len(record.getMessage()) < 1_000
