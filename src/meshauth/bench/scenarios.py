"""The harness's scenarios: what each drives, at which offered rates, and with which load generator.

Every scenario is measured twice over: paced at each of its fixed offered rates (latency percentiles,
the latency-vs-load plot) and once closed loop (throughput at saturation, its latencies not quoted).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from meshauth.bench import drivers, grpc_body, workload
from meshauth.bench.stack import Stack

GATE_RATES_FULL = (500, 1000, 2000, 3000)
GATE_RATES_QUICK = (1000, 3000)
# h2load --rps fires each connection's requests on its own fixed-period timer, and connections start
# together: 30 connections at 3,000 req/s arrive as bursts of ~30 every 10 ms, which measures the burst's
# queueing. Four connections keep the bursts small (at most four requests at once).
GRPC_PACED = 4
BATCH_RATES_FULL = (10, 25, 50)  # requests/s of 64 checks each: 640 … 3,200 decisions/s
BATCH_RATES_QUICK = (25,)


@dataclass(frozen=True)
class Plan:
    seconds: float  # each paced run
    saturation_seconds: float
    gate_rates: tuple[int, ...]
    batch_rates: tuple[int, ...]
    zipf_lines: int
    policy_lines: int
    repeats: int  # paced runs per (scenario, rate), interleaved across the rates; the point is their median
    zipf_warmup_seconds: float  # the Zipf workload at 3,000 req/s before its measured runs
    bus_rates: tuple[int, ...]
    bus_rounds: int
    batch_path_seconds: float
    batch_path_rounds: int


FULL = Plan(4, 5, GATE_RATES_FULL, BATCH_RATES_FULL, 60_000, 50_000, 3, 15, (1000, 3000), 3, 3, 2)
QUICK = Plan(3, 2, GATE_RATES_QUICK, BATCH_RATES_QUICK, 30_000, 20_000, 1, 6, (3000,), 1, 2, 1)
ZIPF_WARMUP_RATE = 3000
# The Zipf workload's answers: allows and genuine denials (users ask about resources their group and
# level do not reach); anything else (401, 503, …) is an error.
ZIPF_STATUSES = frozenset({200, 403})


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    decisions_per_request: int
    rates: tuple[int, ...]
    # (rate or None for saturation, seconds) → one run
    drive: Callable[[float | None, float], drivers.Run]
    warmup: float = 0.0  # seconds at ZIPF_WARMUP_RATE before the measured runs (recorded apart)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def zipf_file(root: Path, n: int, plan: Plan, sizes: workload.Sizes) -> Path:
    """The n-th Zipf run's request file (users × resources, seed 7n)."""
    path = root / f"zipf_users-{n}.lines"
    if not path.exists():
        write_lines(path, workload.zipf_user_lines(plan.zipf_lines, sizes, seed=n * 7))
    return path


def zipf_runs(plan: Plan) -> int:
    """How many Zipf runs a plan makes: the warm-up, every paced repeat, the saturation run."""
    return 1 + len(plan.gate_rates) * plan.repeats + 1


def build(stack: Stack, plan: Plan, sizes: workload.Sizes) -> list[Scenario]:
    root = stack.root
    auth = {"authorization": f"Bearer {stack.tokens[0]}"}
    single_file = write_lines(root / "single.lines", workload.single_lines(plan.policy_lines, sizes))
    batch_file = write_lines(root / "batch.lines", workload.batch_lines(max(200, plan.policy_lines // 64), sizes))
    grpc_file = root / "check.bin"
    grpc_file.write_bytes(grpc_body.frame(grpc_body.check_request(auth["authorization"])))
    hot = workload.gate_path(0)
    grpc_headers = {"content-type": "application/grpc", "te": "trailers"}

    def grpc(rate: float | None, seconds: float) -> drivers.Run:
        log = root / f"h2load-{secrets.token_hex(3)}.log"
        url = stack.grpc_url + grpc_body.CHECK_PATH
        return drivers.h2load(
            url,
            grpc_file,
            log,
            seconds=seconds,
            connections=GRPC_PACED if rate else 16,
            rate=rate,
            headers=grpc_headers,
        )

    def c(rate: float | None, paced: int = 30, closed: int = 32) -> int:
        return paced if rate else closed

    def gate(
        url: str, headers: dict[str, str], *, lines: Path | None = None, distinct: bool = False
    ) -> Callable[[float | None, float], drivers.Run]:
        def drive(rate: float | None, seconds: float) -> drivers.Run:
            # distinct: a fresh nonce per run, so every request of every run is a decision never asked before
            prefix = f"/ext_authz/R0/c{secrets.token_hex(4)}-" if distinct else None
            return drivers.wrk(
                url,
                seconds=seconds,
                connections=c(rate),
                rate=rate,
                headers=headers,
                lines=lines,
                distinct_prefix=prefix,
            )

        return drive

    zipf_runs = iter(range(1_000_000))

    def zipf_mixed(rate: float | None, seconds: float) -> drivers.Run:
        # A fresh sample per run (run n: seed 7n, file zipf_users-<n>.lines; run 0 is the warm-up): a key
        # that is rare in one run is not replayed in the next, so the cache meets Zipf popularity rather
        # than a recording it has already learnt. ``bench.hold`` writes the same files.
        path = zipf_file(root, next(zipf_runs), plan, sizes)
        return drivers.wrk(
            stack.authz_url,
            seconds=seconds,
            connections=c(rate),
            rate=rate,
            lines=path,
            tokens=stack.users_tokens,
            expected=ZIPF_STATUSES,
        )

    def policy(lines: Path, paced: int, closed: int) -> Callable[[float | None, float], drivers.Run]:
        return lambda rate, seconds: drivers.wrk(
            stack.policy_url, seconds=seconds, connections=c(rate, paced, closed), rate=rate, lines=lines
        )

    rates = plan.gate_rates
    return [
        Scenario("authn_http", "gate authn warm (HTTP)", 0, rates, gate(stack.authn_url + hot, auth)),
        Scenario("authn_grpc", "gate authn warm (gRPC, h2load)", 0, rates, grpc),
        Scenario("authz_warm", "gate authz warm (one decision)", 1, rates, gate(stack.authz_url + hot, auth)),
        Scenario(
            "authz_cold", "gate authz cold (distinct decisions)", 1, rates, gate(stack.authz_url, auth, distinct=True)
        ),
        Scenario("zipf_mixed", "gate authz Zipf mixed (10,000 users)", 1, rates, zipf_mixed, plan.zipf_warmup_seconds),
        Scenario("policy_single", "policy single evaluation", 1, rates, policy(single_file, 30, 32)),
        Scenario("policy_batch64", "policy batch (64)", workload.BATCH, plan.batch_rates, policy(batch_file, 4, 8)),
    ]
