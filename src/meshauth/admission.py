"""Admission for memos: remember a key's value from its second sighting, not its first.

The gate's memos (``routes.RouteTable``'s matches, ``auth.authz_questions.Questions``) pay for warm
traffic, which asks the same few paths again and again. Traffic that never repeats a path (ids in
paths, the cold benchmark) filled them with entries nobody read: each never-seen path left 8
objects the collector tracks (a route match, its resource, a prepared question and its parts),
inserted, walked by every young collection until promoted, and dropped at the next clear — the
collector's share of a cold check was ~8.6 µs (docs/performance.md, "Stop 23"). A key seen once is
only noted, as its hash in a set of ints (which the collector does not walk); seen again, it is
admitted. A hash collision admits a key one sighting early: the memo's answer is still its own.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["SecondSight"]


class SecondSight:
    """``admit(key)``: False the first time a key is offered (it is noted), True from the second.
    At most ``limit`` keys are noted; then the notes start again (a key may wait one more sighting)."""

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int) -> None:
        self._seen: set[int] = set()
        self._limit = limit

    def admit(self, key: Hashable) -> bool:
        h = hash(key)
        seen = self._seen
        if h in seen:
            return True
        if len(seen) >= self._limit:
            seen.clear()
        seen.add(h)
        return False
