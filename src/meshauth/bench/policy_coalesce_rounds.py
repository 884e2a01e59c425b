"""Coalescing off against on, served at once and measured in alternating rounds (issue 11):
``meshauth bench policy --coalesce --interleave N``.

On this shared two-core machine a setting measured minutes after the other mostly measures the
neighbours: p95 at 1,000 req/s moved 0.7 → 9 ms between consecutive runs of the same code. So both
settings are served at the same time (fresh ``meshauth serve policy`` processes over one database,
both on core 0) and measured in alternating short rounds; each round gives a same-moment ratio, and
the report gives every round, not just a mean. Per round and setting:

- fixed rate (the open-loop driver): p50/p95/p99, and the server's CPU time per request (its
  processes' user+system time over the round / requests) — unlike latency, barely moved by the
  neighbours, so it shows a per-request cost difference directly;
- wrk c=16 single ``evaluation`` and c=8 64-item ``evaluations``: decisions/s;
- the floors, same rounds: ``bench.floor`` (answers without reading the body) and
  ``bench.policy_floor`` (reads the body, answers a fixed decision), wrk c=16.

``priority=True`` runs the servers and the load generators at nice -10 (both settings alike), so the
neighbours' test suites take less of the measured cores; the report says which.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from meshauth.bench import policy_harness as harness
from meshauth.bench.client_setup import tree_cpu
from meshauth.bench.loadgen import CLIENT_CORE, pinned
from meshauth.bench.policy_harness import BATCH, SERVERS, wrk
from meshauth.bench.processes import free_port, running

_FLOORS = {"floor": "meshauth.bench.floor:create_app", "floor_body": "meshauth.bench.policy_floor:create_app"}
NICE = -10


def _threads(pid: int) -> list[int]:
    """Every thread of ``pid`` and of its descendants (granian serves from a child process): nice
    values are per thread on Linux."""
    return [int(t.name) for p in _processes(pid) for t in Path(f"/proc/{p}/task").iterdir()]


def _processes(pid: int) -> list[int]:
    """``pid`` and its descendant processes."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out += _processes(int(child))
    return out


cpu_seconds = tree_cpu  # user + system CPU of a process tree so far


_COALESCED = re.compile(
    r"^meshauth_policy_coalesced_(inline_total|batch_size_count|batch_size_sum|batch_size_bucket\{le=\"1.0\"\}) (\S+)$",
    re.M,
)


def coalesced_counts(exposition: str) -> dict[str, float]:
    """A coalescing server's counts in its ``/metrics`` text: requests decided at once alone
    (``inline_total``), batches (``batch_size_count``), requests in them (``batch_size_sum``), batches
    of one (``batch_size_bucket_1``)."""
    return {n.split("{")[0] + ("_1" if "{" in n else ""): float(v) for n, v in _COALESCED.findall(exposition)}


def _coalesced(base: str) -> dict[str, float]:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:  # noqa: S310 - loopback
        return coalesced_counts(resp.read().decode())


def since(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def _prioritize(pid: int) -> None:
    for tid in _threads(pid):
        with contextlib.suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, tid, NICE)


def _driver(url: str, bodies: Path, *, rate: int, seconds: int, priority: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "meshauth.bench.policy_driver", url, "--bodies", str(bodies)]
    cmd += ["--rate", str(rate), "--seconds", str(seconds)]
    cmd = pinned(cmd, CLIENT_CORE)
    if priority:
        cmd = ["nice", "-n", str(NICE), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    import json

    result: dict[str, Any] = json.loads(out)
    result["command"] = " ".join(cmd).replace(sys.executable, "python").replace(str(bodies), bodies.name)
    return result


def run(
    var: Path, files: dict[str, Path], script: Path, *, rounds: int, seconds: int, rate: int, priority: bool
) -> dict[str, Any]:
    settings = {"off": "false", "on": "true"}
    out: dict[str, Any] = {"rounds": rounds, "seconds": seconds, "rate": rate, "priority": priority}
    if priority:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)  # wrk, started from here, inherits it
    with contextlib.ExitStack() as stack:
        bases: dict[str, str] = {}
        pids: dict[str, int] = {}
        for name, on in settings.items():
            port = free_port()
            bases[name] = f"http://127.0.0.1:{port}"
            env = harness.env(var, port, MESHAUTH_POLICY_COALESCE_ENABLED=on)
            pids[name] = stack.enter_context(running(SERVERS["rsgi"], env, bases[name] + "/healthz")).pid
        for name, factory in _FLOORS.items():
            port = free_port()
            bases[name] = f"http://127.0.0.1:{port}"
            code = f"from meshauth.granian_server import serve; serve({factory!r}, host='127.0.0.1', port={port}"
            code += ", interface='rsgi')"
            env = harness.env(var, port)
            pids[name] = stack.enter_context(running(["-c", code], env, bases[name] + "/")).pid
        if priority:
            for pid in pids.values():
                _prioritize(pid)
        for base in bases.values():  # warm-up: stores loaded, snapshots built, caches filled
            wrk(base, files["singles"], "/access/v1/evaluation", script, seconds=3, connections=16)
        for n in range(rounds):
            # Off first in even rounds, on first in odd ones: the first of a pair follows the previous
            # round's floors and batches on an idle-then-busy core, and a fixed order made that a
            # per-setting bias (stop 22: "p95 worse in 3 of 3 rounds" with off always measured first).
            order = list(settings) if n % 2 == 0 else list(reversed(settings))
            out.setdefault("order", []).append(order)
            for name in order:
                counts = _coalesced(bases[name]) if name == "on" else None
                before = cpu_seconds(pids[name])
                fr = _driver(
                    bases[name] + "/access/v1/evaluation",
                    files["singles"],
                    rate=rate,
                    seconds=seconds,
                    priority=priority,
                )
                fr["cpu_us_per_request"] = (cpu_seconds(pids[name]) - before) / fr["requests"] * 1e6
                if counts is not None:
                    fr["coalesced"] = since(counts, _coalesced(bases[name]))
                fr["load"] = os.getloadavg()[0]
                out.setdefault(f"fixed_{name}", []).append(fr)
            for name in [*order, *_FLOORS]:
                counts = _coalesced(bases[name]) if name == "on" else None
                before = cpu_seconds(pids[name])
                single = wrk(
                    bases[name], files["singles"], "/access/v1/evaluation", script, seconds=seconds, connections=16
                )
                single["cpu_us_per_request"] = (
                    (cpu_seconds(pids[name]) - before) / max(1.0, single["requests_per_s"] * seconds) * 1e6
                )
                single["load"] = os.getloadavg()[0]
                if counts is not None:
                    single["coalesced"] = since(counts, _coalesced(bases[name]))
                out.setdefault(f"single_{name}", []).append(single)
                if name in settings:
                    batch = wrk(
                        bases[name], files["batches"], "/access/v1/evaluations", script, seconds=seconds, connections=8
                    )
                    batch["decisions_per_s"] = batch["requests_per_s"] * BATCH
                    out.setdefault(f"batch_{name}", []).append(batch)
    return out


def report(r: dict[str, Any]) -> str:
    lines = [
        f"Interleaved: {r['rounds']} rounds of {r['seconds']} s per measurement, fixed rate {r['rate']} req/s"
        + (f", servers and load generators at nice {NICE}" if r["priority"] else ""),
        "",
        "| round | first | load | p95 off → on (ms) | p99 off → on (ms) | CPU µs/request at the fixed rate off → on "
        "| single c=16 off → on | on / off | 64-item batch off / on | single / batch off → on "
        "| floor (no body) | floor (body read) | on / floor (body read) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in range(r["rounds"]):
        fo, fn = r["fixed_off"][n], r["fixed_on"][n]
        so, sn = r["single_off"][n]["requests_per_s"], r["single_on"][n]["requests_per_s"]
        bo, bn = r["batch_off"][n]["decisions_per_s"], r["batch_on"][n]["decisions_per_s"]
        fl, fb = r["single_floor"][n]["requests_per_s"], r["single_floor_body"][n]["requests_per_s"]
        co, cn = fo["cpu_us_per_request"], fn["cpu_us_per_request"]
        first = r["order"][n][0] if "order" in r else "off"  # runs before the order alternated: off
        lines.append(
            f"| {n + 1} | {first} | {fo['load']:.1f} | {fo['p95_ms']:.2f} → {fn['p95_ms']:.2f} "
            f"| {fo['p99_ms']:.2f} → {fn['p99_ms']:.2f} | {co:.0f} → {cn:.0f} | {so:,.0f} → {sn:,.0f} "
            f"| **{sn / so:.2f}×** | {bo:,.0f} / {bn:,.0f} | {so / bo:.2f} → {sn / bn:.2f} "
            f"| {fl:,.0f} | {fb:,.0f} | {sn / fb:.2f} |"
        )
    worse = sum(r["fixed_on"][n]["p95_ms"] > r["fixed_off"][n]["p95_ms"] for n in range(r["rounds"]))
    med = statistics.median
    single_ratio = med(
        a["requests_per_s"] / b["requests_per_s"] for a, b in zip(r["single_on"], r["single_off"], strict=True)
    )
    lines += _gathered(r)
    lines += [
        "",
        f"p95 worse with coalescing in {worse} of {r['rounds']} rounds; medians: p95 off "
        f"{med(x['p95_ms'] for x in r['fixed_off']):.2f} / on {med(x['p95_ms'] for x in r['fixed_on']):.2f} ms, "
        f"CPU per request off {med(x['cpu_us_per_request'] for x in r['fixed_off']):.0f} / on "
        f"{med(x['cpu_us_per_request'] for x in r['fixed_on']):.0f} µs; single on/off "
        f"{single_ratio:.2f}×",
        "",
        "Commands (per round):",
        "",
        f"    {r['fixed_off'][0]['command']}",
        f"    {r['single_off'][0]['command']}",
        f"    {r['batch_off'][0]['command']}",
    ]
    return "\n".join(lines)


def _gathered(r: dict[str, Any]) -> list[str]:
    """Per round, what the coalescing server did with the requests (its ``/metrics``): at the fixed
    rate how many were decided at once alone, at c=16 how many a batch gathered."""
    out = []
    for n in range(r["rounds"]):
        fixed, single = r["fixed_on"][n].get("coalesced"), r["single_on"][n].get("coalesced")
        if not fixed or not single:
            continue
        queued = fixed.get("batch_size_sum", 0.0)
        alone = fixed.get("inline_total", 0.0)
        batches = single.get("batch_size_count", 0.0)
        mean = single.get("batch_size_sum", 0.0) / batches if batches else 0.0
        ones = single.get("batch_size_bucket_1", 0.0) / batches if batches else 0.0
        out.append(
            f"round {n + 1}, coalescing on: at the fixed rate {alone:,.0f} decided alone in their own task, "
            f"{queued:,.0f} queued; at c=16 {batches:,.0f} batches of {mean:.1f} on average ({ones:.0%} of them of one)"
        )
    return ["", *out] if out else []
