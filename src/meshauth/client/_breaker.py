"""A circuit breaker that really bounds its half-open probes.

Why our own: the libraries measured (aiobreaker, purgatory, circuitbreaker) let *every* concurrent
call through once the reset time passes (FIELD-NOTES); under load that is a full-rate stampede on a
service that just failed. Here:

- **closed**: calls pass; outcomes are counted in time buckets over ``window`` seconds. When at least
  ``min_calls`` calls are in the window and the failure share reaches ``failure_rate`` → open. With
  ``count="checks"`` an outcome weighs as many checks as its call carried (``record(..., checks=n)``).
- **open**: ``allow()`` refuses (fail fast) until ``open_for`` seconds have passed → half-open.
- **half-open**: at most ``probes`` calls at a time are let through; ``probes`` successes → closed
  (with a fresh window); one failure → open again.

Every transition bumps a generation; ``allow()`` hands out the generation as a ticket and an outcome
recorded with a ticket of an older generation is ignored, so a slow call started while closed cannot
count as (or use up) a half-open probe. The clock is injectable: tests drive time by hand.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Literal

from meshauth.client._config import BreakerConfig

__all__ = ["CircuitBreaker", "StateName"]

StateName = Literal["closed", "open", "half_open"]
_BUCKETS = 10


class CircuitBreaker:
    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_transition: Callable[[StateName, StateName], None] | None = None,
    ) -> None:
        self._cfg = config or BreakerConfig()
        self._clock = clock
        self._on_transition = on_transition
        self._bucket_width = self._cfg.window / _BUCKETS
        self._by_checks = self._cfg.count == "checks"
        # [bucket index, calls, failures], oldest first
        self._buckets: collections.deque[list[int]] = collections.deque()
        self.state: StateName = "closed"
        self._generation = 0
        self._opened_at = 0.0
        self._probes_out = 0
        self._probe_successes = 0

    def _move(self, to: StateName) -> None:
        was = self.state
        self.state = to
        self._generation += 1
        self._buckets.clear()
        self._probes_out = 0
        self._probe_successes = 0
        if to == "open":
            self._opened_at = self._clock()
        if self._on_transition is not None:
            self._on_transition(was, to)

    def rejecting(self) -> bool:
        """True while open and not yet due for a probe: callers can fail fast without queueing."""
        return self.state == "open" and self._clock() - self._opened_at < self._cfg.open_for

    def allow(self) -> int | None:
        """A ticket to make one call, or None: refused (open, or every probe slot taken)."""
        if self.state == "closed":
            return self._generation
        if self.state == "open":
            if self._clock() - self._opened_at < self._cfg.open_for:
                return None
            self._move("half_open")
        if self._probes_out >= self._cfg.probes:
            return None
        self._probes_out += 1
        return self._generation

    def release(self, ticket: int) -> None:
        """Give back a ticket whose call was never made (e.g. the deadline had already passed)."""
        if ticket == self._generation and self.state == "half_open":
            self._probes_out -= 1

    def record(self, ticket: int, ok: bool, checks: int = 1) -> None:
        """The outcome of a call made with ``ticket``, carrying ``checks`` checks (a weight only with
        ``count="checks"``; half-open probes count calls either way)."""
        if ticket != self._generation:
            return
        if self.state == "half_open":
            self._probes_out -= 1
            if not ok:
                self._move("open")
                return
            self._probe_successes += 1
            if self._probe_successes >= self._cfg.probes:
                self._move("closed")
            return
        if self.state != "closed":
            return
        index = int(self._clock() // self._bucket_width)
        buckets = self._buckets
        while buckets and buckets[0][0] <= index - _BUCKETS:
            buckets.popleft()
        if not buckets or buckets[-1][0] != index:
            buckets.append([index, 0, 0])
        bucket = buckets[-1]
        weight = max(1, checks) if self._by_checks else 1
        bucket[1] += weight
        if ok:
            return
        bucket[2] += weight
        calls = sum(b[1] for b in buckets)
        if calls >= self._cfg.min_calls and sum(b[2] for b in buckets) >= self._cfg.failure_rate * calls:
            self._move("open")
