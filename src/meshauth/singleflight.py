"""Single-flight: concurrent calls for one key share one execution (and its result or exception).

The first caller for a key runs the work in a task of its own; later callers for the same key join
it while it is in flight. The work runs in a separate task so a caller that gives up (cancelled, out
of time) does not cancel it for the others. Once it finishes the key is forgotten: the next call
starts afresh (this is not a cache).

A caller that answers many keys with one piece of work (``PolicyClient.check_many``: one call for
a batch) claims them with :meth:`SingleFlight.lead` instead: a future per key, which the caller
must resolve, rather than a task per key (a task costs ~10 µs per key; the batch path costs ~5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


class SingleFlight(Generic[K, R]):
    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Future[R]] = {}
        self.joins = 0  # calls that shared another's execution (tests and metrics)

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, key: object) -> bool:
        """True while a call for ``key`` is in flight (a ``do`` now would join it)."""
        return key in self._calls

    async def do(self, key: K, work: Callable[[], Awaitable[R]]) -> R:
        task = self._calls.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._run(work))
            self._calls[key] = task
            task.add_done_callback(lambda _t: self._forget(key, _t))
        else:
            self.joins += 1
        # shield: one caller's cancellation must not cancel the shared work.
        return await asyncio.shield(task)

    def joined(self, key: K) -> asyncio.Future[R] | None:
        """The work in flight for ``key`` (counted as a join), or None: await it (shielded) later,
        even after it finished and the key was forgotten, and get its result."""
        task = self._calls.get(key)
        if task is not None:
            self.joins += 1
        return task

    def lead(self, key: K) -> asyncio.Future[R]:
        """Claim ``key`` (not in flight) for work the caller runs itself: later :meth:`do` calls
        for it join the returned future, which the caller must resolve (result or exception) and
        then :meth:`release` (at once: a done callback would forget the key only on the next loop
        turn, and a caller that goes on without yielding would join its own finished work)."""
        if key in self._calls:
            raise KeyError("already in flight")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._calls[key] = future
        future.add_done_callback(lambda _f: self._forget(key, _f))
        return future

    def release(self, key: K, future: asyncio.Future[R]) -> None:
        """``key``'s work led with :meth:`lead` is done: the next call starts afresh."""
        self._forget(key, future)

    async def _run(self, work: Callable[[], Awaitable[R]]) -> R:
        return await work()

    def _forget(self, key: K, task: asyncio.Future[R]) -> None:
        if self._calls.get(key) is task:
            del self._calls[key]
        if not task.cancelled():
            task.exception()  # retrieved: nobody may be left waiting when it failed
