"""Open-loop load at a fixed rate with bodies picked at random: ``python -m meshauth.bench.policy_driver``.

hey sends one body and wrk has no fixed rate, so this driver fills the gap. Latency is measured
from when each request was *due*, not when it was sent, so a stalled server shows up in the tail
(no coordinated omission). Prints one JSON object: percentiles in milliseconds.

The driver's own pauses would be counted as the server's: it keeps only the requests in flight (not
every task of the run) and holds full collections back (``meshauth.collector``) — at 1,000 req/s its
list of every task made it run full collections of 13-16 ms within a 3 s run (stop 23).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time

import aiohttp

from meshauth import collector


async def _run(
    url: str, bodies: list[bytes], rate: float, seconds: float, connections: int, stores: bool = False
) -> dict[str, float]:
    """With ``stores``, each body line is ``<store> <json>`` and goes to that store's endpoint."""
    rng = random.Random(5)
    latencies: list[float] = []
    failures = 0
    total = int(rate * seconds)
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    headers = {"content-type": "application/json"}

    async def one(session: aiohttp.ClientSession, body: bytes, due: float) -> None:
        nonlocal failures
        target = url
        if stores:
            store, _, body = body.partition(b" ")
            target = f"{url}/stores/{store.decode()}/access/v1/evaluation"
        try:
            async with session.post(target, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    failures += 1
        except aiohttp.ClientError:
            failures += 1
        latencies.append(time.perf_counter() - due)

    async with aiohttp.ClientSession(connector=connector) as session:
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        sent = 0
        while sent < total:
            now = time.perf_counter()
            due_count = min(total, int((now - start) * rate) + 1)
            while sent < due_count:
                due = start + sent / rate
                task = asyncio.create_task(one(session, rng.choice(bodies), due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.0002)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    return {
        "offered_rps": rate,
        "achieved_rps": len(latencies) / elapsed,
        "requests": len(latencies),
        "failures": failures,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": latencies[-1] * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--bodies", required=True, help="file with one JSON body per line")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--stores", action="store_true", help="body lines are '<store> <json>'; url is the base")
    args = parser.parse_args(argv)
    with open(args.bodies, "rb") as fh:
        bodies = [line.rstrip(b"\n") for line in fh if line.strip()]
    import uvloop

    collector.settle()

    result = uvloop.run(_run(args.url, bodies, args.rate, args.seconds, args.connections, args.stores))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
