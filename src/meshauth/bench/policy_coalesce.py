"""Coalesced evaluation, off against on in one run (issue 11): ``meshauth bench policy --coalesce``.

The issue-3 store (1,000 policies, 11,020 entities) served by ``meshauth serve policy`` (RSGI) on
core 0, load from core 1, for each setting of ``MESHAUTH_POLICY_COALESCE_ENABLED``:

- max throughput of single ``evaluation`` at 16 in flight (wrk c=16, random bodies), and of 64-item
  ``evaluations`` (wrk c=8) for the 0.4× comparison;
- single ``evaluation`` at a fixed rate (open loop) → p50/p95/p99;

and the same pair again on the entity-loader path (``MESHAUTH_POLICY_SNAPSHOT_MAX_ENTITIES=0``, as
a store too large to keep whole is served), where the server's ``/metrics`` give SQL queries per
decision at 16 in flight (entity cache off, so every decision loads from SQL).
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from meshauth.bench import policy_coalesce_rounds
from meshauth.bench import policy_harness as harness
from meshauth.bench import policy_workload as workload
from meshauth.bench.policy_harness import BATCH, LUA, SERVERS, admin, driver, wrk
from meshauth.bench.processes import free_port, running

_SAMPLE = re.compile(r"^(meshauth_policy_(?:entity_queries|decisions)_total)(\{[^}]*\})? ([0-9.e+]+)$", re.M)


def _counters(base: str) -> dict[str, float]:
    """Entity queries and decisions answered so far, from the server's ``/metrics``."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    out: dict[str, float] = {"queries": 0.0, "decisions": 0.0}
    for name, _labels, value in _SAMPLE.findall(text):
        out["queries" if "entity_queries" in name else "decisions"] += float(value)
    return out


def _one_setting(
    var: Path, files: dict[str, Path], script: Path, *, seconds: int, rate: int, **env: str
) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"env": env}
    with running(SERVERS["rsgi"], harness.env(var, port, **env), base + "/healthz"):
        wrk(base, files["singles"], "/access/v1/evaluation", script, seconds=3, connections=16)  # warm-up
        before = _counters(base)
        single = wrk(base, files["singles"], "/access/v1/evaluation", script, seconds=seconds, connections=16)
        after = _counters(base)
        decisions = after["decisions"] - before["decisions"]
        single["queries_per_decision"] = (after["queries"] - before["queries"]) / decisions if decisions else None
        out["single_c16"] = single
        if "MESHAUTH_POLICY_ENTITY_CACHE_ENABLED" not in env:
            batch = wrk(base, files["batches"], "/access/v1/evaluations", script, seconds=seconds, connections=8)
            batch["decisions_per_s"] = batch["requests_per_s"] * BATCH
            out["batch64_c8"] = batch
            out["fixed_rate"] = driver(base + "/access/v1/evaluation", files["singles"], rate=rate, seconds=seconds)
    return out


@contextlib.contextmanager
def _prepared() -> Iterator[tuple[Path, dict[str, Path], Path]]:
    """The issue-3 store in a fresh SQLite database, and the request bodies: ``(var, files, script)``."""
    w = workload.build()
    with tempfile.TemporaryDirectory(prefix="meshauth-bench-coalesce-") as tmp:
        root = Path(tmp)
        files = {"singles": root / "singles.jsonl", "batches": root / "batch64.jsonl"}
        files["singles"].write_bytes(b"\n".join(workload.single_bodies(20_000)) + b"\n")
        files["batches"].write_bytes(b"\n".join(workload.batch_bodies(2_000, BATCH)) + b"\n")
        script = root / "random-body.lua"
        script.write_text(LUA)
        var = root / "var"
        var.mkdir()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with running(SERVERS["asgi"], harness.env(var, port), base + "/healthz"):
            admin(base, "POST", "/admin/stores/default/policies", json.dumps({"policies": w.policies}).encode())
            admin(base, "POST", "/admin/stores/default/entities", json.dumps(w.entities).encode())
        yield var, files, script


def run(*, seconds: int, rate: int) -> dict[str, Any]:
    results: dict[str, Any] = {"seconds": seconds, "rate": rate}
    with _prepared() as (var, files, script):
        loader = {"MESHAUTH_POLICY_SNAPSHOT_MAX_ENTITIES": "0", "MESHAUTH_POLICY_ENTITY_CACHE_ENABLED": "false"}
        cached = {"MESHAUTH_POLICY_SNAPSHOT_MAX_ENTITIES": "0"}
        for path, extra in (("snapshot", {}), ("loader_cached", cached), ("loader_sql", loader)):
            for coalesce in ("false", "true"):
                t = time.perf_counter()
                results[f"{path}_{coalesce}"] = _one_setting(
                    var, files, script, seconds=seconds, rate=rate, MESHAUTH_POLICY_COALESCE_ENABLED=coalesce, **extra
                )
                results[f"{path}_{coalesce}"]["wall_s"] = time.perf_counter() - t
    return results


def interleaved(*, rounds: int, seconds: int, rate: int, priority: bool) -> dict[str, Any]:
    """Both settings served at once, alternating rounds, with the floors (``policy_coalesce_rounds``)."""
    with _prepared() as (var, files, script):
        return policy_coalesce_rounds.run(
            var, files, script, rounds=rounds, seconds=seconds, rate=rate, priority=priority
        )


def report(r: dict[str, Any]) -> str:
    lines = [
        "| path | coalescing | single c=16 decisions/s | SQL queries/decision | 64-item c=8 decisions/s "
        "| single / batch | fixed rate p50 / p95 / p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    commands: list[str] = []
    for path in ("snapshot", "loader_cached", "loader_sql"):
        for coalesce in ("false", "true"):
            m = r.get(f"{path}_{coalesce}")
            if m is None:
                continue
            single = m["single_c16"]
            qpd = single["queries_per_decision"]
            row = f"| {path} | {'on' if coalesce == 'true' else 'off'} | {single['requests_per_s']:,.0f} "
            row += f"| {qpd:.3f} |" if qpd is not None else "| - |"
            if "batch64_c8" in m:
                batch = m["batch64_c8"]["decisions_per_s"]
                fr = m["fixed_rate"]
                row += f" {batch:,.0f} | {single['requests_per_s'] / batch:.2f} "
                row += f"| {fr['p50_ms']:.2f} / **{fr['p95_ms']:.2f}** / {fr['p99_ms']:.2f} ms"
                row += f" at {fr['offered_rps']:.0f} req/s |"
            else:
                row += " - | - | - |"
            lines.append(row)
            commands.append(f"    # {path}, coalescing {coalesce}: {' '.join(f'{k}={v}' for k, v in m['env'].items())}")
            commands.append(f"    {single['command']}")
        on, off = r.get(f"{path}_true"), r.get(f"{path}_false")
        if on and off:
            ratio = on["single_c16"]["requests_per_s"] / off["single_c16"]["requests_per_s"]
            lines.append(f"| {path} | on / off | **{ratio:.2f}×** | | | | |")
    return "\n".join([*lines, "", "Commands:", "", *commands])
