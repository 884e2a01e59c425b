"""Cross-replica invalidation on one Redis stream, read by every replica (fan-out, no consumer group).

A stream rather than pub/sub: a replica that loses its connection resumes from the last id it saw and
misses nothing the stream still holds. It rebuilds its state from Redis (``on_resync``) and reads on
from the newest id instead when resuming could miss something: at the first connect; when the
stream no longer holds its last id and something was written since (trimmed: the oldest entry kept
is newer; or deleted after it); or when the stream is gone or restarted behind its last id (a Redis
that lost its data).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import reprlib
from collections.abc import Awaitable, Callable
from typing import cast

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.exceptions import RedisError, ResponseError
from redis.typing import EncodableT, FieldT

from meshauth.redis_client import RedisConn, connect, stop_reader

log = logging.getLogger(__name__)
# Entries are anyone's who can write to Redis: a malformed one is logged cut, not whole.
_brief = reprlib.Repr()
_brief.maxdict, _brief.maxstring, _brief.maxother = 8, 64, 64

STREAM_MAXLEN = 100_000
BLOCK_MS = 1000
# A blocked XREAD must not hit the socket timeout (redis/redis-py#3138).
READER_SOCKET_TIMEOUT = BLOCK_MS / 1000 + 5

# XREAD's reply with decode_responses=False: [(stream, [(id, {field: value})])]
StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]
Handler = Callable[[str, str, int], None]
Resync = Callable[[], Awaitable[None]]
Connected = Callable[[], None]


def append(
    pipe: Pipeline | ClusterPipeline, stream: str, kind: str, value: str, exp: int = 0, *, maxlen: int = STREAM_MAXLEN
) -> None:
    """Queue one stream entry on ``pipe`` — what changed (``kind``), which one (``value``), until when it
    matters (``exp``) — trimming the stream to about ``maxlen`` entries (whole nodes: cheap)."""
    fields: dict[FieldT, EncodableT] = {"k": kind, "v": value, "x": str(exp)}
    pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)


async def publish(redis: RedisConn, stream: str, kind: str, value: str, exp: int = 0) -> None:
    """Announce one change on its own (one round trip)."""
    async with redis.pipeline(transaction=False) as pipe:
        append(pipe, stream, kind, value, exp)
        await pipe.execute()


class InvalidationListener:
    """Reads the stream in a background task and hands each entry to ``handler(kind, value, exp)``."""

    def __init__(
        self, url: str, stream: str, handler: Handler, on_resync: Resync, on_connect: Connected | None = None
    ) -> None:
        """``on_connect`` (optional) runs on every (re)connection, resync or not, before reading on:
        for state that must not outlive a connection loss even when the stream kept every entry."""
        self._url = url
        self._on_connect = on_connect
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
            await stop_reader(self._task)

    async def _run(self) -> None:
        backoff = 0.05
        last_id: bytes | None = None
        while True:
            redis = connect(self._url, socket_timeout=READER_SOCKET_TIMEOUT)
            try:
                if last_id is None or not await self._holds_everything_after(redis, last_id):
                    last_id = await self._resync(redis)
                if self._on_connect is not None:
                    self._on_connect()
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
            except Exception:
                # A handler (or a rebuild) failed: what that entry was to change may now be stale here.
                # Rebuild from scratch, as after a gap, rather than read on past it — or let the task
                # die, which would stop every later invalidation reaching this replica.
                self.connected = False
                last_id = None
                log.exception("invalidation entry could not be applied; rebuilding in %.2fs", backoff)
            finally:
                await redis.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _holds_everything_after(self, redis: RedisConn, last_id: bytes) -> bool:
        """True when reading on from ``last_id`` misses nothing written since it."""
        try:
            info = await redis.xinfo_stream(self._stream)
        except ResponseError:  # no such stream: Redis lost it (restarted without persistence, flushed)
            return False
        seen = _stream_id(last_id)
        newest = _stream_id(info["last-generated-id"])
        if newest == seen:
            return True  # nothing written since
        if newest < seen:
            return False  # a new stream that restarted its ids below ours
        deleted = info.get("max-deleted-entry-id")  # XDEL (trimming does not move it)
        if deleted is not None and _stream_id(deleted) > seen:
            return False
        # Trimming drops the oldest entries first: while the oldest kept is at or before our last id,
        # everything after it is still there. (Our own id trimmed too: resync, to be safe.)
        first = info.get("first-entry")
        return first is not None and _stream_id(first[0]) <= seen

    async def _resync(self, redis: RedisConn) -> bytes:
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
            log.warning("ignoring malformed invalidation entry %s", _brief.repr(fields))
            return
        self._handler(kind, value, exp)


def _stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
