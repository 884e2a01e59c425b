"""pacing.lua under real wrk: the offered rate is fixed in advance (open-loop arrivals), so a slow
server does not lower it. Before, each connection thought for a random 0..2×mean ms after every answer:
with 20 ms answers, 10 connections asked for 200 req/s offered 10 / (50 + 20) ms ≈ 143 req/s."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from meshauth.bench import drivers, loadgen
from tests.bench.local_http import serving

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed")

ANSWER_SECONDS = 0.02
RATE = 200
CONNECTIONS = 10
CLOSED_LOOP_RATE = CONNECTIONS / (CONNECTIONS / RATE + ANSWER_SECONDS)  # ≈ 143: what the old pacing offered


class _Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        time.sleep(ANSWER_SECONDS)  # the server under test is slow; nothing here waits for a condition
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    with serving(_Slow) as url:
        yield url + "/"


def test_paced_holds_the_offered_rate_when_answers_are_slow(slow_server: str) -> None:
    r = loadgen.paced(slow_server, rate=RATE, connections=CONNECTIONS, seconds=3, headers={})
    assert r.non_2xx == 0
    assert r.rate > (CLOSED_LOOP_RATE + RATE) / 2, r  # well above what a closed loop could offer
    assert r.rate < RATE * 1.2, r
    assert "PACE_RATE=200" in r.command


def test_harness_paced_holds_the_offered_rate_and_counts_late_sends(slow_server: str) -> None:
    paced = drivers.wrk(slow_server, seconds=3, connections=CONNECTIONS, rate=RATE)
    assert paced.errors == 0
    assert paced.achieved > (CLOSED_LOOP_RATE + RATE) / 2, paced
    # Two connections cannot carry 200 req/s of 20 ms answers (at most 100): arrivals wait for a free
    # connection, and the script says so instead of quietly offering less.
    starved = drivers.wrk(slow_server, seconds=2, connections=2, rate=RATE)
    assert starved.achieved < 110, starved
    assert starved.late > starved.requests / 2, starved
