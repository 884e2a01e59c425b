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
from meshauth.bus.streams import AUDIT
from meshauth.config import Settings
from meshauth.db import create_engine

log = logging.getLogger(__name__)


class Writer(Protocol):
    """A worker's handler: called with each batch, closed at the end."""

    async def __call__(self, deliveries: Sequence[Delivery]) -> None: ...

    async def close(self) -> None: ...


async def run_worker(settings: Settings, url: str, group: str, make_handler: Callable[[AsyncEngine], Writer]) -> None:
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
