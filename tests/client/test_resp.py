"""The decision cache's own Redis connection (``_resp.py``): which connections get it, its answers
against real Valkey (under asyncio and uvloop), and its failures — a restarted Redis, a stopped
(SIGSTOP) Redis, a refused connection, a hostile server — each an exception the cache takes as a miss,
within the command's timeout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from meshauth.client import PolicyClient, State
from meshauth.client._resp import RECONNECT_PAUSE, RawRedis, encode, raw_for
from meshauth.local.valkey import EmbeddedValkey
from meshauth.redis_client import connect
from tests.client.mock import MockTransport

SCRIPT = "return #KEYS + tonumber(ARGV[1])"


def plain(url: str, **kw: Any) -> Redis:
    return Redis.from_url(url.replace("valkey://", "redis://", 1), **kw)


def raw(url: str, **kw: float) -> RawRedis:
    got = raw_for(plain(url, **kw))
    assert got is not None
    return got


def test_only_a_plain_single_server_gets_the_raw_path(valkey_url: str) -> None:
    assert raw_for(connect(valkey_url)) is not None
    assert raw_for(plain("unix:///tmp/nowhere.sock")) is not None
    assert raw_for(plain("rediss://127.0.0.1:6380")) is None  # TLS: redis-py
    assert raw_for(plain(valkey_url, protocol=3)) is None  # RESP3: redis-py
    assert raw_for(RedisCluster(host="127.0.0.1", port=7000)) is None
    assert raw_for(connect("redis+sentinel://127.0.0.1:26379/mymaster")) is None
    assert raw_for(None) is None


def test_commands_are_encoded_as_bulk_strings() -> None:
    assert encode((b"MGET", "k", 7)) == b"*3\r\n$4\r\nMGET\r\n$1\r\nk\r\n$1\r\n7\r\n"
    assert encode((b"x\r\n",)) == b"*1\r\n$3\r\nx\r\n\r\n"  # binary-safe: CRLF inside a value


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_mget_and_scripts_against_valkey(valkey_url: str, loop: str) -> None:
    async def go() -> None:
        r = connect(valkey_url)
        rr = raw(valkey_url)
        try:
            await r.flushall()
            await r.set(b"a", b"\x00\xff\r\n")
            got = await asyncio.gather(*(rr.mget([b"a", b"nope", f"k{i}".encode()], within=2.0) for i in range(50)))
            assert got == [[b"\x00\xff\r\n", None, None]] * 50  # pipelined, each reply to its caller
            assert await rr.eval(SCRIPT, [b"x", b"y"], [40], within=2.0) == 42
            await r.script_flush()  # as after a restart: NOSCRIPT, then SCRIPT LOAD and EVALSHA
            assert await rr.eval(SCRIPT, [b"x"], [1], within=2.0) == 2
            with pytest.raises(ResponseError):
                await rr.command(b"NOSUCHCOMMAND", within=2.0)
            assert await rr.mget([b"a"], within=2.0) == [b"\x00\xff\r\n"]  # still usable after an error reply
        finally:
            await rr.aclose()
            await r.aclose()

    if loop == "uvloop":
        uvloop.run(go())
    else:
        asyncio.run(go())


async def test_select_and_auth_from_the_url(tmp_path: Path) -> None:
    valkey = EmbeddedValkey(tmp_path / "valkey")
    valkey.start()
    try:
        admin = connect(valkey.url)
        await admin.config_set("requirepass", "s3cret")
        await admin.aclose()
        url = f"redis://:s3cret@127.0.0.1:{valkey.port}/3"
        r = connect(url)
        await r.set(b"k", b"db3")
        rr = raw(url)
        assert await rr.mget([b"k"], within=2.0) == [b"db3"]
        await rr.aclose()
        wrong = raw(f"redis://:nope@127.0.0.1:{valkey.port}/3")
        with pytest.raises(ResponseError):
            await wrong.mget([b"k"], within=2.0)
        await wrong.aclose()
        await r.aclose()
    finally:
        valkey.close()


async def test_a_refused_connection_fails_fast_and_pauses_reconnects() -> None:
    rr = raw("redis://127.0.0.1:9", socket_connect_within=0.5)
    with pytest.raises(ConnectionRefusedError):
        await rr.mget([b"k"], within=0.5)
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="retrying shortly"):  # within the pause: no connect at all
        await rr.mget([b"k"], within=0.5)
    assert time.monotonic() - started < RECONNECT_PAUSE
    await rr.aclose()


async def eventually(what: Callable[[], Awaitable[bool]], within: float) -> None:
    give_up = time.monotonic() + within
    while not await what():
        assert time.monotonic() < give_up, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_redis_restarted_and_stopped(tmp_path: Path) -> None:
    """A restart: the command on the dead connection fails, the next ones reconnect. SIGSTOP: every
    command fails by its timeout (not later), and after SIGCONT the connection serves again."""
    valkey = EmbeddedValkey(tmp_path / "valkey")
    valkey.start()
    rr = raw(valkey.url)
    try:
        r = connect(valkey.url)
        await r.set(b"k", b"v")
        await r.aclose()
        assert await rr.mget([b"k"], within=2.0) == [b"v"]
        valkey.stop()
        with pytest.raises(ConnectionError):
            await rr.mget([b"k"], within=2.0)
        valkey.start()  # the append-only file keeps k

        async def answers() -> bool:
            try:
                return await rr.mget([b"k"], within=2.0) == [b"v"]
            except OSError:
                return False

        await eventually(answers, within=5.0)
        assert valkey.pid is not None
        os.kill(valkey.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            outcomes = await asyncio.gather(*(rr.mget([b"k"], within=0.05) for _ in range(10)), return_exceptions=True)
            assert all(isinstance(o, TimeoutError | OSError) for o in outcomes), outcomes
            assert time.monotonic() - started < 0.5
        finally:
            os.kill(valkey.pid, signal.SIGCONT)
        await eventually(answers, within=5.0)
    finally:
        await rr.aclose()
        valkey.close()


class HostileServer:
    """Answers the first command with ``reply`` whatever it was; every connection closed on ``close``."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        with contextlib.suppress(ConnectionError):
            await reader.read(1024)
            writer.write(self.reply)
            await writer.drain()
            await reader.read(1024)
        writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self.server.wait_closed()


HOSTILE = [b"!garbage\r\n", b"*1\r\n$1\r\na\r\n*1\r\n$1\r\nb\r\n", b"*-5\r\n", b"$99999999999\r\n"]


@pytest.mark.parametrize("reply", HOSTILE)
async def test_a_hostile_server_is_an_error_never_a_wrong_answer(reply: bytes) -> None:
    """A malformed reply, or a reply nobody asked for, closes the connection: no later command can be
    answered with another's reply."""
    server = HostileServer(reply)
    port = await server.start()
    rr = raw(f"redis://127.0.0.1:{port}")
    try:
        first = await asyncio.gather(rr.mget([b"k"], within=0.5), return_exceptions=True)
        assert first[0] in ([b"a"], None) or isinstance(first[0], OSError | TimeoutError), first
        later = await asyncio.gather(rr.mget([b"k"], within=0.3), return_exceptions=True)
        assert later[0] != [b"b"], "a reply nobody asked for was handed to the next command"
    finally:
        await rr.aclose()
        await server.close()


async def test_the_client_with_l2_over_the_raw_path_is_a_miss_while_redis_is_stopped(tmp_path: Path) -> None:
    """End to end through PolicyClient: a stopped Redis makes L2 a miss within ``l2_timeout`` and the
    service answers; nothing is an allow that the service did not give."""
    valkey = EmbeddedValkey(tmp_path / "valkey")
    valkey.start()
    r = connect(valkey.url)
    t = MockTransport(revision=1)
    try:
        async with PolicyClient(["http://pdp"], transport=t, redis=r, warming=None) as client:
            client.advance(State(1))
            assert valkey.pid is not None
            os.kill(valkey.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                asks = (
                    client.check({"type": "User", "id": "a"}, "view", {"type": "Doc", "id": f"d{i}"}) for i in range(5)
                )
                ds = await asyncio.gather(*asks)
                assert [(d.decision, d.source) for d in ds] == [(True, "service")] * 5
                assert time.monotonic() - started < 1.0
            finally:
                os.kill(valkey.pid, signal.SIGCONT)
    finally:
        await r.aclose()
        valkey.close()


async def test_a_connection_that_never_gets_ready_costs_no_more_than_the_commands_time() -> None:
    """A server that accepts but never answers the set-up (AUTH): the command fails within its own
    time, not the (longer) connect timeout."""
    server = HostileServer(b"")
    port = await server.start()
    rr = raw(f"redis://:pw@127.0.0.1:{port}", socket_connect_timeout=5.0)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await rr.mget([b"k"], within=0.1)
        assert time.monotonic() - started < 1.0
    finally:
        await rr.aclose()
        await server.close()


@pytest.mark.parametrize("reply", [b"*-1\r\n", b"$-1\r\n", b":5\r\n", b"$2\r\nab\r\n", b"+OK\r\n"])
async def test_a_reply_to_mget_that_is_no_array_is_a_miss_and_the_checks_are_answered(reply: bytes) -> None:
    """A server (or a proxy in front of it) answering the batch's ``MGET`` with a nil, an integer or
    a string instead of an array: every key is a miss and the service answers the checks. ``len()``
    of it raised TypeError out of the lookup, which failed every check of the batch as unavailable."""
    server = HostileServer(reply)
    port = await server.start()
    redis = plain(f"redis://127.0.0.1:{port}")
    t = MockTransport()
    try:
        async with PolicyClient(["http://pdp"], transport=t, redis=redis, warming=None) as c:
            c.advance(State(1))  # keys to look up in L2 from the first check on
            d = await c.check({"type": "User", "id": "alice"}, "view", {"type": "Doc", "id": "d"})
    finally:
        await redis.aclose()
        await server.close()
    assert (d.decision, d.error, d.source) == (True, None, "service")
