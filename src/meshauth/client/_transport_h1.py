"""A thin HTTP/1.1 keep-alive transport: an asyncio Protocol per connection, httptools' response parser
(llhttp, C) and a small pool — opt-in (``transport=``) for ``http://`` URLs; aiohttp is the default.

Why own, not aiohttp: a cold gate makes one call per ~3-4 checks, and aiohttp's machinery per call
(request and response objects, a writer, a payload, a stream reader, a timer context) was the largest
single block of the gate's per-call CPU. This one does per call one ``write`` of the request head and
body, the parser's callbacks, one future and one timer: client CPU per call 95 µs against aiohttp's
227 µs at 1 in flight, 44 against 107 µs at 32 in flight; the gate's CPU per cold request −17 %
with this stop's two other cuts (docs/performance.md, "Stop 19, branch ``cold2``").

The :class:`~meshauth.client._transport.Transport` contract, as aiohttp's: returns within ``timeout``
or raises ``TimeoutError``; any other failure is a ``TransportError`` — refused or reset, closed before
the response was complete (also a body delimited by the close: the policy service always frames its
responses), a malformed response (garbage status line, bad chunking), a response head over
``HEAD_LIMIT`` bytes, a body (declared or received) over ``PoolConfig.max_response_bytes``, data the
server sent unasked. A failed or abandoned call's connection is closed, never reused. Pool: at most
``PoolConfig.connections`` open connections per transport (further calls wait for one, within their
deadline), idle ones reused last-in first-out and dropped after ``PoolConfig.keepalive`` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import cast

import httptools

from meshauth.client._config import PoolConfig
from meshauth.client._transport import AiohttpTransport, Response, TransportError

__all__ = ["HEAD_LIMIT", "H1Transport", "default_transport"]

HEAD_LIMIT = 65_536  # bytes of status line and headers accepted in a response (llhttp sets no limit)


class _Failed(Exception):
    """Raised from a parser callback to stop parsing; the message names why."""


class _Conn(asyncio.Protocol):
    """One connection: at most one request outstanding (no pipelining)."""

    def __init__(self, pool: H1Transport, key: tuple[str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.open = True  # until connection_lost or close()
        self.counted = True  # counts against the pool's limit until dropped
        self.reusable = False
        self.idle_since = 0.0
        self._status = 0
        self._body: list[bytes] = []
        self._size = 0
        self._head = 0  # bytes received before the (final) response's headers were complete
        self._headers_done = False

    def begin(self, waiter: asyncio.Future[Response]) -> None:
        self.waiter = waiter
        self.reusable = False
        self._status = 0
        self._body = []
        self._size = 0
        self._head = 0
        self._headers_done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:  # small requests must not wait for Nagle (asyncio and uvloop set it too)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            self._fail(TransportError("the server sent data nobody asked for"))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(TransportError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            why = str(cause) if isinstance(cause, _Failed) else f"malformed response: {exc}"
            self._fail(TransportError(why))
            return
        if not self._headers_done:
            # llhttp buffers a header line whole before its callback: count the bytes fed before the
            # head is complete, so a never-ending head is cut off within one read of the limit.
            self._head += len(data)
            if self._head > HEAD_LIMIT:
                self._fail(TransportError(f"response head over {HEAD_LIMIT} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.pool._drop(self)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TransportError("the connection closed before the response was complete"))

    # httptools' callbacks (llhttp): raising stops the parse (HttpParserCallbackError, cause in __context__).
    def on_message_begin(self) -> None:
        if self.waiter is None or self.waiter.done():
            raise _Failed("the server sent a second response")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 14 and name.lower() == b"content-length" and int(value) > self.pool.max_body:
            raise _Failed(f"response of {int(value)} bytes is over the {self.pool.max_body}-byte limit")

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        self._headers_done = self._status >= 200

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.pool.max_body:
            raise _Failed(f"response is over the {self.pool.max_body}-byte limit")
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._status < 200:  # an interim 1xx: the response follows (its head counts against the limit)
            return
        self.reusable = self.parser.should_keep_alive()
        assert self.waiter is not None
        self.waiter.set_result(Response(self._status, b"".join(self._body)))

    def expire(self) -> None:
        """The call's deadline: fail it and drop the connection (its state is unknown)."""
        self._fail(TimeoutError())

    def _fail(self, exc: Exception) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        self.open = False
        self.pool._drop(self)
        if self.transport is not None:
            self.transport.abort()


class _Target:
    """A URL's connection key and its request head's fixed part, computed once per URL."""

    __slots__ = ("key", "prefix")

    def __init__(self, url: str) -> None:
        split = urllib.parse.urlsplit(url)
        if split.scheme != "http" or not split.hostname:
            raise TransportError(f"not an http:// URL: {url!r}")
        self.key = (split.hostname, split.port or 80)
        path = (split.path or "/") + (f"?{split.query}" if split.query else "")
        authority = split.netloc.rpartition("@")[2]
        self.prefix = f"POST {path} HTTP/1.1\r\nHost: {authority}\r\n".encode("latin-1")


class H1Transport:
    """Pooled HTTP/1.1 keep-alive over asyncio Protocols (see the module docstring)."""

    def __init__(self, pool: PoolConfig | None = None) -> None:
        self._pool = pool or PoolConfig()
        self.max_body = self._pool.max_response_bytes
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._targets: dict[str, _Target] = {}
        self._conns: set[_Conn] = set()  # counted: open or opening
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    @property
    def connections(self) -> int:
        """Connections open or opening now (at most ``PoolConfig.connections``)."""
        return len(self._conns)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> Response:  # noqa: ASYNC109 - see Transport
        if self._closed:
            raise TransportError("the transport is closed")
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = _Target(url)
        head = [target.prefix]
        for name, value in headers.items():
            line = f"{name}: {value}\r\n"
            if "\n" in line[:-1] or "\r" in line[:-2]:
                raise TransportError(f"header {name!r} holds a line break")
            head.append(line.encode("latin-1"))
        head.append(b"Content-Length: %d\r\n\r\n" % len(body))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn = await self._acquire(loop, target, deadline)
        waiter: asyncio.Future[Response] = loop.create_future()
        conn.begin(waiter)
        assert conn.transport is not None
        conn.transport.write(b"".join(head) + body)
        timer = loop.call_at(deadline, conn.expire)
        try:
            resp = await waiter
        except BaseException:  # failed, timed out or cancelled: the connection's state is unknown
            conn.close()
            raise
        finally:
            timer.cancel()
            conn.waiter = None
        # Answered before the whole request left (the server may never read the rest): not reusable.
        if conn.reusable and conn.open and not self._closed and not conn.transport.get_write_buffer_size():
            conn.idle_since = loop.time()
            self._idle.setdefault(conn.key, []).append(conn)
            self._wake()
        else:
            conn.close()
        return resp

    async def _acquire(self, loop: asyncio.AbstractEventLoop, target: _Target, deadline: float) -> _Conn:
        while True:
            idle = self._idle.get(target.key)
            if idle:
                oldest_ok = loop.time() - self._pool.keepalive
                while idle:
                    conn = idle.pop()
                    if conn.open and conn.idle_since >= oldest_ok and not conn.closing():
                        return conn
                    conn.close()
            if len(self._conns) < self._pool.connections:
                return await self._connect(loop, target, deadline)
            # Full: an idle connection of another URL makes room; else wait for a release or a close.
            for other in self._idle.values():
                if other:
                    other.pop(0).close()
                    break
            else:
                slot: asyncio.Future[None] = loop.create_future()
                self._waiters.append(slot)
                try:
                    async with asyncio.timeout_at(deadline):
                        await slot
                except BaseException:
                    if slot.done() and not slot.cancelled():
                        self._wake()  # woken as it gave up: pass the free slot on
                    raise

    async def _connect(self, loop: asyncio.AbstractEventLoop, target: _Target, deadline: float) -> _Conn:
        conn = _Conn(self, target.key)
        self._conns.add(conn)
        try:
            async with asyncio.timeout_at(deadline):
                transport, _ = await loop.create_connection(lambda: conn, *target.key)
        except BaseException as exc:
            conn.close()
            # The deadline passing is a TimeoutError (the contract), though TimeoutError is an OSError.
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            raise
        if conn.transport is None:  # connection_made is called by now (asyncio and uvloop); in case not
            conn.transport = transport
        if self._closed or not conn.open:  # closed while connecting: nothing may outlive aclose
            conn.close()
            raise TransportError("the transport is closed")
        return conn

    def _drop(self, conn: _Conn) -> None:
        if conn.counted:
            conn.counted = False
            self._conns.discard(conn)
            self._wake()

    def _wake(self) -> None:
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():
                slot.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._conns):
            conn._fail(TransportError("the transport is closed"))
        self._idle.clear()
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():
                slot.set_exception(TransportError("the transport is closed"))


def default_transport(urls: Sequence[str], pool: PoolConfig | None) -> H1Transport | AiohttpTransport:
    """The client's transport when none is given: aiohttp, also for ``http://`` URLs until the gate's
    failures under load on branch cold2 are explained (docs/performance.md, "cold2: the slow-service
    test"); this one is opt-in (``transport=H1Transport()``, plain ``http://`` only: no TLS)."""
    del urls  # the choice by scheme comes back with this transport as the default
    return AiohttpTransport(pool)
