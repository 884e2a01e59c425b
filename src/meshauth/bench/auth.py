"""Auth service benchmark: the ext_authz HTTP check at a fixed rate, warm and cold, against the floor.

Run: ``meshauth bench auth`` (or ``python -m meshauth.bench.auth``). Needs ``hey`` and ``wrk``
(``apt-get install hey wrk``). The service runs on core 0, the load generator on core 1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

from meshauth.auth.service import AuthService
from meshauth.bench.loadgen import hey, idle_poll, paced, wrk
from meshauth.bench.processes import free_port, running, service_env
from meshauth.bench.results import paced_main
from meshauth.bench.valkey_here import local_valkey
from meshauth.config import Settings
from meshauth.db import migrate

CLIENT_ID = "bench"
SECRET = "bench-secret-0123"


def _post_form(url: str, form: dict[str, str], auth: tuple[str, str]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), method="POST")  # noqa: S310
    req.add_header("authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
        data: dict[str, Any] = json.loads(resp.read())
    return data


def _create_client(base: str) -> None:
    body = json.dumps(
        {"client_id": CLIENT_ID, "client_secret": SECRET, "scopes": ["read"], "grant_types": ["client_credentials"]}
    ).encode()
    req = urllib.request.Request(f"{base}/admin/clients", data=body, method="POST")  # noqa: S310
    req.add_header("authorization", "Bearer bench-admin-token")
    req.add_header("content-type", "application/json")
    urllib.request.urlopen(req, timeout=10).close()  # noqa: S310 - loopback


async def _cold_verify_cost(settings: Settings, redis_url: str, n: int) -> float:
    """Microseconds per full verification (cache off): header checks, key lookup, ES256 verify, claims."""
    service = AuthService(settings.model_copy(update={"jwt_cache_enabled": False}), redis_url=redis_url)
    await service.start()
    try:
        tokens = [service.issuer.issue(subject=f"s{i}", client_id="bench", scope="read").token for i in range(n)]
        start = time.perf_counter()
        for token in tokens:
            await service.verifier.verify(token)
        return (time.perf_counter() - start) / n * 1e6
    finally:
        await service.stop()


async def _revocation_propagation(settings: Settings, redis_url: str, samples: int) -> list[float]:
    """Milliseconds from revoke() on replica A to replica B's mirror holding the jti."""
    a = AuthService(settings, redis_url=redis_url)
    b = AuthService(settings, redis_url=redis_url)
    await a.start()
    await b.start()
    try:
        out = []
        for i in range(samples):
            jti = f"bench-{i}-{time.monotonic_ns()}"
            start = time.perf_counter()
            await a.denylist.revoke(jti, int(time.time()) + 60)
            while jti not in b.denylist:
                await asyncio.sleep(0.0001)
            out.append((time.perf_counter() - start) * 1000)
        return out
    finally:
        await a.stop()
        await b.stop()


MODES = ("idle_poll", "plain")
INTERFACES = ("asgi",)  # the auth service is served over ASGI only (see cli/serve.py)


def _latency_runs(url: str, *, rate: int, seconds: int, connections: int, headers: dict[str, str]) -> dict[str, Any]:
    """The same paced run with the cores kept out of idle, and without."""
    out = {}
    for mode in MODES:
        with idle_poll(mode == "idle_poll"):
            out[mode] = asdict(paced(url, rate=rate, connections=connections, seconds=seconds, headers=headers))
    return out


def run(*, rate: int = 3000, seconds: int = 10, connections: int = 30) -> dict[str, Any]:
    results: dict[str, Any] = {"rate": rate, "seconds": seconds, "connections": connections}
    with tempfile.TemporaryDirectory(prefix="meshauth-bench-") as tmp, local_valkey() as valkey:
        var = Path(tmp)
        redis_url = valkey.url
        port = free_port()
        env = service_env(var, redis_url, MESHAUTH_AUTH_PORT=str(port), MESHAUTH_GRPC_PORT=str(free_port()))
        settings = Settings(database_url=env["MESHAUTH_DATABASE_URL"], redis_url=redis_url, var_dir=var)
        migrate(settings.sqlalchemy_url)
        base = f"http://127.0.0.1:{port}"
        gate = f"{base}/ext_authz/orders/42"
        runs = {"rate": rate, "seconds": seconds, "connections": connections}
        token = ""

        for interface in INTERFACES:
            floor_port = free_port()
            floor_cmd = (
                "from meshauth.granian_server import serve; serve('meshauth.bench.floor:create_app',"
                f" host='127.0.0.1', port={floor_port}, interface={interface!r})"
            )
            floor_url = f"http://127.0.0.1:{floor_port}/"
            with running(["-c", floor_cmd], env, floor_url):
                results[f"floor_{interface}"] = _latency_runs(floor_url, headers={}, **runs)
                results[f"max_throughput_floor_{interface}"] = asdict(
                    wrk(floor_url, connections=32, seconds=seconds, headers={})
                )

            serve_auth = ["-m", "meshauth", "serve", "auth", "--no-migrate", "--interface", interface]
            with running(serve_auth, env, f"{base}/healthz"):
                if not token:
                    _create_client(base)
                    form = {"grant_type": "client_credentials"}
                    token = _post_form(f"{base}/oauth2/token", form, (CLIENT_ID, SECRET))["access_token"]
                headers = {"authorization": f"Bearer {token}"}
                urllib.request.urlopen(urllib.request.Request(gate, headers=headers), timeout=5).close()  # noqa: S310
                results[f"warm_{interface}"] = _latency_runs(gate, headers=headers, **runs)
                results[f"max_throughput_warm_{interface}"] = asdict(
                    wrk(gate, connections=32, seconds=seconds, headers=headers)
                )
                if interface == INTERFACES[0]:
                    with idle_poll():
                        results["warm_hey"] = asdict(hey(gate, rate=rate, workers=12, seconds=seconds, headers=headers))

        cold_env = {**env, "MESHAUTH_JWT_CACHE_ENABLED": "false"}
        with running(
            ["-m", "meshauth", "serve", "auth", "--no-migrate", "--interface", "asgi"], cold_env, f"{base}/healthz"
        ):
            results["cache_off_asgi"] = _latency_runs(gate, headers=headers, **runs)

        results["cold_verify_us"] = asyncio.run(_cold_verify_cost(settings, redis_url, 2000))
        prop = asyncio.run(_revocation_propagation(settings, redis_url, 300))
        prop.sort()
        results["revocation_propagation_ms"] = {
            "p50": statistics.median(prop),
            "p99": prop[int(len(prop) * 0.99) - 1],
            "max": prop[-1],
            "samples": len(prop),
        }
    return results


def report(r: dict[str, Any]) -> str:
    rows = [
        f"Offered {r['rate']} req/s for {r['seconds']} s from {r['connections']} paced wrk connections.",
        "",
        "| case | interface | cores | achieved req/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cases = [(f"{c}_{i}", c, i) for i in INTERFACES for c in ("floor", "warm")] + [
        ("cache_off_asgi", "cache_off", "asgi")
    ]
    for key, name, interface in cases:
        for mode in MODES:
            x = r[key][mode]
            rows.append(
                f"| {name} | {interface} | {mode} | {x['rate']:.0f} | {x['p50_ms']:.2f} | {x['p95_ms']:.2f}"
                f" | {x['p99_ms']:.2f} | {x['non_2xx']} |"
            )
    h = r["warm_hey"]
    p = r["revocation_propagation_ms"]
    rows.append("")
    for i in INTERFACES:
        ratio = {m: r[f"warm_{i}"][m]["p95_ms"] / r[f"floor_{i}"][m]["p95_ms"] for m in MODES}
        tw, tf = r[f"max_throughput_warm_{i}"], r[f"max_throughput_floor_{i}"]
        rows += [
            f"- {i}: warm p95 / floor p95 {ratio['idle_poll']:.2f}× (idle_poll), {ratio['plain']:.2f}× (plain);"
            f" max throughput (wrk c=32, closed loop) warm {tw['rps']:.0f} req/s, floor {tf['rps']:.0f} req/s",
        ]
    rows += [
        f"- cross-check, hey -c 12 -q {r['rate'] // 12} (asgi, idle_poll): p50 {h['p50_ms']:.2f} ms,"
        f" p95 {h['p95_ms']:.2f} ms, p99 {h['p99_ms']:.2f} ms, {h['rate']:.0f} req/s",
        f"- cold verification (ES256, in-process, cache off): {r['cold_verify_us']:.0f} µs per token",
        f"- revocation A→B propagation: p50 {p['p50']:.2f} ms, p99 {p['p99']:.2f} ms,"
        f" max {p['max']:.2f} ms ({p['samples']} samples)",
        "",
        "Commands:",
        f"- `{r['warm_asgi']['idle_poll']['command']}`",
        f"- `{h['command']}`",
        f"- `{r['max_throughput_warm_asgi']['command']}`",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    paced_main("auth", __doc__, run, report)
