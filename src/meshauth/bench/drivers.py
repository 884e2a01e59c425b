"""The harness's load generators, each a separate process on the client core: wrk with ``harness.lua``
(paced or closed loop, requests from a precomputed file) and h2load for gRPC (fixed rate per connection,
per-request times from its ``--log-file``, from which the percentiles here are computed)."""

from __future__ import annotations

import math
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from meshauth.bench.loadgen import CLIENT_CORE, pinned

HARNESS_LUA = Path(__file__).with_name("harness.lua")
_TOKEN = re.compile(r"Bearer [A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Run:
    """One load-generator run: what was offered, what came back, latency percentiles in ms."""

    command: str
    offered: float | None  # req/s; None for a closed-loop (saturation) run
    achieved: float
    requests: int
    errors: int  # socket errors plus answers whose status the scenario does not expect
    percentiles: dict[str, float] = field(default_factory=dict)  # "50" → ms, "99.9" → ms
    statuses: dict[str, int] = field(default_factory=dict)  # HTTP status → answers ("200" → 11,982)
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect, read, write, timeout
    # h2load only: the mean of the log's latencies and h2load's own mean, which must agree (a check that
    # the per-request log is read right: its columns, its units, its 2xx rows).
    log_mean_ms: float | None = None
    tool_mean_ms: float | None = None
    late: int = 0  # paced wrk: requests sent > 1 ms after their arrival time (every connection was busy)

    def p(self, q: float) -> float:
        return self.percentiles[f"{q:g}"]


OK_STATUSES = frozenset({200})


def parse_harness_wrk(out: str, offered: float | None, command: str, expected: frozenset[int] = OK_STATUSES) -> Run:
    """Read what harness.lua's ``done`` printed; RuntimeError when it printed nothing (the run failed).
    Errors: socket errors plus answers whose status is not in ``expected`` (a 403 is a correct answer
    where the workload asks questions the policies deny)."""
    m = re.search(r"HARNESS requests=(\d+) seconds=([0-9.]+) errors=(\d+)", out)
    if not m:
        raise RuntimeError(f"wrk printed no harness summary:\n{out}")
    requests, seconds = int(m.group(1)), float(m.group(2))
    sock = re.search(r"SOCKET connect=(\d+) read=(\d+) write=(\d+) timeout=(\d+)", out)
    if not sock:
        raise RuntimeError(f"wrk printed no socket-error line:\n{out}")
    socket_errors = dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True))
    statuses = {code: int(n) for code, n in re.findall(r"^STATUS (\d+) (\d+)$", out, re.MULTILINE)}
    unexpected = sum(n for code, n in statuses.items() if int(code) not in expected)
    errors = sum(socket_errors.values()) + unexpected
    pct = {p: float(v) for p, v in re.findall(r"^PCT ([0-9.]+) ([0-9.]+)$", out, re.MULTILINE)}
    achieved = requests / seconds if seconds else 0.0
    late = re.search(r"^LATE (\d+)$", out, re.MULTILINE)
    return Run(
        command,
        offered,
        achieved,
        requests,
        errors,
        pct,
        dict(sorted(statuses.items())),
        socket_errors,
        late=int(late.group(1)) if late else 0,
    )


def shown(cmd: list[str], env: dict[str, str]) -> str:
    """The command line as a person would paste it into a shell after ``source $BENCH_DIR/env.sh``
    (``bench.hold``): environment first, the token as ``$TOKEN`` inside double quotes (so it expands)."""
    text = " ".join(f"{k}={v}" for k, v in env.items()) + " " + " ".join(c if " " not in c else f'"{c}"' for c in cmd)
    return _TOKEN.sub("Bearer $TOKEN", text.strip())


def wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    rate: float | None = None,
    lines: Path | None = None,
    distinct_prefix: str | None = None,
    headers: dict[str, str] | None = None,
    expected: frozenset[int] = OK_STATUSES,
    tokens: Path | None = None,
) -> Run:
    """Paced at ``rate`` req/s (open-loop arrivals served by ``connections``), or closed loop when ``rate`` is None."""
    env: dict[str, str] = {"PACE_RATE": f"{rate:g}" if rate else "0"}
    if lines is not None:
        env["HARNESS_LINES"] = str(lines)
    if distinct_prefix is not None:
        env["HARNESS_DISTINCT_PREFIX"] = distinct_prefix
    if tokens is not None:
        env["HARNESS_TOKENS"] = str(tokens)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{math.ceil(seconds)}s", "-s", str(HARNESS_LUA)]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    cmd = pinned(cmd, CLIENT_CORE)
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, **env})
    return parse_harness_wrk(done.stdout, rate, shown(cmd, env), expected)


def percentiles(samples_ms: list[float], points: tuple[float, ...]) -> dict[str, float]:
    """Nearest-rank percentiles (what wrk's histogram reports, without its bucket rounding)."""
    if not samples_ms:
        return {}
    ordered = sorted(samples_ms)
    return {f"{p:g}": ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))] for p in points}


POINTS = (1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 90, 95, 97.5, 99, 99.5, 99.9, 99.99)


def parse_h2load_log(text: str) -> tuple[list[float], dict[str, int], float]:
    """h2load ``--log-file`` rows (start µs since epoch, HTTP status, µs from start to response end) →
    (latencies in ms of 2xx answers, answers per status, seconds from first start to last end). The
    status is HTTP's (gRPC's own code travels in the trailers, which h2load does not log; the probe
    checks a real Check answers OK)."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    first = last = None
    for row in text.splitlines():
        parts = row.split("\t")
        if len(parts) != 3:
            continue
        start, status, elapsed = int(parts[0]), int(parts[1]), int(parts[2])
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if 200 <= status < 300:
            latencies.append(elapsed / 1000)
        first = start if first is None else min(first, start)
        last = start + elapsed if last is None else max(last, start + elapsed)
    span = (last - first) / 1e6 if first is not None and last is not None else 0.0
    return latencies, dict(sorted(statuses.items())), span


@dataclass(frozen=True)
class H2loadSummary:
    done: int
    failed: int  # h2load: every unsuccessful request, non-2xx/3xx answers and ``errored`` ones alike
    errored: int  # the subset that failed below HTTP (reset, RST_STREAM, timeout)
    mean_ms: float  # h2load's own "time for request" mean: the log's mean must match it


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_h2load_summary(out: str) -> H2loadSummary:
    """The request counts and mean request time h2load printed; RuntimeError when missing."""
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, (\d+) errored", out)
    t = re.search(r"time for request:\s+\S+\s+\S+\s+([0-9.]+)(us|ms|s)\s", out)
    if not m or not t:
        raise RuntimeError(f"h2load printed no request summary:\n{out}")
    mean = float(t.group(1)) * _UNITS[t.group(2)]
    return H2loadSummary(int(m.group(1)), int(m.group(2)), int(m.group(3)), mean)


def h2load(
    url: str, body: Path, log: Path, *, seconds: float, connections: int, rate: float | None, headers: dict[str, str]
) -> Run:
    """gRPC over h2c: ``--rps`` per connection (``rate / connections``); closed loop one stream each."""
    # Paced: up to 8 streams in flight per connection, so a slow answer does not hold back the next
    # due request (with one stream, four connections top out below 3,000 req/s).
    streams = 8 if rate else 1
    cmd = ["h2load", "-t1", f"-c{connections}", f"-m{streams}", f"-D{math.ceil(seconds)}", "-d", str(body)]
    if rate:
        cmd.append(f"--rps={rate / connections:g}")
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd += [f"--log-file={log}", url]
    cmd = pinned(cmd, CLIENT_CORE)
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    summary = parse_h2load_summary(done.stdout)
    latencies, statuses, span = parse_h2load_log(log.read_text())
    return Run(
        shown(cmd, {}),
        rate,
        summary.done / span if span else 0.0,
        summary.done,
        summary.failed,
        percentiles(latencies, POINTS),
        statuses,
        {"errored": summary.errored},
        sum(latencies) / len(latencies) if latencies else None,
        summary.mean_ms,
    )
