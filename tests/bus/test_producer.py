import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from meshauth.bus.events import audit
from meshauth.bus.metrics import DROPPED
from meshauth.bus.producer import EventTooLarge, Producer, ProducerConfig
from meshauth.bus.streams import AUDIT, StreamNames
from meshauth.redis_client import connect
from tests.bus.helpers import read_all, restartable_valkey, until

NAMES = StreamNames("meshauth:", AUDIT, 4)


def config(tmp_path: Path, **overrides: Any) -> ProducerConfig:
    values: dict[str, Any] = {"spool_dir": tmp_path / "spool", "flush_interval": 0.002}
    values.update(overrides)
    return ProducerConfig(**values)


@pytest.fixture
async def producer(valkey_url: str, redis: Redis, tmp_path: Path) -> AsyncIterator[Producer]:
    p = Producer(valkey_url, config(tmp_path))
    await p.start()
    yield p
    await p.stop()


def _events(n: int, keys: int = 5, start: int = 0) -> list[Any]:
    return [audit("gate.decision", subject=f"key{i % keys}", status=i) for i in range(start, start + n)]


def _per_key_order(rows: list[Any]) -> dict[str, list[int]]:
    order: dict[str, list[int]] = {}
    for _, _, event in rows:
        order.setdefault(event.subject, []).append(event.status)
    return order


async def test_events_land_in_their_key_partition_in_order(producer: Producer, redis: Redis) -> None:
    for event in _events(200):
        assert producer.publish(AUDIT, event)
    await producer.flushed()
    rows = await read_all(redis, NAMES.all())
    assert len(rows) == 200
    for key, _, event in rows:
        assert key == NAMES.of_key(event.subject)
    for statuses in _per_key_order(rows).values():
        assert statuses == sorted(statuses)


async def test_oversized_event_is_refused_at_publish(producer: Producer, redis: Redis) -> None:
    """Larger than max_event_bytes: a clear error at publish, counted, nothing written."""
    before = DROPPED.value(AUDIT, "oversized")
    with pytest.raises(EventTooLarge, match="limit is 16384"):
        producer.publish(AUDIT, audit("admin.action", resource="x" * 20_000))
    assert DROPPED.value(AUDIT, "oversized") == before + 1
    await producer.flushed()
    assert await read_all(redis, NAMES.all()) == []


async def test_shutdown_drains_the_buffer(valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    p = Producer(valkey_url, config(tmp_path, flush_interval=5.0, flush_batch=100_000))
    await p.start()
    for event in _events(300):
        p.publish(AUDIT, event)
    await p.stop()
    assert len(await read_all(redis, NAMES.all())) == 300


async def test_redis_stopped_and_restarted_events_are_spooled_and_arrive_in_order(
    valkey_server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    """Published while Redis is down: spooled, then replayed in order; published == stored."""
    server = restartable_valkey(valkey_server_factory, tmp_path / "valkey")
    url = server.connection_url
    p = Producer(url, config(tmp_path))
    await p.start()
    try:
        for event in _events(500):
            p.publish(AUDIT, event)
        await p.flushed()
        server.stop()
        for event in _events(1000, start=500):
            assert p.publish(AUDIT, event)
            await asyncio.sleep(0)
        await until(lambda: p.spooled >= 1000, what="events spooled while Redis is down")
        server.start()
        await p.flushed(within=30)
        redis = connect(url)
        rows = await read_all(redis, NAMES.all())
        await redis.aclose()
    finally:
        await p.stop()
    assert p.dropped == 0
    assert sorted(e.status for _, _, e in rows) == list(range(1500))
    for statuses in _per_key_order(rows).values():
        assert statuses == sorted(statuses)


async def test_sigstopped_redis_never_blocks_publish(valkey_server_factory: Callable[..., Any], tmp_path: Path) -> None:
    """A frozen Redis: publish stays a synchronous append, the flush spools after its timeout, and the
    event loop keeps running; after SIGCONT everything arrives."""
    server = valkey_server_factory()
    p = Producer(server.connection_url, config(tmp_path))
    await p.start()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    tick_task = asyncio.create_task(ticker())
    os.kill(server.pid, signal.SIGSTOP)
    try:
        for i, event in enumerate(_events(2000)):
            assert p.publish(AUDIT, event) is True
            if i % 100 == 0:
                await asyncio.sleep(0)
        ticks_at_stop = ticks
        await until(lambda: p.spooled > 0, what="spooling while Redis is frozen")
        assert ticks > ticks_at_stop  # the loop ran while the flush waited on Redis
    finally:
        os.kill(server.pid, signal.SIGCONT)
        tick_task.cancel()
    await p.flushed(within=30)
    redis = connect(server.connection_url)
    assert len(await read_all(redis, NAMES.all())) >= 2000  # a timed-out pipeline may have landed twice
    await redis.aclose()
    await p.stop()


async def test_buffer_and_spool_full_drop_counted_never_raised(
    valkey_server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    """Redis gone, spool and buffer full: publish returns False, every drop is counted."""
    server = valkey_server_factory()
    url = server.connection_url
    server.stop()
    p = Producer(url, config(tmp_path, buffer_events=10, spool_max_bytes=2000))
    await p.start()
    before = DROPPED.value(AUDIT, "buffer_full")
    accepted = 0
    for event in _events(500):
        accepted += p.publish(AUDIT, event)
        await asyncio.sleep(0)
    await until(lambda: p.buffered == 0 or p.dropped + p.spooled + p.buffered == 500, what="settled")
    assert p.dropped > 0
    assert DROPPED.value(AUDIT, "buffer_full") - before == p.dropped
    assert accepted + (500 - accepted) == 500
    await p.stop()
    assert p.spooled + p.dropped == 500


async def test_an_unusable_spool_directory_does_not_stop_the_producer(
    valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """A spool path that cannot be created (here: under a file) is logged; events still flow to Redis."""
    (tmp_path / "file").write_text("not a directory")
    p = Producer(valkey_url, config(tmp_path, spool_dir=tmp_path / "file" / "spool"))
    await p.start()
    p.publish(AUDIT, audit("token.issued", subject="x"))
    await p.flushed()
    await p.stop()
    assert len(await read_all(redis, NAMES.all())) == 1


async def test_flushes_are_spaced_by_the_gap_at_a_steady_rate(valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    """~2,000 events/s for ~0.5 s: a flush starts at most every ``flush_gap`` (one round trip each),
    however the machine schedules the publisher; without a gap the same load takes many more."""
    flushes = {}
    for gap in (0.05, 0.0):
        p = Producer(valkey_url, config(tmp_path / str(gap), flush_interval=0.002, flush_gap=gap))
        await p.start()
        started = time.monotonic()
        for chunk in range(50):
            for event in _events(20, start=chunk * 20):
                p.publish(AUDIT, event)
            await asyncio.sleep(0.01)  # paces the publisher (not a wait for a result)
        await p.flushed()
        elapsed = time.monotonic() - started
        flushes[gap] = p.flushes
        await p.stop()
        if gap:
            assert p.flushes <= elapsed / gap + 2, (p.flushes, elapsed)
    assert flushes[0.0] > flushes[0.05]
    assert len(await read_all(redis, NAMES.all())) == 2_000


async def test_an_idle_producer_flushes_its_first_event_without_waiting_for_the_gap(
    valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """The first event after a quiet spell goes after ``flush_interval``; the next one, published just
    after that flush, waits until ``flush_gap`` after its start; a full batch does not wait."""
    gap = 2.0
    p = Producer(valkey_url, config(tmp_path, flush_interval=0.002, flush_gap=gap, flush_batch=50))
    await p.start()
    try:
        t0 = time.monotonic()
        p.publish(AUDIT, audit("gate.decision", subject="a"))
        await until(lambda: p.published == 1, within=gap * 0.75, what="first event well within the gap")
        p.publish(AUDIT, audit("gate.decision", subject="b"))
        await until(lambda: p.published == 2, what="second event")
        assert time.monotonic() - t0 >= gap
        t2 = time.monotonic()
        for event in _events(50):
            p.publish(AUDIT, event)
        await until(lambda: p.published == 52, within=gap * 0.75, what="a full batch at once")
        assert time.monotonic() - t2 < gap
    finally:
        await p.stop()
    assert len(await read_all(redis, NAMES.all())) == 52


async def test_shutdown_within_a_gap_drains_at_once(valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    p = Producer(valkey_url, config(tmp_path, flush_interval=0.002, flush_gap=5.0))
    await p.start()
    p.publish(AUDIT, audit("gate.decision", subject="a"))
    await until(lambda: p.published == 1, what="first flush")
    for event in _events(300):
        p.publish(AUDIT, event)
    for _ in range(5):
        await asyncio.sleep(0)  # loop turns: the flusher wakes and begins waiting out its gap
    started = time.monotonic()
    await p.stop()
    assert time.monotonic() - started < 2.0  # not the 5 s gap (nor the 5 s drain timeout: spooled)
    assert p.spooled == 0
    assert len(await read_all(redis, NAMES.all())) == 301


async def test_a_batch_filled_while_the_flusher_waits_out_its_gap_goes_at_once(
    valkey_url: str, redis: Redis, tmp_path: Path
) -> None:
    """``flush_batch`` waiting events go at once even when they gathered during a gap the flusher
    had begun to wait out for fewer (before: they waited the whole gap; with a buffer smaller than
    the rate times the gap, what came on top was dropped with Redis healthy)."""
    gap = 5.0
    p = Producer(valkey_url, config(tmp_path, flush_interval=0.002, flush_gap=gap, flush_batch=50))
    await p.start()
    try:
        p.publish(AUDIT, audit("gate.decision", subject="a"))
        await until(lambda: p.published == 1, within=gap * 0.5, what="first flush")
        p.publish(AUDIT, audit("gate.decision", subject="b"))
        for _ in range(5):
            await asyncio.sleep(0)  # loop turns: the flusher wakes for one event and waits out its gap
        for event in _events(49):
            p.publish(AUDIT, event)
        await until(lambda: p.published == 51, within=gap * 0.5, what="the batch filled during the gap")
    finally:
        await p.stop()
    assert len(await read_all(redis, NAMES.all())) == 51
