"""One connection of :class:`~meshauth.client.H1Transport` (an asyncio Protocol around httptools'
response parser), and the request head: a URL's fixed part (``Target``) and the headers (``head``).

Split from ``_transport_h1.py`` (the pool) to keep each under the project's 300 lines. Everything a
caller hands in is checked before a byte is written, each a ``TransportError`` naming what is wrong:
a URL that is not ``http://host[:port]/path`` (userinfo is refused — nothing here would send it, and a
silently dropped credential turns into puzzling 401s), a request target or header that would not be
one well-formed line (line breaks, control characters, a space in the path), a header value outside
latin-1 (HTTP/1.1's octets; ``str.encode`` would raise ``UnicodeEncodeError`` past the contract), and
the framing headers this transport writes itself (``Host``, ``Content-Length``, ``Transfer-Encoding``:
a second copy makes a request that proxies and servers may frame differently).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import urllib.parse
from collections.abc import Mapping
from typing import Protocol, cast

import httptools

from meshauth.client._transport import Response, TransportError

__all__ = ["HEAD_LIMIT", "Conn", "Target", "head"]

HEAD_LIMIT = 65_536  # bytes of status line and headers accepted in a response (llhttp sets no limit)

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field name
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls but HTAB (RFC 9110 field-value)
_TARGET = re.compile(r"/[!-~]*")  # origin-form: visible ASCII, no space
_OWN = frozenset({"host", "content-length", "transfer-encoding"})


class Pool(Protocol):
    max_body: int

    def drop(self, conn: Conn) -> None: ...


class _Failed(Exception):
    """Raised from a parser callback to stop parsing; the message names why."""


class Target:
    """A URL's connection key and its request head's fixed part, computed once per URL."""

    __slots__ = ("key", "prefix")

    def __init__(self, url: str) -> None:
        try:
            split = urllib.parse.urlsplit(url)
            port = split.port
        except ValueError as exc:  # a port that is not a number from 0 to 65535, an unclosed [
            raise TransportError(f"not a valid URL: {url[:200]!r} ({exc})") from None
        if split.scheme != "http" or not split.hostname:
            raise TransportError(f"not an http:// URL: {url[:200]!r}")
        if "@" in split.netloc:
            raise TransportError(f"credentials in the URL are not supported (send a header): {url[:200]!r}")
        path = (split.path or "/") + (f"?{split.query}" if split.query else "")
        if not _TARGET.fullmatch(path) or not _TARGET.fullmatch("/" + split.netloc):
            raise TransportError(f"the URL is not visible ASCII without spaces (percent-encode it): {url[:200]!r}")
        self.key = (split.hostname, 80 if port is None else port)
        self.prefix = f"POST {path} HTTP/1.1\r\nHost: {split.netloc}\r\n".encode("ascii")


def head(target: Target, headers: Mapping[str, str], length: int) -> list[bytes]:
    """The request head as parts to join (``prefix``, one line per header, ``Content-Length``)."""
    parts = [target.prefix]
    for item in headers.items():
        line = _lines.get(item)
        if line is None:
            line = _line(*item)
            if len(_lines) >= _LINES:
                _lines.clear()
            _lines[item] = line
        parts.append(line)
    parts.append(b"Content-Length: %d\r\n\r\n" % length)
    return parts


# Checked and encoded header lines: a client sends the same few (content type, token) on every call,
# and checking each again cost ~0.5 µs a header (1.2 -> 2.8 µs a head with a trace header, loaded machine).
_LINES = 256
_lines: dict[tuple[str, str], bytes] = {}


def _line(name: str, value: str) -> bytes:
    if not _TOKEN.fullmatch(name) or name.lower() in _OWN:
        raise TransportError(f"header name {name[:100]!r} is not one this transport can send")
    if _BAD_VALUE.search(value):
        raise TransportError(f"header {name!r} holds a line break or another control character")
    try:
        return f"{name}: {value}\r\n".encode("latin-1")
    except UnicodeEncodeError:
        raise TransportError(f"header {name!r} holds characters outside latin-1 (encode it first)") from None


class Conn(asyncio.Protocol):
    """One connection: at most one request outstanding (no pipelining)."""

    def __init__(self, pool: Pool, key: tuple[str, int]) -> None:
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
        if not self.open:  # given up (deadline, cancel, aclose) while connecting: nothing may outlive that
            self.transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:  # small requests must not wait for Nagle (asyncio and uvloop set it too)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.fail(TransportError("the server sent data nobody asked for"))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(TransportError("the server switched protocols"))
            return
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            why = str(cause) if isinstance(cause, _Failed) else f"malformed response: {exc}"
            self.fail(TransportError(why))
            return
        if not self._headers_done:
            # llhttp buffers a header line whole before its callback: count the bytes fed before the
            # head is complete, so a never-ending head is cut off within one read of the limit.
            self._head += len(data)
            if self._head > HEAD_LIMIT:
                self.fail(TransportError(f"response head over {HEAD_LIMIT} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.pool.drop(self)
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
        self.fail(TimeoutError())

    def fail(self, exc: Exception) -> None:
        """Fail the call in progress, if any, and drop the connection."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        self.open = False
        self.pool.drop(self)
        if self.transport is not None:
            self.transport.abort()
