"""The writer's one script call per batch, against a real Valkey: payloads byte for byte, MAXLEN, NOSCRIPT."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from meshauth.bus.streams import AUDIT, StreamNames
from meshauth.bus.writer import StreamWriter
from tests.bus.helpers import entries

NAMES = StreamNames("meshauth:", "audit", 4)


async def test_payloads_arrive_byte_for_byte_in_order(valkey_url: str, redis: Redis) -> None:
    writer = StreamWriter(valkey_url, prefix="meshauth:", partitions=4, maxlen=1000)
    # Bytes the RESP framing must not trip on: CR LF, NUL, not UTF-8, empty, a length with more digits.
    payloads = [b"a\r\nb", b"\x00\xff\xfe", b"", b"x" * 12345, b"$5\r\n*3\r\n"]
    records = [(NAMES.partition(i % 2), data) for i, data in enumerate(payloads)]
    try:
        assert await writer.write(records)
    finally:
        await writer.aclose()
    got = [fields[b"d"] for n in (0, 1) for _id, fields in await entries(redis, NAMES.partition(n))]
    assert got == payloads[0::2] + payloads[1::2]
    # The groups were made before the first entry.
    assert {g["name"] for g in await redis.xinfo_groups(NAMES.partition(0))} == {b"audit", b"analytics"}


async def test_a_flushed_script_cache_is_loaded_again(valkey_url: str, redis: Redis) -> None:
    writer = StreamWriter(valkey_url, prefix="meshauth:", partitions=4, maxlen=1000)
    try:
        assert await writer.write([(NAMES.partition(0), b"one")])
        await redis.script_flush()  # as a restarted Redis would have it
        assert await writer.write([(NAMES.partition(0), b"two")])
    finally:
        await writer.aclose()
    assert [f[b"d"] for _id, f in await entries(redis, NAMES.partition(0))] == [b"one", b"two"]


async def test_maxlen_caps_a_partition(valkey_url: str, redis: Redis) -> None:
    writer = StreamWriter(valkey_url, prefix="meshauth:", partitions=4, maxlen=1000)
    try:
        for _ in range(30):
            assert await writer.write([(NAMES.partition(3), b"e")] * 500)
    finally:
        await writer.aclose()
    # Approximate trimming (~): whole radix-tree nodes go, so a little above the cap stays.
    assert 1000 <= await redis.xlen(NAMES.partition(3)) < 15_000 / 2


def test_partition_is_the_keys_crc_partition_across_the_memory_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from meshauth.bus import writer as writer_module

    monkeypatch.setattr(writer_module, "PARTITION_MEMORY", 3)
    w = StreamWriter("redis://127.0.0.1:1", prefix="meshauth:", partitions=4, maxlen=1000)
    names = StreamNames("meshauth:", AUDIT, 4)
    keys = ["alice", "bob", "", "ünïcode", "\ud800", "x" * 5000, "alice", "carol", "bob"]
    assert [w.partition(AUDIT, key) for key in keys] == [names.of_key(key) for key in keys]
    assert [w.partition(AUDIT, key) for key in reversed(keys)] == [names.of_key(key) for key in reversed(keys)]
