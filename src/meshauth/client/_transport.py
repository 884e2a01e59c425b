"""Transports: one small interface (:class:`Transport`) and aiohttp over HTTP/1.1 keep-alive (the
fastest Python client measured in FIELD-NOTES "Python HTTP clients"; the default for ``https://``
URLs and with ``PoolConfig(transport="aiohttp")`` — for ``http://`` the own ``H1Transport`` is).

A transport moves bytes and nothing else: no retries, no decoding, no breaker. It must return within
``timeout`` seconds or raise ``TimeoutError``; any other failure is a :class:`TransportError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import NamedTuple, Protocol

import aiohttp

from meshauth.client._config import PoolConfig

__all__ = ["AiohttpTransport", "Response", "Transport", "TransportError"]

_READ_CHUNK = 65_536


class Response(NamedTuple):
    status: int
    body: bytes


class TransportError(Exception):
    """The call did not produce a complete response (refused, reset, closed early, too big)."""


class Transport(Protocol):
    # ``timeout`` is an argument, not the caller's ``asyncio.timeout``: the call runs in a batch task
    # shared by several callers, so the deadline has to be passed in.
    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> Response: ...  # noqa: ASYNC109

    async def aclose(self) -> None: ...


class AiohttpTransport:
    """A pooled aiohttp session, created on first use inside the running loop."""

    def __init__(self, pool: PoolConfig | None = None) -> None:
        self._pool = pool or PoolConfig()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._pool.connections,
            limit_per_host=self._pool.connections,
            keepalive_timeout=self._pool.keepalive,
            enable_cleanup_closed=False,
        )
        # auto_decompress off: we never ask for compression, so a compressed body is garbage to us
        # (and a decompression bomb cannot grow past max_response_bytes unseen).
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> Response:  # noqa: ASYNC109
        if self._closed:
            # A call still in flight when the client closed must not reopen (and leak) a session.
            raise TransportError("the transport is closed")
        session = self._session or self._open()
        limit = self._pool.max_response_bytes
        try:
            # No redirects (as H1Transport): a 307/308 followed re-sent the question to whatever host
            # and path its Location named, and that server's answer was taken as the service's.
            post = session.post(url, data=body, headers=headers, allow_redirects=False)
            async with asyncio.timeout(timeout), post as resp:
                length = resp.content_length
                if length is not None and length > limit:
                    raise TransportError(f"response of {length} bytes is over the {limit}-byte limit")
                chunks: list[bytes] = []
                size = 0
                while chunk := await resp.content.read(_READ_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise TransportError(f"response is over the {limit}-byte limit")
                    chunks.append(chunk)
                return Response(resp.status, b"".join(chunks))
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
