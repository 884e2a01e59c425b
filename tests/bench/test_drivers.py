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
PCT 50 182.1260
"""

H2LOAD = """finished in 3.00s, 2999.67 req/s, 330.53KB/s
requests: 9000 total, 9000 started, 8998 done, 8990 succeeded, 8 failed, 2 errored, 0 timeout
status codes: 8990 2xx, 0 3xx, 0 4xx, 0 5xx
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
    assert run.offered is None


def test_missing_summary_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no harness summary"):
        drivers.parse_harness_wrk("unable to connect to 127.0.0.1:1 Connection refused\n", 100.0, "wrk")


def test_h2load_summary() -> None:
    assert drivers.parse_h2load_summary(H2LOAD) == (8998, 10)
    with pytest.raises(RuntimeError, match="no request summary"):
        drivers.parse_h2load_summary("connect failed\n")


def test_h2load_log_rows() -> None:
    log = "1700000000000000\t200\t1500\n1700000000001000\t200\t500\n1700000000002000\t503\t800\nnot a row\n"
    latencies, bad, span = drivers.parse_h2load_log(log)
    assert latencies == [1.5, 0.5]
    assert bad == 1
    assert span == pytest.approx(0.0028)
    assert drivers.parse_h2load_log("") == ([], 0, 0.0)


def test_nearest_rank_percentiles() -> None:
    samples = [float(x) for x in range(1, 101)]  # 1 … 100 ms
    pct = drivers.percentiles(samples, (50, 95, 99, 99.9))
    assert pct == {"50": 50.0, "95": 95.0, "99": 99.0, "99.9": 100.0}
    assert drivers.percentiles([], (50,)) == {}


def test_shown_command_hides_tokens() -> None:
    text = drivers.shown(["wrk", "-H", "authorization: Bearer abc.def-ghi", "http://x/"], {"PACE_MEAN_MS": "10.000"})
    assert text == "PACE_MEAN_MS=10.000 wrk -H 'authorization: Bearer $TOKEN' http://x/"
