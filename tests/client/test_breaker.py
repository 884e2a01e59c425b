"""CircuitBreaker, driven by an injected clock (no sleeping); counting calls or checks."""

from __future__ import annotations

import asyncio
from typing import Any

from meshauth.client import REASON_UNAVAILABLE, BreakerConfig, CircuitBreaker, PolicyClient, Response
from tests.client.mock import Clock as MockClock
from tests.client.mock import MockTransport

DOC = {"type": "Doc", "id": "d1"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CFG = BreakerConfig(window=10.0, min_calls=4, failure_rate=0.5, open_for=1.0, probes=2)


def fail(b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        t = b.allow()
        assert t is not None
        b.record(t, False)


def succeed(b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        t = b.allow()
        assert t is not None
        b.record(t, True)


def test_stays_closed_below_min_calls() -> None:
    """Failures fewer than min_calls never open it, whatever the rate."""
    b = CircuitBreaker(CFG, clock=Clock())
    fail(b, 3)
    assert b.state == "closed"


def test_opens_at_failure_rate_over_min_calls() -> None:
    """With min_calls in the window and half of them failed, it opens and refuses calls."""
    b = CircuitBreaker(CFG, clock=Clock())
    succeed(b, 2)
    fail(b, 2)
    assert b.state == "open"
    assert b.allow() is None and b.rejecting()


def test_old_failures_leave_the_window() -> None:
    """Failures older than the window no longer count."""
    clock = Clock()
    b = CircuitBreaker(CFG, clock=clock)
    fail(b, 3)
    clock.now += 11
    succeed(b, 1)
    fail(b, 1)
    assert b.state == "closed"


def test_half_open_lets_through_only_the_configured_probes() -> None:
    """After open_for, at most `probes` concurrent calls pass; the rest are refused."""
    clock = Clock()
    b = CircuitBreaker(CFG, clock=clock)
    fail(b, 4)
    clock.now += 1.0
    assert not b.rejecting()
    tickets = [b.allow() for _ in range(10)]
    assert sum(t is not None for t in tickets) == 2
    assert b.state == "half_open"


def test_probe_successes_close_it() -> None:
    """`probes` successful probes close the breaker, with a fresh window."""
    clock = Clock()
    b = CircuitBreaker(CFG, clock=clock)
    fail(b, 4)
    clock.now += 1.0
    t1, t2 = b.allow(), b.allow()
    assert t1 is not None and t2 is not None
    b.record(t1, True)
    assert b.state == "half_open"
    b.record(t2, True)
    assert b.state == "closed"
    fail(b, 3)
    assert b.state == "closed"


def test_probe_failure_reopens_it() -> None:
    """One failed probe opens it again for another open_for."""
    clock = Clock()
    b = CircuitBreaker(CFG, clock=clock)
    fail(b, 4)
    clock.now += 1.0
    t = b.allow()
    assert t is not None
    b.record(t, False)
    assert b.state == "open" and b.allow() is None
    clock.now += 0.5
    assert b.allow() is None


def test_late_outcome_from_before_opening_is_ignored() -> None:
    """A call started while closed and finishing during half-open neither counts as nor uses up a probe."""
    clock = Clock()
    b = CircuitBreaker(CFG, clock=clock)
    slow = b.allow()
    assert slow is not None
    fail(b, 4)
    clock.now += 1.0
    t1, t2 = b.allow(), b.allow()
    assert t1 is not None and t2 is not None
    b.record(slow, False)
    assert b.state == "half_open"
    b.record(t1, True)
    b.record(t2, True)
    assert b.state == "closed"


def test_released_ticket_frees_a_probe_slot() -> None:
    """A probe ticket given back unused lets another probe through."""
    clock = Clock()
    b = CircuitBreaker(CFG, clock=clock)
    fail(b, 4)
    clock.now += 1.0
    t1, t2 = b.allow(), b.allow()
    assert t1 is not None and t2 is not None and b.allow() is None
    b.release(t1)
    assert b.allow() is not None


def test_transitions_are_reported() -> None:
    """The transition hook hears every state change in order."""
    clock = Clock()
    seen: list[tuple[str, str]] = []
    b = CircuitBreaker(CFG, clock=clock, on_transition=lambda a, z: seen.append((a, z)))
    fail(b, 4)
    clock.now += 1.0
    succeed(b, 2)
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


CHECKS = BreakerConfig(window=10.0, min_calls=20, failure_rate=0.5, open_for=1.0, probes=2, count="checks")


def test_counting_checks_weighs_each_call_by_its_batch() -> None:
    """count="checks": two failed calls of 10 checks each reach min_calls (20) and open it, where
    counting calls they are 2 of 20; a success of 30 checks outweighs them again."""
    by_calls = CircuitBreaker(BreakerConfig(window=10.0, min_calls=20, failure_rate=0.5), clock=Clock())
    by_checks = CircuitBreaker(CHECKS, clock=Clock())
    for b in (by_calls, by_checks):
        for _ in range(2):
            t = b.allow()
            assert t is not None
            b.record(t, False, 10)
    assert (by_calls.state, by_checks.state) == ("closed", "open")

    clock = Clock()
    mixed = CircuitBreaker(CHECKS, clock=clock)
    t = mixed.allow()
    assert t is not None
    mixed.record(t, True, 30)
    for _ in range(2):
        t = mixed.allow()
        assert t is not None
        mixed.record(t, False, 10)
    assert mixed.state == "closed"  # 20 failed of 50 checks: below the rate
    clock.now += 11  # the success leaves the window
    t = mixed.allow()
    assert t is not None
    mixed.record(t, False, 1)
    assert mixed.state == "closed"  # 1 check in the window: below min_calls
    t = mixed.allow()
    assert t is not None
    mixed.record(t, False, 19)
    assert mixed.state == "open"


def test_counting_checks_probes_still_count_calls() -> None:
    """Half-open: ``probes`` successful calls close it whatever their size; one failed call reopens."""
    clock = Clock()
    b = CircuitBreaker(CHECKS, clock=clock)
    t = b.allow()
    assert t is not None
    b.record(t, False, 64)
    assert b.state == "open"
    clock.now += 1.0
    first, second = b.allow(), b.allow()
    assert first is not None and second is not None and b.allow() is None
    b.record(first, True, 1)
    assert b.state == "half_open"
    b.record(second, True, 1)
    assert b.state == "closed"


async def test_a_client_counting_checks_opens_on_one_failed_batch_of_min_calls() -> None:
    """Through PolicyClient: 20 concurrent checks go out as one call; when it fails, counting checks
    opens the breaker (20 ≥ min_calls), counting calls does not (1 < 20)."""

    async def broken(url: str, doc: dict[str, Any]) -> Response:
        return Response(503, b"")

    for count, state in (("checks", "open"), ("calls", "closed")):
        t = MockTransport(broken)
        cfg = BreakerConfig(min_calls=20, count=count)  # type: ignore[arg-type]
        async with PolicyClient(["http://pdp"], transport=t, breaker=cfg, retry=None, clock=MockClock(0.0)) as c:
            ds = await asyncio.gather(*(c.check({"type": "User", "id": f"u{i}"}, "view", DOC) for i in range(20)))
            assert len(t.calls) == 1 and all(d.error == REASON_UNAVAILABLE for d in ds)
            assert c.breaker_state == state, count
