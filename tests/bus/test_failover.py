"""A consumer process killed mid-batch: its partitions and pending entries move to another consumer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import cast

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis

from meshauth.audit.store import AuditWriter
from meshauth.bus.consumer import Consumer, ConsumerConfig
from meshauth.bus.entries import Delivery
from meshauth.bus.events import AuditEvent, audit, decode_batch
from meshauth.bus.producer import Producer, ProducerConfig
from meshauth.bus.streams import AUDIT
from meshauth.db import create_engine
from meshauth.db.tables import audit_log
from tests.bus.helpers import until
from tests.conftest import ADMIN_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ConsumerConfig(partitions=2, block=0.05, count=100, min_idle=0.3, lease_ttl=1.0, retry_delay=0.01)


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen([sys.executable, "-m", "tests.bus.consumer_process", *args], cwd=ROOT, env=env)


async def _killed(proc: subprocess.Popen[bytes]) -> None:
    try:
        await until(lambda: proc.poll() is not None, within=60, what="the consumer process died")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


async def _publish(url: str, tmp_path: Path, events: list[AuditEvent]) -> None:
    # Small flushes, so many small batch entries: a consumer's reads then hold several handler batches
    # for the doomed consumers to die in the middle of.
    config = ProducerConfig(partitions=2, spool_dir=tmp_path / "spool", flush_interval=0.002, flush_batch=5)
    p = Producer(url, config)
    await p.start()
    for e in events:
        p.publish(AUDIT, e)
    await p.flushed()
    await p.stop()


@pytest.fixture
async def observer(redis: Redis, valkey_url: str) -> AsyncIterator[Redis]:
    """The tests' own Redis client (polls, recorders), with the fixtures' generous timeouts: the
    ``redis`` fixture keeps the services' 0.5 s default, and at load 12-20 one ``XLEN``/``XPENDING``
    poll outlasted it (a ``TimeoutError`` in the test, not in the consumer under test). Takes
    ``redis`` for its flush."""
    del redis
    client = Redis.from_url(
        valkey_url.replace("valkey://", "redis://", 1),
        socket_timeout=ADMIN_TIMEOUT,
        socket_connect_timeout=ADMIN_TIMEOUT,
    )
    try:
        yield client
    finally:
        await client.aclose()


async def test_consumer_killed_mid_batch_every_event_lands_in_audit_log_once(
    valkey_url: str, observer: Redis, db_url: str, tmp_path: Path
) -> None:
    events = [audit("gate.decision", subject=f"user{i % 13}", decision="allow", status=i) for i in range(1000)]
    await _publish(valkey_url, tmp_path, events)
    await _killed(_spawn(valkey_url, "audit", db_url))
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            half_done = (await conn.execute(sa.select(sa.func.count()).select_from(audit_log))).scalar_one()
        assert 0 < half_done < 1000  # it died with work stored and work pending
        pending = sum([(await observer.xpending(s, "audit"))["pending"] for s in _partitions()])
        assert pending > 0
        writer = AuditWriter(engine)
        survivor = Consumer(valkey_url, AUDIT, "audit", writer, CONFIG, name="survivor")
        survivor.start()

        async def stored() -> bool:
            async with engine.connect() as conn:
                n = (await conn.execute(sa.select(sa.func.count()).select_from(audit_log))).scalar_one()
            return bool(n >= 1000)

        await until(stored, within=60, what="every event in audit_log")
        await until(lambda: _no_pending(observer), what="everything acked")
        await survivor.stop()
        await writer.close()
        async with engine.connect() as conn:
            ids = [r[0] for r in await conn.execute(sa.select(audit_log.c.id))]
    finally:
        await engine.dispose()
    assert sorted(ids) == sorted(e.id for e in events)  # each exactly once


def _partitions() -> list[str]:
    return [f"meshauth:bus:{AUDIT}:{n}" for n in range(CONFIG.partitions)]


async def _no_pending(redis: Redis) -> bool:
    return sum([int((await redis.xpending(s, "audit"))["pending"]) for s in _partitions()]) == 0


async def test_per_key_order_holds_across_a_consumer_failover(valkey_url: str, observer: Redis, tmp_path: Path) -> None:
    """Each key's events are handled in publish order by the dying consumer and by its successor;
    the successor starts with what the dead one left pending."""
    keys = [f"k{i}" for i in range(6)]
    await _publish(valkey_url, tmp_path, [audit("token.issued", subject=k, status=i) for i in range(400) for k in keys])
    await _killed(_spawn(valkey_url, "order"))

    async def record(batch: Sequence[Delivery]) -> None:
        await observer.rpush("order-log", *[f"B:{d.event.subject}:{d.event.status}" for d in batch])

    survivor = Consumer(valkey_url, AUDIT, "audit", record, CONFIG, name="survivor")
    survivor.start()
    await until(lambda: _no_pending(observer), within=60, what="everything acked")
    await until(lambda: _lag_zero(observer), what="everything delivered")
    await survivor.stop()
    log = [line.decode().split(":") for line in cast(list[bytes], await observer.lrange("order-log", 0, -1))]
    assert {who for who, _, _ in log} == {"A", "B"}
    for key in keys:
        by_b = [int(s) for who, k, s in log if k == key and who == "B"]
        assert by_b == sorted(by_b) and len(set(by_b)) == len(by_b)
        first_seen: list[int] = []
        for _, k, s in log:
            if k == key and int(s) not in first_seen:
                first_seen.append(int(s))
        assert first_seen == list(range(400))


async def _lag_zero(redis: Redis) -> bool:
    for s in _partitions():
        for g in await redis.xinfo_groups(s):
            if g["name"] == b"audit" and g["lag"]:
                return False
    return True


async def test_an_entry_that_kills_every_holder_is_dead_lettered_and_the_partition_moves_on(
    valkey_url: str, observer: Redis, tmp_path: Path
) -> None:
    """A handler bug that ends the process (not an exception the consumer could count): every new
    consumer claims the entry from the dead one and dies with it again. Redis's delivery counter sees
    the crashes; after max_attempts (2) of them the entry is dead-lettered, and the rest is handled."""
    # One key: one partition, and the poison entry sits between the others. Each group is its own
    # flush, so its own entry: an entry that kills every holder goes to dead letters whole.
    events = [audit("gate.decision", subject="k", decision="allow", status=i) for i in range(10)]
    poison = audit("gate.decision", subject="k", decision="allow", status=99, resource="poison")
    for group in (events[:5], [poison], events[5:]):
        await _publish(valkey_url, tmp_path, group)
    crashes = 0
    for _ in range(6):
        proc = _spawn(valkey_url, "poison")

        async def settled(proc: subprocess.Popen[bytes] = proc) -> bool:
            return proc.poll() is not None or bool(await observer.xlen("meshauth:bus:audit:dead"))

        try:
            await until(settled, within=60, what="the consumer died or dead-lettered the entry")
        finally:
            if proc.poll() is None:  # it dead-lettered the entry and lives on: done with it
                proc.kill()
            proc.wait()
        if await observer.xlen("meshauth:bus:audit:dead"):
            break
        assert proc.returncode == -signal.SIGKILL
        crashes += 1
    dead = cast(list[tuple[bytes, dict[bytes, bytes]]], await observer.xrange("meshauth:bus:audit:dead"))
    assert len(dead) == 1, dead
    assert b"never acknowledged" in dead[0][1][b"error"]
    assert [e.resource for e in decode_batch(dead[0][1][b"d"])] == ["poison"]
    assert crashes == 3  # delivered max_attempts + 2 times: the third holder to claim it sets it aside
    # A sound consumer now handles the rest; the poison entry is not handed over again.
    seen: list[int] = []

    async def handler(batch: Sequence[Delivery]) -> None:
        assert all(d.event.resource != "poison" for d in batch)
        seen.extend(d.event.status for d in batch)

    survivor = Consumer(valkey_url, AUDIT, "audit", handler, CONFIG, name="survivor")
    survivor.start()

    async def done() -> bool:
        return await _no_pending(observer) and await _lag_zero(observer)

    try:
        await until(done, within=60, what="everything acked")
    finally:
        await survivor.stop()
    logged = cast(list[bytes], await observer.lrange("order-log", 0, -1))
    assert set(range(10)) <= set(seen) | {int(x.decode().split(":")[2]) for x in logged}
