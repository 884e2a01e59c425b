"""Cross-replica invalidation on one Redis stream, read by every replica (fan-out, no consumer group).

A stream rather than pub/sub: a replica that loses its connection resumes from the last id it saw and
misses nothing the stream still holds; if it was gone so long that its id was trimmed, it calls
``on_resync`` to rebuild its state from Redis before reading on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from meshauth.redis_client import connect

log = logging.getLogger(__name__)

STREAM_MAXLEN = 100_000
BLOCK_MS = 1000
# A blocked XREAD must not hit the socket timeout (redis/redis-py#3138).
READER_SOCKET_TIMEOUT = BLOCK_MS / 1000 + 5

# XREAD's reply with decode_responses=False: [(stream, [(id, {field: value})])]
StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]
Handler = Callable[[str, str, int], None]
Resync = Callable[[], Awaitable[None]]


def entry(kind: str, value: str, exp: int = 0) -> dict[str, str]:
    """One stream entry: what changed (``kind``), which one (``value``), until when it matters (``exp``)."""
    return {"k": kind, "v": value, "x": str(exp)}


async def publish(redis: Redis, stream: str, kind: str, value: str, exp: int = 0) -> None:
    await redis.xadd(stream, entry(kind, value, exp), maxlen=STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]


class InvalidationListener:
    """Reads the stream in a background task and hands each entry to ``handler(kind, value, exp)``."""

    def __init__(self, url: str, stream: str, handler: Handler, on_resync: Resync) -> None:
        self._url = url
        self._stream = stream
        self._handler = handler
        self._on_resync = on_resync
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.connected = False

    @property
    def synced(self) -> bool:
        """True once the first snapshot is in: before that, this replica knows no revocation."""
        return self._ready.is_set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="invalidation-listener")
        # Wait briefly for the first snapshot so a fresh replica does not serve a revoked token.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            redis = connect(self._url, socket_timeout=READER_SOCKET_TIMEOUT)
            try:
                last_id = await self._resync(redis)
                self.connected = True
                self._ready.set()
                backoff = 0.05
                while True:
                    entries = cast(StreamReply, await redis.xread({self._stream: last_id}, block=BLOCK_MS, count=1000))
                    for _stream, messages in entries:
                        for msg_id, fields in messages:
                            last_id = msg_id
                            self._dispatch(fields)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.connected = False
                log.warning("invalidation stream unavailable (%s); retrying in %.2fs", exc, backoff)
            finally:
                await redis.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _resync(self, redis: Redis) -> bytes:
        # Take the stream's position first, then rebuild: anything written after the position is read
        # from the stream, anything before it is in the snapshot.
        newest = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrevrange(self._stream, count=1))
        position = newest[0][0] if newest else b"0-0"
        await self._on_resync()
        return position

    def _dispatch(self, fields: dict[bytes, bytes]) -> None:
        try:
            kind = fields[b"k"].decode()
            value = fields[b"v"].decode()
            exp = int(fields.get(b"x", b"0"))
        except (KeyError, ValueError, UnicodeDecodeError):
            log.warning("ignoring malformed invalidation entry %r", fields)
            return
        self._handler(kind, value, exp)
