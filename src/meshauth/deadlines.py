"""Deadlines for reading request bodies, enforced by one sweep timer per event loop.

hyper (under granian) has no timer for request bodies, so the body readers bound them. The obvious
tool, ``asyncio.timeout``, arms and cancels a loop timer on every use: measured 3–9 µs a request
under uvloop on this machine class, against ~50 µs for a whole decision. Here a read puts its task
and deadline in a dict (well under a microsecond); one timer per loop, armed only while reads are
pending, cancels the tasks whose deadline has passed; ``BodyDeadline.__exit__`` turns that
cancellation into ``TimeoutError``, the contract ``asyncio.timeout`` has. The sweep runs every
``min(1 s, timeout / 4)``, so a read is cut at most that long after its deadline.

States of a registered read: *pending* (in ``_reads``), then either *finished* (left on its own)
or *expired* (cancelled by the sweep, in ``_expired`` until its ``__exit__`` claims the
cancellation and undoes it with ``Task.uncancel``).
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any

_MAX_SWEEP_INTERVAL = 1.0


class _Sweeper:
    """The deadlines of one process's body reads, and the one timer that enforces them."""

    def __init__(self) -> None:
        self._reads: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def start(self, task: asyncio.Task[Any], timeout: float) -> None:
        self._reads[task] = time.monotonic() + timeout
        loop = task.get_loop()
        if self._timer is None or self._timer_loop is not loop:  # none armed, or armed on a finished loop
            self._arm(loop, timeout)

    def finish(self, task: asyncio.Task[Any]) -> bool:
        """Unregister ``task``; True when the sweep cancelled it (the caller owns that cancellation)."""
        self._reads.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _arm(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._timer = loop.call_later(min(_MAX_SWEEP_INTERVAL, timeout / 4), self._sweep, loop, timeout)
        self._timer_loop = loop

    def _sweep(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._timer = None
        now = time.monotonic()
        for task, deadline in list(self._reads.items()):
            if task.get_loop() is not loop:
                continue
            if deadline <= now:
                del self._reads[task]
                self._expired.add(task)
                task.cancel()
        if any(task.get_loop() is loop for task in self._reads):
            self._arm(loop, timeout)


_sweeper = _Sweeper()


class BodyDeadline:
    """``with BodyDeadline(seconds):`` around a body read: ``TimeoutError`` when it takes longer."""

    __slots__ = ("_task", "_timeout")

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._task: asyncio.Task[Any] | None = None

    def __enter__(self) -> None:
        self._task = asyncio.current_task()
        if self._task is not None:
            _sweeper.start(self._task, self._timeout)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is None:
            return
        if _sweeper.finish(self._task):
            self._task.uncancel()
            if exc_type is None or exc_type is asyncio.CancelledError:
                raise TimeoutError(f"body not read within {self._timeout:g} s") from None
