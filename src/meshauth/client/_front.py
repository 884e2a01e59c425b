"""The L1 hit path: ``PolicyClient.check``'s first step, and all of ``PolicyClient.cached``.

A warm gate answers almost every request here, so it is a plain method (no coroutine) that does the
least it can: the state the check must be answered at (the newest one seen, or the caller's
``at_least`` floor), the L1 key at that state (``_keys``: ``(revision, entities_version,
request key)``), one lookup, and the counts. It returns what a miss needs to go on with.
"""

from __future__ import annotations

from meshauth.client._answers import outcome
from meshauth.client._cache import DecisionL1
from meshauth.client._hot import HotKeys
from meshauth.client._keys import L1Key
from meshauth.client._metrics import CACHE, CHECKS
from meshauth.client._models import Consistency, Decision, State
from meshauth.client._tracking import StateTracker

__all__ = ["L1Front"]


class L1Front:
    __slots__ = ("_hot", "_l1", "_tracker")

    def __init__(self, l1: DecisionL1 | None, hot: HotKeys | None, tracker: StateTracker) -> None:
        self._l1 = l1  # None: the cache is off
        self._hot = hot
        self._tracker = tracker

    def lookup(self, rkey: bytes, consistency: Consistency) -> tuple[Decision | None, State | None, L1Key | None]:
        """(a fresh L1 decision or None, the state the check must be answered at or later, the L1 key
        to fill — None when the cache is off, nothing was seen yet, or the check bypasses caches)."""
        floor = self._tracker.seen
        if consistency.state is not None:
            floor = consistency.state.join(floor)
        if self._hot is not None:
            self._hot.seen(rkey)
        l1 = self._l1
        if l1 is None or floor is None or consistency.mode == "fully_consistent":
            return None, floor, None
        ck = (floor.revision, floor.entities_version, rkey)
        hit = l1.get(ck)
        if hit is not None:
            CACHE.add("l1", "hit")
            CHECKS.add(outcome(hit), hit.source)
            return hit, floor, ck
        CACHE.add("l1", "miss")
        return None, floor, ck

    def hit(self, rkey: bytes) -> Decision | None:
        """:meth:`lookup` as a check with ``MINIMIZE_LATENCY`` makes it, counted only when it hits (the
        caller then asks ``check``, which counts the miss): one check, counted once either way."""
        floor = self._tracker.seen
        l1 = self._l1
        if l1 is None or floor is None:
            return None
        hit = l1.get((floor.revision, floor.entities_version, rkey))
        if hit is not None:
            if self._hot is not None:
                self._hot.seen(rkey)
            CACHE.add("l1", "hit")
            CHECKS.add(outcome(hit), hit.source)
        return hit
