"""Client-side measurements of ``meshauth.client`` (issue 10), each against a served policy service
pinned to the server core (one worker, SQLite; Valkey on that core too where needed) while this
process pins itself to the client core:

    flock /tmp/meshauth-bench.lock python -m meshauth.bench.client [PART ...] [--uvloop]

Parts (default: all): ``batch`` — decisions per CPU-second of the whole policy path (client + service,
caches off, every check distinct) at saturation, in one run, modes alternated: (a) one call per
check (``single``), (b) concurrent ``check()`` micro-batched (``batched``), (c) explicit
``check_many`` batches of ``--max-batch`` from ``--batch-callers`` callers (``explicit``); ratios
against (a); plus the cost of an L1 hit; ``transports`` — aiohttp HTTP/1.1 vs curl_cffi h2c and
HTTP/1.1 (``client_transports.py``); ``zipf`` — hit rates under Zipf s=1.1 (``client_cache.py``);
``activation`` — hit rate and latency around a policy activation: staged warming, reactive only, off;
``invalidation`` — entity writes reaching three client processes (``client_invalidation.py``). CPU
is read from the kernel (this process; the service's process tree from /proc): CPU actually spent,
not wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import timeit
from typing import Any

from meshauth.bench import client_cache, client_invalidation, client_transports
from meshauth.bench.client_setup import (
    CONDITIONED,
    POLICIES,
    keep_batches_in_flight,
    keep_in_flight,
    pin_client,
    policy_service,
)
from meshauth.client import BatchConfig, PolicyClient
from meshauth.client._cache import DecisionL1
from meshauth.client._keys import request_key
from meshauth.client._models import Decision
from meshauth.wire import Resource, Subject

PARTS = ("batch", "transports", "zipf", "activation", "invalidation")


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


MODES = ("single", "batched", "explicit")


async def saturate(
    url: str, *, mode: str, seconds: float, concurrency: int, pid: int, max_batch: int = 64, callers: int = 2
) -> dict[str, float]:
    client = PolicyClient(
        [url],
        timeout=5.0,
        batching=None if mode == "single" else BatchConfig(max_batch=max_batch, max_wait=0.002),
        singleflight=False,
        cache=None,
        retry=None,
        breaker=None,
    )
    # warm-up (64 checks): connections open, service compiled
    if mode == "explicit":
        run = await keep_batches_in_flight(client, pid, callers=callers, size=max_batch, seconds=seconds, warm=64)
    else:
        run = await keep_in_flight(client, pid, workers=concurrency, seconds=seconds, warm=64, distinct_resources=True)
    await client.aclose()
    counter, errors = run.decisions, run.errors
    client_cpu, server_cpu, wall = run.client_cpu, run.server_cpu, run.wall
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


def batch(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"l1": l1_costs()}
    out["policies"] = args.policies
    with policy_service(policies=CONDITIONED if args.policies == "conditioned" else POLICIES) as served:
        out["warm_check_us"] = asyncio.run(warm_check_us(served.url))
        print(f"policy service pid {served.pid}", file=sys.stderr, flush=True)  # for py-spy from outside
        modes = args.modes or MODES
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        for _ in range(args.rounds):  # interleaved: the machine is shared and noisy
            for mode in modes:
                runs[mode].append(
                    asyncio.run(
                        saturate(
                            served.url,
                            mode=mode,
                            seconds=args.seconds,
                            concurrency=args.concurrency,
                            pid=served.pid,
                            max_batch=args.max_batch,
                            callers=args.batch_callers,
                        )
                    )
                )
    for mode in modes:
        out[mode] = max(runs[mode], key=lambda r: r["decisions_per_path_cpu_s"])
    if "single" in modes:
        single = out["single"]
        for mode, suffix in (("batched", ""), ("explicit", "_explicit")):
            if mode not in modes:
                continue
            out["ratio_client_cpu" + suffix] = (
                out[mode]["decisions_per_client_cpu_s"] / single["decisions_per_client_cpu_s"]
            )
            out["ratio_path_cpu" + suffix] = out[mode]["decisions_per_path_cpu_s"] / single["decisions_per_path_cpu_s"]
            out["ratio_path_cpu_per_round" + suffix] = [
                b["decisions_per_path_cpu_s"] / s["decisions_per_path_cpu_s"]
                for s, b in zip(runs["single"], runs[mode], strict=True)
            ]
    return out


def transports(args: argparse.Namespace) -> dict[str, Any]:
    with policy_service(MESHAUTH_HTTP_MODE="auto") as served:
        return asyncio.run(client_transports.compare(served.url, served.pid, seconds=args.seconds, rounds=args.rounds))


def zipf(args: argparse.Namespace) -> dict[str, Any]:
    with policy_service(redis=True) as served:
        return asyncio.run(client_cache.zipf_hit_rate(served, warmup=args.zipf_warmup, measured=args.zipf_checks))


def activation(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with policy_service(redis=True) as served:
        for _ in range(args.rounds):
            for warming in ("staged", "reactive", "off"):  # alternated, in one run
                out.setdefault(warming, []).append(
                    asyncio.run(client_cache.activation(served, warming=warming, rate=args.rate, seconds=3.0, at=2.0))
                )
    return out


def invalidation(_args: argparse.Namespace) -> dict[str, Any]:
    with policy_service(redis=True) as served:
        return asyncio.run(client_invalidation.measure(served))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("parts", nargs="*", choices=[*PARTS, []], default=[])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=64, help="BatchConfig.max_batch and check_many's size")
    parser.add_argument("--batch-callers", type=int, default=2, help="concurrent check_many callers (explicit mode)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=None, help="batch part: modes to run (all)")
    parser.add_argument(
        "--policies",
        choices=("scope", "conditioned"),
        default="scope",
        help="batch part: the 2-policy store as is (scope only) or with 'when { true }' (the engine decides)",
    )
    parser.add_argument("--rate", type=int, default=2000, help="offered checks/s in the activation part")
    parser.add_argument("--zipf-warmup", type=int, default=1_000_000)
    parser.add_argument("--zipf-checks", type=int, default=300_000)
    parser.add_argument("--uvloop", action="store_true", help="run the client on uvloop (as the services do)")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    out: dict[str, Any] = {}
    for part in args.parts or PARTS:
        pin_client()  # after the service (and Valkey) started: they stay on the server core
        out[part] = globals()[part](args)
        print(json.dumps({part: out[part]}, indent=2), flush=True)
    out["command"] = " ".join(["python", "-m", "meshauth.bench.client", *sys.argv[1:]])
    print(json.dumps({"command": out["command"]}))


if __name__ == "__main__":
    main()
