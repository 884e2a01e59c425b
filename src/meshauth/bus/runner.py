"""Running one worker (a consumer group member) in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.bus.consumer import Consumer, consumer_config
from meshauth.bus.entries import Delivery
from meshauth.bus.gauges import StreamGauges
from meshauth.bus.streams import AUDIT, StreamNames
from meshauth.config import Settings
from meshauth.db import create_engine
from meshauth.observability.metrics_http import MetricsServer

log = logging.getLogger(__name__)


class Writer(Protocol):
    """A worker's handler: called with each batch, closed at the end."""

    async def __call__(self, deliveries: Sequence[Delivery]) -> None: ...

    async def close(self) -> None: ...


GAUGE_INTERVAL = 5.0  # seconds between reads of the stream's backlog into the worker's gauges


async def run_worker(
    settings: Settings,
    url: str,
    group: str,
    make_handler: Callable[[AsyncEngine], Writer],
    *,
    metrics_port: int = 0,
) -> None:
    """Consume until SIGTERM/SIGINT; with ``metrics_port``, serve ``/metrics`` there meanwhile."""
    metrics = await _metrics_server(settings.worker_metrics_host, metrics_port, group)
    gauges = StreamGauges(url, [StreamNames(settings.redis_prefix, AUDIT, settings.bus_partitions)], GAUGE_INTERVAL)
    if metrics is not None:
        gauges.start()
    engine = create_engine(settings.sqlalchemy_url)
    handler = make_handler(engine)
    consumer = Consumer(url, AUDIT, group, handler, consumer_config(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    consumer.start()
    log.info("worker %s: consumer %s on %s", group, consumer.name, AUDIT)
    try:
        await stop.wait()
    finally:
        await consumer.stop()  # gives the leases back: a successor need not wait them out
        await handler.close()
        await engine.dispose()
        if metrics is not None:
            await gauges.stop()
            await metrics.stop()


async def _metrics_server(host: str, port: int, group: str) -> MetricsServer | None:
    """The worker's ``/metrics``, or None (port 0, or the address cannot be bound: the worker's job
    is the events, so it goes on without metrics and says so, rather than stopping the audit trail)."""
    if port == 0:
        return None
    server = MetricsServer(host, port)
    try:
        await server.start()
    except OSError as exc:
        log.error("worker %s: cannot serve /metrics on %s:%d (%s); running without", group, host, port, exc)
        return None
    log.info("worker %s: metrics on %s", group, server.url)
    return server
