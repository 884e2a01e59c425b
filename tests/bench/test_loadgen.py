"""Parsing the load generators' reports (their real output formats, captured from hey 0.1.4 and wrk 4.1)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from meshauth.bench import loadgen

HEY = """
Summary:
  Total:\t5.0012 secs
  Requests/sec:\t2992.4561

Latency distribution:
  10% in 0.0003 secs
  25% in 0.0004 secs
  50% in 0.0008 secs
  75% in 0.0010 secs
  90% in 0.0012 secs
  95% in 0.0014 secs
  99% in 0.0038 secs

Status code distribution:
  [200]\t14950 responses
  [401]\t15 responses
"""

WRK = """Running 5s test @ http://127.0.0.1:1/x
  1 threads and 32 connections
  Latency Distribution
     50%  3.50ms
     75%  4.10ms
     90%  5.00ms
     99%  812.00us
  40450 requests in 5.00s, 3.1MB read
  Non-2xx or 3xx responses: 7
Requests/sec:   8090.12
"""


def fake_run(output: str) -> Any:
    def run(cmd: list[str], **_kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 0, stdout=output, stderr="")

    return run


def test_hey_percentiles_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Percentiles convert to milliseconds; non-2xx responses are counted, the token is masked."""
    monkeypatch.setattr(subprocess, "run", fake_run(HEY))
    r = loadgen.hey("http://x/", rate=3000, workers=12, seconds=5, headers={"authorization": "Bearer abc.def.ghi"})
    assert (r.p50_ms, r.p95_ms, r.p99_ms) == pytest.approx((0.8, 1.4, 3.8))
    assert r.requests == 14965 and r.non_2xx == 15
    assert "-q 250" in r.command and "abc.def" not in r.command


def test_hey_without_percentiles_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that produced no latency table is an error, not a zero."""
    monkeypatch.setattr(subprocess, "run", fake_run("Error: connection refused"))
    with pytest.raises(RuntimeError, match="percentile"):
        loadgen.hey("http://x/", rate=10, workers=1, seconds=1, headers={})


def test_wrk_throughput(monkeypatch: pytest.MonkeyPatch) -> None:
    """wrk's rate, p99 (any unit) and non-2xx count are read."""
    monkeypatch.setattr(subprocess, "run", fake_run(WRK))
    r = loadgen.wrk("http://x/", connections=32, seconds=5, headers={})
    assert r.rps == pytest.approx(8090.12)
    assert r.p99_ms == pytest.approx(0.812)
    assert r.non_2xx == 7


PACED = """Running 5s test @ http://127.0.0.1:1/x
  1 threads and 30 connections
  14950 requests in 5.00s, 1.1MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   2990.00
PACED rps=2990.0 p50=0.2610 p95=0.5910 p99=0.8530 errors=4 late=2
"""


def test_paced_reads_the_lua_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """The paced run's percentiles come from paced.lua's summary line, and so do its errors: wrk's
    status > 399 (also its "Non-2xx" line: 3 here) plus socket errors (1), each counted once."""
    seen: dict[str, Any] = {}

    def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        seen["env"] = kw["env"]
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 0, stdout=PACED, stderr="")

    monkeypatch.setattr(subprocess, "run", run)
    r = loadgen.paced("http://x/", rate=3000, connections=30, seconds=5, headers={"authorization": "Bearer a.b.c"})
    assert (r.p50_ms, r.p95_ms, r.p99_ms) == pytest.approx((0.261, 0.591, 0.853))
    assert r.non_2xx == 4 and r.requests == 14950 and r.late == 2
    assert seen["env"]["PACE_RATE"] == "3000"
    assert str(loadgen.PACED_LUA) in seen["cmd"]
    assert loadgen.PACED_LUA.exists() and loadgen.PACING_LUA.exists()


def test_parse_wrk_reads_rate_p99_non_2xx_and_socket_errors() -> None:
    """The one wrk parser both benchmarks use."""
    report = loadgen.parse_wrk(WRK + "  Socket errors: connect 0, read 2, write 0, timeout 0\n")
    assert report.rps == pytest.approx(8090.12)
    assert report.p99_ms == pytest.approx(0.812)
    assert (report.non_2xx, report.socket_errors) == (7, 1)


def test_parse_wrk_without_a_rate_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no request rate"):
        loadgen.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")
