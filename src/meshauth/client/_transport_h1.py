"""A thin HTTP/1.1 keep-alive transport: an asyncio Protocol per connection (``_h1_conn.py``), httptools'
response parser (llhttp, C) and a small pool — the client's default for ``http://`` URLs
(``PoolConfig(transport="aiohttp")`` selects aiohttp; ``https://`` always uses aiohttp).

Why own, not aiohttp: a cold gate makes one call per ~3-4 checks, and aiohttp's machinery per call
(request and response objects, a writer, a payload, a stream reader, a timer context) was the largest
single block of the gate's per-call CPU. This one does per call one ``write`` of the request head and
body, the parser's callbacks, one future and one timer: client CPU per call 95 µs against aiohttp's
227 µs at 1 in flight, 44 against 107 µs at 32 in flight; the gate's CPU per cold request 9-23 %
below aiohttp's in the same benchmark run (docs/performance.md, "Stop 19, branch ``cold2``" and
"Stop 20, branch ``h1``").

The :class:`~meshauth.client._transport.Transport` contract, as aiohttp's: returns within ``timeout``
or raises ``TimeoutError``; any other failure is a ``TransportError`` — refused or reset, closed before
the response was complete (also a body delimited by the close: the policy service always frames its
responses), a malformed response (garbage status line, bad chunking), a response head over
``HEAD_LIMIT`` bytes, a body (declared or received) over ``PoolConfig.max_response_bytes``, data the
server sent unasked. A failed or abandoned call's connection is closed, never reused. Pool: at most
``PoolConfig.connections`` open connections per transport (further calls wait for one, within their
deadline), idle ones reused last-in first-out and dropped after ``PoolConfig.keepalive`` seconds.
What a caller hands in is checked before a byte is written (``_h1_conn.py``). ``aclose`` fails every
call in flight at once — waiting for a slot, connecting, or waiting for its answer — and returns
within ``CLOSE_WAIT`` seconds whatever the peers do (a shutdown must not wait on a stopped service).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping, Sequence
from typing import Any

from meshauth.client._config import PoolConfig
from meshauth.client._h1_conn import HEAD_LIMIT, Conn, Target, head
from meshauth.client._transport import AiohttpTransport, Response, TransportError

__all__ = ["CLOSE_WAIT", "HEAD_LIMIT", "H1Transport", "default_transport"]

_TARGETS = 256  # URLs whose request-head prefix is kept (a client has ~2 per endpoint)
CLOSE_WAIT = 1.0  # seconds aclose waits for the connects it cancelled to unwind


class H1Transport:
    """Pooled HTTP/1.1 keep-alive over asyncio Protocols (see the module docstring)."""

    def __init__(self, pool: PoolConfig | None = None) -> None:
        self._pool = pool or PoolConfig()
        self.max_body = self._pool.max_response_bytes
        self._idle: dict[tuple[str, int], list[Conn]] = {}
        self._targets: dict[str, Target] = {}
        self._conns: set[Conn] = set()  # counted: open or opening
        self._connecting: set[asyncio.Future[Any]] = set()  # connects in progress: aclose cancels them
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    @property
    def connections(self) -> int:
        """Connections open or opening now (at most ``PoolConfig.connections``)."""
        return len(self._conns)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> Response:  # noqa: ASYNC109 - see Transport
        if self._closed:
            raise TransportError("the transport is closed")
        if not timeout > 0:  # spent (or NaN, which no timer would ever fire at)
            raise TimeoutError("no time left for the call")
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= _TARGETS:
                self._targets.clear()
            target = self._targets[url] = Target(url)
        data = b"".join(head(target, headers, len(body))) + body
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn = await self._acquire(loop, target, deadline)
        waiter: asyncio.Future[Response] = loop.create_future()
        conn.begin(waiter)
        timer = loop.call_at(deadline, conn.expire)
        try:
            try:
                assert conn.transport is not None
                conn.transport.write(data)
            except Exception as exc:  # a transport that cannot take it (uvloop raises on a closed one)
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
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

    async def _acquire(self, loop: asyncio.AbstractEventLoop, target: Target, deadline: float) -> Conn:
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
                    if slot.done() and not slot.cancelled() and slot.exception() is None:
                        self._wake()  # woken as it gave up: pass the free slot on
                    raise

    async def _connect(self, loop: asyncio.AbstractEventLoop, target: Target, deadline: float) -> Conn:
        conn = Conn(self, target.key)
        self._conns.add(conn)
        connecting = asyncio.ensure_future(loop.create_connection(lambda: conn, *target.key))
        self._connecting.add(connecting)
        try:
            async with asyncio.timeout_at(deadline):
                transport, _ = await connecting
        except BaseException as exc:
            conn.close()
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and self._closed and not (task and task.cancelling()):
                raise TransportError("the transport is closed") from None  # aclose cancelled the connect
            # The deadline passing is a TimeoutError (the contract), though TimeoutError is an OSError.
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            raise
        finally:
            self._connecting.discard(connecting)
        if conn.transport is None:  # connection_made is called by now (asyncio and uvloop); in case not
            conn.transport = transport
        if self._closed or not conn.open:  # closed while connecting: nothing may outlive aclose
            conn.close()
            raise TransportError("the transport is closed" if self._closed else "the connection closed at once")
        return conn

    def drop(self, conn: Conn) -> None:
        """``conn`` closed: it no longer counts against the limit (a waiting call may open another)."""
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
        """Fail every call in flight at once (waiting for a slot, connecting, or for its response) and
        close every connection; later calls fail. Returns within ``CLOSE_WAIT`` seconds whatever the peers do."""
        self._closed = True
        connecting = list(self._connecting)
        for fut in connecting:
            fut.cancel()
        for conn in list(self._conns):
            conn.fail(TransportError("the transport is closed"))
        self._idle.clear()
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():
                slot.set_exception(TransportError("the transport is closed"))
        if connecting:  # let the cancelled connects close their sockets (bounded: never a hang on close)
            await asyncio.wait(connecting, timeout=CLOSE_WAIT)


def default_transport(urls: Sequence[str], pool: PoolConfig | None) -> H1Transport | AiohttpTransport:
    """The client's transport when none is given: this one for ``http://`` URLs unless
    ``PoolConfig(transport="aiohttp")`` asks for aiohttp; aiohttp whenever a URL is ``https://`` (no TLS here)."""
    if (pool is None or pool.transport == "h1") and all(u.startswith("http://") for u in urls):
        return H1Transport(pool)
    return AiohttpTransport(pool)
