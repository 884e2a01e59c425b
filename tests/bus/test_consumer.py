import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
from redis.asyncio import Redis

from meshauth.bus.consumer import Consumer, ConsumerConfig
from meshauth.bus.entries import Delivery
from meshauth.bus.events import MAX_PAYLOAD_BYTES, audit, decode, decode_batch, encode
from meshauth.bus.groups import ensure_groups
from meshauth.bus.handling import TransientError
from meshauth.bus.producer import Producer, ProducerConfig
from meshauth.bus.retention import trim
from meshauth.bus.streams import AUDIT, StreamNames
from tests.bus.conftest import cuttable_proxy
from tests.bus.helpers import entries, read_all, until

NAMES = StreamNames("meshauth:", AUDIT, 2)
FAST = ConsumerConfig(partitions=2, block=0.05, min_idle=0.3, max_attempts=3, lease_ttl=1.0, retry_delay=0.01)


@pytest.fixture
async def producer(valkey_url: str, redis: Redis, tmp_path: Path) -> AsyncIterator[Producer]:
    p = Producer(valkey_url, ProducerConfig(partitions=2, spool_dir=tmp_path / "spool", flush_interval=0.002))
    await p.start()
    yield p
    await p.stop()


async def _run(consumer: Consumer) -> Consumer:
    consumer.start()
    return consumer


async def _stop(consumer: Consumer) -> None:
    await consumer.stop()


async def test_every_event_is_handled_once_and_acked(valkey_url: str, producer: Producer, redis: Redis) -> None:
    seen: list[str] = []

    async def handler(batch: Sequence[Delivery]) -> None:
        seen.extend(d.event.id for d in batch)

    task = await _run(Consumer(valkey_url, AUDIT, "audit", handler, FAST))
    ids = []
    for i in range(300):
        event = audit("token.issued", subject=f"s{i % 7}")
        ids.append(event.id)
        producer.publish(AUDIT, event)
    await until(lambda: len(seen) >= 300, what="all handled")
    await _stop(task)
    assert sorted(seen) == sorted(ids)
    for stream in NAMES.all():
        assert (await redis.xpending(stream, "audit"))["pending"] == 0


async def test_always_failing_event_is_dead_lettered_and_the_partition_moves_on(
    valkey_url: str, producer: Producer, redis: Redis
) -> None:
    """One poisonous event: max_attempts failures, then the dead-letter stream with its error; the
    events after it, on the same key (same partition), are handled."""
    handled: list[int] = []
    attempts = 0

    async def handler(batch: Sequence[Delivery]) -> None:
        nonlocal attempts
        for d in batch:
            if d.event.status == 13:
                attempts += len(batch) == 1  # the attempts that count: the event on its own
                raise ValueError("status 13 is unlucky")
        handled.extend(d.event.status for d in batch)

    task = await _run(Consumer(valkey_url, AUDIT, "audit", handler, FAST))
    for status in range(30):
        producer.publish(AUDIT, audit("gate.decision", subject="same-key", status=status))
    await until(lambda: len(handled) >= 29, what="the events after the poisonous one")
    await _stop(task)
    assert handled == [s for s in range(30) if s != 13]  # in order, 13 skipped
    assert attempts == FAST.max_attempts
    dead = await entries(redis, NAMES.dead)
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields[b"error"] == b"ValueError: status 13 is unlucky"
    assert fields[b"attempts"] == b"3"
    assert fields[b"group"] == b"audit"
    assert decode(fields[b"d"]).status == 13


async def test_a_batch_entry_settles_each_event_once_across_a_dead_letter_and_a_transient_failure(
    valkey_url: str, producer: Producer, redis: Redis
) -> None:
    """One flush on one key: one batch entry of ten events. Event 3 always raises, event 6 meets the
    database away once: 3 is dead-lettered alone and once, every other event is handled once and in
    order (a retry resumes after what its entry already settled), and the entry is acked."""
    handled: list[int] = []
    away = [True]

    async def handler(batch: Sequence[Delivery]) -> None:
        for d in batch:
            if d.event.status == 3:
                raise ValueError("three")
            if d.event.status == 6 and away[0] and len(batch) == 1:
                away[0] = False
                raise TransientError("database away")
        handled.extend(d.event.status for d in batch)

    for status in range(10):
        producer.publish(AUDIT, audit("gate.decision", subject="one-key", status=status))
    await producer.flushed()
    stream = NAMES.of_key("one-key")
    assert len(await entries(redis, stream)) == 1
    task = await _run(Consumer(valkey_url, AUDIT, "audit", handler, FAST))
    await until(lambda: len(handled) >= 9, what="the events around the dead one")
    await until(lambda: _all_acked(redis, "audit"), what="the entry acked")
    await _stop(task)
    assert handled == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert task.handled == 9  # also 0-2, handled before the entry's first failure and never again
    dead = await entries(redis, NAMES.dead)
    assert len(dead) == 1
    assert dead[0][1][b"error"] == b"ValueError: three"
    assert decode(dead[0][1][b"d"]).status == 3


async def test_malformed_entry_is_dead_lettered_without_stopping(
    valkey_url: str, producer: Producer, redis: Redis
) -> None:
    """Entries written by something else (no payload, garbage, unknown version) go to the dead-letter
    stream with the parse error; the consumer goes on."""
    handled: list[str] = []

    async def handler(batch: Sequence[Delivery]) -> None:
        handled.extend(d.event.subject for d in batch)

    await ensure_groups(redis, NAMES)
    stream = NAMES.of_key("k")
    await redis.xadd(stream, {"x": "no payload"})
    await redis.xadd(stream, {"d": b"\xc1garbage"})
    newer = msgspec.msgpack.encode({"id": "n", "time": 1.0, "type": "token.issued", "subject": "k", "v": 9})
    await redis.xadd(stream, {"d": newer})
    await redis.xadd(stream, {"d": b"\x00" * 10_000})
    producer.publish(AUDIT, audit("token.issued", subject="k"))
    task = await _run(Consumer(valkey_url, AUDIT, "audit", handler, FAST))
    await until(lambda: handled == ["k"], what="the good event after the bad ones")
    await until(lambda: _has_dead_letters(redis), what="dead letters")
    await _stop(task)
    dead = [fields for _, fields in await entries(redis, NAMES.dead)]
    assert len(dead) == 4
    assert b"unknown schema version 9" in dead[2][b"error"]
    assert b"no 'd' field" in dead[0][b"error"]
    assert all(f[b"attempts"] == b"0" for f in dead)
    assert (await redis.xpending(stream, "audit"))["pending"] == 0


async def test_an_entry_nested_past_the_decoders_depth_is_dead_lettered_and_the_next_handled(
    valkey_url: str, producer: Producer, redis: Redis
) -> None:
    """An event carrying an unknown field nested 200,000 arrays deep: msgspec skips unknown fields by
    recursing and raises RecursionError, not a DecodeError. Unconverted, it escaped ``decode_entries``,
    the consumer started over on its pending list and met the same entry again, forever: every entry
    after it in the partition waited (and nothing said why but a log line a second)."""
    handled: list[str] = []

    async def handler(batch: Sequence[Delivery]) -> None:
        handled.extend(d.event.subject for d in batch)

    await ensure_groups(redis, NAMES)
    stream = NAMES.of_key("k")
    good = encode(audit("token.issued", subject="bomb"))
    bomb = bytes([good[0] + 1]) + good[1:] + b"\xa1x" + b"\x91" * 200_000 + b"\xc0"  # one more field, deep
    await redis.xadd(stream, {"d": bomb})
    await redis.xadd(stream, {"d": b"\xdd\x00\x00\x00\x01" + bomb})  # the same inside a batch entry
    producer.publish(AUDIT, audit("token.issued", subject="k"))
    task = await _run(Consumer(valkey_url, AUDIT, "audit", handler, FAST))
    await until(lambda: handled == ["k"], within=10, what="the good event after the nested ones")
    await until(lambda: _has_dead_letters(redis), what="dead letters")
    await _stop(task)
    dead = [fields for _, fields in await entries(redis, NAMES.dead)]
    assert len(dead) == 2
    assert all(b"nested too deeply" in f[b"error"] for f in dead)
    assert task.dead_lettered == 2
    assert (await redis.xpending(stream, "audit"))["pending"] == 0


async def test_an_entry_with_a_string_that_is_not_utf8_is_dead_lettered_and_the_next_handled(
    valkey_url: str, producer: Producer, redis: Redis
) -> None:
    """A msgpack string holding bytes that are not UTF-8: msgspec raises UnicodeDecodeError, not a
    DecodeError — as with the nesting above, the consumer started over on it until its delivery count
    made it a crash letter (wrong reason, the partition waiting meanwhile)."""
    handled: list[str] = []

    async def handler(batch: Sequence[Delivery]) -> None:
        handled.extend(d.event.subject for d in batch)

    await ensure_groups(redis, NAMES)
    stream = NAMES.of_key("k")
    good = encode(audit("token.issued", subject="AAA"))
    for bad in (b"\xed\xa0\x80", b"\xff\xfe\xfd"):  # a lone surrogate, bytes UTF-8 never has
        await redis.xadd(stream, {"d": good.replace(b"\xa3AAA", b"\xa3" + bad)})
    producer.publish(AUDIT, audit("token.issued", subject="k"))
    task = await _run(Consumer(valkey_url, AUDIT, "audit", handler, FAST))
    await until(lambda: handled == ["k"], within=10, what="the good event after the bad ones")
    await until(lambda: _has_dead_letters(redis), what="dead letters")
    await _stop(task)
    dead = [fields for _, fields in await entries(redis, NAMES.dead)]
    assert [f[b"attempts"] for f in dead] == [b"0", b"0"]
    assert all(b"not UTF-8" in f[b"error"] for f in dead)
    assert task.dead_lettered == 2


async def test_an_entry_for_a_group_that_reads_no_stream_here_is_dead_lettered_not_skipped(
    valkey_url: str, producer: Producer, redis: Redis
) -> None:
    """Field ``g`` marks a dead letter replayed to one group (``dead_letters``): every other group
    acknowledges it unread. Naming a group this stream does not have (a neighbour's entry; a replay
    never writes one) it was acknowledged unread by every group: the event reached no table, and
    nothing said so."""
    handled: list[str] = []

    async def handler(batch: Sequence[Delivery]) -> None:
        handled.extend(d.event.subject for d in batch)

    await ensure_groups(redis, NAMES)
    stream = NAMES.of_key("k")
    await redis.xadd(stream, {"d": encode(audit("token.issued", subject="nobody's")), "g": "nobody"})
    await redis.xadd(stream, {"d": encode(audit("token.issued", subject="analytics'")), "g": "analytics"})
    await redis.xadd(stream, {"d": encode(audit("token.issued", subject="mine")), "g": "audit"})
    producer.publish(AUDIT, audit("token.issued", subject="k"))
    task = await _run(Consumer(valkey_url, AUDIT, "audit", handler, FAST))
    await until(lambda: handled == ["mine", "k"], within=10, what="the entries for this group")
    await until(lambda: _has_dead_letters(redis), what="dead letters")
    await _stop(task)
    (dead,) = [fields for _, fields in await entries(redis, NAMES.dead)]
    assert dead[b"group"] == b"audit"
    assert b"'nobody'" in dead[b"error"]
    assert decode(dead[b"d"]).subject == "nobody's"
    assert (await redis.xpending(stream, "audit"))["pending"] == 0


async def test_a_huge_malformed_entry_is_dead_lettered_cut_to_what_a_producer_writes(
    valkey_url: str, producer: Producer, redis: Redis
) -> None:
    """A 3 MiB payload (no producer writes over a batch header and 1 MiB) and an entry of 5,000 fields
    without one: their dead letters keep the payload's first MAX_PAYLOAD_BYTES and a sample of the
    fields — the whole entry was copied into the dead-letter stream."""
    handled: list[str] = []

    async def handler(batch: Sequence[Delivery]) -> None:
        handled.extend(d.event.subject for d in batch)

    await ensure_groups(redis, NAMES)
    stream = NAMES.of_key("k")
    await redis.xadd(stream, {"d": b"\x00" * (3 * MAX_PAYLOAD_BYTES)})
    await redis.xadd(stream, {f"f{i}": "v" * 100 for i in range(5000)})
    producer.publish(AUDIT, audit("token.issued", subject="k"))
    task = await _run(Consumer(valkey_url, AUDIT, "audit", handler, FAST))
    await until(lambda: handled == ["k"], within=10, what="the good event after the huge ones")
    await until(lambda: _has_dead_letters(redis), what="dead letters")
    await _stop(task)
    big, fields = [f for _, f in await entries(redis, NAMES.dead)]
    assert len(big[b"d"]) == MAX_PAYLOAD_BYTES and b"larger than any producer writes" in big[b"error"]
    assert len(fields[b"d"]) < 20_000 and b"no 'd' field" in fields[b"error"]
    assert len(fields[b"error"]) < 1_000  # 5,000 field names named by count, not listed whole


async def test_a_read_whose_acks_redis_never_took_is_read_again_after_the_reconnect(
    valkey_url: str, producer: Producer, redis: Redis
) -> None:
    """The connection drops between the read and its settle (the handler done, the MULTI of acks and
    dead letters lost). The consumer reconnected and read on from ``>``: what the read had left pending
    (a malformed entry's dead letter never written, events handled but not acked) was never read again
    by it — stuck until a restart or a lost lease, holding retention back, and gone without a trace
    once the producer's MAXLEN trimmed it. After a Redis error the leased partitions are recovered."""
    async with cuttable_proxy(valkey_url) as proxy:
        calls = [0]

        async def handler(batch: Sequence[Delivery]) -> None:
            calls[0] += 1
            if calls[0] == 1:
                await proxy.sever()  # the settle after this handler cannot reach Redis

        await ensure_groups(redis, NAMES)
        stream = NAMES.of_key("k")
        await redis.xadd(stream, {"d": b"\xc1garbage"})
        producer.publish(AUDIT, audit("token.issued", subject="k"))
        await producer.flushed()
        task = await _run(Consumer(proxy.url, AUDIT, "audit", handler, FAST))
        await until(lambda: calls[0] >= 1, what="the first read handled")
        await asyncio.wait_for(proxy.refused.wait(), timeout=10)  # it noticed, and cannot come back yet
        proxy.restore()

        async def settled() -> bool:
            return (await redis.xpending(stream, "audit"))["pending"] == 0 and await _has_dead_letters(redis)

        try:
            await until(settled, within=10, what="the read left pending settled after the reconnect")
        finally:
            await _stop(task)
        assert calls[0] == 2  # handled again (idempotent handlers), then acked


async def test_transient_failures_retry_without_dead_lettering(
    valkey_url: str, producer: Producer, redis: Redis
) -> None:
    """A handler whose database is away raises TransientError: retried as long as it takes, never
    dead-lettered, order kept."""
    handled: list[int] = []
    outages = 10

    async def handler(batch: Sequence[Delivery]) -> None:
        nonlocal outages
        if outages:
            outages -= 1
            raise TransientError("database away")
        handled.extend(d.event.status for d in batch)

    task = await _run(Consumer(valkey_url, AUDIT, "audit", handler, FAST))
    for status in range(20):
        producer.publish(AUDIT, audit("gate.decision", subject="k", status=status))
    await until(lambda: len(handled) >= 20, what="handled after the outage")
    await _stop(task)
    assert handled == list(range(20))
    assert await redis.xlen(NAMES.dead) == 0


async def test_two_consumers_share_the_partitions(valkey_url: str, producer: Producer) -> None:
    seen: dict[str, list[int]] = {"a": [], "b": []}

    def handler_for(name: str) -> Any:
        async def handler(batch: Sequence[Delivery]) -> None:
            seen[name].extend(d.partition for d in batch)

        return handler

    a = Consumer(valkey_url, AUDIT, "audit", handler_for("a"), FAST, name="a")
    b = Consumer(valkey_url, AUDIT, "audit", handler_for("b"), FAST, name="b")
    tasks = [await _run(a), await _run(b)]
    await until(lambda: len(a.leases.owned) == 1 and len(b.leases.owned) == 1, what="one partition each")
    for i in range(100):
        producer.publish(AUDIT, audit("token.issued", subject=f"s{i}"))
    await until(lambda: len(seen["a"]) + len(seen["b"]) >= 100, what="all handled")
    for t in tasks:
        await _stop(t)
    assert set(seen["a"]).isdisjoint(seen["b"])


async def test_trimming_keeps_what_a_group_has_not_acknowledged(
    valkey_url: str, producer: Producer, redis: Redis
) -> None:
    """MINID trimming: after the audit group acked everything, nothing is trimmed while the analytics
    group has not read it; once both have, the acked entries go."""
    for i in range(50):
        producer.publish(AUDIT, audit("token.issued", subject=f"s{i}"))
    await producer.flushed()
    written = sum([await redis.xlen(s) for s in NAMES.all()])  # batch entries: one per partition per flush
    assert len(await read_all(redis, NAMES.all())) == 50

    async def handler(batch: Sequence[Delivery]) -> None:
        return None

    task = await _run(Consumer(valkey_url, AUDIT, "audit", handler, FAST))
    await until(
        lambda: _all_acked(redis, "audit"),
        what="audit group caught up",
    )
    await trim(redis, NAMES)
    assert sum([await redis.xlen(s) for s in NAMES.all()]) == written
    other = await _run(Consumer(valkey_url, AUDIT, "analytics", handler, FAST))
    await until(lambda: _all_acked(redis, "analytics"), what="analytics group caught up")
    removed = await trim(redis, NAMES)
    await _stop(task)
    await _stop(other)
    assert removed == written
    assert sum([await redis.xlen(s) for s in NAMES.all()]) == 0


async def test_trimming_forgets_consumers_idle_with_nothing_pending(redis: Redis) -> None:
    """Each worker start reads under a new consumer name; the old names stayed in every partition's
    group for good (Redis memory, ``meshauth bus status`` growing with each restart). Trimming deletes
    those idle past the bound with nothing pending; one holding entries, or seen lately, stays."""
    await ensure_groups(redis, NAMES)
    stream = NAMES.partition(0)
    for name in ("gone", "holding"):
        await redis.xadd(stream, {"d": encode(audit("token.issued", subject=name))})
        await redis.xreadgroup("audit", name, {stream: ">"})
        if name == "gone":
            ((entry_id, _),) = await entries(redis, stream)
            await redis.xack(stream, "audit", entry_id)
    await asyncio.sleep(0.3)
    await redis.xreadgroup("audit", "reading", {stream: ">"})  # seen just now, nothing pending
    await trim(redis, NAMES, idle_consumer_ms=200)
    left = {c["name"] for c in await redis.xinfo_consumers(stream, "audit")}
    assert left == {b"holding", b"reading"}
    await trim(redis, NAMES)  # the default bound: an hour
    assert len(await redis.xinfo_consumers(stream, "audit")) == 2


async def _all_acked(redis: Redis, group: str) -> bool:
    for stream in NAMES.all():
        info = {g["name"].decode(): g for g in await redis.xinfo_groups(stream)}[group]
        if info["lag"] or info["pending"]:
            return False
    return True


async def _has_dead_letters(redis: Redis) -> bool:
    return bool(await redis.xlen(NAMES.dead))


async def test_what_a_consumer_left_pending_when_it_gave_the_partition_back_moves_at_once(
    valkey_url: str, producer: Producer, redis: Redis
) -> None:
    """A consumer stopped cleanly with entries pending (here: failing, waiting for a retry) gives its
    leases back; the successor claims those entries at once, not after min_idle (30 s here)."""
    slow = ConsumerConfig(partitions=2, block=0.05, min_idle=30.0, lease_ttl=1.0, retry_delay=60.0)
    failing: list[str] = []

    async def broken(batch: Sequence[Delivery]) -> None:
        failing.extend(d.event.id for d in batch)
        raise RuntimeError("database is read-only")

    ids = []
    for i in range(20):
        event = audit("token.issued", subject=f"s{i % 5}")
        ids.append(event.id)
        producer.publish(AUDIT, event)
    first = await _run(Consumer(valkey_url, AUDIT, "audit", broken, slow, name="first"))
    await until(lambda: len(failing) >= 2, what="the first consumer failed on both partitions")
    await _stop(first)
    assert sum([(await redis.xpending(s, "audit"))["pending"] for s in NAMES.all()]) > 0
    seen: list[str] = []

    async def handler(batch: Sequence[Delivery]) -> None:
        seen.extend(d.event.id for d in batch)

    second = await _run(Consumer(valkey_url, AUDIT, "audit", handler, slow, name="second"))
    try:
        await until(lambda: set(seen) == set(ids), within=10, what="everything handled well before min_idle")
    finally:
        await _stop(second)
    for stream in NAMES.all():
        assert (await redis.xpending(stream, "audit"))["pending"] == 0


async def test_retries_while_the_database_is_away_are_not_taken_for_crashes(
    valkey_url: str, producer: Producer, redis: Redis
) -> None:
    """A consumer retrying through a database outage (TransientError) re-reads its pending entries many
    times; when it then gives its partitions back (a rolling restart, a rebalance), those retries must
    not read as holders that died with the entry: the successor handles every event, dead-letters none."""
    calls = 0

    async def away(batch: Sequence[Delivery]) -> None:
        nonlocal calls
        calls += 1
        raise TransientError("database away")

    ids = []
    for i in range(10):
        event = audit("token.issued", subject=f"s{i % 5}")
        ids.append(event.id)
        producer.publish(AUDIT, event)
    first = await _run(Consumer(valkey_url, AUDIT, "audit", away, FAST, name="first"))
    await until(lambda: calls >= 4 * FAST.max_attempts * 2, what="the first consumer retried through the outage")
    await _stop(first)
    await _all_handled_by_a_successor(valkey_url, ids, "second")
    assert await redis.xlen(NAMES.dead) == 0


async def test_several_handovers_through_a_database_outage_are_not_taken_for_crashes(
    valkey_url: str, producer: Producer, redis: Redis
) -> None:
    """As above, with the partitions handed over several times (a rolling restart during the outage,
    workers joining and leaving). The backlog was re-read with XREADGROUP … 0, which Redis counts as
    a delivery: at the seventh handover (max_attempts 3) the oldest pending entries were dead-lettered
    as "delivered 7 times … its holders died handling it", though no holder had died."""
    calls = [0]

    async def away(batch: Sequence[Delivery]) -> None:
        calls[0] += 1
        raise TransientError("database away")

    ids = []
    for i in range(10):
        event = audit("token.issued", subject=f"s{i % 5}")
        ids.append(event.id)
        producer.publish(AUDIT, event)
    for round_ in range(2 * FAST.max_attempts + 2):
        calls[0] = 0
        holder = await _run(Consumer(valkey_url, AUDIT, "audit", away, FAST, name=f"holder{round_}"))
        await until(lambda: calls[0] >= 4, what="the holder retried through the outage")
        await asyncio.sleep(FAST.min_idle + 0.1)
        await _stop(holder)
    await _all_handled_by_a_successor(valkey_url, ids, "last")
    assert await redis.xlen(NAMES.dead) == 0


async def _all_handled_by_a_successor(valkey_url: str, ids: list[str], name: str) -> None:
    """A consumer that handles everything, started under ``name``, until every one of ``ids`` is seen."""
    seen: list[str] = []

    async def handler(batch: Sequence[Delivery]) -> None:
        seen.extend(d.event.id for d in batch)

    successor = await _run(Consumer(valkey_url, AUDIT, "audit", handler, FAST, name=name))
    try:
        await until(lambda: set(seen) == set(ids), within=10, what=f"every event handled by {name}")
    finally:
        await _stop(successor)


async def test_a_consumer_with_a_name_that_is_not_utf8_stops_no_one(
    valkey_url: str, producer: Producer, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Someone (redis-cli while debugging, another tool) read entries as a consumer whose name is not
    UTF-8 and left them pending: the worker waits them out (min_idle) like any other holder's, and
    meanwhile handles everything else — it does not fail over the name and start over, again and again."""
    await ensure_groups(redis, NAMES)
    first, second = NAMES.all()
    held = audit("token.issued", subject="held")
    await redis.xadd(first, {"d": msgspec.msgpack.encode(held)})
    odd = cast(str, b"\xff\xfeodd")  # redis-py sends bytes as they are; its stubs say str
    assert await redis.xreadgroup("audit", odd, {first: ">"})
    for i in range(10):
        producer.publish(AUDIT, audit("token.issued", subject=f"s{i}"))
    await until(lambda: _stream_lengths(redis, 11), what="the events in the streams")
    ids = {e.id for _, fields in await entries(redis, second) for e in decode_batch(fields[b"d"])}
    assert ids
    seen: list[str] = []

    async def handler(batch: Sequence[Delivery]) -> None:
        seen.extend(d.event.id for d in batch)

    patient = ConsumerConfig(partitions=2, block=0.05, min_idle=30.0, lease_ttl=1.0, retry_delay=0.01)
    consumer = await _run(Consumer(valkey_url, AUDIT, "audit", handler, patient, name="plain"))
    try:
        # The first partition waits for min_idle (the odd consumer may still be at work); the other goes on.
        await until(lambda: ids <= set(seen), within=10, what="every event of the other partition")
    finally:
        await _stop(consumer)
    assert held.id not in seen
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def _stream_lengths(redis: Redis, total: int) -> bool:
    return len(await read_all(redis, NAMES.all())) >= total
