"""Which loaded stores are idle: memory then follows the working set of stores (off when
``idle_unload_seconds`` is 0). A store asked for in neither of the last two sweeps (one sweep per
``idle_unload_seconds``) is unloaded, and loaded again on demand."""

from __future__ import annotations

import time
from collections.abc import Iterable

from meshauth.policy.stores import DEFAULT_STORE


class IdleStores:
    def __init__(self, *, sweep_seconds: float) -> None:
        self._sweep_seconds = sweep_seconds
        self._used: set[str] = set()
        self._unused_last_sweep: set[str] = set()
        self._next_sweep = time.monotonic() + sweep_seconds

    def used(self, name: str) -> None:
        self._used.add(name)

    def sweep_due(self) -> bool:
        """Whether a sweep is due now (then the next one is one period away)."""
        if self._sweep_seconds <= 0 or time.monotonic() < self._next_sweep:
            return False
        self._next_sweep = time.monotonic() + self._sweep_seconds
        return True

    def sweep(self, loaded: Iterable[str], busy: set[str]) -> list[str]:
        """The stores to unload now: loaded, not asked for since the previous sweep nor in the one
        before it (so idle between one and two periods), not being reloaded (``busy``), and never
        the default store."""
        unused = {n for n in loaded if n not in self._used and n != DEFAULT_STORE}
        gone = [n for n in unused if n in self._unused_last_sweep and n not in busy]
        self._unused_last_sweep = unused - set(gone)
        self._used = set()
        return gone
