"""Policy-service scaling (issue 8): decision cost against store size and number of stores, in one run.

``meshauth bench policy --policies 1000,10000,100000 --stores 1,10,1000`` (under the benchmark
lock). Each case gets a fresh SQLite database and a fresh ``meshauth serve policy`` on core 0,
driven from core 1 exactly as the default policy benchmark drives it:

- store size: the issue-3 workload with ``N / 20`` resource types × 20 actions (one policy per
  pair), 1,000 users, 10,000 resources. Upload time (HTTP: validate, store, compile, index,
  activate) and server RSS; activation cost measured alone in a subprocess (parse, index build,
  condition analysis; RSS); after a warm-up, p95 at a fixed rate (open loop), then maximum
  throughput for single and 64-item evaluations;
- number of stores: ``M`` stores of 20 policies and 20 users each, created through the admin API of
  the server measured, which is then measured at once, first decisions included: wrk at 16 in
  flight (decisions/s and p95), RSS per store, p95 at a fixed rate (open loop); then a *fresh*
  process over the same database: the time to load one store on demand (first request to a store
  it has not loaded, against the same request warm — what a reload after an unload costs), and
  wrk at 16 in flight while it loads the stores;
- with ``--interleave N``: every store count again, served at once by fresh servers and measured in
  N alternating 2-second rounds right after creation (``interleaved_stores``: same-moment ratios).
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from meshauth.bench import policy_harness as harness
from meshauth.bench import policy_workload as workload
from meshauth.bench.processes import free_port, rss_mb, running

# Sends the bodies in order, cycling: a warm-up that reaches every request key once.
SWEEP_LUA = """
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
local path = os.getenv("BENCH_PATH")
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, path, nil, bodies[(n % #bodies) + 1])
end
"""

STORES_LUA = """
local lines = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do
  local store, body = line:match("^(%S+) (.*)$")
  lines[#lines + 1] = {"/stores/" .. store .. "/access/v1/evaluation", body}
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local l = lines[math.random(#lines)]
  return wrk.format(nil, l[1], nil, l[2])
end
done = function(summary, latency, requests)
  io.write(string.format("P95_US %d\\n", latency:percentile(95.0)))
end
"""


def _index_cache(base: str) -> dict[str, float]:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    out = {"hit": 0.0, "miss": 0.0}
    for m in re.finditer(r'meshauth_policy_index_cache_total\{outcome="(\w+)"\} ([0-9.e+]+)', text):
        out[m.group(1)] = float(m.group(2))
    return out


def _hit_rate(before: dict[str, float], after: dict[str, float]) -> float | None:
    hits, misses = after["hit"] - before["hit"], after["miss"] - before["miss"]
    return hits / (hits + misses) if hits + misses else None


PROBE = """
import json, re, sys, time
from pathlib import Path
from meshauth.bench import policy_workload as workload
from meshauth.policy.cedar import parse_policies
from meshauth.policy.index import PolicyIndex
from meshauth.policy.conditions import condition_facts
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024
n = int(sys.argv[1])
text = workload.build(resource_types=n // 20).policies
before = rss()
t = time.perf_counter(); full = parse_policies(text); parse_s = time.perf_counter() - t
t = time.perf_counter(); index = PolicyIndex(full, text); index_s = time.perf_counter() - t
t = time.perf_counter(); facts = condition_facts(text); facts_s = time.perf_counter() - t
print(json.dumps({"policies": n, "bytes": len(text), "parse_s": parse_s, "index_s": index_s,
                  "conditions_s": facts_s, "rss_added_mb": rss() - before, "unanalysed": index.unanalysed}))
"""


def activation_probe(n: int) -> dict[str, Any]:
    """Compile + index + condition analysis of an ``n``-policy store, alone in a fresh process."""
    out = subprocess.run([sys.executable, "-c", PROBE, str(n)], capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def _size_case(n: int, *, seconds: int, rate: int, root: Path) -> dict[str, Any]:
    types = max(1, n // workload.ACTIONS)
    w = workload.build(resource_types=types)
    case = root / f"policies-{n}"
    var = case / "var"
    var.mkdir(parents=True)
    files = {"singles": case / "singles.jsonl", "batches": case / "batch64.jsonl"}
    files["singles"].write_bytes(b"\n".join(workload.single_bodies(20_000, resource_types=types)) + b"\n")
    files["batches"].write_bytes(b"\n".join(workload.batch_bodies(2_000, harness.BATCH, resource_types=types)) + b"\n")
    files["every_key"] = case / "every-key.jsonl"
    files["every_key"].write_bytes(b"\n".join(workload.every_key_bodies(types)) + b"\n")
    script = case / "random-body.lua"
    script.write_text(harness.LUA)
    sweep = case / "sweep.lua"
    sweep.write_text(SWEEP_LUA)
    out: dict[str, Any] = {"policies": w.policy_count, "activation": activation_probe(n)}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running(harness.SERVERS["rsgi"], harness.env(var, port), base + "/healthz") as proc:
        out["rss_start_mb"] = rss_mb(proc.pid)
        body = json.dumps({"policies": w.policies}).encode()
        t = time.perf_counter()
        harness.admin(base, "POST", "/admin/stores/default/policies", body)
        out["upload_s"] = time.perf_counter() - t
        out["upload_bytes"] = len(body)
        out["rss_after_upload_mb"] = rss_mb(proc.pid)
        harness.admin(base, "POST", "/admin/stores/default/entities", json.dumps(w.entities).encode())
        # Warm-up: a sweep through every (action, resource type) key (each compiles its subset
        # once; bigger stores have more keys, so a longer sweep), then random traffic: the
        # measured runs see the steady state.
        warm = max(5, n // 2_500)
        harness.wrk(base, files["every_key"], "/access/v1/evaluation", sweep, seconds=warm, connections=16)
        harness.wrk(base, files["singles"], "/access/v1/evaluation", script, seconds=5, connections=16)
        harness.wrk(base, files["batches"], "/access/v1/evaluations", script, seconds=3, connections=8)
        out["warmup_s"] = warm + 8
        before = _index_cache(base)
        out["fixed_rate"] = harness.driver(base + "/access/v1/evaluation", files["singles"], rate=rate, seconds=seconds)
        single = harness.wrk(base, files["singles"], "/access/v1/evaluation", script, seconds=seconds, connections=32)
        batch = harness.wrk(base, files["batches"], "/access/v1/evaluations", script, seconds=seconds, connections=8)
        single["decisions_per_s"] = single["requests_per_s"]
        batch["decisions_per_s"] = batch["requests_per_s"] * harness.BATCH
        out["max_single"], out["max_batch64"] = single, batch
        out["index_hit_rate"] = _hit_rate(before, _index_cache(base))
        out["rss_end_mb"] = rss_mb(proc.pid)
    return out


def _post(url: str, body: bytes) -> float:
    req = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json"})  # noqa: S310
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback
        resp.read()
    return time.perf_counter() - t


def _stores_files(m: int, root: Path) -> tuple[Path, Path, Path]:
    """A fresh var_dir for ``m`` stores, request lines spread over them, and the wrk script."""
    case = root / f"stores-{m}"
    var = case / "var"
    var.mkdir(parents=True)
    lines = case / "store-bodies.txt"
    lines.write_text("\n".join(workload.tenant_lines(50_000, m)) + "\n")
    script = case / "stores.lua"
    script.write_text(STORES_LUA)
    return var, lines, script


def _create_stores(base: str, m: int) -> float:
    """Create ``m`` 20-policy stores through the admin API; seconds taken."""
    t = time.perf_counter()
    for i in range(m):
        w = workload.tenant_store(1000 + i)
        harness.admin(base, "POST", f"/admin/stores/t{i}/policies", json.dumps({"policies": w.policies}).encode())
        harness.admin(base, "POST", f"/admin/stores/t{i}/entities", json.dumps(w.entities).encode())
    return time.perf_counter() - t


def interleaved_stores(counts: list[int], *, rounds: int, root: Path) -> dict[str, Any]:
    """Every store count served at once, each by a fresh server of its own, created one after the
    other and measured right away in alternating 2-second runs at 16 in flight (the largest count
    first, so its first run holds its stores' first requests). The separate cases above are
    measured minutes apart, and on a shared machine their ratio drifts with the neighbours' load
    (0.74-1.24x for the same code); alternating puts that drift on every count alike."""
    with contextlib.ExitStack() as stack:
        served: dict[int, tuple[str, Path, Path]] = {}
        for m in counts:
            var, lines, script = _stores_files(m, root / "interleaved")
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            stack.enter_context(running(harness.SERVERS["rsgi"], harness.env(var, port), base + "/healthz"))
            served[m] = (base, lines, script)
        for m in counts:
            _create_stores(served[m][0], m)
        runs: dict[int, list[float]] = {m: [] for m in counts}
        for _ in range(rounds):
            for m in sorted(counts, reverse=True):
                base, lines, script = served[m]
                runs[m].append(harness.wrk(base, lines, "", script, seconds=2, connections=16)["requests_per_s"])
    return {"rounds": rounds, "decisions_per_s": {str(m): runs[m] for m in counts}}


def _stores_case(m: int, *, seconds: int, rate: int, root: Path) -> dict[str, Any]:
    var, lines, script = _stores_files(m, root)
    out: dict[str, Any] = {"stores": m}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running(harness.SERVERS["rsgi"], harness.env(var, port), base + "/healthz") as proc:
        out["rss_fresh_mb"] = rss_mb(proc.pid)
        out["create_s"] = _create_stores(base, m)
        # Right after creation: every store's first decisions (entity snapshot built, cache filled)
        # are inside this run.
        run = harness.wrk(base, lines, "", script, seconds=seconds, connections=16)
        run["decisions_per_s"] = run["requests_per_s"]
        out["in_flight_16_first"] = run
        out["rss_loaded_mb"] = rss_mb(proc.pid)
        out["rss_per_store_kb"] = (out["rss_loaded_mb"] - out["rss_fresh_mb"]) * 1024 / m
        out["fixed_rate"] = harness.driver(base, lines, rate=rate, seconds=seconds, stores=True)
        run = harness.wrk(base, lines, "", script, seconds=seconds, connections=16)
        run["decisions_per_s"] = run["requests_per_s"]
        out["in_flight_16_warm"] = run
    # A fresh process over the same database (a restart, or a store unloaded): loading a store on
    # demand, first request to each of up to 100 stores against the same requests once loaded;
    # then wrk at 16 in flight with every other store still to load.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    probe = [(f"t{i}", json.dumps(workload.tenant_request(random.Random(i))).encode()) for i in range(min(m, 100))]
    with running(harness.SERVERS["rsgi"], harness.env(var, port), base + "/healthz"):
        cold = [_post(f"{base}/stores/{s}/access/v1/evaluation", b) for s, b in probe]
        warm = [_post(f"{base}/stores/{s}/access/v1/evaluation", b) for s, b in probe]
        run = harness.wrk(base, lines, "", script, seconds=seconds, connections=16)
        run["decisions_per_s"] = run["requests_per_s"]
        out["in_flight_16_fresh_process"] = run
    out["load_on_demand_ms"] = {
        "cold_median": statistics.median(cold) * 1000,
        "cold_max": max(cold) * 1000,
        "warm_median": statistics.median(warm) * 1000,
    }
    return out


def run(*, policies: list[int], stores: list[int], seconds: int, rate: int, interleave: int = 0) -> dict[str, Any]:
    results: dict[str, Any] = {"seconds": seconds, "rate": rate, "sizes": [], "stores": []}
    with tempfile.TemporaryDirectory(prefix="meshauth-bench-scaling-") as tmp:
        root = Path(tmp)
        for n in policies:
            results["sizes"].append(_size_case(n, seconds=seconds, rate=rate, root=root))
        for m in stores:
            results["stores"].append(_stores_case(m, seconds=seconds, rate=rate, root=root))
        if interleave and len(stores) > 1:
            results["interleaved"] = interleaved_stores(stores, rounds=interleave, root=root)
    return results
