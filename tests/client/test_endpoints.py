"""Endpoint choice and outlier ejection (injected clock), alone and inside the client."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from meshauth.client import BalanceConfig, Check, EjectionConfig, PolicyClient, Response, TransportError
from meshauth.client._endpoints import Endpoints
from tests.client.mock import Clock, MockTransport
from tests.client.served import DECISION_TOKEN, policy_server, push

POLICY = '@id("view-all") permit(principal, action == Action::"view", resource);'

A, B, C = "http://a", "http://b", "http://c"
DOC = {"type": "Doc", "id": "d"}
CFG = EjectionConfig(consecutive_failures=3, base_time=1.0, max_time=4.0, max_percent=0.5)


def fail(e: Endpoints, url: str, times: int) -> None:
    for _ in range(times):
        e.record(url, False)


def test_consecutive_failures_eject_and_the_url_is_not_picked() -> None:
    """After `consecutive_failures` failures in a row a URL is out: every pick is another one."""
    clock = Clock(100.0)
    e = Endpoints([A, B, C], CFG, clock=clock)
    fail(e, A, 2)
    assert e.ejected == []
    fail(e, A, 1)
    assert e.ejected == [A]
    assert A not in {e.pick() for _ in range(200)}


def test_a_success_resets_the_streak() -> None:
    """Failures that are not consecutive never eject."""
    e = Endpoints([A, B, C], CFG, clock=Clock(0.0))
    for _ in range(10):
        fail(e, A, 2)
        e.record(A, True)
    assert e.ejected == []


def test_ejection_ends_after_base_time_and_grows_on_the_next() -> None:
    """Out for base_time, then back; ejected again soon after, out for twice as long, capped at max_time."""
    clock = Clock(0.0)
    e = Endpoints([A, B, C], CFG, clock=clock)
    fail(e, A, 3)
    clock.now = 0.99
    assert e.ejected == [A]
    clock.now = 1.0
    assert e.ejected == []
    fail(e, A, 3)  # at t=1: out for 2 s
    clock.now = 2.99
    assert e.ejected == [A]
    clock.now = 3.0
    assert e.ejected == []
    fail(e, A, 3)  # out for 4 s
    clock.now = 7.0
    assert e.ejected == []
    fail(e, A, 3)  # 8 s would be next: capped at max_time (4 s)
    clock.now = 10.99
    assert e.ejected == [A]
    clock.now = 11.0
    assert e.ejected == []


def test_a_url_healthy_for_max_time_is_forgiven() -> None:
    """Back and healthy for max_time: the next ejection is base_time again."""
    clock = Clock(0.0)
    e = Endpoints([A, B, C], CFG, clock=clock)
    fail(e, A, 3)
    clock.now = 1.0
    assert e.ejected == []
    clock.now = 5.0  # back since t=1, max_time 4 s
    fail(e, A, 3)
    clock.now = 5.99
    assert e.ejected == [A]
    clock.now = 6.0
    assert e.ejected == []


def test_max_percent_bounds_how_many_are_out() -> None:
    """With 3 URLs and 50 %, one URL at most is out, whatever the others do."""
    e = Endpoints([A, B, C], CFG, clock=Clock(0.0))
    fail(e, A, 3)
    fail(e, B, 3)
    fail(e, C, 3)
    assert e.ejected == [A]


@pytest.mark.parametrize("percent", [0.5, 1.0])
def test_the_last_url_is_never_ejected(percent: float) -> None:
    """A single URL (or the last one in) stays: the breaker, not ejection, stops calls to a dead service."""
    cfg = EjectionConfig(consecutive_failures=1, max_percent=percent)
    one = Endpoints([A], cfg, clock=Clock(0.0))
    fail(one, A, 5)
    assert one.ejected == []
    two = Endpoints([A, B], cfg, clock=Clock(0.0))
    fail(two, A, 1)
    fail(two, B, 1)
    assert two.ejected == [A]
    assert {two.pick() for _ in range(50)} == {B}


def test_ejection_off() -> None:
    """ejection=None: nothing is ever ejected."""
    e = Endpoints([A, B], None, clock=Clock(0.0))
    fail(e, A, 100)
    assert e.ejected == []


def test_pick_prefers_fewer_outstanding_and_avoids_the_failed_url() -> None:
    """Two candidates: the one with fewer calls out wins; a retry never goes back to `avoid`."""
    e = Endpoints([A, B], CFG, clock=Clock(0.0))
    e.outstanding[A] = 5
    assert {e.pick() for _ in range(50)} == {B}
    assert {e.pick(avoid=B) for _ in range(50)} == {A}


def test_config_is_checked() -> None:
    """Bad values are refused with the field's name."""
    with pytest.raises(ValueError, match="consecutive_failures"):
        EjectionConfig(consecutive_failures=0)
    with pytest.raises(ValueError, match="max_percent"):
        EjectionConfig(max_percent=1.5)
    with pytest.raises(ValueError, match="max_time"):
        EjectionConfig(base_time=5.0, max_time=1.0)


async def test_the_client_ejects_a_failing_url_and_stops_sending_to_it() -> None:
    """One of two URLs refuses connections: after 3 failures it is ejected and every later check goes
    to the other, with a genuine decision."""
    good = MockTransport()

    async def one_down(url: str, doc: dict[str, Any]) -> Response:
        if url.startswith(A):
            raise TransportError("connection refused")
        return await good.policy(url, doc)

    t = MockTransport(one_down)
    clock = Clock(0.0)
    client = PolicyClient(
        [A, B],
        transport=t,
        cache=None,
        retry=None,
        breaker=None,
        clock=clock,
        ejection=CFG,
        batching=None,
        balancing=None,  # ejection alone (the latency estimate would avoid A after one failure)
    )
    async with client:
        for i in range(40):
            if client.ejected:
                break
            await client.check({"type": "User", "id": f"u{i}"}, "view", DOC)
        assert client.ejected == [A]
        sent = len(t.calls)
        ds = [
            await client.check({"type": "User", "id": f"v{i}"}, "view", {"type": "Doc", "id": "d"}) for i in range(20)
        ]
    assert all(d.decision and d.error is None for d in ds)
    assert all(url.startswith(B) for url, _, _ in t.calls[sent:])


@pytest.mark.timeout(120)
async def test_a_killed_replica_is_ejected_between_two_real_servers(tmp_path: Path) -> None:
    """Two real policy servers, one SIGKILLed: the client ejects it and keeps deciding through the other."""
    with (
        policy_server(tmp_path / "one") as (one, one_proc),
        policy_server(tmp_path / "two") as (two, _),
    ):
        for url in (one, two):
            push(url, POLICY)
        # Ejection alone: with the latency estimate on, the dead replica is avoided after one failure.
        async with PolicyClient(
            [one, two], token=DECISION_TOKEN, cache=None, retry=None, breaker=None, timeout=2.0, balancing=None
        ) as client:
            warm = await client.check_many([Check({"type": "User", "id": f"w{i}"}, "view", DOC) for i in range(8)])
            assert all(d.decision for d in warm)
            os.killpg(one_proc.pid, signal.SIGKILL)
            one_proc.wait(10)
            failed = 0
            for i in range(200):
                if client.ejected:
                    break
                d = await client.check({"type": "User", "id": f"u{i}"}, "view", DOC)
                failed += d.error is not None
            assert client.ejected == [one] and failed == EjectionConfig().consecutive_failures
            after = [await client.check({"type": "User", "id": f"v{i}"}, "view", DOC) for i in range(50)]
    assert all(d.decision and d.error is None for d in after)


def test_a_slow_url_loses_every_pair_while_no_calls_overlap() -> None:
    """Peak EWMA: with nothing outstanding (batching on: calls rarely overlap), a URL whose calls
    took 40 ms loses to ones at 1 ms in every pair, where least-outstanding saw no difference."""
    clock = Clock(0.0)
    e = Endpoints([A, B, C], CFG, clock=clock)
    for url, took in ((A, 0.001), (B, 0.04), (C, 0.001)):
        e.observe(url, took)
    picks = [e.pick() for _ in range(300)]
    assert B not in picks and {A, C} <= set(picks)
    plain = Endpoints([A, B, C], CFG, clock=clock, balance=None)
    for url, took in ((A, 0.001), (B, 0.04), (C, 0.001)):
        plain.observe(url, took)
    assert B in {plain.pick() for _ in range(300)}


def test_the_estimate_jumps_on_a_slow_sample_and_decays_toward_fast_ones() -> None:
    """A slower sample counts at once (peak); faster ones pull it down with time constant `decay`."""
    clock = Clock(0.0)
    e = Endpoints([A, B], CFG, clock=clock, balance=BalanceConfig(decay=1.0))
    e.observe(A, 0.001)
    e.observe(A, 0.05)
    assert e.cost(A, clock.now) == pytest.approx(0.05)
    clock.now = 1.0
    e.observe(A, 0.001)  # one time constant later: weight e^-1 on the old estimate
    assert e.cost(A, clock.now) == pytest.approx(0.05 * math.exp(-1) + 0.001 * (1 - math.exp(-1)))


def test_a_slow_url_is_tried_again_once_its_estimate_has_decayed() -> None:
    """Not asked, a slow URL's estimate decays toward zero, so it is probed again after a while."""
    clock = Clock(0.0)
    e = Endpoints([A, B], CFG, clock=clock, balance=BalanceConfig(decay=1.0))
    e.observe(A, 0.001)
    e.observe(B, 0.04)
    assert {e.pick() for _ in range(50)} == {A}
    clock.now = 4.0  # B, not asked: 40 ms × e^-4 ≈ 0.73 ms; A, asked again now: ≈ 1 ms
    e.observe(A, 0.001)
    assert e.cost(B, clock.now) < e.cost(A, clock.now)
    assert {e.pick() for _ in range(50)} == {B}


def test_cost_counts_outstanding_calls() -> None:
    """Equal estimates: the URL with fewer calls out wins; latency × (outstanding + 1)."""
    e = Endpoints([A, B], CFG, clock=Clock(0.0))
    e.observe(A, 0.002)
    e.observe(B, 0.002)
    e.outstanding[A] = 1
    assert {e.pick() for _ in range(50)} == {B}
    e.outstanding[B] = 3  # 2 ms × 4 > 2 ms × 2
    assert {e.pick() for _ in range(50)} == {A}


def test_balance_config_is_checked() -> None:
    """decay must be a finite number > 0."""
    with pytest.raises(ValueError, match="decay"):
        BalanceConfig(decay=0)


async def test_a_url_that_fails_fast_does_not_draw_the_calls() -> None:
    """A failed call counts as slow (FAILED_CALL_SECONDS) in the latency estimate: a URL refusing
    connections at once is avoided after its first failure, not taken for the fastest."""
    good = MockTransport()

    async def one_down(url: str, doc: dict[str, Any]) -> Response:
        if url.startswith(A):
            raise TransportError("connection refused")
        return await good.policy(url, doc)

    t = MockTransport(one_down)
    async with PolicyClient(
        [A, B], transport=t, cache=None, retry=None, breaker=None, ejection=None, batching=None, clock=Clock(0.0)
    ) as client:
        ds = [await client.check({"type": "User", "id": f"u{i}"}, "view", DOC) for i in range(40)]
    assert sum(d.error is not None for d in ds) <= 1
