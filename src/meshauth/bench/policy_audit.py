"""The policy decision path with auditing on and off (issue 12): ``meshauth bench policy --audit-compare``.

The issue-3 store (1,000 policies, 11,020 entities) served by ``meshauth serve policy`` (RSGI) on
core 0; single ``evaluation`` requests (random users, resources and actions) at a fixed rate from
the open-loop driver on core 1, both cores kept out of idle (``loadgen.idle_poll``). The modes
alternate ``rounds`` times so that drift on a shared machine hits them alike; the answer is the
ratio of the p95s. With auditing on, every decision publishes one ``policy.decision`` event to a
private Valkey pinned to the load generator's core (in production Redis runs on another host; the
hook, the flush task and redis-py's client all run in the service, on the server core). No worker
runs: it would run elsewhere.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import redis

from meshauth.bench import policy_harness as harness
from meshauth.bench import policy_workload as workload
from meshauth.bench.audit_gate import events_in_streams, ratio_summary, rotated
from meshauth.bench.client_setup import tree_cpu
from meshauth.bench.loadgen import CLIENT_CORE, idle_poll
from meshauth.bench.policy_harness import LUA, SERVERS, admin, driver, wrk
from meshauth.bench.processes import free_port, running
from meshauth.bench.valkey_here import local_valkey

ON = {"MESHAUTH_AUDIT_ENABLED": "true"}
# On with the default flush pacing (at most every 50 ms: ``bus_flush_gap``), on with the earlier one
# (every 5 ms: gap 0), off.
MODES = {
    "on": ON,
    "on_no_gap": {**ON, "MESHAUTH_BUS_FLUSH_GAP": "0"},
    "on_gap_20ms": {**ON, "MESHAUTH_BUS_FLUSH_GAP": "0.02"},
    "off": {"MESHAUTH_AUDIT_ENABLED": "false"},
}


def run(*, seconds: int, rate: int, rounds: int = 6, modes: tuple[str, ...] = ("on", "off")) -> dict[str, Any]:
    if set(modes) - set(MODES) or "off" not in modes:
        raise ValueError(f"modes must include off and be among {sorted(MODES)}")
    out: dict[str, Any] = {"seconds": seconds, "rate": rate, "modes": list(modes)}
    out.update({mode: [] for mode in modes})
    w = workload.build()
    # Valkey in this process's session (``valkey_here``: daemonized, the idle-poll spinner starved it).
    tmp_dir = tempfile.TemporaryDirectory(prefix="meshauth-bench-policy-audit-")
    with tmp_dir as tmp, local_valkey(int(CLIENT_CORE)) as valkey:
        redis_url = valkey.url
        root = Path(tmp)
        singles = root / "singles.jsonl"
        singles.write_bytes(b"\n".join(workload.single_bodies(20_000)) + b"\n")
        script = root / "random-body.lua"
        script.write_text(LUA)
        var = root / "var"
        var.mkdir()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = harness.env(var, port, MESHAUTH_REDIS_URL=redis_url)
        with running(SERVERS["asgi"], env, base + "/healthz"):
            admin(base, "POST", "/admin/stores/default/policies", json.dumps({"policies": w.policies}).encode())
            admin(base, "POST", "/admin/stores/default/entities", json.dumps(w.entities).encode())
        for i in range(rounds):
            for mode in rotated(modes, i):
                with running(SERVERS["rsgi"], {**env, **MODES[mode]}, base + "/healthz") as proc:
                    wrk(base, singles, "/access/v1/evaluation", script, seconds=3, connections=16)  # warm-up
                    before = [tree_cpu(pid) for pid in (proc.pid, valkey.pid)]
                    with idle_poll():
                        result = driver(base + "/access/v1/evaluation", singles, rate=rate, seconds=seconds)
                    used = [tree_cpu(pid) - b for pid, b in zip((proc.pid, valkey.pid), before, strict=True)]
                    result["service_cpu_us_per_request"] = sum(used[:-1]) / max(result["requests"], 1) * 1e6
                    result["valkey_cpu_s"] = used[-1]
                    result["load_average"] = os.getloadavg()[0]
                    out[mode].append(result)
        client = redis.Redis(port=valkey.port)
        out["events_in_stream"] = events_in_streams(client, [f"meshauth:bus:audit:{n}" for n in range(4)])
        client.close()
    return out


def report(r: dict[str, Any]) -> str:
    modes: list[str] = r.get("modes", ["on", "off"])
    rounds = len(r["off"])
    rows = [
        f"Policy single evaluation at {r['rate']} req/s offered for {r['seconds']} s, {rounds} rounds"
        " (the modes' order rotated each round):",
        "",
        "| round | audit | achieved req/s | p50 ms | p95 ms | p99 ms | errors | service CPU µs/req | Valkey CPU s"
        " | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i in range(rounds):
        for mode in modes:
            x = r[mode][i]
            rows.append(
                f"| {i + 1} | {mode} | {x['achieved_rps']:.0f} | {x['p50_ms']:.2f} | {x['p95_ms']:.2f}"
                f" | {x['p99_ms']:.2f} | {x['failures']} | {x['service_cpu_us_per_request']:.1f}"
                f" | {x['valkey_cpu_s']:.2f} | {x.get('load_average', 0):.1f} |"
            )
    rows += ratio_summary(r, modes, rounds)
    return "\n".join(rows)
