"""Decision-cache measurements of ``meshauth.client`` (issue 10):

- ``zipf``: Zipf s=1.1 over 100,000 (subject, resource) pairs, L1 bounded at 10,000, L2 in Valkey:
  after a warm-up, the share of checks answered by L1, by L2, and combined;
- ``activation``: the same workload at a fixed offered rate while a new policy version is activated
  (the service stages it, waits its warm window, activates and announces it; the client follows):
  hit rate and latency in 100 ms windows around the moment the client switched, with staged
  warming, reactive warming only, and warming off.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from meshauth.bench.client_setup import Served, Zipf, admin, pair, push
from meshauth.client import CacheConfig, PolicyClient, StateFollower, WarmConfig
from meshauth.client._metrics import CACHE, WARMED
from meshauth.redis_client import connect

PAIRS = 100_000
L1_SIZE = 10_000
# Invalidation is announced (state in the key), so the TTL only bounds unannounced changes: long.
CACHE_CFG = CacheConfig(l1_size=L1_SIZE, ttl=600.0, deny_ttl=600.0)
POLICY_V2 = """
@id("view-all-v2") permit(principal, action == Action::"view", resource);
@id("no-mallory") forbid(principal == User::"mallory", action, resource);
"""


def _cache_counts() -> dict[str, int]:
    return {f"{lvl}_{res}": CACHE.value(lvl, res) for lvl in ("l1", "l2") for res in ("hit", "miss")}


async def zipf_hit_rate(served: Served, *, warmup: int, measured: int, chunk: int = 64) -> dict[str, Any]:
    assert served.redis_url is not None
    redis = connect(served.redis_url)
    zipf = Zipf(PAIRS, 1.1)
    async with PolicyClient([served.url], redis=redis, cache=CACHE_CFG, timeout=5.0) as client:

        async def run(n: int, chunk: int) -> tuple[float, dict[str, int]]:
            before = _cache_counts()
            errors = 0
            t0 = time.perf_counter()
            for _ in range(n // chunk):
                batch = [pair(zipf.draw()) for _ in range(chunk)]
                ds = await asyncio.gather(*(client.check(s, "view", r) for s, r in batch))
                errors += sum(d.error is not None for d in ds)
            took = time.perf_counter() - t0
            after = _cache_counts()
            delta = {k: after[k] - before[k] for k in after}
            delta["errors"] = errors
            return took, delta

        await run(warmup, 256)
        took, d = await run(measured, chunk)
        l2_keys = await redis.dbsize()
    await redis.aclose()
    checks = measured // chunk * chunk
    l1_hits, l2_hits = d["l1_hit"], d["l2_hit"]
    return {
        "pairs": PAIRS,
        "s": 1.1,
        "l1_size": L1_SIZE,
        "ttl_s": CACHE_CFG.ttl,
        "warmup_checks": warmup,
        "checks": checks,
        "errors": d["errors"],
        "l1_hit_rate": l1_hits / checks,
        "l2_hit_rate": l2_hits / checks,
        "combined_hit_rate": (l1_hits + l2_hits) / checks,
        "service_share": 1 - (l1_hits + l2_hits) / checks,
        "checks_per_s": checks / took,
        "l2_misses": d["l2_miss"],
        "l2_keys": l2_keys,
    }


WARMING = {"staged": WarmConfig(), "reactive": WarmConfig(stage=False), "off": None}


async def activation(served: Served, *, warming: str, rate: int, seconds: float, at: float) -> dict[str, Any]:
    """Offer ``rate`` checks/s (Zipf) for ``seconds``; activate POLICY_V2 at ``at`` seconds by version
    (``POST …/policies/{version}/activate``: with staged warming the service stages it, waits its
    warm window, then activates it). ``warming``: ``staged`` (the default client), ``reactive`` (stage
    off: the hot set is asked when the activation is announced) or ``off``. V2 is uploaded before the
    client starts (its staging announcement reaches nobody), so only the activation's staging counts."""
    assert served.redis_url is not None
    version = admin(served.url, "POST", "/admin/stores/default/policies", {"policies": POLICY_V2, "activate": False})
    redis = connect(served.redis_url)
    zipf = Zipf(PAIRS, 1.1, seed=11)
    records: list[tuple[float, float, str, int | None]] = []  # (start offset, latency, source, revision)
    warmed_before = {k: WARMED.value(k) for k in WARMED_KINDS}
    client = PolicyClient([served.url], redis=redis, cache=CACHE_CFG, timeout=1.0, warming=WARMING[warming])
    async with client:
        follower = StateFollower(served.redis_url, [client])
        await follower.start()
        loop = asyncio.get_running_loop()
        # Warm the caches first: 100,000 checks, batched.
        for _ in range(100_000 // 64):
            batch = [pair(zipf.draw()) for _ in range(64)]
            await asyncio.gather(*(client.check(s, "view", r) for s, r in batch))
        old = client.state
        tasks: set[asyncio.Task[None]] = set()

        async def one(start: float) -> None:
            s, r = pair(zipf.draw())
            t = time.perf_counter()
            d = await client.check(s, "view", r)
            records.append((start, time.perf_counter() - t, d.source if d.error is None else "error", d.revision))

        def activate() -> float:
            path = f"/admin/stores/default/policies/{version['version']}/activate"
            admin(served.url, "POST", path, None)
            return loop.time() - t0  # answered: activated and announced

        t0 = loop.time()
        asked_at = None
        pushed: asyncio.Future[float] | None = None
        n = int(rate * seconds)
        for i in range(n):
            due = t0 + i / rate
            if asked_at is None and due - t0 >= at:
                asked_at = loop.time() - t0
                pushed = asyncio.ensure_future(asyncio.to_thread(activate))
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = loop.create_task(one(loop.time() - t0))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        answered_at = await pushed if pushed is not None else None
        await follower.stop()
        # Put the old version back for the next run.
        await asyncio.to_thread(push, served.url, _V1)
    await redis.aclose()
    assert old is not None
    # The activation as the client saw it: the first check answered at a newer revision.
    switched = min((r[0] for r in records if r[3] is not None and r[3] > old.revision), default=at)
    out = _windows(records, switched)
    out.update(
        warming=warming,
        asked_ms=round(((asked_at or at) - switched) * 1e3, 1),
        answered_ms=round(((answered_at or at) - switched) * 1e3, 1),
        warmed={k: WARMED.value(k) - warmed_before[k] for k in WARMED_KINDS},
    )
    return out


WARMED_KINDS = ("l2", "service", "staged", "staged_l2", "staged_service")


_V1 = """
@id("view-all") permit(principal, action == Action::"view", resource);
@id("no-mallory") forbid(principal == User::"mallory", action, resource);
"""


def _windows(records: list[tuple[float, float, str, int | None]], at: float) -> dict[str, Any]:
    width = 0.1
    out: list[dict[str, Any]] = []
    for k in range(-3, 8):
        lo, hi = at + k * width, at + (k + 1) * width
        rows = [r for r in records if lo <= r[0] < hi]
        if not rows:
            continue
        lat = sorted(r[1] for r in rows)
        hits = sum(r[2] in ("l1", "l2") for r in rows)
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
        out.append(
            {
                "window_ms": f"{round(k * width * 1000)}..{round((k + 1) * width * 1000)}",
                "checks": len(rows),
                "hit_rate": round(hits / len(rows), 4),
                "l1_rate": round(sum(r[2] == "l1" for r in rows) / len(rows), 4),
                "service": sum(r[2] == "service" for r in rows),
                "errors": sum(r[2] == "error" for r in rows),
                "p50_ms": round(q[49] * 1e3, 3),
                "p99_ms": round(q[98] * 1e3, 3),
                "max_ms": round(lat[-1] * 1e3, 3),
            }
        )
    before = [r for r in records if r[0] < at]
    after = [r for r in records if at <= r[0] < at + 0.5]
    return {
        "windows": out,
        "hit_rate_before": sum(r[2] in ("l1", "l2") for r in before) / max(1, len(before)),
        "l1_rate_before": sum(r[2] == "l1" for r in before) / max(1, len(before)),
        "hit_rate_first_500ms_after": sum(r[2] in ("l1", "l2") for r in after) / max(1, len(after)),
        "errors": sum(r[2] == "error" for r in records),
    }
