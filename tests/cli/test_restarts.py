"""The local stack's restart pacing (pure logic; the real processes are in test_up_supervision.py)."""

from __future__ import annotations

import time

import pytest

from meshauth.config import Settings
from meshauth.local import stack as stack_module
from meshauth.local.stack import (
    FIRST_RESTART_DELAY,
    MAX_CRASHES_IN_A_ROW,
    MAX_RESTART_DELAY,
    STABLE_SECONDS,
    Restarts,
    Stack,
    Supervised,
)


def test_restart_delay_doubles_up_to_the_cap() -> None:
    """Each crash in a row doubles the wait before the next start, up to MAX_RESTART_DELAY."""
    r = Restarts(started_at=0.0)
    delays = []
    for _ in range(12):
        delays.append(r.crashed(1.0))
        r.started(1.0)
    assert delays[:3] == [FIRST_RESTART_DELAY, 2 * FIRST_RESTART_DELAY, 4 * FIRST_RESTART_DELAY]
    assert max(delays) == MAX_RESTART_DELAY


def test_a_child_that_stayed_up_starts_counting_again() -> None:
    """A crash after STABLE_SECONDS of running is the first of a new series, with the shortest delay."""
    r = Restarts(started_at=0.0)
    for _ in range(MAX_CRASHES_IN_A_ROW - 1):
        r.crashed(1.0)
        r.started(1.0)
    assert r.crashed(1.0 + STABLE_SECONDS) == FIRST_RESTART_DELAY
    assert r.crashes == 1
    assert not r.given_up


def test_quick_crashes_in_a_row_give_up() -> None:
    """MAX_CRASHES_IN_A_ROW crashes, each soon after its start, mean stop trying."""
    r = Restarts(started_at=0.0)
    for _ in range(MAX_CRASHES_IN_A_ROW):
        assert not r.given_up
        r.crashed(1.0)
        r.started(1.0)
    assert r.given_up


def test_failed_restarts_count_toward_giving_up(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """A child that cannot be started again stops the stack after MAX_CRASHES_IN_A_ROW attempts."""
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])  # the clock stack.py reads
    monkeypatch.setattr(stack_module, "say", lambda _message: None)

    def cannot_start() -> str:
        raise RuntimeError("port in use")

    # It ran long enough to be "stable" before this crash: the reset must not repeat on every failure.
    child = Supervised("valkey", cannot_start, lambda: -9, lambda: None, Restarts(started_at=0.0))
    stack = Stack(Settings(), env={})
    results = []
    for _ in range(4 * MAX_CRASHES_IN_A_ROW):
        results.append(stack.supervise(child, clock[0]))
        clock[0] += MAX_RESTART_DELAY
        if results[-1] is not None:
            break
    assert results[-1] == 1
    assert len(results) == MAX_CRASHES_IN_A_ROW
