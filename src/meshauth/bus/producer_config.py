"""The producer's settings (``Settings`` → ``ProducerConfig``), apart from ``producer`` to keep it small."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meshauth.config import Settings


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
