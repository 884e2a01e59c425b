"""Invalidation across processes: entity writes through the policy service's admin API (which
announces each new state on Redis) reach three client processes; each reports when its client
*adopted* the new state (its L1 answers at it) — after warming its hot set (256 questions, every
check counted) at that state, as a gate would. Latency is from the start of the admin write."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

from meshauth.bench.client_setup import Served, admin

CHILD = """
import asyncio, sys, time
from meshauth.client import PolicyClient, State, StateFollower, WarmConfig
from meshauth.redis_client import connect

async def main() -> None:
    url, redis_url, hot = sys.argv[1], sys.argv[2], int(sys.argv[3])
    redis = connect(redis_url)
    client = PolicyClient([url], redis=redis, timeout=1.0, warming=WarmConfig(sample_every=1))
    for i in range(hot):
        await client.check({"type": "User", "id": f"h{i}"}, "view", {"type": "Doc", "id": "d"})

    async def adopted(state: State) -> None:
        while not (client.state is not None and state.join(client.state) == client.state):
            await asyncio.sleep(0.0005)
        print(state.entities_version, time.time(), flush=True)

    def on_state(_store: str, state: State) -> None:
        asyncio.get_running_loop().create_task(adopted(state))

    follower = StateFollower(redis_url, [client], on_state=on_state)
    await follower.start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def measure(
    served: Served, *, processes: int = 3, changes: int = 100, gap: float = 0.02, hot: int = 256
) -> dict[str, Any]:
    assert served.redis_url is not None
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, served.url, served.redis_url, str(hot), stdout=asyncio.subprocess.PIPE
        )
        for _ in range(processes)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            while (await asyncio.wait_for(p.stdout.readline(), 60)).strip() != b"ready":
                pass
        sent: dict[int, float] = {}
        for i in range(changes):
            entity = {"uid": {"type": "User", "id": f"x{i % 10}"}, "attrs": {"n": i}, "parents": []}
            t = time.time()
            doc = await asyncio.to_thread(admin, served.url, "POST", "/admin/stores/default/entities", [entity])
            sent[int(doc["entities_version"])] = t
            await asyncio.sleep(gap)
        latencies: list[float] = []
        for p in procs:
            assert p.stdout is not None
            got: dict[int, float] = {}
            while not set(sent) <= set(got):
                line = await asyncio.wait_for(p.stdout.readline(), 10)
                ev, at = line.split()
                if ev != b"None":
                    got[int(ev)] = float(at)
            latencies += [got[ev] - sent[ev] for ev in sent]
    finally:
        for p in procs:
            p.kill()
            await p.wait()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return {
        "processes": processes,
        "changes": changes,
        "hot_set_per_process": hot,
        "samples": len(latencies),
        "p50_ms": q[49] * 1e3,
        "p99_ms": q[98] * 1e3,
        "max_ms": latencies[-1] * 1e3,
    }
