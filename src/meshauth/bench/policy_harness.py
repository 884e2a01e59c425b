"""The policy service under benchmark and the tools that drive it: the servers started, their
environment, the admin API, and the three load generators (wrk closed loop, the open-loop driver, hey).
Shared by the default policy benchmark (``bench.policy``) and the scaling one (``bench.policy_scaling``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from meshauth.bench.loadgen import CLIENT_CORE, parse_wrk, pinned

TOKEN = "bench-admin-token"
BATCH = 64
LUA = """
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
local path = os.getenv("BENCH_PATH")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, path, nil, bodies[math.random(#bodies)])
end
done = function(summary, latency, requests)
  io.write(string.format("P95_US %d\\n", latency:percentile(95.0)))
end
"""


def admin(base: str, method: str, path: str, body: bytes) -> dict[str, Any]:
    req = urllib.request.Request(  # noqa: S310 - loopback URL built here
        base + path,
        data=body,
        method=method,
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=600) as resp:  # noqa: S310 - loopback
        result: dict[str, Any] = json.loads(resp.read())
        return result


def env(var: Path, port: int, **extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_") and k != "DATABASE_URL"}
    out.update(
        MESHAUTH_VAR_DIR=str(var),
        MESHAUTH_DATABASE_URL=f"sqlite:///{var / 'bench.db'}",
        MESHAUTH_ADMIN_TOKEN=TOKEN,
        MESHAUTH_POLICY_PORT=str(port),
    )
    out.update(extra)
    return out


def wrk(url: str, bodies: Path, path: str, script: Path, *, seconds: int, connections: int) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    env = {**os.environ, "BENCH_BODIES": str(bodies), "BENCH_PATH": path}
    out = subprocess.run(pinned(cmd, CLIENT_CORE), capture_output=True, text=True, check=True, env=env).stdout
    report = parse_wrk(out)
    p95 = re.search(r"P95_US (\d+)", out)  # printed by this benchmark's own wrk script
    return {
        "command": f"BENCH_BODIES={bodies.name} BENCH_PATH={path} " + " ".join(pinned(cmd, CLIENT_CORE)),
        "requests_per_s": report.rps,
        "p95_ms_closed_loop": int(p95.group(1)) / 1000 if p95 else None,
        "p99_ms_closed_loop": report.p99_ms,
        "non_2xx": report.non_2xx,
        "errors": report.socket_errors,
    }


def driver(url: str, bodies: Path, *, rate: int, seconds: int, stores: bool = False) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "meshauth.bench.policy_driver",
        url,
        "--bodies",
        str(bodies),
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        *(["--stores"] if stores else []),
    ]
    out = subprocess.run(pinned(cmd, CLIENT_CORE), capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(out)
    result["command"] = " ".join(pinned(["python", *cmd[1:]], CLIENT_CORE)).replace(str(bodies), bodies.name)
    return result


def hey(url: str, body: Path, *, rate: int, seconds: int) -> dict[str, Any]:
    workers = 10
    cmd = ["hey", "-z", f"{seconds}s", "-c", str(workers), "-q", str(rate // workers)]
    cmd += ["-m", "POST", "-T", "application/json", "-D", str(body), url]
    out = subprocess.run(pinned(cmd, CLIENT_CORE), capture_output=True, text=True, check=True).stdout

    def pct(p: int) -> float:
        m = re.search(rf"\s{p}% in ([0-9.]+) secs", out)
        return float(m.group(1)) * 1000 if m else float("nan")

    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    return {
        "command": " ".join(pinned(cmd, CLIENT_CORE)).replace(str(body), body.name),
        "achieved_rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
    }


SERVERS = {
    # the same app under granian's ASGI interface
    "asgi": ["-m", "meshauth", "serve", "policy", "--interface", "asgi"],
    # what ``meshauth serve policy`` runs (granian, RSGI)
    "rsgi": ["-m", "meshauth", "serve", "policy"],
}
