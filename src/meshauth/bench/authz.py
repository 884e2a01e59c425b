"""Authz-mode benchmark (issue 10): ext_authz HTTP at a fixed rate with the policy service asked.

Run: ``meshauth bench auth --authz`` (or ``python -m meshauth.bench.authz``), under
``flock /tmp/meshauth-bench.lock``. The auth service, the policy service and Valkey are pinned to core 0,
the load generator (wrk, paced) to core 1. Measured in one run, in this order: the floor app, the gate
in authn mode, the gate in authz mode **warm** (one path, so every decision is an L1 hit after the
first) and **cold** (every request a path never asked before: an L1 and L2 miss and a call to the
policy service, batched with whatever else is in flight), and cold again with L2 off
(``MESHAUTH_POLICY_L2_ENABLED=false``) to show what the Redis level costs when it cannot help, and
cold over aiohttp (``MESHAUTH_POLICY_TRANSPORT=aiohttp``; the default is the own ``H1Transport``). The
policy allows every request, so every answer must be a 200: any other status counts as an error.

Last, a separately labelled **split placement** (``authz_cold_split``): the same cold load with the
policy service and Valkey moved to core 1 (beside wrk), the gate alone on core 0 — closer to the
Phase 2 topology, where the gate, the policy service and Redis are separate pods. The issue's
placement (everything on core 0) stays the reference row; this one is in addition to it.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import tempfile
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

from meshauth.bench.auth import CLIENT_ID, SECRET, _create_client, _post_form
from meshauth.bench.client_setup import tree_cpu
from meshauth.bench.loadgen import CLIENT_CORE, SERVER_CORE, idle_poll, paced
from meshauth.bench.processes import free_port, process_tree, running, service_env
from meshauth.bench.results import paced_main
from meshauth.bench.valkey_here import local_valkey
from meshauth.config import Settings
from meshauth.db import migrate

ADMIN = "bench-admin-token"
MODES = ("idle_poll", "plain")
ROUTES = """
routes:
  - {method: GET, path: "/documents/{id}", action: read, resource: {type: Document, id: "{id}"}}
"""
POLICY = f'@id("bench-reads") permit(principal == Client::"{CLIENT_ID}", action == Action::"read", resource);'


def _push_policy(policy_url: str) -> None:
    body = json.dumps({"policies": POLICY, "activate": True}).encode()
    req = urllib.request.Request(f"{policy_url}/admin/stores/default/policies", data=body, method="POST")  # noqa: S310
    req.add_header("authorization", f"Bearer {ADMIN}")
    req.add_header("content-type", "application/json")
    urllib.request.urlopen(req, timeout=10).close()  # noqa: S310 - loopback


def _client_metrics(base: str) -> dict[str, float]:
    """The auth service's policy-client counters (cache lookups, calls, batch sizes) at this moment."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("meshauth_client_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            if "_bucket" not in name:
                out[name] = float(value)
    return out


def _pin(pids: list[int], core: str) -> None:
    """Move processes (all their threads) to ``core``."""
    for pid in pids:
        subprocess.run(["taskset", "-acp", core, str(pid)], check=False, capture_output=True)


def _runs(
    url: str,
    *,
    rate: int,
    seconds: int,
    connections: int,
    headers: dict[str, str],
    distinct: bool,
    procs: dict[str, int],
) -> Any:
    """Each mode's latency, and the CPU each of ``procs`` (name → pid, with its children) spent per
    request answered — the per-request cost that decides what one shared core sustains."""
    out = {}
    for mode in MODES:
        prefix = f"/ext_authz/documents/c{secrets.token_hex(4)}-" if distinct else None
        before = {name: tree_cpu(pid) for name, pid in procs.items()}
        with idle_poll(mode == "idle_poll"):
            latency = paced(
                url, rate=rate, connections=connections, seconds=seconds, headers=headers, distinct_prefix=prefix
            )
        out[mode] = asdict(latency)
        served = max(1, latency.requests)
        out[mode]["cpu_us_per_request"] = {
            name: round(1e6 * (tree_cpu(pid) - before[name]) / served, 1) for name, pid in procs.items()
        }
    return out


def run(*, rate: int = 3000, seconds: int = 10, connections: int = 30) -> dict[str, Any]:
    results: dict[str, Any] = {"rate": rate, "seconds": seconds, "connections": connections}
    runs = {"rate": rate, "seconds": seconds, "connections": connections}
    with tempfile.TemporaryDirectory(prefix="meshauth-bench-authz-") as tmp, local_valkey(int(SERVER_CORE)) as valkey:
        var = Path(tmp)
        (var / "routes.yaml").write_text(ROUTES)
        redis_url = valkey.url
        port, policy_port = free_port(), free_port()
        policy_url = f"http://127.0.0.1:{policy_port}"
        env = service_env(
            var,
            redis_url,
            MESHAUTH_AUTH_PORT=str(port),
            MESHAUTH_GRPC_PORT=str(free_port()),
            MESHAUTH_POLICY_PORT=str(policy_port),
        )
        authz_env = {
            **env,
            "MESHAUTH_ROUTES_FILE": str(var / "routes.yaml"),
            "MESHAUTH_POLICY_URLS": f'["{policy_url}"]',
        }
        migrate(Settings(database_url=env["MESHAUTH_DATABASE_URL"], redis_url=redis_url, var_dir=var).sqlalchemy_url)
        base = f"http://127.0.0.1:{port}"
        hot = f"{base}/ext_authz/documents/hot"

        floor_port = free_port()
        floor_cmd = (
            "from meshauth.granian_server import serve; serve('meshauth.bench.floor:create_app',"
            f" host='127.0.0.1', port={floor_port}, interface='asgi')"
        )
        floor_url = f"http://127.0.0.1:{floor_port}/"
        with running(["-c", floor_cmd], env, floor_url) as floor:
            results["floor"] = _runs(floor_url, headers={}, distinct=False, procs={"floor": floor.pid}, **runs)

        serve_policy = ["-m", "meshauth", "serve", "policy", "--no-migrate"]
        serve_auth = ["-m", "meshauth", "serve", "auth", "--no-migrate"]
        with running(serve_policy, env, f"{policy_url}/healthz") as policy:
            _push_policy(policy_url)
            with running(serve_auth, env, f"{base}/healthz") as gate:
                procs = {"gate": gate.pid, "policy": policy.pid, "valkey": valkey.pid}
                _create_client(base)
                token = _post_form(f"{base}/oauth2/token", {"grant_type": "client_credentials"}, (CLIENT_ID, SECRET))
                headers = {"authorization": f"Bearer {token['access_token']}"}
                urllib.request.urlopen(urllib.request.Request(hot, headers=headers), timeout=5).close()  # noqa: S310
                results["authn"] = _runs(hot, headers=headers, distinct=False, procs=procs, **runs)
            with running(serve_auth, authz_env, f"{base}/healthz") as gate:
                procs = {**procs, "gate": gate.pid}
                urllib.request.urlopen(urllib.request.Request(hot, headers=headers), timeout=5).close()  # noqa: S310
                results["authz_warm"] = _runs(hot, headers=headers, distinct=False, procs=procs, **runs)
                before = _client_metrics(base)
                results["authz_cold"] = _runs(base + "/", headers=headers, distinct=True, procs=procs, **runs)
                after = _client_metrics(base)
                results["cold_client_metrics"] = {k: after[k] - before.get(k, 0.0) for k in after}
                # Where cold checks fit on the shared core: the same load at a third of the rate.
                third = {**runs, "rate": rate // 3, "connections": max(1, connections // 3)}
                results["authz_cold_third"] = _runs(base + "/", headers=headers, distinct=True, procs=procs, **third)
            # The policy client's other transport (aiohttp; the default is H1Transport): the same cold load.
            aio = {**authz_env, "MESHAUTH_POLICY_TRANSPORT": "aiohttp"}
            with running(serve_auth, aio, f"{base}/healthz") as gate:
                procs = {**procs, "gate": gate.pid}
                results["authz_cold_aiohttp"] = _runs(base + "/", headers=headers, distinct=True, procs=procs, **runs)
            # What L2 costs when it cannot help: the same cold load with the Redis level off.
            no_l2 = {**authz_env, "MESHAUTH_POLICY_L2_ENABLED": "false"}
            with running(serve_auth, no_l2, f"{base}/healthz") as gate:
                procs = {**procs, "gate": gate.pid}
                results["authz_cold_no_l2"] = _runs(base + "/", headers=headers, distinct=True, procs=procs, **runs)
            # Split placement (a separate row, not a replacement): policy service and Valkey on core 1.
            moved = [*process_tree(policy.pid), valkey.pid]
            _pin(moved, CLIENT_CORE)
            try:
                with running(serve_auth, authz_env, f"{base}/healthz") as gate:
                    procs = {**procs, "gate": gate.pid}
                    urllib.request.urlopen(urllib.request.Request(hot, headers=headers), timeout=5).close()  # noqa: S310
                    split = _runs(base + "/", headers=headers, distinct=True, procs=procs, **runs)
                    results["authz_cold_split"] = split
            finally:
                _pin(moved, SERVER_CORE)
    return results


CASES = ("floor", "authn", "authz_warm", "authz_cold", "authz_cold_third", "authz_cold_aiohttp", "authz_cold_no_l2",
         "authz_cold_split")  # fmt: skip


def report(r: dict[str, Any]) -> str:
    rows = [
        f"Offered {r['rate']} req/s for {r['seconds']} s (open-loop Poisson arrivals, a pool of"
        f" {r['connections']} wrk connections; 'late': requests that found every connection busy);"
        " auth service, policy service and Valkey on core 0, wrk on core 1 (authz_cold_split: policy"
        " service and Valkey on core 1 beside wrk, the auth service alone on core 0).",
        "",
        "| case | cores | achieved req/s | p50 ms | p95 ms | p99 ms | errors | late | CPU µs per request |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        if case not in r:
            continue
        for mode in MODES:
            x = r[case][mode]
            cpu = ", ".join(f"{name} {us:.0f}" for name, us in x.get("cpu_us_per_request", {}).items())
            rows.append(
                f"| {case} | {mode} | {x['rate']:.0f} | {x['p50_ms']:.2f} | {x['p95_ms']:.2f} | {x['p99_ms']:.2f}"
                f" | {x['non_2xx']} | {x.get('late', 0)} | {cpu} |"
            )
    rows.append("")
    for mode in MODES:
        warm, authn = r["authz_warm"][mode]["p95_ms"], r["authn"][mode]["p95_ms"]
        rows.append(
            f"- {mode}: authz warm p95 / authn p95 = {warm / authn:.2f}× (target ≤ 1.3×, and ≤ 1 ms: {warm:.2f} ms);"
            f" cold p95 {r['authz_cold'][mode]['p95_ms']:.2f} ms (target ≤ 3 ms)"
        )
    m = r["cold_client_metrics"]
    count = m.get("meshauth_client_batch_size_count", 0.0)
    if count:
        rows.append(
            f"- cold runs: {count:.0f} calls to the policy service carried"
            f" {m.get('meshauth_client_batch_size_sum', 0.0):.0f} checks"
            f" ({m.get('meshauth_client_batch_size_sum', 0.0) / count:.2f} per call)"
        )
    rows += [
        "",
        "Commands:",
        f"- `{r['authz_warm']['idle_poll']['command']}`",
        f"- `{r['authz_cold']['idle_poll']['command']}`",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    paced_main("authz", __doc__, run, report)
