"""When each store's entity snapshot is (re)built: in the background, one build at a time, spaced
so that a stream of entity writes does not keep a core busy re-reading the store."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth import collector
from meshauth.policy import snapshot
from meshauth.policy.snapshot import REBUILD_PAUSE_SECONDS, Snapshot
from meshauth.policy.state import StoreState, is_current

log = logging.getLogger(__name__)
REBUILD_SPACING = 4.0  # idle time after a snapshot build, as a multiple of how long it took
# A store with at most this many entities has its snapshot read while it loads (parsing: ~10 µs an
# entity, so ≤ ~20 ms on the first request), not queued behind every other store's build.
FIRST_LOAD_MAX_ENTITIES = 2_000


class SnapshotBuilds:
    """The current snapshot of each loaded store, and the builds under way (off when
    ``max_entities`` is 0). ``current`` answers the state a store is loaded at now (None: unloaded)."""

    def __init__(self, engine: AsyncEngine, current: Callable[[str], StoreState | None], *, max_entities: int) -> None:
        self._engine = engine
        self._current = current
        self._max = max_entities
        self._snapshots: dict[str, Snapshot] = {}
        self._too_big: dict[str, int] = {}  # store → entities_version found over the snapshot limit
        self._building: dict[str, asyncio.Task[None]] = {}
        self._next_build: dict[str, float] = {}  # store → monotonic time the next rebuild may start
        # Snapshot builds run one at a time: right after 1,000 stores are created, their first
        # requests would otherwise start 1,000 builds at once, whose queries queue in front of every
        # request's own (measured: 45 decisions/s for the first seconds, against ~3,000 warm).
        self._build_slots = asyncio.Semaphore(1)

    def latest(self, name: str) -> Snapshot | None:
        """The last snapshot built for ``name``, current or not."""
        return self._snapshots.get(name)

    def for_state(self, state: StoreState) -> Snapshot | None:
        """The store's entity snapshot when it is current; else start a rebuild and return None."""
        snap = self._snapshots.get(state.name)
        if is_current(snap, state):
            return snap
        if (
            self._max > 0
            and state.name not in self._building
            and self._too_big.get(state.name) != state.entities_version
        ):
            self._building[state.name] = asyncio.create_task(self._rebuild(state.name))
        return None

    async def first_load(self, state: StoreState) -> None:
        """Read a small store's snapshot as part of loading it (the caller publishes ``state``
        after this). After a restart a thousand stores load at once: queued one at a time behind
        each other's builds, each store's requests went through the loader, a few SQL queries
        each, until its turn came (~300 decisions/s for the first seconds). A bigger store, or
        one written meanwhile, gets its build in the background as before."""
        if self._max <= 0 or state.problem is not None:
            return
        try:
            snap = await snapshot.read_small_snapshot(
                self._engine,
                state.name,
                limit=min(self._max, FIRST_LOAD_MAX_ENTITIES),
                revision=state.revision,
                entities_version=state.entities_version,
                schema=state.schema,
            )
        except Exception:
            log.warning("entity snapshot of store %r at load failed", state.name, exc_info=True)
            return
        if snap is not None:
            self._snapshots[state.name] = snap

    def forget(self, name: str) -> None:
        self._snapshots.pop(name, None)

    async def wait(self) -> None:
        """Until no build is under way (builds never raise: a failed one is logged)."""
        while self._building:
            await asyncio.gather(*self._building.values())

    def tasks(self) -> list[asyncio.Task[None]]:
        """The builds under way (to cancel at shutdown)."""
        return list(self._building.values())

    async def _rebuild(self, name: str) -> None:
        """Build the store's snapshot in the background, at most ~20 % of the time.

        Under a stream of entity writes every write makes the snapshot stale; rebuilding right away
        each time would keep a core busy re-reading the store. So a rebuild starts no sooner than
        ``REBUILD_SPACING`` × the last build's duration after the last one ended; until then the
        loader answers (correct, only slower).
        """
        try:
            while (state := self._current(name)) is not None:
                wait = self._next_build.get(name, 0.0) - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue  # the store may have moved on (or gone) while we waited
                async with self._build_slots:
                    started = time.monotonic()
                    snap = await snapshot.read_snapshot(
                        self._engine,
                        name,
                        max_entities=self._max,
                        revision=state.revision,
                        schema=state.schema,
                    )
                    ended = time.monotonic()
                self._next_build[name] = ended + REBUILD_SPACING * (ended - started)
                current = self._current(name)
                if current is None:
                    return
                if snap is None and current.entities_version == state.entities_version:
                    self._too_big[name] = state.entities_version  # or unparsable: don't retry this version
                    return
                if is_current(snap, current):
                    self._snapshots[name] = snap
                    collector.settle()  # the snapshot lives as long as its state: out of the walk
                    return
                await asyncio.sleep(REBUILD_PAUSE_SECONDS)  # the store moved on meanwhile: try again
        except Exception:  # the loader keeps serving; say why in the log
            log.warning("entity snapshot of store %r failed", name, exc_info=True)
        finally:
            self._building.pop(name, None)
