"""Hooks queued to run after the answer: in order, all of them, one failure costing only itself."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from redis.asyncio import Redis

from meshauth.bus.deferred import Deferred
from meshauth.bus.events import audit
from meshauth.bus.producer import Producer, ProducerConfig
from meshauth.bus.streams import AUDIT, StreamNames
from tests.bus.helpers import read_all, until


async def test_queued_hooks_run_later_in_order() -> None:
    ran: list[int] = []
    deferred = Deferred(delay=0.001)
    for n in range(5):
        deferred.add(ran.append, (n,))
    assert ran == [] and deferred.pending == 5  # not in the caller's step
    await until(lambda: ran == [0, 1, 2, 3, 4], what="the queued hooks")
    assert deferred.pending == 0
    deferred.add(ran.append, (5,))
    await until(lambda: ran[-1:] == [5], what="a second round")


async def test_a_failing_hook_costs_only_itself(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    def bad(_: str) -> None:
        raise RuntimeError("boom")

    deferred = Deferred()
    deferred.add(ran.append, ("a",))
    deferred.add(bad, ("b",))
    deferred.add(ran.append, ("c",))
    with caplog.at_level(logging.ERROR):
        deferred.run_now()
    assert ran == ["a", "c"]
    assert "audit hook failed" in caplog.text


def test_without_a_loop_a_hook_runs_at_once() -> None:
    ran: list[int] = []
    Deferred().add(ran.append, (1,))
    assert ran == [1]


async def test_flushed_and_stop_include_queued_hooks(valkey_url: str, redis: Redis, tmp_path: Path) -> None:
    names = StreamNames("meshauth:", AUDIT, 4)
    p = Producer(valkey_url, ProducerConfig(spool_dir=tmp_path / "spool", flush_interval=0.002, gauge_interval=0))
    await p.start()
    p.later(p.publish, AUDIT, audit("gate.decision", subject="a"))
    await p.flushed()  # waits for the queued hook, then for its event's flush
    assert len(await read_all(redis, names.all())) == 1
    for n in range(3):
        p.later(p.publish, AUDIT, audit("gate.decision", subject=f"s{n}"))
    await p.stop()  # runs what is queued, then drains
    assert len(await read_all(redis, names.all())) == 4
