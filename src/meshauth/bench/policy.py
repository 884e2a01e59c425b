"""Policy-service benchmark (issue 3): ``python -m meshauth.bench.policy``.

Builds the issue's store (1,000 policies over 50 resource types × 20 actions, 1,000 users,
10,000 resources) in a fresh SQLite database, serves it with ``meshauth serve policy`` pinned to
core 0, and drives it from core 1 with requests spread at random over users, resources and actions:

1. bulk entity load through the admin API (11,020 entities, then 100,000 into another store);
2. single ``evaluation`` at a fixed 1,000 req/s (open-loop driver, latency from due time) → p50/p95/p99,
   plainly and with both cores kept out of idle (``loadgen.idle_poll``: a halted vCPU on this VM takes
   milliseconds to wake, which otherwise dominates latency at moderate load);
3. the same rate with ``hey`` and one fixed body, as a cross-check;
4. maximum throughput (wrk, closed loop, Lua script picking random pregenerated bodies) for single
   ``evaluation`` and for 64-item ``evaluations``, counted in decisions/s;
5. optionally (``--no-index``) single-evaluation throughput with the scope index switched off.

Run it under the shared benchmark lock: ``flock /tmp/meshauth-bench.lock python -m meshauth.bench.policy``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from meshauth.bench import policy_harness as harness
from meshauth.bench import policy_scaling, policy_scaling_report
from meshauth.bench import policy_workload as workload
from meshauth.bench.loadgen import idle_poll
from meshauth.bench.processes import free_port, running
from meshauth.bench.results import save

FLOOR_APP = "meshauth.bench.floor:create_app"


def _measure(base: str, files: dict[str, Path], script: Path, *, rate: int, seconds: int) -> dict[str, Any]:
    """Fixed-rate latency, then max throughput for single and 64-item requests, against ``base``."""
    out: dict[str, Any] = {}
    single_url = base + "/access/v1/evaluation"
    # Warm-up: compile every policy subset, fill the entity cache, build the snapshot.
    harness.wrk(base, files["singles"], "/access/v1/evaluation", script, seconds=5, connections=16)
    harness.wrk(base, files["batches"], "/access/v1/evaluations", script, seconds=3, connections=8)
    out["fixed_rate_random"] = harness.driver(single_url, files["singles"], rate=rate, seconds=seconds)
    with idle_poll():
        out["fixed_rate_random_idle_poll"] = harness.driver(single_url, files["singles"], rate=rate, seconds=seconds)
    out["fixed_rate_hey_one_body"] = harness.hey(single_url, files["one"], rate=rate, seconds=seconds)
    single = harness.wrk(base, files["singles"], "/access/v1/evaluation", script, seconds=seconds, connections=32)
    single["decisions_per_s"] = single["requests_per_s"]
    batch = harness.wrk(base, files["batches"], "/access/v1/evaluations", script, seconds=seconds, connections=8)
    batch["decisions_per_s"] = batch["requests_per_s"] * harness.BATCH
    out["max_single"] = single
    out["max_batch64"] = batch
    out["batch_over_single"] = batch["decisions_per_s"] / single["decisions_per_s"]
    return out


def run(*, seconds: int, rate: int, bulk: int, compare_index: bool, servers: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {"seconds": seconds}
    w = workload.build()
    with tempfile.TemporaryDirectory(prefix="meshauth-bench-policy-") as tmp:
        root = Path(tmp)
        files = {"singles": root / "singles.jsonl", "batches": root / "batch64.jsonl", "one": root / "one.json"}
        script = root / "random-body.lua"
        single_bodies = workload.single_bodies(20_000)
        files["singles"].write_bytes(b"\n".join(single_bodies) + b"\n")
        files["batches"].write_bytes(b"\n".join(workload.batch_bodies(2_000, harness.BATCH)) + b"\n")
        files["one"].write_bytes(single_bodies[0])
        script.write_text(harness.LUA)
        var = root / "var"
        var.mkdir()

        # Load once (through the admin API of the ASGI server); every server below reads this database.
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with running(harness.SERVERS["asgi"], harness.env(var, port), base + "/healthz"):
            t = time.perf_counter()
            harness.admin(base, "POST", "/admin/stores/default/policies", json.dumps({"policies": w.policies}).encode())
            results["policy_upload_s"] = time.perf_counter() - t
            t = time.perf_counter()
            harness.admin(base, "POST", "/admin/stores/default/entities", json.dumps(w.entities).encode())
            results["entities_load_s"] = {"count": len(w.entities), "seconds": time.perf_counter() - t}
            if bulk:
                body = json.dumps(workload.bulk_entities(bulk)).encode()
                t = time.perf_counter()
                harness.admin(base, "POST", "/admin/stores/bulk/entities", body)
                results["bulk_load"] = {"count": bulk, "seconds": time.perf_counter() - t, "bytes": len(body)}

        for name in servers:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            with running(harness.SERVERS[name], harness.env(var, port), base + "/healthz"):
                results[name] = _measure(base, files, script, rate=rate, seconds=seconds)

        # The floor in the same run: a trivial ASGI app under the same server, same load tools.
        port = free_port()
        floor = f"http://127.0.0.1:{port}"
        code = (
            f"from meshauth.granian_server import serve_asgi; serve_asgi({FLOOR_APP!r}, host='127.0.0.1', port={port})"
        )
        with running(["-c", code], harness.env(var, port), floor + "/"):
            results["floor_fixed_rate"] = harness.driver(floor + "/", files["singles"], rate=rate, seconds=seconds)
            with idle_poll():
                results["floor_fixed_rate_idle_poll"] = harness.driver(
                    floor + "/", files["singles"], rate=rate, seconds=seconds
                )
            results["floor_hey_one_body"] = harness.hey(floor + "/", files["one"], rate=rate, seconds=seconds)
            results["floor_max"] = harness.wrk(floor, files["singles"], "/", script, seconds=seconds, connections=32)
        if compare_index:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = harness.env(var, port, MESHAUTH_POLICY_INDEX_ENABLED="false")
            with running(harness.SERVERS[servers[-1]], env, base + "/healthz"):
                harness.wrk(base, files["singles"], "/access/v1/evaluation", script, seconds=3, connections=16)
                off = harness.wrk(
                    base, files["singles"], "/access/v1/evaluation", script, seconds=seconds, connections=32
                )
                results["max_single_index_off"] = off
    return results


def report(r: dict[str, Any]) -> str:
    lines = [
        "| measurement | result |",
        "|---|---|",
        f"| policy upload (1,000 policies, validate + compile) | {r['policy_upload_s']:.2f} s |",
        f"| entity load, {r['entities_load_s']['count']:,} entities (HTTP, one transaction) "
        f"| {r['entities_load_s']['seconds']:.2f} s |",
    ]
    if "bulk_load" in r:
        b = r["bulk_load"]
        lines.append(f"| bulk entity load, {b['count']:,} entities, {b['bytes'] / 1e6:.1f} MB | {b['seconds']:.1f} s |")
    commands: list[str] = []
    for name in harness.SERVERS:
        if name not in r:
            continue
        m = r[name]
        fr, hey, single, batch = m["fixed_rate_random"], m["fixed_rate_hey_one_body"], m["max_single"], m["max_batch64"]
        lines += [
            f"| {name}: single evaluation at {fr['offered_rps']:.0f} req/s, random bodies (open loop) "
            f"| p50 {fr['p50_ms']:.2f} ms, **p95 {fr['p95_ms']:.2f} ms**, p99 {fr['p99_ms']:.2f} ms "
            f"({fr['failures']} failed) |",
            f"| {name}: same, both cores kept out of idle (idle_poll) "
            f"| p50 {m['fixed_rate_random_idle_poll']['p50_ms']:.2f} ms, "
            f"**p95 {m['fixed_rate_random_idle_poll']['p95_ms']:.2f} ms**, "
            f"p99 {m['fixed_rate_random_idle_poll']['p99_ms']:.2f} ms |",
            f"| {name}: single evaluation at {fr['offered_rps']:.0f} req/s, one body (hey) "
            f"| p50 {hey['p50_ms']:.2f} ms, p95 {hey['p95_ms']:.2f} ms, p99 {hey['p99_ms']:.2f} ms |",
            f"| {name}: max throughput, single evaluation (wrk c=32) "
            f"| **{single['decisions_per_s']:,.0f} decisions/s** |",
            f"| {name}: max throughput, 64-item evaluations (wrk c=8) "
            f"| **{batch['decisions_per_s']:,.0f} decisions/s** "
            f"({batch['requests_per_s']:,.0f} req/s) — **{m['batch_over_single']:.1f}×** single |",
        ]
        commands += [f"    # {name}: python {' '.join(harness.SERVERS[name])}"]
        commands += [
            f"    {m[k]['command']}"
            for k in ("fixed_rate_random", "fixed_rate_hey_one_body", "max_single", "max_batch64")
        ]
    if "floor_max" in r:
        ff, fh = r["floor_fixed_rate"], r["floor_hey_one_body"]
        lines += [
            f"| floor: trivial ASGI app, same server, at {ff['offered_rps']:.0f} req/s (open loop) "
            f"| p50 {ff['p50_ms']:.2f} ms, p95 {ff['p95_ms']:.2f} ms, p99 {ff['p99_ms']:.2f} ms |",
            f"| floor: same, idle_poll | p50 {r['floor_fixed_rate_idle_poll']['p50_ms']:.2f} ms, "
            f"p95 {r['floor_fixed_rate_idle_poll']['p95_ms']:.2f} ms, "
            f"p99 {r['floor_fixed_rate_idle_poll']['p99_ms']:.2f} ms |",
            f"| floor: trivial ASGI app at {ff['offered_rps']:.0f} req/s, one body (hey) "
            f"| p50 {fh['p50_ms']:.2f} ms, p95 {fh['p95_ms']:.2f} ms, p99 {fh['p99_ms']:.2f} ms |",
            f"| floor: trivial ASGI app, max throughput (wrk c=32) | {r['floor_max']['requests_per_s']:,.0f} req/s |",
        ]
        commands += [
            f"    # floor: {FLOOR_APP} under meshauth.granian_server.serve_asgi",
            f"    {r['floor_max']['command']}",
        ]
    if "max_single_index_off" in r:
        lines.append(
            f"| max throughput, single evaluation, scope index off | "
            f"{r['max_single_index_off']['requests_per_s']:,.0f} decisions/s |"
        )
        commands += [
            "    # index off: MESHAUTH_POLICY_INDEX_ENABLED=false",
            f"    {r['max_single_index_off']['command']}",
        ]
    return "\n".join([*lines, "", "Commands:", "", *commands])


def _counts(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--bulk", type=int, default=100_000, help="entities for the bulk-load timing (0: skip)")
    parser.add_argument("--no-index", action="store_true", help="also measure with the scope index off")
    parser.add_argument(
        "--server", choices=[*harness.SERVERS, "both"], default="both", help="granian interface(s) to measure"
    )
    parser.add_argument(
        "--policies",
        type=_counts,
        default=None,
        help="store sizes to compare in one run, e.g. 1000,10000,100000 (issue 8; replaces the default suite)",
    )
    parser.add_argument(
        "--stores",
        type=_counts,
        default=None,
        help="numbers of 20-policy stores to compare in one run, e.g. 1,10,1000 (issue 8; replaces the default suite)",
    )
    parser.add_argument(
        "--interleave",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="with --stores: also serve every store count at once and measure them in alternating 2 s rounds;"
        " with --coalesce: serve coalescing off and on at once, ROUNDS alternating rounds of --seconds",
    )
    parser.add_argument(
        "--coalesce",
        action="store_true",
        help="compare coalesced single evaluations off and on in one run (issue 11; replaces the default suite)",
    )
    parser.add_argument(
        "--priority",
        action="store_true",
        help="with --coalesce --interleave: servers and load generators at nice -10 (a shared machine)",
    )
    parser.add_argument(
        "--audit-compare",
        action="store_true",
        help="single evaluations at --rate, auditing on and off alternating (issue 12; replaces the default suite)",
    )
    parser.add_argument("--rounds", type=int, default=6, help="with --audit-compare: rounds (order rotated each)")
    parser.add_argument(
        "--audit-modes", default="on,off", help="with --audit-compare: modes (bench/policy_audit.py MODES), with off"
    )
    args = parser.parse_args(argv)
    if args.audit_compare:
        from meshauth.bench import policy_audit

        modes = tuple(m.strip() for m in args.audit_modes.split(",") if m.strip())
        audited = policy_audit.run(seconds=args.seconds, rate=args.rate, rounds=args.rounds, modes=modes)
        path = save("policy-audit", audited)
        print(policy_audit.report(audited))
        print(f"\nraw results: {path}")
        return
    if args.coalesce and args.interleave:
        from meshauth.bench import policy_coalesce, policy_coalesce_rounds

        rounds = policy_coalesce.interleaved(
            rounds=args.interleave, seconds=args.seconds, rate=args.rate, priority=args.priority
        )
        path = save("policy-coalesce-rounds", rounds)
        print(policy_coalesce_rounds.report(rounds))
        print(f"\nraw results: {path}")
        return
    if args.coalesce:
        from meshauth.bench import policy_coalesce

        compared = policy_coalesce.run(seconds=args.seconds, rate=args.rate)
        path = save("policy-coalesce", compared)
        print(policy_coalesce.report(compared))
        print(f"\nraw results: {path}")
        return
    if args.policies or args.stores:
        scaling = policy_scaling.run(
            policies=args.policies or [],
            stores=args.stores or [],
            seconds=args.seconds,
            rate=args.rate,
            interleave=args.interleave,
        )
        path = save("policy-scaling", scaling)
        print(policy_scaling_report.report(scaling))
        print(f"\nraw results: {path}")
        return
    servers = list(harness.SERVERS) if args.server == "both" else [args.server]
    results = run(seconds=args.seconds, rate=args.rate, bulk=args.bulk, compare_index=args.no_index, servers=servers)
    path = save("policy", results)
    print(report(results))
    print(f"\nraw results: {path}")


if __name__ == "__main__":
    main()
