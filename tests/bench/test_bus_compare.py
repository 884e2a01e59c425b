"""Bus on vs off: the alternation order, every (round, rate, mode) driven once, and the ratio read."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from meshauth.bench import bus_compare


def test_modes_rotate_every_round() -> None:
    calls: list[tuple[str, float]] = []

    def drive(mode: str, rate: float, seconds: float) -> dict[str, Any]:
        calls.append((mode, rate))
        p95 = {"off": 1.0, "on": 2.0, "on_apart": 1.2}[mode] * (1 + len(calls) / 100)
        return {
            "command": "wrk",
            "offered": rate,
            "achieved": rate,
            "requests": 100,
            "errors": 0,
            "percentiles": {"50": p95 / 2, "95": p95, "99": p95 * 2},
        }

    doc = bus_compare.run(drive, (1000, 3000), 4, 3)
    assert calls == [
        ("off", 1000), ("on", 1000), ("on_apart", 1000), ("off", 3000), ("on", 3000), ("on_apart", 3000),
        ("on", 1000), ("on_apart", 1000), ("off", 1000), ("on", 3000), ("on_apart", 3000), ("off", 3000),
        ("on_apart", 1000), ("off", 1000), ("on", 1000), ("on_apart", 3000), ("off", 3000), ("on", 3000),
    ]  # fmt: skip
    assert [p["offered"] for p in doc["on"]] == [1000, 3000]
    assert doc["on_apart"][1]["repeats"] == 3
    shared = bus_compare.ratio(doc, 3000)
    apart = bus_compare.ratio(doc, 3000, mode="on_apart")
    assert shared is not None and 1.9 < shared < 2.1
    assert apart is not None and 1.15 < apart < 1.25


THREADED = "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); time.sleep(60)"


def test_apart_moves_every_thread_and_back() -> None:
    """The placement switch on real processes of two threads each (standing in for worker and Valkey)."""
    from meshauth.bench.loadgen import CLIENT_CORE, SERVER_CORE
    from meshauth.bench.stack import Stack

    if not {int(CLIENT_CORE), int(SERVER_CORE)} <= os.sched_getaffinity(0):
        pytest.skip("needs cores 0 and 1")
    children = [subprocess.Popen([sys.executable, "-c", THREADED]) for _ in range(2)]
    try:
        pids = {"audit_worker": children[0].pid, "valkey": children[1].pid}
        deadline = time.monotonic() + 20
        while any(len(os.listdir(f"/proc/{pid}/task")) < 2 for pid in pids.values()):
            assert time.monotonic() < deadline, "children never started their second thread"
            time.sleep(0.01)
        stack = Stack(Path("."), "", "", "", "", "", [], Path("."), "", pids)

        def cores() -> set[frozenset[int]]:
            return {
                frozenset(os.sched_getaffinity(int(tid)))
                for pid in pids.values()
                for tid in os.listdir(f"/proc/{pid}/task")
            }

        with bus_compare.apart(stack):
            assert cores() == {frozenset({int(CLIENT_CORE)})}
        assert cores() == {frozenset({int(SERVER_CORE)})}
    finally:
        for child in children:
            child.kill()
            child.wait()


def test_ratio_missing_points() -> None:
    assert bus_compare.ratio({}, 3000) is None
    point = {"offered": 3000, "percentiles": {"95": 0.0}}
    assert bus_compare.ratio({"on": [point], "off": [point]}, 3000) is None  # no division by a zero p95
    assert bus_compare.ratio({"on": [point], "off": [point]}, 1000) is None
    assert bus_compare.ratio({"on": [point], "off": [point]}, 3000, mode="on_apart") is None
