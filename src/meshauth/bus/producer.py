"""The producer: ``publish`` appends to an in-process buffer and returns; a background task writes.

States of the flush task: *direct* — buffered events go to Redis in batches, one script call each (``writer.py``),
one stream entry per partition per flush (``events.batches``); *spooling* — Redis refused or timed out, so batches
go to the spool file, and a replay of the spool's oldest records is tried with a growing pause (0.05 s to 2 s).
Once the spool is empty again the state is direct. One task does both, in that order: events reach Redis in
publish order.

When a direct flush starts: the first event of an idle producer waits ``flush_interval`` (5 ms) for company; a
flush starts no sooner than ``flush_gap`` (50 ms) after the previous one started; ``flush_batch`` waiting events go
at once. A flush is one round trip whatever its size (130–170 µs of the loop's CPU for 15 events, measured), so at
3,000 events/s it runs ~20 times a second with ~150 events, not ~200 times with ~15. The trade: events reach Redis
up to ``flush_gap`` later; a SIGKILL loses that much (a stop drains).

Nothing here waits for Redis on the caller's account: ``publish`` encodes and appends to a deque (``publish_to``:
bytes its caller encoded, ``events.stamp``). Drops: buffer full (Redis stalled *and* the spool full or slow) →
counted in ``meshauth_bus_dropped``, logged at most once per ``drop_log_interval``; the request is unaffected.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from meshauth.bus.events import AuditEvent, batch_size, batches, encode
from meshauth.bus.gauges import StreamGauges
from meshauth.bus.metrics import DROPPED, SPOOLED
from meshauth.bus.spool import Record, Spool
from meshauth.bus.streams import GROUPS, StreamNames
from meshauth.bus.writer import StreamWriter, logical
from meshauth.config import Settings

log = logging.getLogger(__name__)

MAX_REPLAY_PAUSE = 2.0
DRAIN_TIMEOUT = 5.0


class EventTooLarge(ValueError):
    """An event whose encoding exceeds ``max_event_bytes``; refused at ``publish``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ProducerConfig:
    prefix: str = "meshauth:"
    partitions: int = 4
    buffer_events: int = 100_000
    flush_interval: float = 0.005
    flush_gap: float = 0.05
    flush_batch: int = 500
    max_event_bytes: int = 16_384
    spool_dir: Path | None = None  # None: no spool, events are dropped while Redis is away
    spool_max_bytes: int = 4 * 1024**3
    maxlen: int = 1_000_000
    drop_log_interval: float = 10.0
    gauge_interval: float = 5.0  # seconds between reads of the streams' backlog (gauges); 0: none


def producer_config(settings: Settings) -> ProducerConfig:
    return ProducerConfig(
        prefix=settings.redis_prefix,
        partitions=settings.bus_partitions,
        buffer_events=settings.bus_buffer_events,
        flush_interval=settings.bus_flush_interval,
        flush_gap=settings.bus_flush_gap,
        flush_batch=settings.bus_flush_batch,
        max_event_bytes=settings.bus_max_event_bytes,
        spool_dir=settings.spool_dir if settings.bus_spool_max_bytes > 0 else None,
        spool_max_bytes=settings.bus_spool_max_bytes,
        maxlen=settings.bus_stream_maxlen,
        drop_log_interval=settings.bus_drop_log_interval,
    )


class Producer:
    def __init__(self, url: str, config: ProducerConfig) -> None:
        self._url = url
        self.config = config
        self._writer = StreamWriter(url, prefix=config.prefix, partitions=config.partitions, maxlen=config.maxlen)
        # (partition stream, encoded event): what the flush sends, ready (``_take`` is a slice, not a loop)
        self._buffer: collections.deque[Record] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._gauges: StreamGauges | None = None
        self._spool = Spool(config.spool_dir, config.spool_max_bytes) if config.spool_dir else None
        self._closing = False
        # Set by stop, and by publish once flush_batch events wait: a flush waiting out its gap goes at once.
        self._hurry = asyncio.Event()
        self._in_flight = 0  # taken from the buffer, not yet in Redis or the spool
        self._drops_unlogged = 0
        self._last_drop_log = 0.0
        self.published = 0  # written to Redis (including replays)
        self.flushes = 0  # script calls that wrote events to Redis
        self.spooled = 0
        self.dropped = 0

    def publish(self, stream: str, event: AuditEvent, *, key: str | None = None) -> bool:
        """Queue ``event`` on ``stream``, encoded and partitioned (a flush joins bytes); False if dropped."""
        data = encode(event)
        self.check_size(stream, event.type, len(data))
        return self.publish_to(self._writer.partition(stream, event.key if key is None else key), data)

    def check_size(self, stream: str, type_: str, size: int) -> None:
        """Raise EventTooLarge (counted) for an event of ``size`` encoded bytes over the limit."""
        if size > (limit := self.config.max_event_bytes):
            DROPPED.add(stream, "oversized")
            raise EventTooLarge(f"event {type_} is {size} bytes encoded; the limit is {limit} (bus_max_event_bytes)")

    def partition(self, stream: str, key: str) -> str:
        """The partition stream that events of ``key`` on ``stream`` go to (for ``publish_to``)."""
        return self._writer.partition(stream, key)

    def publish_to(self, partition: str, data: bytes) -> bool:
        """Queue an event its caller encoded and size-checked on ``partition``'s stream; False if dropped."""
        if len(self._buffer) >= self.config.buffer_events or self._closing:
            self._drop(logical(partition))
            return False
        self._buffer.append((partition, data))
        if not self._wake.is_set():
            self._wake.set()
        elif len(self._buffer) >= self.config.flush_batch and not self._hurry.is_set():
            self._hurry.set()  # the flusher may be waiting out its gap for fewer
        return True

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def spool_pending(self) -> bool:
        return self._spool is not None and self._spool.pending

    async def start(self) -> None:
        if self._spool is not None:
            try:
                await asyncio.to_thread(self._spool.open)
            except OSError as exc:
                # A read-only or full disk must not stop the service: run without a spool (events are
                # then dropped, counted, while Redis is away).
                log.error("bus: spool %s unusable (%s); running without one", self.config.spool_dir, exc)
                self._spool = None
        if self._spool is not None and self._spool.pending:
            self._wake.set()
        self._task = asyncio.create_task(self._run(), name="bus-producer")
        if self.config.gauge_interval > 0:
            streams = [StreamNames(self.config.prefix, name, self.config.partitions) for name in GROUPS]
            self._gauges = StreamGauges(self._url, streams, self.config.gauge_interval)
            self._gauges.start()

    async def stop(self) -> None:
        """Drain: write what is buffered (to Redis, else to the spool) and close."""
        self._closing = True
        self._wake.set()
        self._hurry.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), DRAIN_TIMEOUT)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        left = self._take(len(self._buffer))
        if left:
            await self._to_spool(left)
        if self._spool is not None:
            await asyncio.to_thread(self._spool.close)
        if self._gauges is not None:
            await self._gauges.stop()
        await self._writer.aclose()

    async def flushed(self, within: float = 10.0) -> None:
        """Wait until the buffer and the spool are empty (tests, benchmarks)."""
        deadline = time.monotonic() + within
        while self._buffer or self._in_flight or self.spool_pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self._buffer)} events still buffered, spool pending={self.spool_pending}")
            await asyncio.sleep(0.005)

    async def _run(self) -> None:
        while True:
            try:
                await self._flush_forever()
                return
            except Exception:
                # A bug here must not end publishing for the life of the process.
                log.exception("bus: producer flush task failed; restarting it")
                await asyncio.sleep(0.1)

    async def _flush_forever(self) -> None:
        pause = 0.05
        loop = asyncio.get_running_loop()
        started = -float("inf")  # when the last flush started (loop time)
        while True:
            if self._spool is not None and self._spool.pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), pause)
            else:
                if self._closing and not self._buffer:
                    return
                await self._wake.wait()
                if len(self._buffer) < self.config.flush_batch and not self._closing:
                    gap = started + self.config.flush_gap - loop.time()
                    self._hurry.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._hurry.wait(), max(self.config.flush_interval, gap))
            started = loop.time()
            batch = self._take(self.config.flush_batch)
            if not self._buffer:
                self._wake.clear()
            self._in_flight = len(batch)
            try:
                pause = await self._deliver(batch, pause)
            finally:
                self._in_flight = 0
            if self._closing and self.spool_pending and pause > 0.05:
                return  # Redis is away: the spool keeps the rest for the next start

    async def _deliver(self, batch: list[Record], pause: float) -> float:
        """Write one batch (to Redis, or to the spool and replay); returns the next replay pause."""
        if self._spool is not None and self._spool.pending:
            if batch:
                await self._to_spool(batch)
            if await self._replay():
                return 0.05
            return min(pause * 2, MAX_REPLAY_PAUSE)
        if batch and not await self._write(batch):
            await self._to_spool(batch)
        return 0.05

    def _take(self, n: int) -> list[Record]:
        """Up to ``n`` buffered events as one batch entry per partition, in publish order."""
        buf = self._buffer
        if n >= len(buf):
            taken = list(buf)
            buf.clear()
        else:
            taken = [buf.popleft() for _ in range(n)]
        by_partition: dict[str, list[bytes]] = {}
        for key, data in taken:
            events = by_partition.get(key)
            if events is None:
                by_partition[key] = [data]
            else:
                events.append(data)
        return [(key, batch) for key, events in by_partition.items() for batch in batches(events)]

    async def _write(self, records: list[Record]) -> bool:
        if not await self._writer.write(records):
            return False
        self.flushes += 1
        self.published += sum(batch_size(data) for _, data in records)
        return True

    async def _to_spool(self, records: list[Record]) -> None:
        taken = 0
        if self._spool is not None:
            try:
                taken = await asyncio.to_thread(self._spool.append, records)
            except OSError as exc:
                log.error("bus: spool write failed (%s)", exc)
        for key, data in records[:taken]:
            n = batch_size(data)
            self.spooled += n
            SPOOLED.add_many(n, logical(key))
        for key, data in records[taken:]:
            self._drop(logical(key), batch_size(data))

    async def _replay(self) -> bool:
        """Move the spool's oldest records to Redis; True while that works."""
        spool = self._spool
        if spool is None:
            return True
        while spool.pending:
            records, consumed = await asyncio.to_thread(spool.read, self.config.flush_batch)
            if records and not await self._write(records):
                return False
            await asyncio.to_thread(spool.commit, consumed)
            if self._buffer and len(self._buffer) >= self.config.flush_batch:
                # Keep the buffer moving too: spool it, in order, behind what is being replayed.
                await self._to_spool(self._take(self.config.flush_batch))
        return True

    def _drop(self, stream: str, n: int = 1) -> None:
        self.dropped += n
        DROPPED.add_many(n, stream, "buffer_full")
        self._drops_unlogged += n
        now = time.monotonic()
        if now - self._last_drop_log >= self.config.drop_log_interval:
            log.error(
                "bus: dropped %d events (buffer of %d full, spool full or unavailable); requests are unaffected",
                self._drops_unlogged,
                self.config.buffer_events,
            )
            self._drops_unlogged = 0
            self._last_drop_log = now
