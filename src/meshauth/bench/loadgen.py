"""Load generators, each a separate process on its own core.

- ``paced``: wrk with open-loop Poisson arrivals (``paced.lua``, ``pacing.lua``): a fixed offered rate
  that does not fall as latency grows, served by a pool of connections, for latency percentiles.
- ``hey``: hey's ``-q`` rate limit, as a cross-check. Its workers tick in step, so it offers bursts of
  ``-c`` requests and reports the queueing those bursts cause.
- ``wrk``: closed-loop maximum throughput (its latencies suffer coordinated omission; do not quote them).
- ``idle_poll``: keeps both cores out of the idle state with lowest-priority spinners. On this VM a halted
  vCPU takes milliseconds to wake, which dominates latency at moderate load; a busy production core
  does not halt. Reports state whether it was on.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACED_LUA = Path(__file__).with_name("paced.lua")
PACED_DISTINCT_LUA = Path(__file__).with_name("paced_distinct.lua")
PACING_LUA = Path(__file__).with_name("pacing.lua")  # the arrivals, loaded by the scripts above

CLIENT_CORE = "1"
SERVER_CORE = "0"


def pinned(cmd: list[str], core: str) -> list[str]:
    """Pin to one core when taskset exists, so load and service do not share a core."""
    return ["taskset", "-c", core, *cmd] if shutil.which("taskset") else cmd


@dataclass(frozen=True)
class Latency:
    command: str
    rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    late: int = 0  # paced only: requests sent > 1 ms after their arrival time (no free connection)


def hey(url: str, *, rate: int, workers: int, seconds: int, headers: dict[str, str]) -> Latency:
    """Fixed offered rate: ``workers`` × ``rate/workers`` req/s for ``seconds``, percentiles from hey."""
    per_worker = max(1, rate // workers)
    cmd = ["hey", "-z", f"{seconds}s", "-c", str(workers), "-q", str(per_worker)]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    out = subprocess.run(pinned(cmd, CLIENT_CORE), capture_output=True, text=True, check=True).stdout

    def pct(p: int) -> float:
        m = re.search(rf"\s{p}% in ([0-9.]+) secs", out)
        if not m:
            raise RuntimeError(f"hey printed no {p}th percentile:\n{out}")
        return float(m.group(1)) * 1000

    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    total = sum(int(v) for v in codes.values())
    ok = sum(int(v) for k, v in codes.items() if k.startswith("2"))
    shown = " ".join(c if " " not in c else repr(c) for c in pinned(cmd, CLIENT_CORE))
    shown = re.sub(r"Bearer [A-Za-z0-9._-]+", "Bearer $TOKEN", shown)
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    return Latency(shown, float(rps.group(1)) if rps else 0.0, pct(50), pct(95), pct(99), total, total - ok)


@dataclass(frozen=True)
class Throughput:
    command: str
    rps: float
    p99_ms: float
    non_2xx: int


@dataclass(frozen=True)
class WrkReport:
    """What a closed-loop ``wrk --latency`` run printed (the auth and policy benchmarks read it alike)."""

    rps: float
    p99_ms: float | None  # None when wrk printed no latency distribution
    non_2xx: int
    socket_errors: int


_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(out: str) -> WrkReport:
    """Read wrk's report; RuntimeError when it printed no request rate (the run failed)."""
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if rps is None:
        raise RuntimeError(f"wrk printed no request rate:\n{out}")
    p99 = re.search(r"99%\s+([0-9.]+)(us|ms|s)\b", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkReport(
        rps=float(rps.group(1)),
        p99_ms=float(p99.group(1)) * _WRK_UNITS[p99.group(2)] if p99 else None,
        non_2xx=int(bad.group(1)) if bad else 0,
        socket_errors=out.count("Socket errors"),
    )


def wrk(url: str, *, connections: int, seconds: int, headers: dict[str, str]) -> Throughput:
    """Closed-loop maximum throughput (its latencies suffer coordinated omission; use hey for those)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    out = subprocess.run(pinned(cmd, CLIENT_CORE), capture_output=True, text=True, check=True).stdout
    report = parse_wrk(out)
    shown = re.sub(r"Bearer [A-Za-z0-9._-]+", "Bearer $TOKEN", " ".join(pinned(cmd, CLIENT_CORE)))
    p99_ms = report.p99_ms if report.p99_ms is not None else float("nan")
    return Throughput(shown, report.rps, p99_ms, report.non_2xx)


def paced(
    url: str,
    *,
    rate: int,
    connections: int,
    seconds: int,
    headers: dict[str, str],
    distinct_prefix: str | None = None,
) -> Latency:
    """Fixed offered rate, open-loop arrivals (wrk + paced.lua); percentiles from wrk's histogram.

    ``distinct_prefix``: every request goes to ``distinct_prefix`` + a counter instead (paced_distinct.lua)."""
    script = PACED_LUA if distinct_prefix is None else PACED_DISTINCT_LUA
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script)]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    env = {**os.environ, "PACE_RATE": str(rate)}
    if distinct_prefix is not None:
        env["PACE_PATH_PREFIX"] = distinct_prefix
    out = subprocess.run(pinned(cmd, CLIENT_CORE), capture_output=True, text=True, check=True, env=env).stdout
    m = re.search(r"PACED rps=([0-9.]+) p50=([0-9.]+) p95=([0-9.]+) p99=([0-9.]+) errors=(\d+) late=(\d+)", out)
    if not m:
        raise RuntimeError(f"wrk printed no paced summary:\n{out}")
    requests = re.search(r"(\d+) requests in", out)
    shown = (
        f"PACE_RATE={rate} "
        + (f"PACE_PATH_PREFIX={distinct_prefix} " if distinct_prefix else "")
        + re.sub(r"Bearer [A-Za-z0-9._-]+", "Bearer $TOKEN", " ".join(pinned(cmd, CLIENT_CORE)))
    )
    return Latency(
        shown,
        float(m.group(1)),
        float(m.group(2)),
        float(m.group(3)),
        float(m.group(4)),
        int(requests.group(1)) if requests else 0,
        # paced.lua's errors are wrk's status > 399 (its "Non-2xx" line) plus socket errors: each once.
        # (They were added to the "Non-2xx" count, which doubled every refusal in every paced run.)
        int(m.group(5)),
        int(m.group(6)),
    )


@contextlib.contextmanager
def idle_poll(enabled: bool = True) -> Iterator[None]:
    """Spin a nice-19 busy loop on each core for the duration (see the module docstring)."""
    if not enabled:
        yield
        return
    spinners = [
        subprocess.Popen(pinned(["nice", "-n", "19", sys.executable, "-c", "while True: pass"], core))
        for core in (SERVER_CORE, CLIENT_CORE)
    ]
    try:
        yield
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()
