"""Single-flight for the client's misses without a task per miss.

``meshauth.singleflight.SingleFlight`` runs every call's work in a task of its own and every caller
awaits it through ``asyncio.shield``, so a caller that gives up does not cancel the work for others.
Under cold load every check is a miss and almost none is ever joined, so that task and shield were
paid on every cold check (~4.5 % of the gate's samples, docs/performance.md issue 10 "Run 6") for a
join that rarely comes. Here the first caller (the leader) runs the work in its own task, inline, and
only callers that join wait on a future (through a shield: a joiner giving up cancels nothing).

What a leader's cancellation means changes, and is made safe: when the leader is cancelled (its own
deadline), its work stops — its joiners are not failed with it, they start over (one of them leads a
fresh call under its own deadline). A failure of the work itself is every joiner's failure, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from meshauth.client._models import State

__all__ = ["FlightKey", "Flights", "LeaderGone", "flight_key"]

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


# (consistency mode, the floor's revision and entities_version, request key): the floor's fields
# rather than the State, whose dataclass ``__hash__`` runs Python (~0.5 µs a hash, 5 per miss).
FlightKey = tuple[str, int | None, int | None, bytes]


def flight_key(mode: str, floor: State | None, rkey: bytes) -> FlightKey:
    """What identifies a check for single-flight: the same question asked at the same state."""
    if floor is None:
        return (mode, None, None, rkey)
    return (mode, floor.revision, floor.entities_version, rkey)


class LeaderGone(Exception):
    """The leader was cancelled: its joiners start over."""


class Flights(Generic[K, R]):
    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Future[R]] = {}
        self.joins = 0  # calls that shared another's execution (tests and metrics)

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, key: object) -> bool:
        """True while a call for ``key`` is in flight (a ``do`` now would join it)."""
        return key in self._calls

    async def do(self, key: K, work: Callable[[], Awaitable[R]]) -> R:
        calls = self._calls
        while (joined := calls.get(key)) is not None:
            self.joins += 1
            try:
                return await asyncio.shield(joined)
            except LeaderGone:
                continue
        shared: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        calls[key] = shared
        try:
            result = await work()
        except asyncio.CancelledError:
            shared.set_exception(LeaderGone())
            raise
        except BaseException as exc:
            shared.set_exception(exc)
            raise
        else:
            shared.set_result(result)
            return result
        finally:
            if calls.get(key) is shared:
                del calls[key]
            if shared.done() and not shared.cancelled():
                shared.exception()  # retrieved: nobody may have joined

    def lead(self, key: K) -> asyncio.Future[R]:
        """Claim ``key`` (not in flight) for work the caller runs itself (``check_many``): later
        :meth:`do` calls join the returned future, which the caller resolves (a result, an
        exception, or :class:`LeaderGone` to make joiners start over) then calls :meth:`release`."""
        if key in self._calls:
            raise KeyError("already in flight")
        shared: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._calls[key] = shared
        return shared

    def release(self, key: K, shared: asyncio.Future[R]) -> None:
        """``key``'s work led with :meth:`lead` is done: the next call starts afresh."""
        if self._calls.get(key) is shared:
            del self._calls[key]
        if shared.done() and not shared.cancelled():
            shared.exception()  # retrieved: nobody may have joined

    def joined(self, key: K) -> asyncio.Future[R] | None:
        """The future of ``key``'s call in flight, to await through ``asyncio.shield`` (a join), or None."""
        shared = self._calls.get(key)
        if shared is not None:
            self.joins += 1
        return shared
