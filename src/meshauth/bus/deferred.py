"""Audit hooks' work, run after the request's answer is out: ``Producer.later(fn, *args)``.

A hook called where a request is answered (the gate's check, a policy decision) hands its arguments
here — one tuple appended, ~0.2 µs — and the event is built, encoded and buffered by one callback a
moment later, for every hook queued meanwhile. Why not at once, after ``send``: granian hands an
answer to its I/O thread only once the event loop lets go — measured on this machine, a handler that
spins 2 ms after its last ``send`` is answered in 2.29 ms instead of 0.27 ms — so whatever a hook does
in the request's own step is the request's latency. The callback runs on a timer (``delay``), after
the loop has been back to its poll and the answers of this step are written.

Hooks run in the order they were queued; one that raises is logged and the rest still run (an audit
bug must not cost other events). ``run_now`` empties the queue at once (shutdown, before the drain).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

DELAY = 0.001  # seconds from the first queued hook to the callback that runs them all


class Deferred:
    def __init__(self, delay: float = DELAY) -> None:
        self._delay = delay
        self._queue: list[tuple[Callable[..., object], tuple[Any, ...]]] = []
        self._handle: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> int:
        return len(self._queue)

    def add(self, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._queue.append((fn, args))
        if self._handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous caller): nothing to wait for
                self.run_now()
                return
            self._handle = loop.call_later(self._delay, self.run_now)

    def run_now(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        queue, self._queue = self._queue, []
        for fn, args in queue:
            try:
                fn(*args)
            except Exception:
                log.exception("audit hook failed; its event is lost, the others are not")
