"""Parsing the harness's load-generator output: harness.lua's summary (captured from wrk 4.1) and
h2load's summary and --log-file rows (nghttp2 1.52 formats)."""

from __future__ import annotations

import pytest

from meshauth.bench import drivers

WRK_OK = """Running 1s test @ http://127.0.0.1:18765/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    33.87ms   77.68ms 240.25ms   88.24%
    Req/Sec    25.33     23.01    48.00     66.67%
  17 requests in 1.22s, 145.65KB read
Requests/sec:     13.89
Transfer/sec:    119.04KB
HARNESS requests=17 seconds=1.224 errors=0 status_errors=0
SOCKET connect=0 read=0 write=0 timeout=0
STATUS 200 17
PCT 1 1.1600
PCT 50 7.5820
PCT 95 240.2470
PCT 99 240.2470
PCT 99.9 240.2470
"""

WRK_REFUSED = """Running 1s test @ http://127.0.0.1:18765/
  1 threads and 2 connections
  6 requests in 2.41s, 3.05KB read
  Socket errors: connect 0, read 1, write 0, timeout 0
  Non-2xx or 3xx responses: 6
Requests/sec:      2.49
HARNESS requests=6 seconds=2.407 errors=7 status_errors=6
SOCKET connect=0 read=1 write=0 timeout=0
STATUS 403 2
STATUS 503 4
PCT 50 182.1260
"""

# Captured from wrk 4.1 with harness.lua against a static server (two paths in three missing).
WRK_MIXED = """Running 1s test @ http://127.0.0.1:18777/
  1 threads and 2 connections
  1004 requests in 1.00s, 292.29KB read
  Non-2xx or 3xx responses: 335
Requests/sec:   1002.31
HARNESS requests=1004 seconds=1.002 errors=335 status_errors=335
SOCKET connect=0 read=0 write=0 timeout=0
STATUS 404 335
STATUS 200 669
PCT 50 1.6710
PCT 95 4.5670
"""

H2LOAD = """finished in 3.00s, 2999.67 req/s, 330.53KB/s
requests: 9000 total, 9000 started, 8998 done, 8990 succeeded, 8 failed, 2 errored, 0 timeout
status codes: 8990 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 330.53KB (338459) total, 9.71KB (9946) headers (space savings 94.32%), 123.05KB (126000) data
                     min         max         mean         sd        +/- sd
time for request:      226us     16.34ms      1.21ms      1.03ms    91.41%
time for connect:      105us       139us       121us        14us    75.00%
"""


def test_harness_wrk_summary_read() -> None:
    run = drivers.parse_harness_wrk(WRK_OK, 3000.0, "wrk …")
    assert run.requests == 17
    assert run.achieved == pytest.approx(17 / 1.224)
    assert run.errors == 0
    assert run.p(50) == pytest.approx(7.582)
    assert run.p(99.9) == pytest.approx(240.247)
    assert run.offered == 3000.0


def test_non_2xx_and_socket_errors_counted_once_each() -> None:
    # wrk counts status > 399 both in its errors and in "Non-2xx": six refusals plus one read error.
    run = drivers.parse_harness_wrk(WRK_REFUSED, None, "wrk …")
    assert run.errors == 7
    assert run.statuses == {"403": 2, "503": 4}
    assert run.socket_errors == {"connect": 0, "read": 1, "write": 0, "timeout": 0}


def test_errors_broken_down_by_status_and_expected_statuses_are_answers() -> None:
    run = drivers.parse_harness_wrk(WRK_MIXED, 1000.0, "wrk …")
    assert run.statuses == {"200": 669, "404": 335}
    assert sum(run.statuses.values()) == run.requests
    assert run.errors == 335
    # A workload whose questions the policies may deny expects 403 as a correct answer, not an error.
    denied = drivers.parse_harness_wrk(WRK_REFUSED, None, "wrk …", frozenset({200, 403}))
    assert denied.errors == 5  # four 503s and the read error
    assert run.offered == 1000.0


def test_output_without_socket_line_is_refused() -> None:
    # An older harness.lua (or a crashed done()) must not read as zero errors.
    with pytest.raises(RuntimeError, match="no socket-error line"):
        drivers.parse_harness_wrk("HARNESS requests=1 seconds=1.0 errors=0 status_errors=0\n", None, "wrk")


def test_missing_summary_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no harness summary"):
        drivers.parse_harness_wrk("unable to connect to 127.0.0.1:1 Connection refused\n", 100.0, "wrk")


def test_h2load_summary() -> None:
    summary = drivers.parse_h2load_summary(H2LOAD)
    # "failed" already includes "errored" and the non-2xx answers (h2load's documentation): not added.
    assert (summary.done, summary.failed, summary.errored) == (8998, 8, 2)
    assert summary.mean_ms == pytest.approx(1.21)
    assert drivers.parse_h2load_summary(H2LOAD.replace("1.21ms", "950us")).mean_ms == pytest.approx(0.95)
    with pytest.raises(RuntimeError, match="no request summary"):
        drivers.parse_h2load_summary("connect failed\n")


def test_h2load_log_rows() -> None:
    log = "1700000000000000\t200\t1500\n1700000000001000\t200\t500\n1700000000002000\t503\t800\nnot a row\n"
    latencies, statuses, span = drivers.parse_h2load_log(log)
    assert latencies == [1.5, 0.5]
    assert statuses == {"200": 2, "503": 1}
    assert span == pytest.approx(0.0028)
    assert drivers.parse_h2load_log("") == ([], {}, 0.0)


def test_nearest_rank_percentiles() -> None:
    samples = [float(x) for x in range(1, 101)]  # 1 … 100 ms
    pct = drivers.percentiles(samples, (50, 95, 99, 99.9))
    assert pct == {"50": 50.0, "95": 95.0, "99": 99.0, "99.9": 100.0}
    assert drivers.percentiles([], (50,)) == {}


def test_shown_command_hides_tokens() -> None:
    text = drivers.shown(["wrk", "-H", "authorization: Bearer abc.def-ghi", "http://x/"], {"PACE_RATE": "3000"})
    assert text == 'PACE_RATE=3000 wrk -H "authorization: Bearer $TOKEN" http://x/'
