"""Deferred events (``Producer.defer``, ``bus.records``): built at the flush, in order with published
ones, refused ones counted and never raised, against a real Valkey."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from meshauth.bus.events import AuditEvent, audit, new_id
from meshauth.bus.metrics import DROPPED
from meshauth.bus.producer import Producer, ProducerConfig
from meshauth.bus.records import CHUNK, Deferred
from meshauth.bus.streams import AUDIT, StreamNames
from tests.bus.helpers import read_all

NAMES = StreamNames("meshauth:", AUDIT, 4)


def _make(item: Deferred) -> AuditEvent:
    _, _, at, subject, status, resource = item
    return AuditEvent(id=new_id(), time=at, type="gate.decision", subject=subject, status=status, resource=resource)


def _broken(item: Deferred) -> AuditEvent:
    raise RuntimeError("a bug in a maker")


@pytest.fixture
async def producer(valkey_url: str, redis: Redis, tmp_path: Path) -> AsyncIterator[Producer]:
    p = Producer(valkey_url, ProducerConfig(spool_dir=tmp_path / "spool", flush_interval=0.002, flush_gap=0.0))
    await p.start()
    yield p
    await p.stop()


async def test_deferred_and_published_events_keep_publish_order_per_key(producer: Producer, redis: Redis) -> None:
    """Both kinds share one buffer: per key, the order is the order of the calls (several chunks)."""
    n = 3 * CHUNK + 7
    for i in range(n):
        if i % 3:
            assert producer.defer((_make, AUDIT, 1000.0 + i, f"key{i % 4}", i, "/x"))
        else:
            assert producer.publish(AUDIT, audit("gate.decision", subject=f"key{i % 4}", status=i))
    await producer.flushed()
    rows = await read_all(redis, NAMES.all())
    assert len(rows) == n
    order: dict[str, list[int]] = {}
    for key, _, event in rows:
        assert key == NAMES.of_key(event.subject)
        order.setdefault(event.subject, []).append(event.status)
    assert all(statuses == sorted(statuses) for statuses in order.values())
    deferred = [event for _, _, event in rows if event.status % 3]
    assert {event.time for event in deferred} == {1000.0 + event.status for event in deferred}  # the call's time
    assert len({event.id for _, _, event in rows}) == n


async def test_oversized_or_unbuildable_deferred_events_are_counted_not_raised(
    producer: Producer, redis: Redis
) -> None:
    """Found at the flush: left out and counted (oversized / invalid); the events around them go."""
    oversized, invalid = DROPPED.value(AUDIT, "oversized"), DROPPED.value(AUDIT, "invalid")
    assert producer.defer((_make, AUDIT, 1.0, "a", 1, "/ok"))
    assert producer.defer((_make, AUDIT, 2.0, "a", 2, "x" * 20_000))
    assert producer.defer((_broken, AUDIT, 3.0))
    assert producer.defer((_make, AUDIT, 4.0, "a", 4, "/ok"))
    await producer.flushed()
    rows: list[Any] = await read_all(redis, NAMES.all())
    assert [event.status for _, _, event in rows] == [1, 4]
    assert DROPPED.value(AUDIT, "oversized") == oversized + 1
    assert DROPPED.value(AUDIT, "invalid") == invalid + 1
    assert producer.dropped == 2


async def test_a_stop_drains_deferred_events(valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    p = Producer(valkey_url, ProducerConfig(spool_dir=tmp_path / "spool", flush_interval=5.0, flush_batch=100_000))
    await p.start()
    for i in range(300):
        assert p.defer((_make, AUDIT, float(i), f"k{i % 7}", i, "/"))
    await p.stop()
    assert len(await read_all(redis, NAMES.all())) == 300
