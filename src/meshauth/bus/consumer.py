"""A consumer in a group: reads the partitions it holds a lease on, hands batches to a handler, acks.

Per partition, in order of the states below, so that one partition's entries are handled in stream
order even across a failover:

* *recovering* — just leased: claim (``XAUTOCLAIM``) what earlier holders left pending once it
  has been idle ``min_idle``; stay here while another consumer still has entries pending in it.
* *backlog* — own pending entries (claimed, or a batch that failed): re-read with ``XREADGROUP … 0``
  (Redis counts each such delivery), after ``retry_delay`` when the last attempt failed.
* *live* — new entries, ``XREADGROUP … >`` with ``BLOCK``, all live partitions in one call.

A batch is acked (one ``XACK``) only after the handler returned. When it raises, the entries are tried
one at a time, in order: those before the failing one are acked; the failing one is retried, and after
``max_attempts`` failures it goes to the dead-letter stream with the error (and is acked, so the
partition moves on). ``TransientError`` (the handler's database is away) retries without counting. An
entry that does not decode goes to the dead-letter stream at once with the parse error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from meshauth.bus.events import AuditEvent, MalformedEvent, decode, encode
from meshauth.bus.leases import Leases
from meshauth.bus.metrics import DEAD_LETTERED, HANDLED
from meshauth.bus.producer import ensure_groups
from meshauth.bus.retention import trim
from meshauth.bus.streams import StreamNames
from meshauth.config import Settings
from meshauth.redis_client import connect

log = logging.getLogger(__name__)


class Delivery(NamedTuple):
    """One event as a handler gets it: its stream entry id (ordered within a partition) and partition."""

    entry_id: str
    partition: int
    event: AuditEvent


Handler = Callable[[Sequence[Delivery]], Awaitable[None]]
Entry = tuple[bytes, dict[bytes, bytes] | None]
DEAD_MAXLEN = 100_000
ERROR_CHARS = 2000


class TransientError(Exception):
    """Raised by a handler whose dependency is unavailable: retry later, without counting an attempt."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsumerConfig:
    prefix: str = "meshauth:"
    partitions: int = 4
    block: float = 1.0
    count: int = 500
    min_idle: float = 30.0
    max_attempts: int = 5
    lease_ttl: float = 10.0
    retry_delay: float = 0.2
    trim_interval: float = 5.0


def consumer_config(settings: Settings) -> ConsumerConfig:
    return ConsumerConfig(
        prefix=settings.redis_prefix,
        partitions=settings.bus_partitions,
        block=settings.bus_block,
        count=settings.bus_read_count,
        min_idle=settings.bus_min_idle,
        max_attempts=settings.bus_max_attempts,
        lease_ttl=settings.bus_lease_ttl,
    )


@dataclass
class _Partition:
    recovering: bool = True
    backlog: bool = False
    retry_at: float = 0.0
    failures: dict[bytes, int] = field(default_factory=dict)


class Consumer:
    def __init__(
        self, url: str, stream: str, group: str, handler: Handler, config: ConsumerConfig, *, name: str | None = None
    ) -> None:
        self.url = url
        self.names = StreamNames(config.prefix, stream, config.partitions)
        self.group = group
        self.handler = handler
        self.config = config
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.leases = Leases(self.names, group, self.name, config.lease_ttl)
        self._parts: dict[int, _Partition] = {}
        self._next_maintenance = 0.0
        self._next_trim = 0.0
        self.handled = 0
        self.dead_lettered = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"bus-consumer-{self.group}")

    async def stop(self) -> None:
        """Stop and give the leases back. Cancelled until it ends: redis-py was seen to swallow a
        cancellation that arrived while it read a reply (see ``invalidations.InvalidationListener``)."""
        self._stopping = True
        task = self._task
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=1.0)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def run(self) -> None:
        """Consume until cancelled; then give the leases back, so another consumer need not wait them out."""
        try:
            await self._run()
        finally:
            redis = connect(self.url, socket_timeout=1.0)
            try:
                await asyncio.wait_for(self.leases.release_all(redis), 2.0)
            except (RedisError, OSError, TimeoutError):
                pass
            finally:
                await redis.aclose()

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            # The blocking read must not hit the socket timeout (redis/redis-py#3138).
            redis = connect(self.url, socket_timeout=self.config.block + 5)
            try:
                await ensure_groups(redis, self.names)
                while True:
                    await self._maintain(redis)
                    await self._step(redis)
                    backoff = 0.05
            except (RedisError, OSError) as exc:
                if self._stopping:
                    return
                log.warning("bus consumer %s: Redis unavailable (%s); retrying in %.2fs", self.name, exc, backoff)
                self._next_maintenance = 0.0
            except Exception:
                # A bug met on one entry must not end the worker: log it, start over (reads resume
                # from the pending list, so nothing is skipped).
                log.exception("bus consumer %s failed; starting over in %.2fs", self.name, backoff)
                self._parts = {n: _Partition() for n in self.leases.owned}  # re-read what is pending
                self._next_maintenance = 0.0
            finally:
                await redis.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    # --- leases and retention ------------------------------------------------------------------------

    async def _maintain(self, redis: Redis) -> None:
        now = time.monotonic()
        if now < self._next_maintenance:
            return
        self._next_maintenance = now + self.config.lease_ttl / 3
        gained, lost = await self.leases.refresh(redis)
        for n in lost:
            self._parts.pop(n, None)
        for n in gained:
            self._parts[n] = _Partition()
        if now >= self._next_trim:
            self._next_trim = now + self.config.trim_interval
            interval_ms = max(1, int(self.config.trim_interval * 1000))
            if await redis.set(self.names.trim_lock, self.name, nx=True, px=interval_ms):
                await trim(redis, self.names)

    # --- reading -------------------------------------------------------------------------------------

    async def _step(self, redis: Redis) -> None:
        now = time.monotonic()
        for n, part in self._parts.items():
            if part.recovering and part.retry_at <= now:
                await self._recover(redis, n, part)
        due = {self.names.partition(n): "0" for n, p in self._parts.items() if p.backlog and p.retry_at <= now}
        if due:
            await self._read(redis, due, block=None)
            return
        live = {self.names.partition(n): ">" for n, p in self._parts.items() if not (p.recovering or p.backlog)}
        if not live:
            await asyncio.sleep(min(self.config.block, self.config.lease_ttl / 3, self.config.retry_delay))
            return
        await self._read(redis, live, block=int(self.config.block * 1000))

    async def _read(self, redis: Redis, streams: dict[str, str], *, block: int | None) -> None:
        try:
            reply = await redis.xreadgroup(
                self.group, self.name, cast(Any, streams), count=self.config.count, block=block
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await ensure_groups(redis, self.names)  # Redis lost them (restarted empty)
            return
        got: set[str] = set()
        for raw_stream, entries in cast(list[tuple[bytes, list[Entry]]], reply or []):
            stream = raw_stream.decode() if isinstance(raw_stream, bytes) else raw_stream
            got.add(stream)
            n = int(stream.rsplit(":", 1)[1])
            part = self._parts.get(n)
            if part is not None:
                await self._handle(redis, stream, n, part, entries)
                if not entries and part.backlog:
                    part.backlog = False
        for stream, position in streams.items():
            if position == "0" and stream not in got:
                part = self._parts.get(int(stream.rsplit(":", 1)[1]))
                if part is not None:
                    part.backlog = False

    async def _recover(self, redis: Redis, n: int, part: _Partition) -> None:
        stream = self.names.partition(n)
        start: bytes | str = "0-0"
        min_idle_ms = int(self.config.min_idle * 1000)
        while True:
            # Not JUSTID: redis-py drops the cursor from a JUSTID reply. The entries are read again, in
            # order, from this consumer's pending list (backlog); Redis counts both deliveries.
            reply = await redis.xautoclaim(stream, self.group, self.name, min_idle_ms, start, count=1000)
            start = reply[0]
            if start in (b"0-0", "0-0"):
                break
        pending = await redis.xpending(stream, self.group)
        others = [c for c in pending.get("consumers") or [] if _text(c["name"]) != self.name and int(c["pending"])]
        if others:
            part.retry_at = time.monotonic() + min(self.config.min_idle / 4, 1.0)
            return
        part.recovering = False
        part.backlog = True
        part.retry_at = 0.0

    # --- handling ------------------------------------------------------------------------------------

    async def _handle(self, redis: Redis, stream: str, n: int, part: _Partition, entries: list[Entry]) -> None:
        done: list[bytes] = []
        dead: list[tuple[bytes, bytes, str, int]] = []  # id, payload, error, attempts
        batch: list[tuple[bytes, Delivery]] = []
        for entry_id, fields in entries:
            if fields is None:  # deleted or trimmed while pending: nothing left to handle
                done.append(entry_id)
                continue
            payload = fields.get(b"d")
            try:
                if payload is None:
                    raise MalformedEvent(f"no 'd' field (fields: {sorted(k.decode('latin-1') for k in fields)})")
                batch.append((entry_id, Delivery(entry_id.decode(), n, decode(payload))))
            except MalformedEvent as exc:
                dead.append((entry_id, payload if payload is not None else repr(fields).encode(), str(exc), 0))
        if batch and (part.failures or len(batch) == 1):
            # Retrying after a failure: one at a time straight away (the batch would fail again).
            await self._one_by_one(stream, part, batch, done, dead)
        elif batch:
            try:
                await self.handler([delivery for _, delivery in batch])
                done.extend(entry_id for entry_id, _ in batch)
            except TransientError as exc:
                log.warning("bus %s/%s: handler unavailable (%s); retrying", stream, self.group, exc)
                self._retry_later(part)
            except Exception:  # noqa: BLE001 - any handler failure is retried one entry at a time
                await self._one_by_one(stream, part, batch, done, dead)
        await self._settle(redis, stream, done, dead)

    async def _one_by_one(
        self,
        stream: str,
        part: _Partition,
        batch: list[tuple[bytes, Delivery]],
        done: list[bytes],
        dead: list[tuple[bytes, bytes, str, int]],
    ) -> None:
        for entry_id, delivery in batch:
            try:
                await self.handler([delivery])
            except TransientError:
                self._retry_later(part)
                return
            except Exception as exc:  # noqa: BLE001 - counted, then dead-lettered with its text
                attempts = part.failures.get(entry_id, 0) + 1
                part.failures[entry_id] = attempts
                log.warning("bus %s/%s: entry %s failed (attempt %d): %r", stream, self.group, entry_id, attempts, exc)
                if attempts < self.config.max_attempts:
                    self._retry_later(part)
                    return
                part.failures.pop(entry_id, None)
                dead.append((entry_id, encode(delivery.event), f"{type(exc).__name__}: {exc}", attempts))
                continue
            part.failures.pop(entry_id, None)
            done.append(entry_id)

    def _retry_later(self, part: _Partition) -> None:
        part.backlog = True
        part.retry_at = time.monotonic() + self.config.retry_delay

    async def _settle(
        self, redis: Redis, stream: str, done: list[bytes], dead: list[tuple[bytes, bytes, str, int]]
    ) -> None:
        if not done and not dead:
            return
        # Dead letters and their acks in one MULTI: an entry is either still pending or dead-lettered.
        async with redis.pipeline(transaction=True) as pipe:
            for entry_id, payload, error, attempts in dead:
                fields = {
                    "stream": stream,
                    "id": entry_id,
                    "group": self.group,
                    "error": error[:ERROR_CHARS],
                    "attempts": attempts,
                    "d": payload,
                }
                pipe.xadd(self.names.dead, fields, maxlen=DEAD_MAXLEN, approximate=True)  # type: ignore[arg-type]
            pipe.xack(stream, self.group, *done, *(d[0] for d in dead))
            await pipe.execute()
        handled = len(done)
        self.handled += handled
        self.dead_lettered += len(dead)
        HANDLED.counts[(self.names.name, self.group)] += handled
        if dead:
            DEAD_LETTERED.counts[(self.names.name, self.group)] += len(dead)
            for entry_id, _, error, _ in dead:
                log.error("bus %s/%s: entry %s dead-lettered: %s", stream, self.group, entry_id.decode(), error)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
