"""A consumer in its own process, for the failover tests: it handles part of a batch and then kills
itself with SIGKILL (no ack, no lease release: what a crashed or OOM-killed worker leaves behind).

    python -m tests.bus.consumer_process <redis url> <mode> [<database url>]

mode ``audit``: the real audit writer stores the first half of its second batch, then dies.
mode ``order``: records each event's (subject, status) in the Redis list ``order-log`` as ``A:`` lines,
and dies halfway through its third batch.
mode ``poison``: records events in ``order-log`` likewise, but dies (SIGKILL) on any batch holding an
event whose resource is ``poison`` — every time, like a handler bug that ends the process; each process
is a new consumer (its own name) and ``max_attempts`` is 2.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import Sequence

from meshauth.audit.store import AuditWriter
from meshauth.bus.consumer import Consumer
from meshauth.bus.entries import Delivery
from meshauth.bus.streams import AUDIT
from meshauth.db import create_engine
from meshauth.redis_client import connect
from tests.bus.test_failover import CONFIG
from tests.conftest import ADMIN_TIMEOUT


async def main(url: str, mode: str, db_url: str | None) -> None:
    batches = 0
    # The recorder's own client: generous, so a loaded machine cannot make the handler raise a
    # TimeoutError (a retried batch, not the crash under test) where it should die.
    redis = connect(url, socket_timeout=ADMIN_TIMEOUT)
    writer = AuditWriter(create_engine(db_url)) if db_url else None

    async def handler(batch: Sequence[Delivery]) -> None:
        nonlocal batches
        batches += 1
        if mode == "poison":
            await redis.rpush("order-log", *[f"A:{d.event.subject}:{d.event.status}" for d in batch])
            if any(d.event.resource == "poison" for d in batch):
                os.kill(os.getpid(), signal.SIGKILL)
            return
        dying = batches == (2 if mode == "audit" else 3) and len(batch) > 1
        part = batch[: len(batch) // 2] if dying else batch
        if writer is not None:
            await writer(part)
        else:
            await redis.rpush("order-log", *[f"A:{d.event.subject}:{d.event.status}" for d in part])
        if dying:
            os.kill(os.getpid(), signal.SIGKILL)

    if mode == "poison":
        config = dataclasses.replace(CONFIG, max_attempts=2)
        await Consumer(url, AUDIT, "audit", handler, config, name=f"doomed-{os.getpid()}").run()
        return
    await Consumer(url, AUDIT, "audit", handler, CONFIG, name="doomed").run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
