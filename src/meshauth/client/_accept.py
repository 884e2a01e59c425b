"""A service answer to one check, accepted: checked against the state the check was asked at, kept
in the caches under the state it stands for, and learned (``PolicyClient.check``'s misses)."""

from __future__ import annotations

from meshauth.client._answers import Unavailable
from meshauth.client._models import Decision, State
from meshauth.client._stored import DecisionStore
from meshauth.client._tracking import StateTracker

__all__ = ["accept"]


def accept(
    d: Decision, floor: State | None, rkey: bytes, stored: DecisionStore | None, tracker: StateTracker
) -> Decision:
    """``d`` as the check's answer, or :class:`Unavailable` if it comes from a state older than
    ``floor`` (one already seen). An L2 hit is in L1 already; a bad question's answer is never kept."""
    if d.source == "l2" or d.error is not None:
        return d
    if floor is not None and d.revision == floor.revision and d.entities_version == floor.entities_version:
        state = floor  # the usual answer: made at the very state it was asked at (no State built)
    else:
        made = d.state
        assert made is not None
        if not made.covers(floor):
            raise Unavailable(f"the service answered from revision {made.revision}, older than one already seen")
        # Asked at ``floor`` or later, the answer stands for ``floor`` too (or a client that advanced
        # on an announcement would never hit what it stores).
        state = made.join(floor)
    if stored is not None:
        if stored.l2 is not None:
            stored.l2.trusted = True  # the state known now is the service's: L2 under it stands
        stored.put(rkey, d, state)
    if state is not tracker.seen:  # learning the state already seen changes nothing
        tracker.learn(state)
    return d
