"""An HTTP/2 transport (cleartext h2c with prior knowledge, or HTTP/1.1) over libcurl through
``curl_cffi`` — the measured alternative to the default aiohttp HTTP/1.1 pool (docs/performance.md,
"Service client (issue 10)"). libcurl multiplexes concurrent calls as streams of one connection and
does the HTTP/2 framing in C (nghttp2), unlike the pure-Python h2 stacks measured in FIELD-NOTES.

Optional: ``pip install 'meshauth[http2]'``; nothing imports this module unless asked. The policy
service speaks h2c only when served with ``MESHAUTH_HTTP_MODE=auto``. curl_cffi's own timeout has
been reported not to fire in rare hangs (lexiforest/curl_cffi#578), so the deadline is also
enforced here with ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Literal

from curl_cffi import CurlHttpVersion
from curl_cffi.requests import AsyncSession
from curl_cffi.requests import Response as CurlResponse
from curl_cffi.requests.exceptions import RequestException

from meshauth.client._config import PoolConfig
from meshauth.client._transport import Response, TransportError

__all__ = ["CurlTransport"]


class CurlTransport:
    def __init__(self, pool: PoolConfig | None = None, *, http: Literal["h2c", "http1"] = "h2c") -> None:
        self._pool = pool or PoolConfig()
        self._version = CurlHttpVersion.V2_PRIOR_KNOWLEDGE if http == "h2c" else CurlHttpVersion.V1_1
        self._session: AsyncSession[CurlResponse] | None = None
        self._closed = False

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> Response:  # noqa: ASYNC109 - see Transport
        if self._closed:
            raise TransportError("the transport is closed")
        if self._session is None:
            self._session = AsyncSession(max_clients=self._pool.connections, http_version=self._version)
        try:
            async with asyncio.timeout(timeout):
                # No redirects (as the other transports): curl_cffi follows them by default, and the
                # answer of whatever server a 307's Location named was taken as the service's.
                resp = await self._session.post(
                    url, data=body, headers=dict(headers), timeout=timeout, accept_encoding=None, allow_redirects=False
                )
        except RequestException as exc:
            if "timed out" in str(exc).lower():
                raise TimeoutError(str(exc)) from exc
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        content = resp.content
        if len(content) > self._pool.max_response_bytes:
            raise TransportError(f"response is over the {self._pool.max_response_bytes}-byte limit")
        return Response(resp.status_code, content)

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
