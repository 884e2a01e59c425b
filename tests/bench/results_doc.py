"""A small but complete harness results document, as ``bench.harness.run`` writes it, for the report tests."""

from __future__ import annotations

import copy
from typing import Any


def _run(offered: float | None, achieved: float, p95: float, errors: int = 0, requests: int = 24_000) -> dict[str, Any]:
    pct = {"1": p95 / 8, "50": p95 / 3, "95": p95, "99": p95 * 1.5, "99.9": p95 * 2, "99.99": p95 * 3}
    return {
        "command": f"PACE_RATE={offered} wrk -t1 -c30 -d8s http://x/ #{offered}",
        "offered": offered,
        "achieved": achieved,
        "requests": requests,
        "errors": errors,
        "percentiles": pct,
        "spread": {"50": [p95 / 3.2, p95 / 2.8], "95": [p95 * 0.9, p95 * 1.2], "99": [p95 * 1.4, p95 * 1.7]},
        "statuses": {"200": requests - errors, **({"503": errors} if errors else {})},
        "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
        "repeats": 3,
    }


def _bus(p95_off: float, p95_on: float) -> dict[str, Any]:
    return {
        "rates": [1000, 3000],
        "rounds": 3,
        "off": [_run(1000, 990, p95_off), _run(3000, 2970, p95_off)],
        "on": [_run(1000, 990, p95_on), _run(3000, 2970, p95_on)],
        "audit_rows": 250_000,
    }


ZIPF_PACED = [_run(1000, 990, 1.0), _run(3000, 2970, 2.0)]
ZIPF_PACED[0]["cache"] = {"l1_hit": 300.0, "l1_miss": 700.0, "l2_hit": 10.0, "l2_miss": 690.0}
ZIPF_PACED[1]["cache"] = {"l1_hit": 850.0, "l1_miss": 150.0, "l2_hit": 20.0, "l2_miss": 130.0}
ZIPF_WARMUP = {**_run(3000, 2900, 9.0), "cache": {"l1_hit": 400.0, "l1_miss": 600.0, "l2_hit": 0.0, "l2_miss": 600.0}}


def _scenario(title: str, decisions: int, p95_at: dict[int, float], sat_rps: float, cpu: float = 0.0) -> dict[str, Any]:
    sat = _run(None, sat_rps, 50.0, requests=int(sat_rps * 6))
    sat["policy_cpu_seconds"] = cpu
    return {
        "title": title,
        "decisions_per_request": decisions,
        "paced": [_run(rate, rate * 0.99, p95) for rate, p95 in p95_at.items()],
        "saturation": sat,
    }


BASE: dict[str, Any] = {
    "started": "2026-12-05T00:00:00Z",
    "command": "meshauth bench --quick",
    "elapsed_seconds": 100.0,
    "plan": {"seconds": 3, "saturation_seconds": 3},
    "sizes": {"users": 10_000, "resources": 100_000, "clients": 16},
    "zipf_s": 1.1,
    "layout": {"core 0": "services", "core 1": "load generator"},
    "seeding": {
        "policies": 1000,
        "policies_seconds": 0.5,
        "entities": 110_036,
        "entities_bytes": 9_000_000,
        "entities_seconds": 5.0,
        "accounts": 16,
    },
    "machine": {
        "cpu_model": "AMD EPYC",
        "cores": 2,
        "load_average_start": [3.0, 4.0, 5.0],
        "load_average_end": [3.5, 4.0, 5.0],
        "python": "3.11.9",
        "versions": {"granian": "2.8.9", "cedarpy": "4.12.2"},
        "tools": {"wrk": "wrk 4.1.0", "h2load": "h2load nghttp2/1.52.0"},
        "git_commit": "abc123",
        "git_dirty": False,
    },
    "scenarios": {
        "authn_http": _scenario("gate authn warm (HTTP)", 0, {1000: 0.5, 3000: 2.5}, 9000),
        "authn_grpc": _scenario("gate authn warm (gRPC, h2load)", 0, {1000: 5.0, 3000: 8.0}, 3100),
        "authz_warm": _scenario("gate authz warm (one decision)", 1, {1000: 0.5, 3000: 0.7}, 9000),
        "authz_cold": _scenario("gate authz cold (distinct decisions)", 1, {1000: 7.0, 3000: 50.0}, 1200, 3.0),
        "zipf_mixed": {
            **_scenario("gate authz Zipf mixed (10,000 users)", 1, {}, 4000, 0.5),
            "paced": ZIPF_PACED,
            "warmup": ZIPF_WARMUP,
        },
        # single: 10,000 req/s × 6 s on 6 CPU-s → 10,000 decisions per CPU-s; batch: 600 × 64 × 6 on 2.3 CPU-s
        "policy_single": _scenario("policy single evaluation", 1, {1000: 0.8, 3000: 1.3}, 10_000, 6.0),
        "policy_batch64": _scenario("policy batch (64)", 64, {25: 3.0}, 600, 2.304),
    },
    "bus": _bus(0.50, 0.54),
    # issue 10's definition: client + service CPU, batched over single (median of the rounds' ratios)
    "batch_path": {
        "command": "taskset -c 1 python -m meshauth.bench.batch_path --url $POLICY_URL --pid $POLICY_PID",
        "ratio_path": 10.0,
        "ratio_path_per_round": [9.5, 10.5],
        "ratio_service": 4.0,
        "ratio_service_per_round": [3.9, 4.1],
        "rounds": [],
    },
}


def doc() -> dict[str, Any]:
    return copy.deepcopy(BASE)
