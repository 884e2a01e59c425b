"""What a retry keeps per entry of a read, on a real Valkey."""

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from redis.asyncio import Redis

from meshauth.bus.consumer import Consumer, ConsumerConfig
from meshauth.bus.entries import Delivery, Partition
from meshauth.bus.events import audit, decode
from meshauth.bus.handling import TransientError
from meshauth.bus.producer import Producer, ProducerConfig
from meshauth.bus.streams import AUDIT, StreamNames
from tests.bus.helpers import entries, until

NAMES = StreamNames("meshauth:", AUDIT, 2)
FAST = ConsumerConfig(partitions=2, block=0.05, min_idle=0.3, max_attempts=3, lease_ttl=1.0, retry_delay=0.01)


@pytest.fixture
async def producer(valkey_url: str, redis: Redis, tmp_path: Path) -> AsyncIterator[Producer]:
    config = ProducerConfig(partitions=2, spool_dir=tmp_path / "spool", flush_interval=0.002, flush_gap=0.0)
    p = Producer(valkey_url, config)
    await p.start()
    yield p
    await p.stop()


async def _pending(redis: Redis) -> int:
    return sum([(await redis.xpending(stream, "audit"))["pending"] for stream in NAMES.all()])


async def test_a_retry_keeps_no_state_for_an_entry_trimmed_meanwhile(
    valkey_url: str, producer: Producer, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Event 3 of a batch entry is dead-lettered (held until its entry settles); event 6 then waits on
    a database that is away, and the entry is deleted from the stream meanwhile. The held dead letter
    is written when the consumer finds the entry gone, and nothing of it stays pending. Events 6-9 are
    lost: said in a warning naming the entry (it was acknowledged without a word)."""
    away = [True]
    sixes = [0]

    async def handler(batch: Sequence[Delivery]) -> None:
        for d in batch:
            if d.event.status == 3:
                raise ValueError("three")
            if d.event.status == 6 and away[0]:
                sixes[0] += 1
                raise TransientError("database away")

    for status in range(10):
        producer.publish(AUDIT, audit("gate.decision", subject="one-key", status=status))
    await producer.flushed()
    stream = NAMES.of_key("one-key")
    ((entry_id, _),) = await entries(redis, stream)
    consumer = Consumer(valkey_url, AUDIT, "audit", handler, FAST)
    consumer.start()
    await until(lambda: sixes[0] >= 3, what="event 3 set aside, event 6 waiting")
    assert await entries(redis, NAMES.dead) == []  # held until the entry settles
    await redis.xdel(stream, entry_id)

    async def settled() -> bool:
        return await _pending(redis) == 0

    await until(settled, what="the deleted entry settled")
    dead = await entries(redis, NAMES.dead)
    await consumer.stop()
    assert len(dead) == 1
    assert decode(dead[0][1][b"d"]).status == 3
    assert dead[0][1][b"error"] == b"ValueError: three"
    assert f"entry {entry_id.decode()} gone from the stream before it was handled" in caplog.text
    assert consumer.gone == 1


def test_forget_drops_the_state_of_settled_entries_only() -> None:
    part = Partition()
    part.failures = {(b"1-0", 2): 1, (b"2-0", 0): 2}
    part.progress = {b"1-0": 2, b"2-0": 1}
    part.letters = {b"1-0": [(b"1-0", b"x", "e", 3)]}
    part.forget([b"1-0"])
    assert part.failures == {(b"2-0", 0): 2}
    assert part.progress == {b"2-0": 1}
    assert part.letters == {}
