"""``meshauth bus dead-letters list|replay`` as a real process against a real Valkey and real consumers."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from redis.asyncio import Redis

from meshauth.bus import dead_letters
from meshauth.bus.consumer import Consumer, ConsumerConfig
from meshauth.bus.entries import Delivery
from meshauth.bus.events import audit, encode
from meshauth.bus.producer import Producer, ProducerConfig
from meshauth.bus.streams import AUDIT, StreamNames
from tests.bus.helpers import entries, until
from tests.cli.conftest import meshauth
from tests.conftest import ADMIN_TIMEOUT

NAMES = StreamNames("meshauth:", AUDIT, 4)
FAST = ConsumerConfig(block=0.05, min_idle=0.3, max_attempts=2, lease_ttl=1.0, retry_delay=0.01)


def _text(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


async def _cli(tmp_path: Path, url: str, *args: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(meshauth, tmp_path, "bus", "dead-letters", *args, MESHAUTH_REDIS_URL=url)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture
async def observer(redis: Redis, valkey_url: str) -> AsyncIterator[Redis]:
    """The test's own polls, with the fixtures' generous timeouts (``redis`` keeps the services' 0.5 s,
    which one poll outlasted at load 21); takes ``redis`` for its flush."""
    del redis
    client = Redis.from_url(valkey_url.replace("valkey://", "redis://", 1), socket_timeout=ADMIN_TIMEOUT)
    yield client
    await client.aclose()


async def test_a_replayed_dead_letter_reaches_only_the_group_that_set_it_aside(
    valkey_url: str, observer: Redis, tmp_path: Path
) -> None:
    """The audit group dead-letters event 13 (its handler raises); analytics counts every event once.
    ``list`` shows the letter; after the handler is fixed, ``replay --all`` hands event 13 to the audit
    group again — and analytics does not see it a second time."""
    broken = [True]
    stored: list[int] = []
    counted: list[int] = []

    async def audit_handler(batch: Sequence[Delivery]) -> None:
        if broken[0] and any(d.event.status == 13 for d in batch):
            raise ValueError("status 13 refused")
        stored.extend(d.event.status for d in batch)

    async def analytics_handler(batch: Sequence[Delivery]) -> None:
        counted.extend(d.event.status for d in batch)

    producer = Producer(valkey_url, ProducerConfig(spool_dir=tmp_path / "spool", flush_interval=0.002))
    await producer.start()
    for status in range(20):
        producer.publish(AUDIT, audit("gate.decision", subject=f"s{status % 3}", status=status))
    await producer.flushed()
    await producer.stop()
    consumers = [
        Consumer(valkey_url, AUDIT, "audit", audit_handler, FAST),
        Consumer(valkey_url, AUDIT, "analytics", analytics_handler, FAST),
    ]
    for consumer in consumers:
        consumer.start()
    try:
        await until(lambda: len(stored) >= 19 and len(counted) >= 20, what="all but 13 stored, all counted")

        async def dead_lettered() -> bool:
            return len(await entries(observer, NAMES.dead)) == 1

        await until(dead_lettered, what="13 dead-lettered")
        code, out, err = await _cli(tmp_path, valkey_url, "list")
        assert code == 0, err
        (line,) = out.splitlines()
        letter = json.loads(line)
        assert letter["group"] == "audit"
        assert letter["error"] == "ValueError: status 13 refused"
        assert letter["events"] == 1
        assert letter["stream"] == NAMES.of_key("s1")
        broken[0] = False
        code, out, err = await _cli(tmp_path, valkey_url, "replay", "--all")
        assert code == 0, err
        assert f"{letter['dead_id']}: replayed to {letter['stream']} for group audit" in out
        await until(lambda: 13 in stored, what="13 stored after the replay")
        assert await entries(observer, NAMES.dead) == []

        async def caught_up() -> bool:
            groups = [g for s in NAMES.all() for g in await observer.xinfo_groups(s)]
            return all(not g["lag"] and not g["pending"] for g in groups)

        await until(caught_up, what="both groups past the replayed entry")
    finally:
        for consumer in consumers:
            await consumer.stop()
    assert sorted(stored) == list(range(20))
    assert sorted(counted) == list(range(20))  # 13 counted once: the replay was not analytics'


async def test_replay_refuses_letters_it_must_not_write_and_hostile_arguments(
    valkey_url: str, observer: Redis, tmp_path: Path
) -> None:
    """A letter naming a key outside the bus, or holding bytes that are no event, stays where it is
    (exit 1, named on stderr) and nothing is written; bad ids, an unknown stream and neither ids nor
    --all are usage errors (exit 2)."""
    good = encode(audit("token.issued", subject="x"))
    forged = await observer.xadd(
        NAMES.dead, {"stream": "meshauth:sessions", "id": "1-0", "group": "audit", "error": "e", "d": good}
    )
    garbage = await observer.xadd(
        NAMES.dead, {"stream": NAMES.partition(0), "id": "1-0", "group": "audit", "error": "e", "d": b"\xc1"}
    )
    stranger = await observer.xadd(
        NAMES.dead, {"stream": NAMES.partition(0), "id": "1-0", "group": "nobody", "error": "e", "d": good}
    )
    code, _, err = await _cli(tmp_path, valkey_url, "replay", "--all")
    assert code == 1
    assert f"{_text(forged)}: not replayed: its stream 'meshauth:sessions'" in err
    assert f"{_text(garbage)}: not replayed: its payload does not decode" in err
    assert f"{_text(stranger)}: not replayed: its group 'nobody'" in err
    assert len(await entries(observer, NAMES.dead)) == 3
    assert not await observer.exists("meshauth:sessions")
    assert await observer.xlen(NAMES.partition(0)) == 0
    code, out, _ = await _cli(tmp_path, valkey_url, "list")
    assert code == 0
    assert [json.loads(line)["events"] for line in out.splitlines()] == [1, None, 1]
    for args in (
        ("replay", "../etc"),
        ("replay", "1-0 FLUSHALL"),
        ("replay", "1" * 30 + "-0"),
        ("replay",),
        ("replay", "1-0", "--all"),
    ):
        code, _, err = await _cli(tmp_path, valkey_url, *args)
        assert code == 2, args
    code, _, err = await _cli(tmp_path, valkey_url, "list", "--stream", "sessions")
    assert code == 2
    assert "unknown stream 'sessions'" in err
    code, _, err = await _cli(tmp_path, valkey_url, "replay", "9-9")
    assert code == 1
    assert "9-9: no such dead letter" in err


async def test_letters_whose_payload_is_not_utf8_or_nested_too_deep_are_listed_and_refused(
    valkey_url: str, observer: Redis, tmp_path: Path
) -> None:
    """A crash letter holds whatever bytes killed its holders: a string that is not UTF-8, an unknown
    field nested past msgspec's depth. ``list`` and ``replay --all`` ended in a traceback on them
    (UnicodeDecodeError, RecursionError: not DecodeErrors), showing and replaying none of the others.
    Letters missing every field, or with names that are not UTF-8, are listed too."""
    good = encode(audit("token.issued", subject="AAA"))
    payloads = [
        good.replace(b"\xa3AAA", b"\xa3\xff\xfe\xfd"),
        bytes([good[0] + 1]) + good[1:] + b"\xa1x" + b"\x91" * 200_000 + b"\xc0",
    ]
    for payload in payloads:
        await observer.xadd(NAMES.dead, {"stream": NAMES.partition(0), "id": "1-0", "group": "audit", "d": payload})
    await observer.xadd(NAMES.dead, {"x": b"\xff"})
    await observer.xadd(NAMES.dead, {"stream": b"\xff\x00", "group": b"\xc3", "error": b"\xe2\x82", "d": good})
    code, out, err = await _cli(tmp_path, valkey_url, "list")
    assert code == 0, err
    letters = [json.loads(line) for line in out.splitlines()]
    assert [letter["events"] for letter in letters] == [None, None, None, 1]
    code, out, err = await _cli(tmp_path, valkey_url, "replay", "--all")
    assert code == 1, err
    assert err.count("not replayed") == 4 and "Traceback" not in err
    assert len(await entries(observer, NAMES.dead)) == 4
    assert await observer.xlen(NAMES.partition(0)) == 0


def test_dead_letters_without_redis_says_how_to_get_one(tmp_path: Path) -> None:
    result = meshauth(tmp_path, "bus", "dead-letters", "list")
    assert result.returncode == 1
    assert "no Redis" in result.stderr


async def test_a_letter_replayed_twice_at_once_is_appended_once(valkey_url: str, observer: Redis) -> None:
    """Two operators (or two ``replay --all``) read the same letter and replay it at once: the letter is
    deleted and appended in one step, by whoever deleted it; the other is told it was gone."""
    partition = NAMES.of_key("k")
    await observer.xadd(
        NAMES.dead,
        {"stream": partition, "id": "1-1", "group": "audit", "error": "E", "attempts": "2",
         "d": encode(audit("gate.decision", subject="k", status=7))},
    )  # fmt: skip
    (letter,) = await dead_letters.read(observer, NAMES, 10)
    assert dead_letters.refusal(letter, NAMES) is None, letter
    before = len(await entries(observer, partition))
    results = await asyncio.gather(*(dead_letters.replay(observer, NAMES, letter) for _ in range(2)))
    assert sorted(r is None for r in results) == [False, True], results
    assert len(await entries(observer, partition)) == before + 1
    assert await entries(observer, NAMES.dead) == []


@pytest.mark.parametrize(
    "command", [("bus", "status"), ("bus", "dead-letters", "list"), ("bus", "dead-letters", "replay", "--all")]
)
def test_a_redis_refusing_or_stopped_is_a_clear_error(tmp_path: Path, command: tuple[str, ...]) -> None:
    """Nothing listening (refused), and a listener that never answers (a stopped Redis: the kernel
    accepts, nobody reads): one line naming the URL, exit 1, no traceback."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            refused = closed.getsockname()[1]
        for port in (refused, silent.getsockname()[1]):
            url = f"redis://127.0.0.1:{port}/0"
            result = meshauth(tmp_path, *command, MESHAUTH_REDIS_URL=url)
            assert result.returncode == 1, result.stderr
            assert f"Redis at {url} unavailable" in result.stderr
            assert "Traceback" not in result.stderr
