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
    errors: int
    percentiles: dict[str, float] = field(default_factory=dict)  # "50" → ms, "99.9" → ms

    def p(self, q: float) -> float:
        return self.percentiles[f"{q:g}"]


def parse_harness_wrk(out: str, offered: float | None, command: str) -> Run:
    """Read what harness.lua's ``done`` printed; RuntimeError when it printed nothing (the run failed)."""
    m = re.search(r"HARNESS requests=(\d+) seconds=([0-9.]+) errors=(\d+)", out)
    if not m:
        raise RuntimeError(f"wrk printed no harness summary:\n{out}")
    requests, seconds = int(m.group(1)), float(m.group(2))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    # status>399 is in both wrk's errors and its non-2xx line; count socket errors plus non-2xx once.
    status = int(re.search(r"status_errors=(\d+)", out).group(1))  # type: ignore[union-attr]
    errors = int(m.group(3)) - status + (int(bad.group(1)) if bad else 0)
    pct = {p: float(v) for p, v in re.findall(r"^PCT ([0-9.]+) ([0-9.]+)$", out, re.MULTILINE)}
    return Run(command, offered, requests / seconds if seconds else 0.0, requests, errors, pct)


def shown(cmd: list[str], env: dict[str, str]) -> str:
    """The command line as a person would retype it (environment first, tokens elided)."""
    text = " ".join(f"{k}={v}" for k, v in env.items()) + " " + " ".join(c if " " not in c else repr(c) for c in cmd)
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
) -> Run:
    """Paced at ``rate`` req/s over ``connections`` (open pacing), or closed loop when ``rate`` is None."""
    env: dict[str, str] = {"PACE_MEAN_MS": f"{connections * 1000 / rate:.3f}" if rate else "0"}
    if lines is not None:
        env["HARNESS_LINES"] = str(lines)
    if distinct_prefix is not None:
        env["HARNESS_DISTINCT_PREFIX"] = distinct_prefix
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{math.ceil(seconds)}s", "-s", str(HARNESS_LUA)]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    cmd = pinned(cmd, CLIENT_CORE)
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, **env})
    return parse_harness_wrk(done.stdout, rate, shown(cmd, env))


def percentiles(samples_ms: list[float], points: tuple[float, ...]) -> dict[str, float]:
    """Nearest-rank percentiles (what wrk's histogram reports, without its bucket rounding)."""
    if not samples_ms:
        return {}
    ordered = sorted(samples_ms)
    return {f"{p:g}": ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))] for p in points}


POINTS = (1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 90, 95, 97.5, 99, 99.5, 99.9, 99.99)


def parse_h2load_log(text: str) -> tuple[list[float], int, float]:
    """h2load ``--log-file`` rows (start µs since epoch, status, µs to response end) → (latencies in ms
    of 2xx answers, count of other answers, seconds from first start to last end)."""
    latencies: list[float] = []
    bad = 0
    first = last = None
    for row in text.splitlines():
        parts = row.split("\t")
        if len(parts) != 3:
            continue
        start, status, elapsed = int(parts[0]), int(parts[1]), int(parts[2])
        if 200 <= status < 300:
            latencies.append(elapsed / 1000)
        else:
            bad += 1
        first = start if first is None else min(first, start)
        last = start + elapsed if last is None else max(last, start + elapsed)
    span = (last - first) / 1e6 if first is not None and last is not None else 0.0
    return latencies, bad, span


def parse_h2load_summary(out: str) -> tuple[int, int]:
    """(requests done, requests failed or errored) from h2load's summary; RuntimeError when missing."""
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, (\d+) errored", out)
    if not m:
        raise RuntimeError(f"h2load printed no request summary:\n{out}")
    return int(m.group(1)), int(m.group(2)) + int(m.group(3))


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
    finished, failed = parse_h2load_summary(done.stdout)
    latencies, bad, span = parse_h2load_log(log.read_text())
    return Run(
        shown(cmd, {}), rate, finished / span if span else 0.0, finished, failed + bad, percentiles(latencies, POINTS)
    )
