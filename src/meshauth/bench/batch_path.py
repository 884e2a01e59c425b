"""Batch efficiency as issue 10 defines it, on the harness's stack: decisions per CPU-second of the
whole policy path — ``meshauth.client`` in this process plus the policy service's process tree — with
the client batching against one call per check (``single``), all at saturation, caches and
single-flight off; every question is drawn from the harness workload (Zipf users × resources ×
actions over its 1,000-policy store). Two batched modes:

- ``batched`` — concurrent ``check()`` calls micro-batched (``BatchConfig(max_batch=64)``,
  ``CONCURRENCY`` checks in flight): **the harness's figure** (``ratio_path``), as before;
- ``explicit`` — ``check_many`` of ``MAX_BATCH`` questions from ``EXPLICIT_CALLERS`` callers (one
  ``evaluations`` call per batch): reported beside it (``ratio_path_explicit``).

The modes alternate over ``--rounds``; each figure is the median of the per-round ratios.

    taskset -c 1 python -m meshauth.bench.batch_path --url $POLICY_URL --pid <policy pid> --seconds 4

prints one JSON document (the harness runs exactly this and records the line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

from meshauth.bench import workload, zipf
from meshauth.bench.client_setup import tree_cpu
from meshauth.client import BatchConfig, Check, PolicyClient

CONCURRENCY = 64
MAX_BATCH = 64
EXPLICIT_CALLERS = 2
MODES = ("single", "batched", "explicit")


def questions(count: int, seed: int = 17) -> list[tuple[dict[str, str], str, dict[str, str]]]:
    users = zipf.sample(workload.USERS, count, seed=seed)
    resources = zipf.sample(workload.RESOURCES, count, seed=seed + 1)
    return [
        (
            {"type": "User", "id": f"u{u}"},
            f"a{(u + r) % workload.ACTIONS}",
            {"type": f"R{r % workload.RESOURCE_TYPES}", "id": f"r{r}"},
        )
        for u, r in zip(users, resources, strict=True)
    ]


async def saturate(url: str, pid: int, *, mode: str, seconds: float) -> dict[str, float]:
    client = PolicyClient(
        [url],
        timeout=5.0,
        batching=BatchConfig(max_batch=MAX_BATCH, max_wait=0.002) if mode != "single" else None,
        singleflight=False,
        cache=None,
        retry=None,
        breaker=None,
    )
    asked = questions(50_000)
    decisions = errors = 0
    stop = False

    async def worker(w: int) -> None:
        nonlocal decisions, errors
        i = w
        while not stop:
            subject, action, resource = asked[i % len(asked)]
            d = await client.check(subject, action, resource)
            decisions += 1
            errors += d.error is not None
            i += CONCURRENCY

    async def caller(w: int) -> None:
        nonlocal decisions, errors
        i = w * MAX_BATCH
        while not stop:
            got = await client.check_many([Check(*asked[(i + k) % len(asked)]) for k in range(MAX_BATCH)])
            decisions += len(got)
            errors += sum(d.error is not None for d in got)
            i += EXPLICIT_CALLERS * MAX_BATCH

    try:
        await asyncio.gather(*(client.check(*asked[i]) for i in range(CONCURRENCY)))  # connections open
        c0, s0, t0 = time.process_time(), tree_cpu(pid), time.perf_counter()
        if mode == "explicit":
            tasks = [asyncio.ensure_future(caller(w)) for w in range(EXPLICIT_CALLERS)]
        else:
            tasks = [asyncio.ensure_future(worker(w)) for w in range(CONCURRENCY)]
        await asyncio.sleep(seconds)
        stop = True
        await asyncio.gather(*tasks)
        client_cpu, server_cpu, wall = time.process_time() - c0, tree_cpu(pid) - s0, time.perf_counter() - t0
    finally:
        await client.aclose()
    return {
        "decisions": decisions,
        "errors": errors,
        "decisions_per_s": decisions / wall,
        "client_cpu_s": client_cpu,
        "service_cpu_s": server_cpu,
        "per_path_cpu_s": decisions / (client_cpu + server_cpu),
        "per_service_cpu_s": decisions / server_cpu if server_cpu else 0.0,
    }


def summarize(rounds: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Per-round ratios (over single) of decisions per path CPU-second and per service CPU-second,
    and their medians: the figure (micro-batched ``batched``: ``ratio_path``) and, when the rounds
    have it, the explicit batches' beside it (``…_explicit``)."""
    out: dict[str, Any] = {"rounds": rounds}
    for mode, suffix in (("batched", ""), ("explicit", "_explicit")):
        if not all(mode in r for r in rounds):
            continue
        path = [r[mode]["per_path_cpu_s"] / r["single"]["per_path_cpu_s"] for r in rounds]
        service = [r[mode]["per_service_cpu_s"] / r["single"]["per_service_cpu_s"] for r in rounds]
        out["ratio_path" + suffix] = statistics.median(path)
        out["ratio_path" + suffix + "_per_round"] = path
        out["ratio_service" + suffix] = statistics.median(service)
        out["ratio_service" + suffix + "_per_round"] = service
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", type=int, required=True, help="the policy service's process (its tree's CPU)")
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    import uvloop

    rounds = []
    for _ in range(args.rounds):
        rounds.append(
            {mode: uvloop.run(saturate(args.url, args.pid, mode=mode, seconds=args.seconds)) for mode in MODES}
        )
    json.dump(summarize(rounds), sys.stdout)


if __name__ == "__main__":
    main()
