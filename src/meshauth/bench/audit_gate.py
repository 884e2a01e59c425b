"""The gate with auditing on and off: ``meshauth bench auth --audit-compare``.

The warm ext_authz check at a fixed offered rate (paced wrk, the same run as ``meshauth bench auth``),
the service pinned to the server core and Valkey to the load generator's, the modes alternating
``rounds`` times so that drift on a shared machine hits them alike; the answer is the ratio of the
p95s. With auditing on, every check publishes one ``gate.decision`` event (to a private Valkey; no
worker runs: it would run elsewhere).

Placement, honestly: everything auditing adds to the service (the hook, the flush task, its Redis
connection) runs in the service process on the server core; only Valkey's own work — in production on
another host — shares the load generator's core. Each run reports the CPU the service and Valkey
used, so the cost that moved is visible, and the events the service spooled: a run whose producer
found Redis unresponsive measured the failure path (spooling to disk), not the healthy one. Valkey
runs in the benchmark's own session (``valkey_here``): daemonized, the load generator core's
idle-poll spinner starved it for seconds and most audited runs spooled (docs/performance.md, issue
12, "Fifth pass").
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import redis

from meshauth.bench.auth import CLIENT_ID, SECRET, _create_client, _post_form
from meshauth.bench.client_setup import tree_cpu
from meshauth.bench.loadgen import CLIENT_CORE, idle_poll, paced
from meshauth.bench.processes import free_port, process_tree, running, service_env
from meshauth.bench.valkey_here import local_valkey
from meshauth.bus.events import batch_size
from meshauth.config import Settings
from meshauth.db import migrate

SERVE = ["-m", "meshauth", "serve", "auth", "--no-migrate", "--interface", "asgi"]
# Auditing on with the default flush pacing (a flush at most every 50 ms: ``bus_flush_gap``), on with
# the earlier pacing (every 5 ms whatever the rate: gap 0) or longer fixed intervals, and off: each
# flush is one round trip to Redis whatever its size, so fewer flushes cost the service less.
ON = {"MESHAUTH_AUDIT_ENABLED": "true"}
MODES = {
    "on": ON,
    "on_no_gap": {**ON, "MESHAUTH_BUS_FLUSH_GAP": "0"},
    "on_gap_20ms": {**ON, "MESHAUTH_BUS_FLUSH_GAP": "0.02"},
    "on_flush_10ms": {**ON, "MESHAUTH_BUS_FLUSH_GAP": "0", "MESHAUTH_BUS_FLUSH_INTERVAL": "0.01"},
    "on_flush_20ms": {**ON, "MESHAUTH_BUS_FLUSH_GAP": "0", "MESHAUTH_BUS_FLUSH_INTERVAL": "0.02"},
    "off": {"MESHAUTH_AUDIT_ENABLED": "false"},
}
DEFAULT_MODES = ("on", "on_no_gap", "off")


def rotated(modes: tuple[str, ...], round_index: int) -> tuple[str, ...]:
    """The modes' order in a round: rotated each round, so none always runs first (or last)."""
    k = round_index % len(modes)
    return modes[k:] + modes[:k]


def run(
    *,
    rate: int = 3000,
    seconds: int = 10,
    connections: int = 30,
    rounds: int = 6,
    modes: tuple[str, ...] = DEFAULT_MODES,
) -> dict[str, Any]:
    unknown = set(modes) - set(MODES)
    if unknown or "off" not in modes:
        raise ValueError(f"modes must include off and be among {sorted(MODES)}; unknown: {sorted(unknown)}")
    out: dict[str, Any] = {"rate": rate, "seconds": seconds, "connections": connections, "modes": list(modes)}
    out.update({mode: [] for mode in modes})
    # Valkey beside the load generator, not on the service's core: in a cluster Redis runs on another
    # host, and its wake-ups would otherwise be charged to the service's latency.
    with tempfile.TemporaryDirectory(prefix="meshauth-bench-") as tmp, local_valkey(int(CLIENT_CORE)) as valkey:
        var = Path(tmp)
        redis_url = valkey.url
        port = free_port()
        env = service_env(var, redis_url, MESHAUTH_AUTH_PORT=str(port), MESHAUTH_GRPC_PORT=str(free_port()))
        migrate(Settings(database_url=env["MESHAUTH_DATABASE_URL"], redis_url=redis_url, var_dir=var).sqlalchemy_url)
        base = f"http://127.0.0.1:{port}"
        gate = f"{base}/ext_authz/orders/42"
        headers: dict[str, str] = {}
        for i in range(rounds):
            for mode in rotated(modes, i):
                mode_env = {**env, **MODES[mode]}
                with running(SERVE, mode_env, f"{base}/healthz") as proc:
                    if not headers:
                        _create_client(base)
                        form = {"grant_type": "client_credentials"}
                        token = _post_form(f"{base}/oauth2/token", form, (CLIENT_ID, SECRET))["access_token"]
                        headers = {"authorization": f"Bearer {token}"}
                    req = urllib.request.Request(gate, headers=headers)  # noqa: S310 - loopback
                    urllib.request.urlopen(req, timeout=5).close()  # noqa: S310
                    before = [tree_cpu(pid) for pid in (proc.pid, valkey.pid)]
                    switches = context_switches(proc.pid)
                    with idle_poll():
                        result = paced(gate, rate=rate, connections=connections, seconds=seconds, headers=headers)
                    used = [tree_cpu(pid) - b for pid, b in zip((proc.pid, valkey.pid), before, strict=True)]
                    row = asdict(result)
                    row["service_cpu_us_per_request"] = sum(used[:-1]) / max(result.requests, 1) * 1e6
                    row["valkey_cpu_s"] = used[-1]
                    row["load_average"] = os.getloadavg()[0]
                    row["switches_per_request"] = (context_switches(proc.pid) - switches) / max(result.requests, 1)
                    row["spooled"] = bus_counter(base, "meshauth_bus_spooled_total")
                    out[mode].append(row)
        client = redis.Redis(port=valkey.port)
        out["events_in_stream"] = events_in_streams(client, [f"meshauth:bus:audit:{n}" for n in range(4)])
        client.close()
    return out


def events_in_streams(client: redis.Redis, streams: list[str]) -> int:
    """Events (not entries: an entry is a batch, ``bus.events.batches``) held by ``streams``."""
    total = 0
    for stream in streams:
        for _, fields in cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(stream)):
            total += batch_size(fields.get(b"d", b""))
    return total


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of ``pid`` and its children."""
    total = 0
    for p in process_tree(pid):
        for task in Path(f"/proc/{p}/task").iterdir():
            with contextlib.suppress(OSError):
                for line in (task / "status").read_text().splitlines():
                    if "ctxt_switches:" in line:
                        total += int(line.split()[1])
    return total


def bus_counter(base: str, name: str) -> int:
    """A bus counter's total from the service's ``/metrics`` (0 when it has no sample)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines() if line.startswith(name + "{"))


def report(r: dict[str, Any]) -> str:
    modes: list[str] = r.get("modes", list(MODES))
    rounds = len(r["off"])
    rows = [
        f"Gate (warm ext_authz, asgi) at {r['rate']} req/s offered for {r['seconds']} s, {rounds} rounds"
        " (the modes' order rotated each round):",
        "",
        "| round | audit | achieved req/s | p50 ms | p95 ms | p99 ms | errors | service CPU µs/req | Valkey CPU s"
        " | spooled | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i in range(rounds):
        for mode in modes:
            x = r[mode][i]
            rows.append(
                f"| {i + 1} | {mode} | {x['rate']:.0f} | {x['p50_ms']:.2f} | {x['p95_ms']:.2f} | {x['p99_ms']:.2f}"
                f" | {x['non_2xx']} | {x['service_cpu_us_per_request']:.1f} | {x['valkey_cpu_s']:.2f}"
                f" | {x.get('spooled', '-')} | {x.get('load_average', 0):.1f} |"
            )
    rows += ratio_summary(r, modes, rounds)
    return "\n".join(rows)


def ratio_summary(r: dict[str, Any], modes: Sequence[str], rounds: int) -> list[str]:
    """The lines under a comparison's table (the gate's and the policy service's): each round's p95
    ratio to auditing off, then each mode's medians and spread, the events published, the command."""
    rows = [""]
    audited = [mode for mode in modes if mode != "off"]
    for i in range(rounds):
        ratios = ", ".join(f"{mode} {r[mode][i]['p95_ms'] / r['off'][i]['p95_ms']:.2f}×" for mode in audited)
        rows.append(f"- round {i + 1} p95 on / off: {ratios}")
    median = {mode: statistics.median(x["p95_ms"] for x in r[mode]) for mode in modes}
    for mode in modes:
        per_round = sorted(r[mode][i]["p95_ms"] / r["off"][i]["p95_ms"] for i in range(rounds))
        rows.append(
            f"- {mode}: median p95 {median[mode]:.2f} ms ({median[mode] / median['off']:.3f}× off's median);"
            f" per-round ratio median {statistics.median(per_round):.2f}×,"
            f" range {per_round[0]:.2f}–{per_round[-1]:.2f}×;"
            f" median CPU µs/req {statistics.median(x['service_cpu_us_per_request'] for x in r[mode]):.1f}"
            f", context switches/req {statistics.median(x.get('switches_per_request', 0) for x in r[mode]):.2f}"
        )
    rows += [
        f"- events published by the audited runs: {r['events_in_stream']}",
        f"- command: `{r['off'][0]['command']}`",
    ]
    return rows
