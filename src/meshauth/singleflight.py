"""Single-flight: concurrent calls for one key share one execution (and its result or exception).

The first caller for a key runs the work in a task of its own; later callers for the same key join
it while it is in flight. The work runs in a separate task so a caller that gives up (cancelled, out
of time) does not cancel it for the others. Once it finishes the key is forgotten: the next call
starts afresh (this is not a cache).
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
        self._calls: dict[K, asyncio.Task[R]] = {}
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

    async def _run(self, work: Callable[[], Awaitable[R]]) -> R:
        return await work()

    def _forget(self, key: K, task: asyncio.Task[R]) -> None:
        if self._calls.get(key) is task:
            del self._calls[key]
        if not task.cancelled():
            task.exception()  # retrieved: nobody may be left waiting when it failed
