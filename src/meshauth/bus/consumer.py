"""A consumer in a group: reads the partitions it holds a lease on, hands batches to a handler, acks.

Per partition, in order of the states below, so that one partition's entries are handled in stream
order even across a failover:

* *recovering* — just leased: claim (``XAUTOCLAIM``) what earlier holders left pending once it
  has been idle ``min_idle``; stay here while another consumer still has entries pending in it.
* *backlog* — own pending entries, re-read with ``XRANGE`` (``entries.own_pending``), which Redis does
  not count as a delivery: only a claim (``XAUTOCLAIM``, of what a holder that died left) is, so the
  delivery counter is the crash evidence. (Re-read with ``XREADGROUP … 0``, each clean handover — a
  rolling restart, a rebalance — counted one more: a few of them during a database outage and the
  oldest pending entry was dead-lettered as one its holders had died with.) A failed batch's are
  re-read the same way, after ``retry_delay``.
* *live* — new entries, ``XREADGROUP … >`` with ``BLOCK``, all live partitions in one call.

A batch is acked (one ``XACK``) only after the handler returned; how a failing handler is retried,
entry by entry, up to the dead-letter stream, is ``handling``'s. An entry that does not decode goes to
the dead-letter stream at once with the parse error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, cast

from redis.exceptions import RedisError, ResponseError

from meshauth.bus.entries import (
    Entry,
    Partition,
    Work,
    crash_letter,
    decode_entries,
    oldest_pending,
    own_pending,
    settle,
    take_released,
    text,
)
from meshauth.bus.groups import ensure_groups
from meshauth.bus.handling import Handler, Handling
from meshauth.bus.leases import Leases
from meshauth.bus.metrics import DEAD_LETTERED, HANDLED
from meshauth.bus.retention import trim
from meshauth.bus.streams import StreamNames
from meshauth.config import Settings
from meshauth.redis_client import RedisConn, connect, stop_reader

log = logging.getLogger(__name__)


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


class Consumer:
    def __init__(
        self, url: str, stream: str, group: str, handler: Handler, config: ConsumerConfig, *, name: str | None = None
    ) -> None:
        self.url = url
        self.names = StreamNames(config.prefix, stream, config.partitions)
        self.group = group
        self.handler = handler
        self.config = config
        self._handling = Handling(
            handler,
            stream=self.names.name,
            group=group,
            max_attempts=config.max_attempts,
            retry_delay=config.retry_delay,
        )
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.leases = Leases(self.names, group, self.name, config.lease_ttl)
        self._parts: dict[int, Partition] = {}
        self._next_maintenance = 0.0
        self._next_trim = 0.0
        self.handled = 0
        self.dead_lettered = 0
        self.gone = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"bus-consumer-{self.group}")

    async def stop(self) -> None:
        """Stop and give the leases back (``redis_client.stop_reader`` says why it may take several cancels)."""
        self._stopping = True
        if self._task is not None:
            await stop_reader(self._task)

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
                # A read's entries may be pending with no settle to come (its MULTI, or the read's own
                # reply, lost with the connection): recover the partitions, so they are read again
                # rather than left pending behind the live reads until a restart.
                self._parts = {n: Partition() for n in self.leases.owned}
                self._next_maintenance = 0.0
            except Exception:
                # A bug met on one entry must not end the worker: log it, start over (reads resume
                # from the pending list, so nothing is skipped).
                log.exception("bus consumer %s failed; starting over in %.2fs", self.name, backoff)
                self._parts = {n: Partition() for n in self.leases.owned}  # re-read what is pending
                self._next_maintenance = 0.0
            finally:
                await redis.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    # --- leases and retention ------------------------------------------------------------------------

    async def _maintain(self, redis: RedisConn) -> None:
        now = time.monotonic()
        if now < self._next_maintenance:
            return
        self._next_maintenance = now + self.config.lease_ttl / 3
        gained, lost = await self.leases.refresh(redis)
        for n in lost:
            self._parts.pop(n, None)
        for n in gained:
            self._parts[n] = Partition()
        if now >= self._next_trim:
            self._next_trim = now + self.config.trim_interval
            interval_ms = max(1, int(self.config.trim_interval * 1000))
            if await redis.set(self.names.trim_lock, self.name, nx=True, px=interval_ms):
                await trim(redis, self.names)

    # --- reading -------------------------------------------------------------------------------------

    async def _step(self, redis: RedisConn) -> None:
        now = time.monotonic()
        for n, part in self._parts.items():
            if part.recovering and part.retry_at <= now:
                await self._recover(redis, n, part)
        due = {n: p for n, p in self._parts.items() if p.backlog and p.retry_at <= now}
        if due:
            for n, part in due.items():
                await self._reread(redis, n, part)
            return
        live = {self.names.partition(n): ">" for n, p in self._parts.items() if not (p.recovering or p.backlog)}
        if not live:
            await asyncio.sleep(min(self.config.block, self.config.lease_ttl / 3, self.config.retry_delay))
            return
        await self._read(redis, live, block=int(self.config.block * 1000))

    async def _read(self, redis: RedisConn, streams: dict[str, str], *, block: int) -> None:
        """New entries (``>``) of the live partitions."""
        try:
            reply = await redis.xreadgroup(
                self.group, self.name, cast(Any, streams), count=self.config.count, block=block
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await ensure_groups(redis, self.names)  # Redis lost them (restarted empty)
            return
        works: list[Work] = []
        for raw_stream, entries in cast(list[tuple[bytes, list[Entry]]], reply or []):
            stream = raw_stream.decode() if isinstance(raw_stream, bytes) else raw_stream
            n = int(stream.rsplit(":", 1)[1])
            part = self._parts.get(n)
            if part is not None and entries:
                works.append(decode_entries(stream, n, part, entries, self.group, self.names.groups))
        if works:
            await self._handle(redis, works)

    async def _reread(self, redis: RedisConn, n: int, part: Partition) -> None:
        stream = self.names.partition(n)
        entries = await own_pending(redis, stream, self.group, self.name, 1 if part.careful else self.config.count)
        if not entries:
            part.backlog = part.careful = part.retry = False
        await self._handle(
            redis, [decode_entries(stream, n, part, entries, self.group, self.names.groups)] if entries else []
        )

    async def _recover(self, redis: RedisConn, n: int, part: Partition) -> None:
        stream = self.names.partition(n)
        await take_released(redis, stream, self.names.released(self.group, n), self.group, self.name)
        start: bytes | str = "0-0"
        min_idle_ms = int(self.config.min_idle * 1000)
        while True:
            # Not JUSTID: redis-py drops the cursor from a JUSTID reply. The entries are read again, in
            # order, from this consumer's pending list (backlog); Redis counts both deliveries.
            reply = await redis.xautoclaim(stream, self.group, self.name, min_idle_ms, start, count=1000)
            start = reply[0]
            if start in (b"0-0", "0-0"):
                break
        await self._check_crashes(redis, stream, n, part)
        pending = await redis.xpending(stream, self.group)
        others = [c for c in pending.get("consumers") or [] if text(c["name"]) != self.name and int(c["pending"])]
        if others:
            part.retry_at = time.monotonic() + min(self.config.min_idle / 4, 1.0)
            return
        part.recovering = False
        part.backlog = True
        part.retry_at = 0.0

    async def _check_crashes(self, redis: RedisConn, stream: str, n: int, part: Partition) -> None:
        """Entries delivered before and never acked were in the hands of a consumer that died (or gave
        the partition back). Their backlog is re-read one entry at a time (``careful``), each settled
        before the next, so a handler that ends the process dies with that entry alone in hand, and
        Redis's delivery counter singles it out: the oldest pending entry, delivered once, then claimed
        once per holder that died with it, goes to the dead-letter stream when the holder after
        ``max_attempts + 1`` such deaths claims it (delivered max_attempts + 2 times) instead of being
        handed over again. A clean handover (``take_released``: XCLAIM JUSTID) and re-reads
        (``own_pending``: XRANGE) count nothing."""
        oldest = await oldest_pending(redis, stream, self.group, self.name)
        if oldest is None or oldest[1] < 2:
            return
        part.careful = True
        if oldest[1] > self.config.max_attempts + 1:
            dead = await crash_letter(redis, stream, *oldest)
            await self._settle(redis, [Work(stream, n, part, [], dead=[dead])])

    # --- handling ---------------------------------------------------------------------------------

    async def _handle(self, redis: RedisConn, works: list[Work]) -> None:
        await self._handling.handle(works)
        await self._settle(redis, works)

    async def _settle(self, redis: RedisConn, works: list[Work]) -> None:
        # Counted also when nothing was acked: events handled before a failure in a batch entry's retry
        # are skipped by the next attempt (``Handling._one_by_one``), so this is their only count.
        await settle(redis, works, self.names.dead, self.group)
        for w in works:
            w.part.forget([*w.done, *(d[0] for d in w.dead)])
            self.handled += w.handled
            self.dead_lettered += len(w.dead)
            self.gone += len(w.gone)
            for entry_id in w.gone:
                # Pending here, then trimmed (the producer's MAXLEN, a lagging group) or deleted: its
                # events not yet handled are lost; the ack that follows would otherwise say nothing.
                log.warning("bus %s/%s: entry %s gone from the stream before it was handled: its events are "
                            "lost", w.stream, self.group, entry_id.decode())  # fmt: skip
            # add_many, not ``counts``: in multiprocess mode only it reaches the file a scrape reads.
            if w.handled:
                HANDLED.add_many(w.handled, self.names.name, self.group)
            if w.dead:
                DEAD_LETTERED.add_many(len(w.dead), self.names.name, self.group)
                for entry_id, _, error, _ in w.dead:
                    log.error("bus %s/%s: entry %s dead-lettered: %s", w.stream, self.group, entry_id.decode(), error)
