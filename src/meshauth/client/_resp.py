"""A thin Redis connection for the decision cache's two hot commands: L2's ``MGET`` per batch and its
``EVALSHA`` fill — everything else stays on redis-py.

Why hand-written: under cold load these two round trips cost the gate ~100 µs of CPU per request
through redis-py (docs/performance.md, issue 10 "Run 6"): an ``MGET`` of 5 keys took 111–124 µs of
client CPU in redis-py and 44.5 µs over a bare asyncio stream with hiredis (in process, same machine,
same Valkey); with ~4–5 cold checks per batch that is most of what L2 costs the core it shares with the
policy service and Valkey. This layer is that bare path: one persistent connection, an
``asyncio.Protocol`` feeding hiredis's parser, commands pipelined on it (replies matched in order).

Only for a plain single server (``redis://`` or ``valkey://`` over TCP or a Unix socket, RESP2, no
TLS, no credential provider): :func:`raw_for` returns None for anything else — Cluster, Sentinel, TLS —
and the caller keeps redis-py for those. Semantics the cache relies on:

- every failure is an exception the caller treats as a miss (:class:`OSError` subclasses for the
  connection, ``TimeoutError`` past its ``within`` seconds, redis-py's ``ResponseError`` for an error reply);
- a command that is not answered within its timeout closes the connection (every command waiting on
  it fails at once, as redis-py does): a stopped Redis cannot pile up commands or hold a caller;
- the next command connects again (``AUTH``/``SELECT`` first when the URL asks for them); a failed
  connect is not retried for ``RECONNECT_PAUSE`` seconds (commands fail at once meanwhile), so a Redis
  that is gone does not cost a connect attempt per batch.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import ResponseError

__all__ = ["RECONNECT_PAUSE", "RawRedis", "raw_for"]

RECONNECT_PAUSE = 0.05  # seconds after a failed connect during which commands fail without trying

Arg = bytes | str | int


def raw_for(redis: object) -> RawRedis | None:
    """A :class:`RawRedis` to the same single server as ``redis`` (a redis-py client), or None when it
    is not one this layer speaks to (Cluster, Sentinel, TLS, RESP3, a credential provider)."""
    if not isinstance(redis, Redis):
        return None
    pool = redis.connection_pool
    cls = pool.connection_class
    kw: dict[str, Any] = pool.connection_kwargs
    if cls not in (Connection, UnixDomainSocketConnection) or kw.get("credential_provider") is not None:
        return None
    if kw.get("protocol") not in (None, 2, "2"):
        return None
    return RawRedis(
        host=kw.get("host", "localhost"),
        port=int(kw.get("port", 6379)),
        path=kw.get("path") if cls is UnixDomainSocketConnection else None,
        db=int(kw.get("db", 0) or 0),
        username=kw.get("username"),
        password=kw.get("password"),
        connect_timeout=kw.get("socket_connect_timeout") or kw.get("socket_timeout") or 1.0,
    )


def encode(args: tuple[Arg, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.reader = hiredis.Reader()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        reader, waiting = self.reader, self.waiting
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as e:
                self.fail(ConnectionError(f"redis protocol error: {e}"))
                return
            if reply is False:
                return
            if not waiting:  # a reply nobody asked for: the stream cannot be trusted
                self.fail(ConnectionError("unexpected reply from redis"))
                return
            fut = waiting.popleft()
            if fut.done():  # its caller gave up (cancelled)
                continue
            if isinstance(reply, hiredis.ReplyError):
                fut.set_exception(ResponseError(str(reply)))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail_waiting(ConnectionError(f"redis connection lost: {exc}" if exc else "redis connection closed"))

    def fail(self, exc: Exception) -> None:
        """Close the connection and fail every command waiting on it."""
        self.lost = True
        if self.transport is not None:
            self.transport.abort()
        self._fail_waiting(exc)

    def _fail_waiting(self, exc: Exception) -> None:
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(exc)


class RawRedis:
    """One pipelined connection to one Redis server for a few hot commands (module docstring)."""

    def __init__(
        self,
        *,
        host: str = "localhost",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: float = 1.0,
    ) -> None:
        self._host, self._port, self._path = host, port, path
        self._hello: list[tuple[Arg, ...]] = []
        if password is not None:
            self._hello.append(("AUTH", username, password) if username else ("AUTH", password))
        if db:
            self._hello.append(("SELECT", db))
        self._connect_timeout = connect_timeout
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._paused_until = 0.0
        self._shas: dict[str, bytes] = {}
        # After aclose a command fails (a miss) rather than connect again: a check or a fill arriving
        # then reopened a connection nobody would close.
        self._closed = False

    async def command(self, *args: Arg, within: float) -> Any:
        """One command's reply within ``within`` seconds (see the module docstring for failures)."""
        proto = self._proto
        if proto is None or proto.lost:
            # The connect counts against the command's time too (a stopped Redis whose listen backlog
            # is full never completes it); it goes on, shared, for the next command.
            async with asyncio.timeout(within):
                proto = await self._connect()
        return await self._send(proto, encode(args), within)

    async def packed(self, payload: bytes, *, within: float) -> Any:
        """One command already encoded in RESP by the caller (the bus's flush builds its ``EVALSHA``'s
        bytes itself); failures as for :meth:`command`."""
        proto = self._proto
        if proto is None or proto.lost:
            async with asyncio.timeout(within):
                proto = await self._connect()
        return await self._send(proto, payload, within)

    async def mget(self, keys: Sequence[bytes], *, within: float) -> list[bytes | None]:
        reply: list[bytes | None] = await self.command(b"MGET", *keys, within=within)
        return reply

    async def eval(self, script: str, keys: Sequence[bytes], args: Sequence[Arg], *, within: float) -> Any:
        """``EVALSHA``; when the server does not know the script (a restarted Redis), ``SCRIPT LOAD``
        and ``EVALSHA`` again."""
        sha = self._shas.get(script)
        if sha is None:
            sha = self._shas[script] = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest().encode()
        try:
            return await self.command(b"EVALSHA", sha, len(keys), *keys, *args, within=within)
        except ResponseError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
        await self.command(b"SCRIPT", b"LOAD", script, within=within)  # as redis-py's Script does
        return await self.command(b"EVALSHA", sha, len(keys), *keys, *args, within=within)

    def _send(self, proto: _Protocol, payload: bytes, within: float) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if proto.transport is None or proto.lost:
            raise ConnectionError("redis connection lost")
        proto.waiting.append(fut)
        proto.transport.write(payload)
        # A call_later, not asyncio.timeout (which cost ~20 µs per command in redis-py's case): past the
        # deadline the connection is closed, failing this command and any behind it.
        handle = loop.call_later(within, _expire, proto, fut)
        fut.add_done_callback(lambda _f: handle.cancel())
        return fut

    async def _connect(self) -> _Protocol:
        if self._closed:
            raise ConnectionError("redis connection closed (the client is closed)")
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(_retrieve)
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        if loop.time() < self._paused_until:
            raise ConnectionError("redis unreachable (retrying shortly)")
        proto: _Protocol | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._path is not None:
                    _, proto = await loop.create_unix_connection(_Protocol, self._path)
                else:
                    _, proto = await loop.create_connection(_Protocol, self._host, self._port)
                for hello in self._hello:
                    await self._send(proto, encode(hello), self._connect_timeout)
        except BaseException:
            self._paused_until = loop.time() + RECONNECT_PAUSE
            if proto is not None:
                proto.fail(ConnectionError("redis connection set-up failed"))
            raise
        self._proto = proto
        return proto

    async def aclose(self) -> None:
        self._closed = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # a failed connect nobody awaits any more is not logged as unretrieved


def _expire(proto: _Protocol, fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        proto.fail(TimeoutError("redis command timed out"))
