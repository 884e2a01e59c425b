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
    seconds: float
    saturation_seconds: float
    gate_rates: tuple[int, ...]
    batch_rates: tuple[int, ...]
    zipf_lines: int
    policy_lines: int


FULL = Plan(8, 6, GATE_RATES_FULL, BATCH_RATES_FULL, 60_000, 50_000)
QUICK = Plan(3, 3, GATE_RATES_QUICK, BATCH_RATES_QUICK, 30_000, 20_000)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    decisions_per_request: int
    rates: tuple[int, ...]
    # (rate or None for saturation, seconds) → one run
    drive: Callable[[float | None, float], drivers.Run]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


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

    write_lines(root / "zipf_gate-0.lines", workload.zipf_gate_lines(stack.tokens, plan.zipf_lines, sizes, seed=0))
    zipf_runs = iter(range(1, 1_000_000))

    def zipf_mixed(rate: float | None, seconds: float) -> drivers.Run:
        # A fresh sample per run (a new seed): a key that is rare in one run is not replayed in the next,
        # so the cache sees Zipf popularity rather than a recording it has already learnt.
        seed = next(zipf_runs)
        lines = workload.zipf_gate_lines(stack.tokens, plan.zipf_lines, sizes, seed=seed * 7)
        path = write_lines(root / f"zipf_gate-{seed}.lines", lines)
        return gate(stack.authz_url, {}, lines=path)(rate, seconds)

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
        Scenario("zipf_mixed", "gate authz Zipf mixed", 1, rates, zipf_mixed),
        Scenario("policy_single", "policy single evaluation", 1, rates, policy(single_file, 30, 32)),
        Scenario("policy_batch64", "policy batch (64)", workload.BATCH, plan.batch_rates, policy(batch_file, 4, 8)),
    ]
