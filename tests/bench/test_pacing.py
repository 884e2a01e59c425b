"""pacing.lua under real wrk: the arrivals are fixed in advance (open loop), so a server that stalls
does not lower the offered rate — the arrivals of the stall are sent when it ends, and counted late.

Before, each connection thought for a random 0..2×mean ms after every answer (a closed loop): a stall
of one second simply removed that second's requests. The server here stalls its first answer for one
second and answers the rest at once, so the check does not depend on how fast a loaded machine serves."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest

from meshauth.bench import drivers, loadgen
from tests.bench.local_http import serving

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed")

RATE = 100
SECONDS = 3
STALL = 1.0
# Only late sends and an upper bound on the rate are asserted: on a loaded machine (the suite at load
# 13) wrk on its core can run for three times as long as asked and send far fewer than offered.


class _StallsOnce(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    first: ClassVar[threading.Lock] = threading.Lock()

    def do_GET(self) -> None:
        if _StallsOnce.first.acquire(blocking=False):  # the first request of the run (never released)
            time.sleep(STALL)  # the server under test stalls; nothing here waits for a condition
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stalling_server() -> Iterator[str]:
    _StallsOnce.first = threading.Lock()
    with serving(_StallsOnce) as url:
        yield url + "/"


def test_paced_sends_the_arrivals_of_a_stall_when_it_ends(stalling_server: str) -> None:
    r = loadgen.paced(stalling_server, rate=RATE, connections=1, seconds=SECONDS, headers={})
    assert r.rate < RATE * 1.3, r  # no runaway schedule
    assert r.late > RATE * STALL / 2, r  # the stall's arrivals, sent after it (a closed loop sends none)
    assert f"PACE_RATE={RATE}" in r.command


def test_harness_paced_sends_the_arrivals_of_a_stall_when_it_ends(stalling_server: str) -> None:
    r = drivers.wrk(stalling_server, seconds=SECONDS, connections=1, rate=RATE)
    assert set(r.statuses) == {"200"}
    assert r.achieved < RATE * 1.3, r
    assert r.late > RATE * STALL / 2, r
