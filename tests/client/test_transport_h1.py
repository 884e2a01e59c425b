"""The own HTTP/1.1 transport (``H1Transport``): the same answers as aiohttp from the real policy
service, and the Transport contract against hostile servers — a garbage status line, a never-ending
head, a close mid-response, no answer, chunked and trickled bodies, oversized bodies, unsolicited data —
each a ``TransportError`` (or ``TimeoutError`` at the deadline), never a hang, and the failed
connection is never reused."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Literal

import pytest
import uvloop

from meshauth.client import (
    REASON_UNAVAILABLE,
    AiohttpTransport,
    Check,
    H1Transport,
    PolicyClient,
    PoolConfig,
    TransportError,
)
from meshauth.client._transport_h1 import CLOSE_WAIT, HEAD_LIMIT, default_transport
from tests.client.served import DECISION_TOKEN, policy_server, push

POLICY = """
@id("view-all") permit(principal, action == Action::"view", resource);
@id("no-mallory") forbid(principal == User::"mallory", action, resource);
"""
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HOSTILE = [
    (b"garbage\r\n\r\n", "malformed"),
    (b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok", "malformed"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed"),
    (b"HTTP/1.1 200 OK\r\nX: \xff\xfe\x00\r\nContent-Length: 2\r\n\r\nok", "malformed"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "limit"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", "closed"),
    (b"HTTP/1.1 200 OK\r\n\r\nbody delimited by the close", "closed"),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", "switched|closed"),
    (b"", "closed"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with policy_server(tmp_path_factory.mktemp("pdp")) as (url, _proc):
        push(url, POLICY)
        yield url


async def test_decisions_equal_those_over_aiohttp(server: str) -> None:
    checks = [
        Check({"type": "User", "id": "mallory" if i % 5 == 0 else f"u{i}"}, "view", {"type": "Doc", "id": "d"})
        for i in range(64)
    ]
    h1, aio = H1Transport(), AiohttpTransport()
    async with (
        PolicyClient([server], token=DECISION_TOKEN, transport=h1, cache=None, timeout=5) as over_h1,
        PolicyClient([server], token=DECISION_TOKEN, transport=aio, cache=None, timeout=5) as over_aiohttp,
    ):
        got = await over_h1.check_many(checks)
        want = await over_aiohttp.check_many(checks)
        singles = await asyncio.gather(*(over_h1.check(c.subject, c.action, c.resource) for c in checks))
    await h1.aclose()
    await aio.aclose()
    assert [(d.decision, d.reasons, d.error) for d in got] == [(d.decision, d.reasons, d.error) for d in want]
    assert [d.decision for d in singles] == [d.decision for d in want]


def test_the_default_is_h1_for_http_urls_and_aiohttp_when_asked_or_for_https() -> None:
    assert isinstance(default_transport(["http://a:1", "http://b:2"], None), H1Transport)
    assert isinstance(default_transport(["http://a:1"], PoolConfig(connections=2)), H1Transport)
    assert isinstance(default_transport(["http://a:1"], PoolConfig(transport="aiohttp")), AiohttpTransport)
    assert isinstance(default_transport(["http://a:1", "https://b:2"], None), AiohttpTransport)
    with pytest.raises(ValueError, match="transport"):
        PoolConfig(transport="h2")  # type: ignore[arg-type]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(v) for k, _, v in (line.partition(b": ") for line in head.split(b"\r\n")) if k == b"Content-Length"
    )
    return head + await reader.readexactly(length)


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[tuple[str, list[int]]]:
    """A server running ``script`` per connection; yields its URL and a one-item list: connections seen."""
    seen = [0]
    handlers: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await script(reader, writer)
        finally:
            writer.close()

    def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen[0] += 1
        handlers.add(asyncio.ensure_future(run(reader, writer)))

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        async with srv:
            yield f"http://127.0.0.1:{port}/x", seen
    finally:
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


def answering(*replies: bytes) -> Script:
    """Read a request, send the next reply, for every request on the connection (then keep it open)."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for reply in replies:
            await read_request(reader)
            writer.write(reply)
            await writer.drain()
        await reader.read()  # until the client closes

    return script


async def post(t: H1Transport, url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    r = await t.post(url, b'{"a": 1}', {"content-type": "application/json"}, timeout=timeout)
    return r.status, r.body


async def test_keep_alive_reuses_one_connection_and_sends_a_well_formed_request() -> None:
    got: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(3):
            got.append(await read_request(reader))
            writer.write(OK)
        await reader.read()

    async with scripted(script) as (url, seen):
        t = H1Transport()
        assert [await post(t, url) for _ in range(3)] == [(200, b"ok")] * 3
        await t.aclose()
    assert seen[0] == 1
    host = url.split("/")[2]
    assert got[0] == (
        f"POST /x HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\nContent-Length: 8\r\n\r\n"
        '{"a": 1}'.encode()
    )


async def test_chunked_and_interim_responses() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 Forbidden\r\nContent-Length: 1\r\n\r\nn"
    async with scripted(answering(chunked, interim, OK)) as (url, seen):
        t = H1Transport()
        assert await post(t, url) == (200, b"abcde")
        assert await post(t, url) == (403, b"n")
        assert await post(t, url) == (200, b"ok")
        await t.aclose()
    assert seen[0] == 1


@pytest.mark.parametrize(("reply", "why"), HOSTILE)
async def test_a_hostile_reply_is_a_transport_error_and_the_connection_is_not_reused(reply: bytes, why: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()
        if b"Content-Length: 99999999999" not in reply and b"101" not in reply:
            return  # close after it (mid-response for the short ones)
        await reader.read()

    async with scripted(script) as (url, seen):
        t = H1Transport()
        with pytest.raises(TransportError, match=why):
            await post(t, url)
        with pytest.raises(TransportError):
            await post(t, url)
        assert seen[0] == 2
        await t.aclose()


async def test_a_never_ending_head_and_an_oversized_body_are_cut_off() -> None:
    async def endless_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Big: ")
        for _ in range(4 * HEAD_LIMIT // 4096):
            writer.write(b"a" * 4096)
            await writer.drain()
        await reader.read()

    async def big_chunks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(64):
            writer.write(b"1000\r\n" + b"b" * 4096 + b"\r\n")
            await writer.drain()
        await reader.read()

    async with scripted(endless_head) as (url, _):
        t = H1Transport()
        with pytest.raises(TransportError, match="head over"):
            await post(t, url)
        await t.aclose()
    async with scripted(big_chunks) as (url, _):
        t = H1Transport(PoolConfig(max_response_bytes=65_536))
        with pytest.raises(TransportError, match="limit"):
            await post(t, url)
        await t.aclose()


async def test_no_answer_and_a_trickled_body_time_out_and_the_connection_is_dropped() -> None:
    never = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await never.wait()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(1000):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.01)  # a slow server, not synchronisation

    for script in (silent, trickle):
        async with scripted(script) as (url, seen):
            t = H1Transport()
            with pytest.raises(TimeoutError):
                await post(t, url, timeout=0.2)
            with pytest.raises(TimeoutError):
                await post(t, url, timeout=0.2)
            assert seen[0] == 2
            await t.aclose()
    never.set()


@contextlib.contextmanager
def unanswered_syn() -> Iterator[str]:
    """A listener whose accept queue is full and never drained: the kernel drops further SYNs, so a
    connect to it neither succeeds nor fails (a policy service too starved or stopped to accept)."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # Linux queues backlog + 1 = 1 connection, then drops SYNs
        addr = listener.getsockname()
        stack.enter_context(socket.create_connection(addr, timeout=5))  # takes the one place
        for _ in range(2):  # in case a kernel queues more: SYNs in flight fill those places too
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(addr)
        yield f"http://127.0.0.1:{addr[1]}/x"


async def test_a_connect_that_never_completes_is_a_timeout_and_frees_its_slot() -> None:
    """The deadline passing while connecting is a ``TimeoutError`` (the contract: the caller counts a
    timeout, not a connection failure); it was a ``TransportError`` — ``TimeoutError`` is an ``OSError``."""
    with unanswered_syn() as url:
        t = H1Transport(PoolConfig(connections=1))
        for _ in range(2):  # the second call gets the slot the first gave back
            with pytest.raises(TimeoutError):
                await post(t, url, timeout=0.1)
        assert not t.connections
        await t.aclose()


async def test_a_call_waiting_for_a_full_pool_times_out_and_the_pool_serves_on() -> None:
    never = asyncio.Event()
    asked = asyncio.Queue[None]()

    async def first_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if not never.is_set():  # the first connection holds the pool's one slot, unanswered
            asked.put_nowait(None)
            await never.wait()
            return
        writer.write(OK)
        await reader.read()  # until the client closes

    async with scripted(first_silent) as (url, _):
        t = H1Transport(PoolConfig(connections=1))
        holder = asyncio.ensure_future(post(t, url, timeout=30))
        await asked.get()
        with pytest.raises(TimeoutError):  # waited for the one slot: out at its own deadline
            await post(t, url, timeout=0.1)
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
        assert not t.connections
        never.set()
        assert await post(t, url) == (200, b"ok")
        assert t.connections == 1
        await t.aclose()


async def test_unsolicited_data_drops_the_connection_and_the_next_call_opens_another() -> None:
    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK + OK)  # a second response nobody asked for
        await writer.drain()
        await reader.read()

    async with scripted(chatty) as (url, seen):
        t = H1Transport()
        assert await post(t, url) == (200, b"ok")
        assert await post(t, url) == (200, b"ok")
        assert seen[0] == 2
        await t.aclose()


async def test_an_idle_connection_the_server_closed_is_not_used() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()  # then close: the client's idle connection is gone

    async with scripted(once) as (url, seen):
        t = H1Transport()
        assert await post(t, url) == (200, b"ok")
        # The close has no event on the client's side to wait on: yield to the loop until it is seen.
        while t.connections:  # noqa: ASYNC110 - no timed sleep; bounded by the test's timeout
            await asyncio.sleep(0)
        assert await post(t, url) == (200, b"ok")
        assert seen[0] == 2
        await t.aclose()


async def test_the_pool_limit_holds_and_waiting_calls_are_served() -> None:
    release, both = asyncio.Event(), asyncio.Event()
    open_now = [0]
    most = [0]

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_now[0] += 1
        most[0] = max(most[0], open_now[0])
        if open_now[0] == 2:
            both.set()
        try:
            while True:
                await read_request(reader)
                await release.wait()
                writer.write(OK)
                await writer.drain()
        finally:
            open_now[0] -= 1

    async with scripted(slow) as (url, _):
        t = H1Transport(PoolConfig(connections=2))
        calls = [asyncio.ensure_future(post(t, url)) for _ in range(6)]
        await both.wait()
        release.set()
        assert await asyncio.gather(*calls) == [(200, b"ok")] * 6
        assert most[0] == 2
        await t.aclose()


async def test_a_cancelled_call_and_aclose_leave_nothing_open() -> None:
    never = asyncio.Event()
    asked = asyncio.Queue[None]()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        asked.put_nowait(None)
        await never.wait()

    async with scripted(silent) as (url, _):
        t = H1Transport()
        call = asyncio.ensure_future(post(t, url, timeout=30))
        await asked.get()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert not t.connections
        pending = asyncio.ensure_future(post(t, url, timeout=30))
        await asked.get()
        await t.aclose()
        with pytest.raises(TransportError):
            await pending
        with pytest.raises(TransportError, match="closed"):
            await post(t, url)
    never.set()


async def test_refused_and_bad_headers_are_transport_errors() -> None:
    t = H1Transport()
    with pytest.raises(TransportError):
        await post(t, "http://127.0.0.1:9/x")
    with pytest.raises(TransportError, match="line break"):
        await t.post("http://127.0.0.1:9/x", b"", {"x": "a\r\nInjected: 1"}, timeout=1)
    await t.aclose()


async def test_through_the_client_a_hostile_server_is_a_deny() -> None:
    hostile = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{]]]]")
    async with scripted(hostile) as (url, _), PolicyClient([url.rsplit("/", 1)[0]], timeout=1, cache=None) as client:
        d = await client.check({"type": "User", "id": "a"}, "view", {"type": "Doc", "id": "d"})
    assert (d.decision, d.error) == (False, REASON_UNAVAILABLE)


def test_the_same_under_uvloop() -> None:
    """The gate serves under uvloop (other transports and sockets): the scripted cases again there."""

    async def all_of_them() -> None:
        await test_keep_alive_reuses_one_connection_and_sends_a_well_formed_request()
        await test_chunked_and_interim_responses()
        for reply, why in HOSTILE:
            await test_a_hostile_reply_is_a_transport_error_and_the_connection_is_not_reused(reply, why)
        await test_a_never_ending_head_and_an_oversized_body_are_cut_off()
        await test_no_answer_and_a_trickled_body_time_out_and_the_connection_is_dropped()
        await test_a_connect_that_never_completes_is_a_timeout_and_frees_its_slot()
        await test_a_call_waiting_for_a_full_pool_times_out_and_the_pool_serves_on()
        await test_unsolicited_data_drops_the_connection_and_the_next_call_opens_another()
        await test_an_idle_connection_the_server_closed_is_not_used()
        await test_the_pool_limit_holds_and_waiting_calls_are_served()
        await test_a_cancelled_call_and_aclose_leave_nothing_open()
        await test_refused_and_bad_headers_are_transport_errors()
        await test_a_connection_answered_before_its_request_was_sent_is_not_reused()
        await test_aclose_ends_a_connect_in_progress_at_once()
        await test_aclose_ends_calls_waiting_for_an_answer_a_slot_or_a_full_write_buffer_at_once()

    uvloop.run(all_of_them())


def test_the_pool_drops_idle_connections_before_the_policy_service_does() -> None:
    """The policy service closes a kept-alive connection idle ``http_header_read_timeout`` seconds
    (granian_server.py): a client keeping one longer reuses it, now and then, exactly as the server
    closes it, and that call fails (a closed connection, no answer). The client must let go first."""
    from meshauth.config import Settings  # the service's default; tests may import both sides

    assert PoolConfig().keepalive < Settings.model_fields["http_header_read_timeout"].default


async def test_a_connection_answered_before_its_request_was_sent_is_not_reused() -> None:
    """A server may answer before it has read the request's body (and then never read it): the rest
    of that body still waits in the connection's write buffer, so a call reusing it would queue behind
    it and time out. Such a connection is closed, and the next call opens another."""
    connections = [0]

    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        if connections[0] == 1:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK)
            await writer.drain()
            await asyncio.Future()  # reads no more: the body stays unsent
        await answering(OK)(reader, writer)

    async with scripted(early) as (url, seen):
        t = H1Transport()
        big = b"x" * (64 << 20)  # beyond what the kernel's socket buffers take
        # Not the subject: the call that would time out is the next one. 5 s was too short at load 20.
        assert (await t.post(url, big, {}, timeout=30.0)).status == 200
        assert await post(t, url) == (200, b"ok")
        assert seen[0] == 2
        await t.aclose()


async def test_aclose_ends_a_connect_in_progress_at_once() -> None:
    """A connect the peer never answers (a stopped or starved service) held ``aclose`` and its call
    until the call's deadline; the gate's shutdown waits for ``aclose``. Now both end at once."""
    with unanswered_syn() as url:
        t = H1Transport()
        call = asyncio.ensure_future(post(t, url, timeout=30))
        await asyncio.sleep(0)  # one loop turn: the call runs to its connect
        assert t.connections == 1
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(CLOSE_WAIT + 1):
            await t.aclose()
            with pytest.raises(TransportError, match="closed"):
                await call
        assert asyncio.get_running_loop().time() - started < CLOSE_WAIT
        assert not t.connections


async def test_aclose_ends_calls_waiting_for_an_answer_a_slot_or_a_full_write_buffer_at_once() -> None:
    """A server that neither answers nor reads (SIGSTOPped, half-open): one call waits for its answer
    with a body the kernel cannot take, another for the pool's only other slot; ``aclose`` fails both
    at once and drops what was unsent."""
    never = asyncio.Event()
    asked = asyncio.Queue[None]()

    async def stuck(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        asked.put_nowait(None)
        await never.wait()  # reads no more

    async with scripted(stuck) as (url, _):
        t = H1Transport(PoolConfig(connections=1))
        big = asyncio.ensure_future(t.post(url, b"x" * (64 << 20), {}, timeout=30))
        await asked.get()
        waiting = asyncio.ensure_future(post(t, url, timeout=30))
        for _ in range(3):  # no I/O on its way to the wait for the slot: a few loop turns
            await asyncio.sleep(0)
        assert not waiting.done()
        async with asyncio.timeout(1):
            await t.aclose()
            for call in (big, waiting):
                with pytest.raises(TransportError, match="closed"):
                    await call
        assert not t.connections
    never.set()


@pytest.mark.parametrize("transport", ["h1", "aiohttp"])
@pytest.mark.parametrize("status", [307, 308])
async def test_a_redirect_is_a_deny_never_a_decision_from_elsewhere(
    transport: Literal["h1", "aiohttp"], status: int
) -> None:
    """A 307/308 from the policy URL (a proxy, a misconfigured ingress, a hostile hop) is no decision:
    both transports answer it as the status it is, and the check is denied. aiohttp followed it —
    re-sending the question to whatever the Location named, another host and path included — and the
    client took that server's allow as the service's."""
    allow = b'{"decision": true, "context": {"revision": 1, "entities_version": 1}}'
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(allow), allow)
    async with scripted(answering(answer, answer)) as (elsewhere, asked):
        moved = b"HTTP/1.1 %d Moved\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % (status, elsewhere.encode())
        async with (
            scripted(answering(moved, moved)) as (url, _),
            PolicyClient(
                [url.rsplit("/", 1)[0]], pool=PoolConfig(transport=transport), timeout=1, cache=None, batching=None
            ) as client,
        ):
            d = await client.check({"type": "User", "id": "a"}, "view", {"type": "Doc", "id": "d"})
    assert (d.decision, d.error, asked[0]) == (False, REASON_UNAVAILABLE, 0)
