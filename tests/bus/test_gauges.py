"""The backlog gauges: lag, pending and dead letters as Redis reports them, on a real Valkey."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from prometheus_client import Gauge
from redis.asyncio import Redis

from meshauth.bus import metrics
from meshauth.bus.events import audit
from meshauth.bus.gauges import measure
from meshauth.bus.metrics import DEAD_LETTERS, PENDING, STREAM_LAG
from meshauth.bus.producer import Producer, ProducerConfig
from meshauth.bus.streams import AUDIT, StreamNames
from tests.bus.helpers import until

NAMES = StreamNames("gauges:", AUDIT, 2)


def _value(gauge: Gauge, *labels: str) -> float:
    return float(gauge.labels(*labels)._value.get())


async def test_lag_pending_and_dead_letters_follow_redis(valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    """Published, unread entries are lag for every group; read, unacked ones are pending; the
    dead-letter stream's length is the dead-letter gauge."""
    producer = Producer(
        valkey_url, ProducerConfig(prefix="gauges:", partitions=2, spool_dir=tmp_path, gauge_interval=0)
    )
    await producer.start()
    try:
        for i in range(10):
            producer.publish(AUDIT, audit("token.issued", subject=f"s{i}"))
        await producer.flushed()
    finally:
        await producer.stop()
    written = sum([await redis.xlen(s) for s in NAMES.all()])  # entries: a batch per partition per flush
    assert written >= 1
    await measure(redis, NAMES)
    assert (_value(STREAM_LAG, AUDIT, "audit"), _value(STREAM_LAG, AUDIT, "analytics")) == (written, written)
    assert _value(PENDING, AUDIT, "audit") == 0

    streams: dict[Any, Any] = {NAMES.partition(0): ">", NAMES.partition(1): ">"}
    read = cast(list[tuple[bytes, list[Any]]], await redis.xreadgroup("audit", "c1", streams, count=3))
    taken = sum(len(entries) for _, entries in read)
    await redis.xadd(NAMES.dead, {"d": b"x"})
    await measure(redis, NAMES)
    assert _value(STREAM_LAG, AUDIT, "audit") == written - taken
    assert _value(PENDING, AUDIT, "audit") == taken
    assert _value(STREAM_LAG, AUDIT, "analytics") == written
    assert _value(DEAD_LETTERS, AUDIT) == 1


async def test_a_producer_keeps_the_gauges_current(valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    """The producer reads the backlog every ``gauge_interval`` on its own, and stops when it stops."""
    names = StreamNames("gauges2:", AUDIT, 2)
    config = ProducerConfig(prefix="gauges2:", partitions=2, spool_dir=tmp_path, gauge_interval=0.01)
    producer = Producer(valkey_url, config)
    await producer.start()
    try:
        await redis.xadd(names.dead, {"d": b"x"})
        await redis.xadd(names.dead, {"d": b"y"})
        await until(lambda: _value(DEAD_LETTERS, AUDIT) == 2, what="dead-letter gauge read")
    finally:
        await producer.stop()


async def test_a_missing_stream_reads_as_nothing_behind(redis: Redis) -> None:
    """Before anything was published there are no groups and no dead letters: no error, zero."""
    await measure(redis, StreamNames("gauges-none:", AUDIT, 2))
    assert _value(DEAD_LETTERS, AUDIT) == 0


def test_every_bus_gauge_names_its_multiprocess_mode() -> None:
    """Served processes run prometheus_client in multiprocess mode, where a Gauge's default
    (``all``: one series per pid) would keep dead workers' values."""
    gauges = [v for v in vars(metrics).values() if isinstance(v, Gauge)]
    assert len(gauges) == 3
    assert all(g._multiprocess_mode.startswith("live") for g in gauges)
