"""Transports compared on one policy service serving HTTP/1.1 and h2c (``MESHAUTH_HTTP_MODE=auto``):
aiohttp over HTTP/1.1 keep-alive (the default), curl_cffi over h2c (prior knowledge: one connection,
concurrent calls as streams), and curl_cffi over HTTP/1.1 (to tell the protocol from the library).

For each: latency at 1 in flight (one call per check), throughput and client CPU per decision at 32
in flight (one call per check), and at 64 in flight batched. Caches off, every check distinct.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from meshauth.bench.client_setup import keep_in_flight
from meshauth.client import BatchConfig, PolicyClient, Transport

Factory = Callable[[], Transport]


def factories() -> dict[str, Factory]:
    from meshauth.client import AiohttpTransport, H1Transport
    from meshauth.client._transport_curl import CurlTransport

    return {
        "h1_own": H1Transport,
        "aiohttp_http1": AiohttpTransport,
        "curl_h2c": lambda: CurlTransport(http="h2c"),
        "curl_http1": lambda: CurlTransport(http="http1"),
    }


def _client(url: str, transport: Transport, batched: bool) -> PolicyClient:
    return PolicyClient(
        [url],
        transport=transport,
        timeout=5.0,
        batching=BatchConfig() if batched else None,
        singleflight=False,
        cache=None,
        retry=None,
        breaker=None,
    )


async def sequential(url: str, make: Factory, n: int) -> dict[str, float]:
    transport = make()
    client = _client(url, transport, batched=False)
    for i in range(200):
        await client.check({"type": "User", "id": f"w{i}"}, "view", {"type": "Doc", "id": "d"})
    lat: list[float] = []
    c0 = time.process_time()
    for i in range(n):
        t = time.perf_counter()
        d = await client.check({"type": "User", "id": f"s{i}"}, "view", {"type": "Doc", "id": "d"})
        lat.append(time.perf_counter() - t)
        assert d.error is None, d
    cpu = time.process_time() - c0
    await client.aclose()
    await transport.aclose()
    q = statistics.quantiles(lat, n=100)
    return {"p50_us": q[49] * 1e6, "p95_us": q[94] * 1e6, "client_cpu_us_per_check": cpu / n * 1e6}


async def concurrent(
    url: str, make: Factory, *, batched: bool, inflight: int, seconds: float, pid: int
) -> dict[str, Any]:
    transport = make()
    client = _client(url, transport, batched)
    run = await keep_in_flight(client, pid, workers=inflight, seconds=seconds, warm=inflight, distinct_resources=False)
    await client.aclose()
    await transport.aclose()
    return {
        "decisions_per_s": run.decisions / run.wall,
        "errors": run.errors,
        "client_cpu_us_per_decision": run.client_cpu / run.decisions * 1e6,
        "server_cpu_us_per_decision": run.server_cpu / run.decisions * 1e6,
    }


async def compare(url: str, pid: int, *, seconds: float, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    makers = factories()
    for _ in range(rounds):  # interleaved rounds: the machine is shared and noisy
        for name, make in makers.items():
            row = out.setdefault(name, {"sequential": [], "single_32": [], "batched_64": []})
            row["sequential"].append(await sequential(url, make, 3000))
            row["single_32"].append(await concurrent(url, make, batched=False, inflight=32, seconds=seconds, pid=pid))
            row["batched_64"].append(await concurrent(url, make, batched=True, inflight=64, seconds=seconds, pid=pid))
    best: dict[str, Any] = {}
    for name, row in out.items():
        best[name] = {
            "p50_us_1_in_flight": min(x["p50_us"] for x in row["sequential"]),
            "client_cpu_us_1_in_flight": min(x["client_cpu_us_per_check"] for x in row["sequential"]),
            "single_32_decisions_per_s": max(x["decisions_per_s"] for x in row["single_32"]),
            "single_32_client_cpu_us": min(x["client_cpu_us_per_decision"] for x in row["single_32"]),
            "batched_64_decisions_per_s": max(x["decisions_per_s"] for x in row["batched_64"]),
            "batched_64_client_cpu_us": min(x["client_cpu_us_per_decision"] for x in row["batched_64"]),
            "errors": sum(x["errors"] for k in ("single_32", "batched_64") for x in row[k]),
        }
    base = best["aiohttp_http1"]
    for b in best.values():
        b["single_32_throughput_vs_aiohttp"] = b["single_32_decisions_per_s"] / base["single_32_decisions_per_s"]
        b["batched_64_throughput_vs_aiohttp"] = b["batched_64_decisions_per_s"] / base["batched_64_decisions_per_s"]
    return {"best_of_rounds": best, "rounds": out}
