"""Authz mode warm against authn mode, alternated: ``meshauth bench auth --authz --warm-rounds N``.

Issue 10's warm targets are a p95 ≤ 1 ms and a ratio — authz warm p95 ≤ 1.3× authn p95, same run.
``meshauth bench auth --authz`` gives one ratio per run, from two cases a minute apart, and on this
machine a p95 moves by more than the 30 % between runs (docs/performance.md, issue 10). This runs
the two cases alone, alternated, ``rounds`` times on one policy service and Valkey, the same placement
and load as ``bench.authz`` (everything on core 0, paced wrk on core 1): each round starts the gate
in authn mode, measures it (idle-polled, then plain), stops it, then the same in authz mode (one
path: every check after the first an L1 hit) — so a slow minute of the machine falls on both — and
reports every round's p50/p95/p99, its ratio, and the ratios' median and spread.
"""

from __future__ import annotations

import statistics
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from meshauth.bench.auth import CLIENT_ID, SECRET, _create_client, _post_form
from meshauth.bench.authz import MODES, ROUTES, _push_policy, _runs
from meshauth.bench.loadgen import SERVER_CORE
from meshauth.bench.processes import free_port, running, service_env
from meshauth.bench.valkey_here import local_valkey
from meshauth.config import Settings
from meshauth.db import migrate

CASES = ("authn", "authz_warm")


def run(*, rate: int = 3000, seconds: int = 10, connections: int = 30, rounds: int = 3) -> dict[str, Any]:
    runs = {"rate": rate, "seconds": seconds, "connections": connections}
    results: dict[str, Any] = {**runs, "rounds": []}
    with tempfile.TemporaryDirectory(prefix="meshauth-bench-warm-") as tmp, local_valkey(int(SERVER_CORE)) as valkey:
        var = Path(tmp)
        (var / "routes.yaml").write_text(ROUTES)
        redis_url = valkey.url
        port, policy_port = free_port(), free_port()
        policy_url = f"http://127.0.0.1:{policy_port}"
        env = service_env(
            var, redis_url, MESHAUTH_AUTH_PORT=str(port), MESHAUTH_GRPC_PORT=str(free_port()),
            MESHAUTH_POLICY_PORT=str(policy_port),
        )  # fmt: skip
        envs = {
            "authn": env,
            "authz_warm": {
                **env,
                "MESHAUTH_ROUTES_FILE": str(var / "routes.yaml"),
                "MESHAUTH_POLICY_URLS": f'["{policy_url}"]',
            },
        }
        migrate(Settings(database_url=env["MESHAUTH_DATABASE_URL"], redis_url=redis_url, var_dir=var).sqlalchemy_url)
        base = f"http://127.0.0.1:{port}"
        hot = f"{base}/ext_authz/documents/hot"
        serve_auth = ["-m", "meshauth", "serve", "auth", "--no-migrate"]
        with running(["-m", "meshauth", "serve", "policy", "--no-migrate"], env, f"{policy_url}/healthz") as policy:
            _push_policy(policy_url)
            headers: dict[str, str] = {}
            for _ in range(rounds):
                one: dict[str, Any] = {}
                for case in CASES:
                    with running(serve_auth, envs[case], f"{base}/healthz") as gate:
                        if not headers:
                            _create_client(base)
                            form = {"grant_type": "client_credentials"}
                            token = _post_form(f"{base}/oauth2/token", form, (CLIENT_ID, SECRET))["access_token"]
                            headers = {"authorization": f"Bearer {token}"}
                        urllib.request.urlopen(urllib.request.Request(hot, headers=headers), timeout=5).close()  # noqa: S310
                        procs = {"gate": gate.pid, "policy": policy.pid, "valkey": valkey.pid}
                        one[case] = _runs(hot, headers=headers, distinct=False, procs=procs, **runs)
                results["rounds"].append(one)
    return results


def ratios(r: dict[str, Any], mode: str, percentile: str = "p95_ms") -> list[float]:
    """Each round's authz warm / authn ratio of ``percentile`` in ``mode``."""
    return [x["authz_warm"][mode][percentile] / x["authn"][mode][percentile] for x in r["rounds"]]


def report(r: dict[str, Any]) -> str:
    rows = [
        f"Offered {r['rate']} req/s for {r['seconds']} s from {r['connections']} paced wrk connections, auth service,"
        f" policy service and Valkey on core 0, wrk on core 1; {len(r['rounds'])} rounds, authn then authz warm.",
        "",
        "| round | cores | authn p50 / p95 / p99 ms | authz warm p50 / p95 / p99 ms | p95 ratio | errors |",
        "|---|---|---|---|---|---|",
    ]
    for i, x in enumerate(r["rounds"], 1):
        for mode in MODES:
            n, w = x["authn"][mode], x["authz_warm"][mode]
            rows.append(
                f"| {i} | {mode} | {n['p50_ms']:.2f} / {n['p95_ms']:.2f} / {n['p99_ms']:.2f}"
                f" | {w['p50_ms']:.2f} / {w['p95_ms']:.2f} / {w['p99_ms']:.2f}"
                f" | {w['p95_ms'] / n['p95_ms']:.2f}× | {n['non_2xx']} / {w['non_2xx']} |"
            )
    rows.append("")
    for mode in MODES:
        got = ratios(r, mode)
        warm = [x["authz_warm"][mode]["p95_ms"] for x in r["rounds"]]
        rows.append(
            f"- {mode}: p95 ratio median {statistics.median(got):.2f}× (range {min(got):.2f}–{max(got):.2f}×,"
            f" target ≤ 1.3×); authz warm p95 median {statistics.median(warm):.2f} ms (target ≤ 1 ms)"
        )
    return "\n".join(rows)
