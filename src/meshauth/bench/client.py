"""Client-side measurements of ``meshauth.client`` (issue 10): the cost of an L1 hit, and decisions
per CPU-second, batched vs one call per check, against a served policy service.

    flock /tmp/meshauth-bench.lock python -m meshauth.bench.client [--seconds 5] [--concurrency 64]

The policy service runs pinned to the server core (one worker, SQLite); this process pins itself to
the client core. Caches and single-flight are off and every check is distinct, so every check is
evaluated by the service: the figures are the policy path's own cost. CPU is read from the kernel
(this process; the service's process tree from /proc), so it is CPU actually spent, not wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import timeit
import urllib.request
from pathlib import Path

from meshauth.bench.loadgen import CLIENT_CORE
from meshauth.bench.processes import free_port, running
from meshauth.client import BatchConfig, PolicyClient
from meshauth.client._cache import DecisionL1
from meshauth.client._keys import request_key
from meshauth.client._models import Decision
from meshauth.wire import Resource, Subject

POLICIES = """
@id("view-all") permit(principal, action == Action::"view", resource);
@id("no-mallory") forbid(principal == User::"mallory", action, resource);
"""
_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (granian serves from child processes)."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def l1_costs() -> dict[str, float]:
    l1 = DecisionL1(maxsize=10_000)
    key = (1, None, request_key("default", Subject("User", "alice"), "view", Resource("Doc", "d1"), None))
    l1.put(key, Decision(decision=True, revision=1), time.time() + 600)
    n = 500_000

    def best(fn: object) -> float:
        return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6  # type: ignore[arg-type]

    return {
        "l1_hit_us": best(lambda: l1.get(key)),
        "request_key_us": best(
            lambda: request_key("default", Subject("User", "alice"), "view", Resource("Doc", "d1"), None)
        ),
    }


async def saturate(url: str, *, batched: bool, seconds: float, concurrency: int, pid: int) -> dict[str, float]:
    client = PolicyClient(
        [url],
        timeout=5.0,
        batching=BatchConfig(max_batch=64, max_wait=0.002) if batched else None,
        singleflight=False,
        cache=None,
        retry=None,
        breaker=None,
    )
    counter = 0
    stop = False
    errors = 0

    async def worker(w: int) -> None:
        nonlocal counter, errors
        i = 0
        while not stop:
            d = await client.check({"type": "User", "id": f"u{w}-{i}"}, "view", {"type": "Doc", "id": f"d{i}"})
            counter += 1
            errors += d.error is not None
            i += 1

    # warm-up: connections open, service compiled
    await asyncio.gather(
        *(client.check({"type": "User", "id": f"w{i}"}, "view", {"type": "Doc", "id": "d"}) for i in range(64))
    )
    c0, s0, t0 = time.process_time(), tree_cpu(pid), time.perf_counter()
    tasks = [asyncio.ensure_future(worker(w)) for w in range(concurrency)]
    await asyncio.sleep(seconds)
    stop = True
    await asyncio.gather(*tasks)
    c1, s1, t1 = time.process_time(), tree_cpu(pid), time.perf_counter()
    await client.aclose()
    client_cpu, server_cpu, wall = c1 - c0, s1 - s0, t1 - t0
    return {
        "decisions": counter,
        "errors": errors,
        "decisions_per_s": counter / wall,
        "client_cpu_s": client_cpu,
        "server_cpu_s": server_cpu,
        "decisions_per_client_cpu_s": counter / client_cpu,
        "decisions_per_path_cpu_s": counter / (client_cpu + server_cpu),
        "client_us_per_decision": client_cpu / counter * 1e6,
        "server_us_per_decision": server_cpu / counter * 1e6,
    }


async def warm_check_us(url: str, n: int = 50_000) -> float:
    """CPU per ``check()`` answered from L1 (argument checks, key, lookup, metrics), in µs."""
    async with PolicyClient([url], timeout=5.0) as client:
        subject, resource = {"type": "User", "id": "alice"}, {"type": "Doc", "id": "d1"}
        first = await client.check(subject, "view", resource)
        assert first.error is None
        c0 = time.process_time()
        for _ in range(n):
            await client.check(subject, "view", resource)
        return (time.process_time() - c0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--uvloop", action="store_true", help="run the client on uvloop (as the services do)")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(CLIENT_CORE)})
    out: dict[str, object] = {"l1": l1_costs()}
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as var:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_")}
        env.update(
            MESHAUTH_VAR_DIR=var,
            MESHAUTH_DATABASE_URL=f"sqlite:///{var}/bench.db",
            MESHAUTH_ADMIN_TOKEN="bench-admin-token",
            MESHAUTH_POLICY_PORT=str(port),
        )
        url = f"http://127.0.0.1:{port}"
        with running(["-m", "meshauth.policy.server"], env, url + "/healthz") as proc:
            req = urllib.request.Request(  # noqa: S310 - loopback, a URL we built
                url + "/admin/stores/default/policies",
                data=json.dumps({"policies": POLICIES, "activate": True}).encode(),
                headers={"authorization": "Bearer bench-admin-token", "content-type": "application/json"},
                method="POST",
            )
            urllib.request.urlopen(req, timeout=10).close()  # noqa: S310 - loopback
            out["warm_check_us"] = asyncio.run(warm_check_us(url))
            for name, on in (("single", False), ("batched", True)):
                results[name] = asyncio.run(
                    saturate(url, batched=on, seconds=args.seconds, concurrency=args.concurrency, pid=proc.pid)
                )
    out.update(results)
    single, batched = results["single"], results["batched"]
    out["ratio_client_cpu"] = batched["decisions_per_client_cpu_s"] / single["decisions_per_client_cpu_s"]
    out["ratio_path_cpu"] = batched["decisions_per_path_cpu_s"] / single["decisions_per_path_cpu_s"]
    out["command"] = " ".join(["python", "-m", "meshauth.bench.client", *sys.argv[1:]])
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
