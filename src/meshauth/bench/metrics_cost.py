"""What a metric costs on the hot path, single-process vs multiprocess mode, measured in one run.

``python -m meshauth.bench.metrics_cost`` runs itself twice in child processes, once without and once
with ``PROMETHEUS_MULTIPROC_DIR`` (the mode is chosen at import), and prints ns per operation for
prometheus_client's own Counter/Histogram, meshauth's ``IntCounters``/``IntHistogram``, and the
request wrapper (``observability.requests.Instrumented``) around a trivial ASGI app.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import timeit
from typing import Any

N = 200_000
REPEAT = 7


def _ns(stmt: Any, number: int = N) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=REPEAT)) / number * 1e9


def _measure() -> dict[str, float]:
    # Imported here, in the child: prometheus_client and meshauth choose the mode when first imported.
    from prometheus_client import Counter, Histogram

    from meshauth.observability.metrics import IntCounters, IntHistogram
    from meshauth.observability.requests import Instrumented

    counter = Counter("bench_stock_events", "x", ["kind"]).labels("a")
    histogram = Histogram("bench_stock_seconds", "x", ["endpoint"]).labels("/x")
    ints = IntCounters("bench_int_events", "x", ["kind"])
    int_hist = IntHistogram("bench_int_seconds", "x", ["endpoint"])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    wrapped = Instrumented(app)
    scope = {"type": "http", "path": "/x", "method": "GET", "headers": []}

    async def send(_message: Any) -> None:
        return None

    async def calls(target: Any, n: int) -> None:
        for _ in range(n):
            await target(scope, None, send)

    loop = asyncio.new_event_loop()
    requests = 50_000
    return {
        "prometheus_client Counter.inc (bound)": _ns(counter.inc),
        "prometheus_client Histogram.observe (bound)": _ns(lambda: histogram.observe(0.0012)),
        "IntCounters.add": _ns(lambda: ints.add("a")),
        "IntHistogram.observe": _ns(lambda: int_hist.observe(0.0012, "/x")),
        "ASGI request, bare app": _ns(lambda: loop.run_until_complete(calls(app, requests)), 1) / requests,
        "ASGI request, Instrumented": _ns(lambda: loop.run_until_complete(calls(wrapped, requests)), 1) / requests,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(_measure()))
        return
    results: dict[tuple[str, str], float] = {}
    for mode in ("single", "multiprocess", "single", "multiprocess"):
        env = dict(os.environ)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with tempfile.TemporaryDirectory() as directory:
            if mode == "multiprocess":
                env["PROMETHEUS_MULTIPROC_DIR"] = directory
            out = subprocess.run(
                [sys.executable, "-m", "meshauth.bench.metrics_cost", "--child"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        for name, ns in json.loads(out).items():
            key = (name, mode)
            results[key] = min(ns, results.get(key, ns))  # best of two children per mode
    names = list(dict.fromkeys(name for name, _ in results))
    print(f"{'ns per operation (best of 2 processes x 7 repeats)':<48} {'single':>8} {'multiproc':>10}")
    for name in names:
        print(f"{name:<48} {results[(name, 'single')]:>8.0f} {results[(name, 'multiprocess')]:>10.0f}")


if __name__ == "__main__":
    main()
