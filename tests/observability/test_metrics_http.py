"""The workers' ``/metrics`` server over real sockets: what it answers, and what it refuses to wait for."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator

import pytest
import uvloop

from meshauth.bus.metrics import HANDLED
from meshauth.observability import metrics_http
from meshauth.observability.metrics_http import MAX_CONNECTIONS, MAX_HEAD, MetricsServer


@pytest.fixture
async def server() -> AsyncIterator[MetricsServer]:
    s = MetricsServer("127.0.0.1", 0)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def _exchange(server: MetricsServer, data: bytes, *, within: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), within)
    finally:
        writer.close()


async def test_get_metrics_answers_the_registry(server: MetricsServer) -> None:
    HANDLED.add_many(3, "audit", "metrics-http-test")
    answer = await _exchange(server, b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"content-type: text/plain; version=" in head
    assert b"connection: close" in head
    assert f"content-length: {len(body)}".encode() in head
    assert b'meshauth_bus_handled_total{group="metrics-http-test",stream="audit"} 3.0' in body


async def test_head_has_no_body_and_a_query_string_is_ignored(server: MetricsServer) -> None:
    answer = await _exchange(server, b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == b""


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", b"404"),
        (b"GET /metrics/../admin HTTP/1.1\r\n\r\n", b"404"),
        (b"GET /\xff\xfe\x00 HTTP/1.1\r\n\r\n", b"404"),  # not UTF-8, with a NUL: never decoded
        (b"POST /metrics HTTP/1.1\r\ncontent-length: 0\r\n\r\n", b"405"),
        (b"GET /metrics\r\n\r\n", b"400"),
        (b"GET /metrics SPDY/3\r\n\r\n", b"400"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"400"),  # a TLS hello
    ],
)
async def test_anything_else_gets_a_clear_status(server: MetricsServer, request_head: bytes, status: bytes) -> None:
    answer = await _exchange(server, request_head)
    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer
    # The server still answers afterwards.
    assert (await _exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200")


async def test_a_huge_head_is_closed_unanswered(server: MetricsServer) -> None:
    answer = await _exchange(server, b"GET /metrics HTTP/1.1\r\nx-filler: " + b"a" * (MAX_HEAD * 4) + b"\r\n\r\n")
    assert answer == b""
    assert (await _exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200")


async def test_an_idle_connection_is_closed_after_the_read_timeout(
    server: MetricsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_http, "READ_TIMEOUT", 0.3)
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # a head that never ends
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5.0) == b""
    finally:
        writer.close()


async def test_at_the_cap_a_newcomer_closes_the_oldest_idle_connection(
    server: MetricsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The cap held by idle connections: a scrape is still answered, and the oldest idle one is the one
    closed for it (before: the scrape was closed unanswered while the cap was held). The operator is
    told, once per interval, not once per connection."""
    idle = [await asyncio.open_connection(server.host, server.port) for _ in range(MAX_CONNECTIONS)]
    try:
        await asyncio.sleep(0.2)  # let the server take them all
        with caplog.at_level(logging.WARNING, logger=metrics_http.__name__):
            answer = await _exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n", within=2.0)
            assert answer.startswith(b"HTTP/1.1 200")
            idle.append(await asyncio.open_connection(server.host, server.port))  # at the cap again
            await asyncio.sleep(0.2)
            second = await _exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n", within=2.0)
            assert second.startswith(b"HTTP/1.1 200")
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings
        assert "1 idle or slow connection(s) closed for newcomers, 0 newcomer(s) closed unanswered" in warnings[0]
        oldest, newest = idle[0][0], idle[-1][0]
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(oldest.read(), 2.0) == b""  # closed unanswered
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(newest.read(), 0.2)  # still open, still waiting for its head
    finally:
        for _r, w in idle:
            w.close()


async def test_a_scrape_accepted_with_a_flood_of_newcomers_is_still_answered(server: MetricsServer) -> None:
    """A scrape whose head is already received, accepted in the same loop turn as more newcomers than
    the cap: each newcomer closed the oldest connection still "reading", which was the scrape (its
    head not read yet) — an attacker's burst of connections evicted it. Its head is read first now."""
    loop = asyncio.get_running_loop()
    scrape = socket.create_connection((server.host, server.port))
    flood: list[socket.socket] = []
    try:
        scrape.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
        # The loop is held here (blocking calls): the kernel queues them all, the server accepts them at once.
        flood.extend(socket.create_connection((server.host, server.port)) for _ in range(MAX_CONNECTIONS + 1))
        scrape.setblocking(False)
        answer = await asyncio.wait_for(loop.sock_recv(scrape, 64), 5.0)
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        for sock in (scrape, *flood):
            sock.close()


async def test_at_the_cap_with_every_connection_answering_a_newcomer_is_closed(
    server: MetricsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only connections still reading their head are closed for a newcomer: with every open one being
    answered (clients that do not read a large answer), the newcomer is closed unanswered."""
    monkeypatch.setattr(metrics_http, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(metrics_http, "exposition", lambda: b"x" * 16_000_000)
    stuck = []
    for _ in range(2):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # takes little of the answer
        sock.connect((server.host, server.port))
        sock.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
        stuck.append(sock)
    try:
        await asyncio.sleep(0.3)  # both heads read, both answers waiting on their clients
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                assert await asyncio.wait_for(reader.read(), 5.0) == b""
        finally:
            writer.close()
    finally:
        for sock in stuck:
            sock.close()


async def test_a_busy_port_is_an_oserror(server: MetricsServer) -> None:
    other = MetricsServer("127.0.0.1", server.port)
    with pytest.raises(OSError, match="in use"):
        await other.start()


def test_clients_that_reset_at_once_are_not_logged_as_failures_under_uvloop(caplog: pytest.LogCaptureFixture) -> None:
    """The workers run on uvloop, where writing to a connection the client already reset raises
    RuntimeError, not ConnectionError: each such client was an ERROR traceback in the worker's log (a
    log flood from an unauthenticated port). The server must shrug them off and keep answering."""

    async def scenario() -> bytes:
        server = MetricsServer("127.0.0.1", 0)
        await server.start()
        try:
            for _ in range(30):
                with socket.create_connection((server.host, server.port)) as sock:
                    sock.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            await asyncio.sleep(0.5)
            return await _exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n")
        finally:
            await server.stop()

    with caplog.at_level(logging.DEBUG, logger=metrics_http.__name__):
        answer = uvloop.run(scenario())
    assert answer.startswith(b"HTTP/1.1 200")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_resets_leave_no_unretrieved_exception(caplog: pytest.LogCaptureFixture) -> None:
    """Clients that reset mid-head (the attacked-port test's traffic): each reset is an exception on the
    stream's closed-future, which the handler now takes. Left unread, asyncio logged "Future exception
    was never retrieved" with a traceback whenever a collection freed that future before its protocol
    (the reset's traceback ties them in a cycle) — the worker test then failed on the traceback."""
    import gc

    async def scenario() -> list[str]:
        unretrieved: list[str] = []
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: unretrieved.append(str(context.get("message"))))
        server = MetricsServer("127.0.0.1", 0)
        await server.start()
        try:
            for _ in range(200):
                with socket.create_connection((server.host, server.port)) as sock:
                    sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # no end of head: the handler is reading
                    await asyncio.sleep(0)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            await asyncio.sleep(0.5)
            gc.collect()
            await asyncio.sleep(0.1)
        finally:
            await server.stop()
        return unretrieved

    for run in (asyncio.run, uvloop.run):
        assert run(scenario()) == []
