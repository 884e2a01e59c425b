"""The store state a client answers at, and how it moves (see ``_client.py`` for why it matters).

``seen`` is the join of every state learned: from answers, from :meth:`StateTracker.advance`, and
from announcements (:meth:`StateTracker.announced`). Cache lookups are keyed by it, so moving it
retires every older entry at once.

With warming on, an announced new policy revision (an activation, a schema change) is not adopted
at once: the warm loop first asks this process's hottest questions at it (``_warming.py``, at most
``WarmConfig.budget`` seconds), then adopts it: an activation costs no cache cliff, and shows at
most the budget later. While the loop runs, an answer from the newer state is returned to its caller
and cached under that state, but adopting it is left to the loop (adopting it early would make the
whole hot set miss at once). Whatever happens to warming, the loop adopts the state in the end. An
entity-only change is adopted at once.
"""

from __future__ import annotations

import asyncio
import logging

from meshauth.client._models import State
from meshauth.client._warming import Warmer

__all__ = ["StateTracker"]

log = logging.getLogger(__name__)


def _covers(a: State | None, b: State) -> bool:
    """``a`` already holds everything ``b`` says (``State.covers`` counts an unknown entities
    version as covering; here a known one is news)."""
    return a is not None and b.join(a) == a


class StateTracker:
    def __init__(self, store: str, warmer: Warmer | None) -> None:
        self.seen: State | None = None
        self._store = store
        self._warmer = warmer
        self._target: State | None = None  # the newest state announced (or answered) while warming
        self._warming_to: State | None = None  # the state the warm loop is asking the hot set at
        self._loop_task: asyncio.Task[None] | None = None

    def advance(self, state: State) -> None:
        self.seen = state.join(self.seen)

    def learn(self, state: State) -> None:
        """A service answer was made at ``state``."""
        if self._warming_to is not None and not _covers(self.seen, state):
            self._target = state.join(self._target)  # the warm loop adopts it when the hot set is warm
            return
        self.seen = state.join(self.seen)

    def announced(self, state: State) -> None:
        if _covers(self.seen, state):
            return
        idle = self._loop_task is None or self._loop_task.done()
        new_policy = self.seen is None or state.revision > self.seen.revision
        if self._warmer is None or (idle and not (new_policy and len(self._warmer.hot))):
            # Nothing to warm, or only entities changed: adopt it now. (Re-asking the hot set on
            # every entity write would multiply the service's load by the write rate.)
            self.advance(state)
            return
        self._target = state.join(self._target)
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._warm_loop())

    async def _warm_loop(self) -> None:
        assert self._warmer is not None
        while self._target is not None and not _covers(self.seen, self._target):
            target = self._warming_to = self._target
            try:
                await self._warmer.rewarm(target)
            except Exception:  # warming is an optimisation: it must never stop the change
                log.warning("warming store %r for %s failed", self._store, target, exc_info=True)
            finally:
                self._warming_to = None
                self.advance(target)

    async def warm_on_start(self) -> int:
        if self._warmer is None:
            return 0
        self._warmer.ensure_pushing()
        state, found = await self._warmer.start()
        if state is not None:
            self.advance(state)
        return found

    async def aclose(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._warmer is not None:
            await self._warmer.aclose()
