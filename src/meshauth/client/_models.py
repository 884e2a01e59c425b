"""What a check answers (:class:`Decision`), the store state it was made at (:class:`State`), and how
fresh an answer must be (:class:`Consistency`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

from meshauth.wire import Resource, Subject

__all__ = [
    "FULLY_CONSISTENT",
    "MINIMIZE_LATENCY",
    "REASON_INVALID_REQUEST",
    "REASON_UNAVAILABLE",
    "STATE_MAX",
    "Check",
    "Consistency",
    "Decision",
    "Source",
    "State",
    "at_least",
]

# ``Decision.error`` (and its only reason) when there is no genuine decision:
# the service could not answer (down, slow, overloaded, breaker open, garbage, refused our credential)…
REASON_UNAVAILABLE: Final = "policy_unavailable"
# …or it answered that the question itself is malformed (400/413, or a failed batch item).
REASON_INVALID_REQUEST: Final = "invalid_request"

Source = Literal["service", "l1", "l2", "stale", "none"]

# The largest revision or entities version a store can have (the service keeps both as SQL BIGINT).
# A number past it, or below 0, is garbage wherever it comes from (an answer, an announcement): one
# taken as a state would be "newer" than every real one, and the client — which never answers from a
# state older than one it has seen — would refuse every answer of the service from then on.
STATE_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class State:
    """A store's state: the policy ``revision`` and, when the service reports it, the
    ``entities_version``. Both only grow, independently, so states are partially ordered:
    ``a.covers(b)`` when ``a`` is at least as new as ``b`` in both (an unknown version covers)."""

    revision: int
    entities_version: int | None = None

    def covers(self, other: State | None) -> bool:
        if other is None:
            return True
        if self.revision < other.revision:
            return False
        return (
            self.entities_version is None
            or other.entities_version is None
            or (self.entities_version >= other.entities_version)
        )

    def join(self, other: State | None) -> State:
        """The least state that covers both (``other`` itself when they are equal: a tracker joining
        an answer's state into its own keeps its object, which ``is`` then finds on the hot path)."""
        if other is None:
            return self
        if other is self or self == other:
            return other
        ev: int | None
        if self.entities_version is None:
            ev = other.entities_version
        elif other.entities_version is None:
            ev = self.entities_version
        else:
            ev = max(self.entities_version, other.entities_version)
        return State(max(self.revision, other.revision), ev)


@dataclass(frozen=True, slots=True)
class Consistency:
    """How fresh an answer must be. Use the constants and :func:`at_least`."""

    mode: Literal["minimize_latency", "at_least", "fully_consistent"]
    state: State | None = None


MINIMIZE_LATENCY: Final = Consistency("minimize_latency")
"""Caches may answer (never from a state older than one this client has seen)."""
FULLY_CONSISTENT: Final = Consistency("fully_consistent")
"""Bypass the caches: the service decides."""


def at_least(state: State) -> Consistency:
    """Answer from ``state`` or newer (e.g. the state a write returned): caches may answer only then."""
    if not isinstance(state, State):
        raise TypeError("at_least() takes a State")
    return Consistency("at_least", state)


class Decision(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One check's answer. ``decision`` is True only for a genuine allow from the policy service.

    Not tracked by the garbage collector (its fields are strings, numbers and tuples of strings: it
    cannot be part of a cycle), so an L1 of many answers adds nothing to a full collection's walk.

    ``reasons``: the determining policies (their ``@id``), or ``(error,)`` when there was no decision;
    ``errors``: the engine's evaluation errors; ``revision``/``entities_version``: the state decided
    at (None when no decision); ``error``: None, :data:`REASON_UNAVAILABLE` or
    :data:`REASON_INVALID_REQUEST`; ``source``: who answered (service, a cache level, a stale cache
    entry under ``stale_if_error``, or nobody).
    """

    decision: bool
    reasons: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    revision: int | None = None
    entities_version: int | None = None
    error: str | None = None
    source: Source = "service"

    @property
    def state(self) -> State | None:
        return None if self.revision is None else State(self.revision, self.entities_version)


def unavailable(detail: str) -> Decision:
    return Decision(
        decision=False, reasons=(REASON_UNAVAILABLE,), errors=(detail,), error=REASON_UNAVAILABLE, source="none"
    )


@dataclass(frozen=True, slots=True)
class Check:
    """One question for :meth:`PolicyClient.check_many`."""

    subject: Subject | dict[str, Any]
    action: str
    resource: Resource | dict[str, Any]
    context: dict[str, Any] | None = None
