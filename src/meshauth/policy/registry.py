"""The compiled stores this process serves, and how they follow the database.

States: a store is *unloaded* until the first request names it, then *loaded* (its active version
compiled once into a :class:`~meshauth.policy.state.StoreState`), and unloaded again when idle. A
new state replaces the old one in a single dict assignment, so a request sees either the old or the
new policy set, never a mix.

Following other writers (``follow.py``): every ``refresh_interval`` seconds one cheap query reads the
revision and ``entities_version`` of the loaded stores. A changed revision recompiles the store; a changed
``entities_version`` drops the store's cached entities; a deleted store is unloaded. Workers on one
host also share a signal word mapped from a file in ``var_dir`` (``write_signal.py``): a write
changes it, and a worker that sees it changed refreshes before answering, so a write is visible to
the very next decision on any local worker.

A store whose active version cannot be served (over the upload limits, or refused by the engine's
compile: stored by an older release) is loaded as *unservable*: every decision for it answers a
503 naming the reason, the admin store view shows it, and nothing of it reaches the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth import collector
from meshauth.policy import stores
from meshauth.policy.cedar import Uid, compile_thread
from meshauth.policy.compiled_texts import CompiledTexts
from meshauth.policy.entity_cache import EntityCache
from meshauth.policy.errors import store_not_found, store_unavailable
from meshauth.policy.follow import FileStamps, SignalFollower
from meshauth.policy.idle import IdleStores
from meshauth.policy.missing import MissingStores
from meshauth.policy.servable import Unservable, check_schema_text
from meshauth.policy.snapshot import Snapshot
from meshauth.policy.snapshot_builds import SnapshotBuilds
from meshauth.policy.source_limits import Limits
from meshauth.policy.staged import StagedVersions
from meshauth.policy.state import (
    Compiled,
    IndexSettings,
    SnapshotView,
    StoreState,
    StoreView,
    compile_state,
    is_current,
    state_of,
)
from meshauth.policy.write_signal import WriteSignal

log = logging.getLogger(__name__)


class Registry:
    def __init__(
        self,
        engine: AsyncEngine,
        cache: EntityCache,
        *,
        index_enabled: bool = True,
        snapshot_max_entities: int = 0,
        signal_path: Path | None = None,
        limits: Limits | None = None,
        index: IndexSettings | None = None,
        idle_unload_seconds: float = 0.0,
    ) -> None:
        self._engine = engine
        self._limits = limits or Limits()
        self._stamps = FileStamps(engine.url)
        self._missing = MissingStores()
        self._follower = (
            SignalFollower(WriteSignal(signal_path), lambda: self.refresh(force=True), self._missing.clear)
            if signal_path is not None
            else None
        )
        self._cache = cache
        self._index = index if index is not None else IndexSettings(enabled=index_enabled)
        self._states: dict[str, StoreState] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # only for stores that exist (or are being looked up)
        self._snapshots = SnapshotBuilds(engine, self._states.get, max_entities=snapshot_max_entities)
        self._idle = IdleStores(sweep_seconds=idle_unload_seconds)
        self._texts = CompiledTexts(index=self._index, limits=self._limits)
        self.staged = StagedVersions(engine, self._texts)  # for the clients' warmers (staged.py)

    def snapshot_for(self, state: StoreState) -> Snapshot | None:
        """The store's entity snapshot when it is current; else start a rebuild and return None."""
        return self._snapshots.for_state(state)

    async def snapshots_built(self) -> None:
        """Wait for the snapshot builds under way (for tests and tools; shutdown cancels them)."""
        await self._snapshots.wait()

    def announce(self) -> None:
        """After a write: tell the other workers on this host (they share ``var_dir``) to re-read
        the database before their next decision, instead of at their next refresh tick."""
        self._missing.clear()  # the write may have created a store
        if self._follower is not None:
            self._follower.signal.bump()

    async def get(self, name: str) -> StoreState:
        """The store's compiled state (loaded on first use), or a 404."""
        if self._follower is not None:
            await self._follower.follow()
        state = self._states.get(name)
        if state is None:
            if self._missing.recently(name):
                raise store_not_found(name)
            state = await self.reload(name)
            if state is None:
                self._missing.add(name)
                raise store_not_found(name)
        self._idle.used(name)
        if state.problem is not None:
            raise store_unavailable(name, state.active_version, state.problem)
        return state

    def describe(self, name: str) -> StoreView:
        """What this process serves for ``name`` (for the admin API and operators)."""
        state = self._states.get(name)
        snap = self._snapshots.latest(name)
        current = state is not None and is_current(snap, state)
        return StoreView(
            loaded_revision=state.revision if state else None,
            unservable=state.problem if state else None,
            policies=len(state.index) if state else None,
            snapshot=SnapshotView(snap.size, snap.entities_version, current) if snap else None,
        )

    def loaded(self) -> list[str]:
        return list(self._states)

    def locked_names(self) -> list[str]:
        """Names holding a reload lock: only stores that exist or are being looked up right now."""
        return list(self._locks)

    async def reload(self, name: str, compiled: Compiled | None = None) -> StoreState | None:
        """Read the store from the database and compile it, unless that revision is already loaded
        (or ``compiled`` holds its active text, compiled under its schema)."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            async with self._engine.begin() as conn:
                found = await stores.get_with_text(conn, name)
                if found is None:
                    self._forget(name)
                    if self._locks.get(name) is lock:
                        del self._locks[name]  # keep no lock per name asked for that does not exist
                    return None
                row, text = found
                current = self._states.get(name)
                if current is not None and current.revision == row.revision:
                    if current.entities_version != row.entities_version:
                        self._cache.clear_store(name)
                        current = replace(current, entities_version=row.entities_version)
                        self._states[name] = current
                    return current
            self._missing.discard(name)
            try:
                schema = (row.schema_text, row.schema_format)
                if compiled is not None and compiled.text == text and compiled.schema == schema:
                    state = replace(
                        compiled.state,
                        name=name,
                        revision=row.revision,
                        active_version=row.active_version,
                        entities_version=row.entities_version,
                        attribute_precedence=row.attribute_precedence,
                    )
                else:
                    state = await self.compile(row, text)
            except Unservable as exc:
                log.error(
                    "policy store %r: active version %s cannot be served, so its decisions answer 503 "
                    "until a servable version is activated: %s",
                    name,
                    row.active_version,
                    exc,
                )
                state = await self._unservable(row, str(exc))
            if current is None or current.entities_version != row.entities_version:
                self._cache.clear_store(name)
            if current is None:
                await self._snapshots.first_load(state)
            self._states[name] = state
            # Compiled policies and cached entities live as long as the state: frozen out of the
            # collector's walk (states hold no cycles, so nothing frozen here is garbage that lingers).
            collector.settle()
            self._snapshots.for_state(state)  # a new revision needs its own snapshot: start it now
            return state

    async def compile(self, row: stores.StoreRow, text: str) -> StoreState:
        """Compile ``text`` under ``row``'s schema exactly as this worker serves it, behind the upload
        limits, on an engine thread. Raises :class:`Unservable`. (Uploads call this before writing.)"""
        check_schema_text(row.schema_text, row.schema_format, self._limits)
        # The previous version's hottest request keys are compiled before the new one serves, here
        # for uploads as for activations by another writer, so an activation causes no compile cliff.
        current = self._states.get(row.name)
        hot = current.index.hot_keys(self._index.warm_keys) if current is not None else []
        compiled = await self._texts.get(text, row.schema_text, row.schema_format, hot_keys=hot)
        return state_of(row, compiled)

    async def _unservable(self, row: stores.StoreRow, problem: str) -> StoreState:
        """A state that answers nothing: no policies, no schema (either may be what cannot be served)."""
        bare = replace(row, schema_text=None, schema_format=None)
        empty = await compile_thread(compile_state, bare, "", index_enabled=False)
        return replace(empty, problem=problem)

    def unload_idle(self) -> list[str]:
        """One sweep: unload the stores not asked for since the previous sweep nor in the one
        before it (so a store is idle between one and two sweep periods before it goes). Memory
        then follows the working set of stores; a request for an unloaded store loads it again
        (docs/performance.md says what that costs). The default store stays loaded."""
        busy = {n for n, lock in self._locks.items() if lock.locked()}
        gone = self._idle.sweep(self._states, busy)
        for name in gone:
            self._forget(name)
        if gone:
            log.info("unloaded %d idle policy stores", len(gone))
        return gone

    def cache_drop(self, name: str, uids: list[Uid], previous: int, new: int) -> None:
        """After a local entity write: drop exactly what was written, and note the new version so
        the refresh loop does not clear the whole cache for our own write. When another writer came
        between (the version moved by more than one), the refresh loop clears everything instead.
        """
        self._cache.drop(name, uids)
        state = self._states.get(name)
        if state is not None and state.entities_version == previous and new == previous + 1:
            state = replace(state, entities_version=new)
            self._states[name] = state
            # Start the snapshot rebuild now rather than at the next decision: a store's first
            # decisions right after its creation then find it built (issue 8, 1,000 new stores).
            self._snapshots.for_state(state)

    def _forget(self, name: str) -> None:
        self._snapshots.forget(name)
        if self._states.pop(name, None) is not None:  # only a loaded store has cached entities
            self._cache.clear_store(name)

    async def refresh(self, *, force: bool = False) -> None:
        """One pass of the follow-the-database check."""
        names = self.loaded()
        if not names:
            return
        if not force and self._stamps.unchanged():
            return
        pending = self._stamps.pending
        async with self._engine.connect() as conn:
            heads = await stores.heads(conn, names)
        self._stamps.seen(pending)
        for name in names:
            state = self._states.get(name)
            head = heads.get(name)
            if state is None:
                continue
            if head is None or head[2]:
                if name == stores.DEFAULT_STORE and head is not None:
                    await self.reload(name)
                else:
                    self._forget(name)
                continue
            revision, entities_version, _ = head
            if revision != state.revision or entities_version != state.entities_version:
                await self.reload(name)

    async def run_refresh(self, interval: float) -> None:
        """Refresh forever (a lifespan task); a failing database only delays following it."""
        while True:
            await asyncio.sleep(interval)
            try:
                # A replaced signal file (var_dir wiped) is mapped again; writes announced in the
                # new one were missed here, so look at the database now.
                replaced = self._follower is not None and self._follower.signal.check_file()
                await self.refresh(force=replaced)
                if self._idle.sweep_due():
                    self.unload_idle()
            except Exception:  # keep serving what is loaded; the log says why
                log.warning("policy store refresh failed", exc_info=True)

    @contextlib.asynccontextmanager
    async def refreshing(self, interval: float) -> AsyncIterator[Registry]:
        task = asyncio.create_task(self.run_refresh(interval))
        try:
            yield self
        finally:
            for t in (task, *self._snapshots.tasks()):
                t.cancel()
            for t in (task, *self._snapshots.tasks()):
                with contextlib.suppress(asyncio.CancelledError):
                    await t
