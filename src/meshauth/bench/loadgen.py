"""Load generators run as separate processes on their own core: hey (fixed rate) and wrk (max throughput)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

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


def wrk(url: str, *, connections: int, seconds: int, headers: dict[str, str]) -> Throughput:
    """Closed-loop maximum throughput (its latencies suffer coordinated omission; use hey for those)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    out = subprocess.run(pinned(cmd, CLIENT_CORE), capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([0-9.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    shown = re.sub(r"Bearer [A-Za-z0-9._-]+", "Bearer $TOKEN", " ".join(pinned(cmd, CLIENT_CORE)))
    return Throughput(shown, rps, p99_ms, int(bad.group(1)) if bad else 0)
