"""``/metrics`` for a process that serves no HTTP otherwise (the bus workers), on its own event loop.

The services answer ``/metrics`` through their app (``metrics.metrics_endpoint``); a worker has no app,
and a web server for one path is more than it needs. This is the smallest server that is safe to leave
on a port anyone on the network may reach: one request per connection (``Connection: close``), its head
read up to ``MAX_HEAD`` bytes within ``READ_TIMEOUT`` seconds (an idle or half-open connection is closed
then), at most ``MAX_CONNECTIONS`` at once, and only ``GET``/``HEAD /metrics`` answered with the text
``metrics.exposition()`` gives — 404 for other paths, 405 for other methods, 400 for a head that is
not HTTP/1.x. Nothing a client sends is decoded as text.

At the cap a new connection closes the *oldest one still reading its head* (idle, or a slowloris
sending a byte at a time) and is served; only when every open connection is being answered is the new
one closed unanswered. Refusing newcomers instead let one client holding 32 idle connections (opened
again every ``READ_TIMEOUT``) keep Prometheus out: every scrape was closed unanswered. A scrape sends
its head at once, so it is answered before a later newcomer can close it: a newcomer at the cap lets
the loop turn a few times first, so a head already received is read even when the scrape was accepted
in one turn with a burst of newcomers (which otherwise closed it before its head was read).
Either event — a connection closed for a newcomer, a newcomer closed unanswered — is logged as one
warning per ``CAP_LOG_INTERVAL`` with the counts since the last one, so an operator sees that the
port is being held without a line per connection of the flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from prometheus_client import CONTENT_TYPE_LATEST

from meshauth.observability.metrics import exposition

log = logging.getLogger(__name__)

MAX_HEAD = 8192
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
MAX_CONNECTIONS = 32
SETTLE_TURNS = 8  # loop turns a newcomer at the cap waits before closing another (3 sufficed, asyncio)
CAP_LOG_INTERVAL = 60.0  # seconds between two warnings about the connection cap

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}


class MetricsServer:
    """Serves ``/metrics`` on ``host:port`` (port 0: any free port; ``port`` is the bound one after start)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._open = 0
        self._reading: dict[asyncio.StreamWriter, None] = {}  # connections still reading their head, oldest first
        self._at_cap = {"evicted": 0, "refused": 0}  # since the last warning
        self._warned_at = -CAP_LOG_INTERVAL

    async def start(self) -> None:
        """Bind and listen; OSError when the address cannot be bound (busy, not permitted)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5.0)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            # A few loop turns first: a head already received (a scrape accepted in the same turn as a
            # burst of newcomers) is read meanwhile, so that scrape is past its head, not closed for them.
            for _ in range(SETTLE_TURNS):
                await asyncio.sleep(0)
            if self._open >= MAX_CONNECTIONS:
                if not self._close_oldest_reading():
                    writer.transport.abort()
                    self._cap_event("refused")
                    await _ended(writer)
                    return
                self._cap_event("evicted")
        self._open += 1
        self._reading[writer] = None
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return  # closed (or closed for a newcomer), too large or too slow: nothing worth an answer
            finally:
                self._reading.pop(writer, None)
            if writer.is_closing():
                # The client is gone (reset right after its request): uvloop raises RuntimeError, not
                # ConnectionError, on a write to a closed transport — one ERROR traceback per such client.
                return
            status, body, send_body = _answer(head)
            response = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
            content_type = CONTENT_TYPE_LATEST.encode() if status == 200 else b"text/plain; charset=utf-8"
            response += b"content-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % (
                content_type,
                len(body),
            )
            writer.write(response + body if send_body else response)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
            writer.close()  # everything was taken by the client: close after the buffer is sent
        except (TimeoutError, ConnectionError):
            pass
        except Exception:
            # One client's request must never take the worker down: it is the worker's side job.
            log.exception("metrics server: request failed")
        finally:
            self._open -= 1
            if not writer.is_closing():
                writer.transport.abort()  # a client that stopped reading: drop what it did not take
            await _ended(writer)

    def _cap_event(self, kind: str) -> None:
        self._at_cap[kind] += 1
        now = time.monotonic()
        if now - self._warned_at >= CAP_LOG_INTERVAL:
            self._warned_at = now
            counts, self._at_cap = self._at_cap, {"evicted": 0, "refused": 0}
            log.warning(
                "metrics server at its cap of %d connections: %d idle or slow connection(s) closed for"
                " newcomers, %d newcomer(s) closed unanswered (next report in %.0f s at the earliest)",
                MAX_CONNECTIONS,
                counts["evicted"],
                counts["refused"],
                CAP_LOG_INTERVAL,
            )

    def _close_oldest_reading(self) -> bool:
        """Close the oldest connection still reading its head (its handler ends and counts it out);
        False when every open connection is past its head."""
        oldest = next(iter(self._reading), None)
        if oldest is None:
            return False
        del self._reading[oldest]
        oldest.transport.abort()
        return True


def _answer(head: bytes) -> tuple[int, bytes, bool]:
    """(status, body, whether to send the body) for a request head."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return 400, b"bad request\n", True
    method, target = parts[0], parts[1]
    if target.split(b"?", 1)[0] != b"/metrics":
        return 404, b"not found: this port serves /metrics only\n", True
    if method not in (b"GET", b"HEAD"):
        return 405, b"method not allowed\n", True
    return 200, exposition(), method == b"GET"


async def _ended(writer: asyncio.StreamWriter) -> None:
    """Wait (bounded) for the connection to be gone, taking how it ended. A reset is an exception on the
    stream's closed-future; left unread, asyncio logged it as "Future exception was never retrieved"
    (with a traceback) whenever that future was collected before its protocol — the attacked-port
    test's resets did so now and then (stop 24)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(WRITE_TIMEOUT):
            await writer.wait_closed()
