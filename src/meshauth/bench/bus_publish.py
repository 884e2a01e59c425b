"""The bus benchmark's publisher, in its own process: ``python -m meshauth.bench.bus_publish URL RATE
SECONDS|COUNT PARTITIONS SPOOL_DIR``. RATE 0 publishes COUNT events as fast as the producer takes them;
otherwise RATE events/s for SECONDS, paced by the clock. Prints one JSON line when its producer has
written everything."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import uvloop

from meshauth.bus.events import audit
from meshauth.bus.producer import Producer, ProducerConfig
from meshauth.bus.streams import AUDIT


async def main(url: str, rate: int, amount: int, partitions: int, spool: Path) -> None:
    producer = Producer(url, ProducerConfig(partitions=partitions, spool_dir=spool, buffer_events=1_000_000))
    await producer.start()
    total = amount if rate == 0 else rate * amount
    started = time.time()
    t0 = time.monotonic()
    published = 0
    while published < total:
        target = total if rate == 0 else min(total, int(rate * (time.monotonic() - t0)) + 1)
        while published < target:
            producer.publish(
                AUDIT,
                audit("gate.decision", subject=f"user{published % 1000}", client_id="bench", decision="allow",
                      action="http", resource="/ext_authz/orders/42", status=200, latency_us=150),
            )  # fmt: skip
            published += 1
            if published % 1000 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.001)
    published_at = time.time()
    await producer.flushed(within=300)
    await producer.stop()
    print(json.dumps({"started": started, "published_at": published_at, "flushed_at": time.time(),
                      "published": published, "dropped": producer.dropped, "spooled": producer.spooled}))  # fmt: skip


if __name__ == "__main__":
    url, rate, amount, partitions, spool = sys.argv[1:6]
    uvloop.run(main(url, int(rate), int(amount), int(partitions), Path(spool)))
