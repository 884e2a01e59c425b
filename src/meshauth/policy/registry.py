"""The compiled stores this process serves, and how they follow the database.

States: a store is *unloaded* until the first request names it, then *loaded* (its active version
compiled once into a :class:`StoreState`). A new state replaces the old one in a single dict
assignment, so a request sees either the old or the new policy set, never a mix.

Following other writers: every ``refresh_interval`` seconds one cheap query reads the revision and
``entities_version`` of the loaded stores. A changed revision recompiles the store; a changed
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
import functools
import gc
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.policy import stores
from meshauth.policy.cedar import Schema, Uid, compile_thread, parse_policies, parse_schema, schema_action_parents
from meshauth.policy.entities import EntityCache
from meshauth.policy.errors import store_not_found, store_unavailable
from meshauth.policy.index import DEFAULT_CACHE_KEYS, DEFAULT_MIN_POLICIES, Key, PolicyIndex, condition_facts
from meshauth.policy.servable import Unservable, check_schema_text, checked
from meshauth.policy.snapshot import REBUILD_PAUSE_SECONDS, Snapshot, read_snapshot
from meshauth.policy.source import Limits
from meshauth.policy.write_signal import WriteSignal

log = logging.getLogger(__name__)
REBUILD_SPACING = 4.0  # idle time after a snapshot build, as a multiple of how long it took
MISSING_TTL = 1.0  # seconds a store found missing is answered 404 without asking the database
MISSING_MAX = 10_000  # names remembered as missing (the decision API is unauthenticated)


@dataclass(frozen=True, slots=True)
class StoreState:
    name: str
    revision: int
    active_version: int | None
    index: PolicyIndex
    schema: Schema | None
    # The action hierarchy a schema declares; None when the store has no schema (then action
    # entities and their parents come from the store's entities, like any other entity).
    schema_actions: dict[Uid, tuple[Uid, ...]] | None
    entities_version: int
    # Entities the policy text names literally (``Config::"global".lockdown``): the loader fetches
    # them for every request, as the snapshot holds them.
    literals: tuple[Uid, ...] = ()
    # How many entity-reference hops the policies can follow (``resource.owner.boss.x``: 3); None
    # when unknown (the loader then follows references as deep as parents).
    ref_hops: int | None = None
    # Whose attribute wins when a request's ``properties`` name one the stored entity holds
    # (``stores.PRECEDENCES``); changing it bumps the revision, so a state never mixes the two.
    attribute_precedence: str = "request"
    # Why the active version cannot be served (then ``index`` is empty and ``get`` answers 503).
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Compiled:
    """A state an admin write compiled to check ``text`` under a schema: ``reload`` serves it
    instead of compiling the same text again (a 10,000-policy store compiles for seconds)."""

    schema: tuple[str | None, str | None]  # (text, format)
    text: str
    state: StoreState


def policy_ref_hops(text: str) -> int | None:
    """A bound on how deep the policies' conditions can follow entity references: an entity reached
    after ``n`` accesses is read by the next one, so ``n`` accesses need ``n`` hops loaded at most."""
    return condition_facts(text).ref_hops


def policy_literals(text: str) -> tuple[Uid, ...]:
    """The entity uids written in the policies' conditions, each once.

    Scope uids (``principal in Group::"g"``, ``action == Action::"view"``) are left out: a scope is
    decided from the request entities' ancestors, never from the named entity's own data, and a
    store of per-user policies would otherwise load every user for every request.
    """
    return condition_facts(text).literals


@dataclass(frozen=True, slots=True)
class IndexSettings:
    enabled: bool = True
    cache_keys: int = DEFAULT_CACHE_KEYS
    min_policies: int = DEFAULT_MIN_POLICIES
    warm_keys: int = 2048  # hottest keys of the previous version compiled before a new one serves
    warm_seconds: float = 2.0  # at most this long per activation (the rest compile on first use)


def compile_state(
    row: stores.StoreRow,
    text: str,
    *,
    index_enabled: bool = True,
    index: IndexSettings | None = None,
    hot_keys: Sequence[Key] = (),
) -> StoreState:
    """Build a state (CPU-bound: run it in a worker thread). ``hot_keys`` (the previous version's
    most used request keys) are compiled before the state is returned, i.e. before it serves."""
    settings = index or IndexSettings(enabled=index_enabled)
    schema = parse_schema(row.schema_text, row.schema_format or "cedar") if row.schema_text else None
    policy_index = PolicyIndex(
        parse_policies(text),
        text,
        enabled=settings.enabled,
        cache_keys=settings.cache_keys,
        min_policies=settings.min_policies,
    )
    if hot_keys:
        policy_index.warm(hot_keys, budget_seconds=settings.warm_seconds)
    facts = condition_facts(text)
    return StoreState(
        name=row.name,
        revision=row.revision,
        active_version=row.active_version,
        index=policy_index,
        schema=schema,
        schema_actions=schema_action_parents(schema) if schema is not None else None,
        entities_version=row.entities_version,
        literals=facts.literals,
        ref_hops=facts.ref_hops,
        attribute_precedence=row.attribute_precedence,
    )


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    # Size as well as time: two writes inside one coarse mtime tick still differ in size.
    return st.st_mtime_ns, st.st_size


def _settle() -> None:
    """Move what is alive now (compiled policies, cached entities) out of the collector's reach:
    these long-lived objects would otherwise be re-scanned by every full collection, which shows
    up as multi-millisecond pauses in the decision tail. (Objects freed by reference counting are
    still freed; only cyclic garbage frozen here would linger, and states hold no cycles.)"""
    gc.freeze()


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
        database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
        self._db_files = [Path(database), Path(f"{database}-wal")] if database and database != ":memory:" else []
        self._db_seen: tuple[tuple[int, int] | None, ...] | None = None
        self._db_pending: tuple[tuple[int, int] | None, ...] | None = None
        self._signal = WriteSignal(signal_path) if signal_path is not None else None
        self._following: asyncio.Task[None] | None = None
        self._cache = cache
        self._index = index if index is not None else IndexSettings(enabled=index_enabled)
        self._snapshot_max = snapshot_max_entities
        self._states: dict[str, StoreState] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # only for stores that exist (or are being looked up)
        self._missing: OrderedDict[str, float] = OrderedDict()  # name → monotonic time it was found missing
        self._snapshots: dict[str, Snapshot] = {}
        self._too_big: dict[str, int] = {}  # store → entities_version found over the snapshot limit
        self._building: dict[str, asyncio.Task[None]] = {}
        self._next_build: dict[str, float] = {}  # store → monotonic time the next rebuild may start
        # Snapshot builds run one at a time: right after 1,000 stores are created, their first
        # requests would otherwise start 1,000 builds at once, whose queries queue in front of every
        # request's own (measured: 45 decisions/s for the first seconds, against ~3,000 warm).
        self._build_slots = asyncio.Semaphore(1)
        # Unloading idle stores (off when idle_unload_seconds is 0): a store asked for in neither of
        # the last two sweeps (one sweep per idle_unload_seconds) is dropped and reloaded on demand.
        self._idle_unload = idle_unload_seconds
        self._used: set[str] = set()
        self._unused_last_sweep: set[str] = set()
        self._next_sweep = time.monotonic() + idle_unload_seconds

    def snapshot_for(self, state: StoreState) -> Snapshot | None:
        """The store's entity snapshot when it is current; else start a rebuild and return None."""
        snap = self._snapshots.get(state.name)
        if snap is not None and snap.revision == state.revision and snap.entities_version == state.entities_version:
            return snap
        if (
            self._snapshot_max > 0
            and state.name not in self._building
            and self._too_big.get(state.name) != state.entities_version
        ):
            self._building[state.name] = asyncio.create_task(self._rebuild(state.name))
        return None

    async def _rebuild(self, name: str) -> None:
        """Build the store's snapshot in the background, at most ~20 % of the time.

        Under a stream of entity writes every write makes the snapshot stale; rebuilding right away
        each time would keep a core busy re-reading the store. So a rebuild starts no sooner than
        ``REBUILD_SPACING`` × the last build's duration after the last one ended; until then the
        loader answers (correct, only slower).
        """
        try:
            while (state := self._states.get(name)) is not None:
                wait = self._next_build.get(name, 0.0) - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue  # the store may have moved on (or gone) while we waited
                async with self._build_slots:
                    started = time.monotonic()
                    snap = await read_snapshot(
                        self._engine,
                        name,
                        max_entities=self._snapshot_max,
                        revision=state.revision,
                        schema=state.schema,
                    )
                    ended = time.monotonic()
                self._next_build[name] = ended + REBUILD_SPACING * (ended - started)
                current = self._states.get(name)
                if current is None:
                    return
                if snap is None and current.entities_version == state.entities_version:
                    self._too_big[name] = state.entities_version  # or unparsable: don't retry this version
                    return
                if (
                    snap is not None
                    and snap.revision == current.revision
                    and snap.entities_version == current.entities_version
                ):
                    self._snapshots[name] = snap
                    _settle()
                    return
                await asyncio.sleep(REBUILD_PAUSE_SECONDS)  # the store moved on meanwhile: try again
        except Exception:  # the loader keeps serving; say why in the log
            log.warning("entity snapshot of store %r failed", name, exc_info=True)
        finally:
            self._building.pop(name, None)

    def announce(self) -> None:
        """After a write: tell the other workers on this host (they share ``var_dir``) to re-read
        the database before their next decision, instead of at their next refresh tick."""
        self._missing.clear()  # the write may have created a store
        if self._signal is not None:
            self._signal.bump()

    async def _follow_signal(self, signal: WriteSignal) -> None:
        """When another worker announced a write, refresh before answering (all requests arriving
        meanwhile wait for the same refresh): read-your-writes on one host."""
        if signal.changed():
            self._missing.clear()  # another worker may have created a store
            # A refresh already running may have read the database before this write committed:
            # queue a new one after it rather than wait on it.
            self._following = asyncio.create_task(self._refresh_after(self._following))
        task = self._following
        if task is not None and not task.done():
            try:
                await asyncio.shield(task)
            except Exception:  # the refresh loop retries; serve what is loaded
                log.warning("policy store refresh failed", exc_info=True)

    async def _refresh_after(self, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception):  # its waiters log its failure
                await asyncio.shield(previous)
        await self.refresh(force=True)

    async def get(self, name: str) -> StoreState:
        """The store's compiled state (loaded on first use), or a 404."""
        if self._signal is not None:
            await self._follow_signal(self._signal)
        state = self._states.get(name)
        if state is None:
            if self._recently_missing(name):
                raise store_not_found(name)
            state = await self.reload(name)
            if state is None:
                self._missing[name] = time.monotonic()
                if len(self._missing) > MISSING_MAX:
                    self._missing.popitem(last=False)
                raise store_not_found(name)
        self._used.add(name)
        if state.problem is not None:
            raise store_unavailable(name, state.active_version, state.problem)
        return state

    def _recently_missing(self, name: str) -> bool:
        """Whether ``name`` was found missing less than ``MISSING_TTL`` ago (a flood of unknown
        store names then costs no database transaction each)."""
        missing = self._missing
        horizon = time.monotonic() - MISSING_TTL
        while missing and next(iter(missing.values())) < horizon:
            missing.popitem(last=False)
        return name in missing

    def describe(self, name: str) -> dict[str, object]:
        """What this process serves for ``name`` (for the admin API and operators)."""
        state = self._states.get(name)
        snap = self._snapshots.get(name)
        current = (
            state is not None
            and snap is not None
            and snap.revision == state.revision
            and snap.entities_version == state.entities_version
        )
        return {
            "loaded_revision": state.revision if state else None,
            "unservable": state.problem if state else None,
            "policies": len(state.index) if state else None,
            "snapshot": {"entities": snap.size, "entities_version": snap.entities_version, "current": current}
            if snap
            else None,
        }

    def loaded(self) -> list[str]:
        return list(self._states)

    async def reload(self, name: str, compiled: Compiled | None = None) -> StoreState | None:
        """Read the store from the database and compile it, unless that revision is already loaded
        (or ``compiled`` holds its active text, compiled under its schema)."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            async with self._engine.begin() as conn:
                row = await stores.get(conn, name)
                if row is None:
                    self._forget(name)
                    if self._locks.get(name) is lock:
                        del self._locks[name]  # keep no lock per name asked for that does not exist
                    return None
                current = self._states.get(name)
                if current is not None and current.revision == row.revision:
                    if current.entities_version != row.entities_version:
                        self._cache.clear_store(name)
                        current = replace(current, entities_version=row.entities_version)
                        self._states[name] = current
                    return current
                text = ""
                if row.active_version is not None:
                    text = await stores.version_text(conn, name, row.active_version) or ""
            self._missing.pop(name, None)
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
            self._states[name] = state
            _settle()
            self.snapshot_for(state)  # a new revision needs its own snapshot: start it now
            return state

    async def compile(self, row: stores.StoreRow, text: str) -> StoreState:
        """Compile ``text`` under ``row``'s schema exactly as this worker serves it, behind the upload
        limits, on an engine thread. Raises :class:`Unservable`. (Uploads call this before writing.)"""
        check_schema_text(row.schema_text, row.schema_format, self._limits)
        # The previous version's hottest request keys are compiled before the new one serves, here
        # for uploads as for activations by another writer, so an activation causes no compile cliff.
        current = self._states.get(row.name)
        hot = current.index.hot_keys(self._index.warm_keys) if current is not None else []
        compile_text = functools.partial(compile_state, row, index=self._index, hot_keys=hot)
        return await compile_thread(checked, compile_text, text, self._limits)

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
        unused = {n for n in self._states if n not in self._used and n != stores.DEFAULT_STORE}
        gone = [n for n in unused if n in self._unused_last_sweep and n not in self._locks_busy()]
        for name in gone:
            self._forget(name)
        self._unused_last_sweep = unused - set(gone)
        self._used = set()
        if gone:
            log.info("unloaded %d idle policy stores", len(gone))
        return gone

    def _locks_busy(self) -> set[str]:
        return {n for n, lock in self._locks.items() if lock.locked()}

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
            self.snapshot_for(state)

    def _forget(self, name: str) -> None:
        self._snapshots.pop(name, None)
        if self._states.pop(name, None) is not None:  # only a loaded store has cached entities
            self._cache.clear_store(name)

    def _sqlite_unchanged(self) -> bool:
        """For SQLite, whether the database files are as at the last check (then nobody wrote).

        Every commit in WAL mode grows or rewrites ``-wal`` (and checkpoints rewrite the main file),
        so two ``stat`` calls replace a query on most ticks. That matters: a query through aiosqlite
        hops to its thread and back, and doing that every 50 ms measurably widened the decision
        latency tail (fixed 1,000 req/s: p95 1.7–2.2 ms with a query per tick, 0.9 ms without).
        """
        if not self._db_files:
            return False
        stamp = tuple(_stamp(f) for f in self._db_files)
        if stamp == self._db_seen:
            return True
        self._db_pending = stamp
        return False

    async def refresh(self, *, force: bool = False) -> None:
        """One pass of the follow-the-database check."""
        names = self.loaded()
        if not names:
            return
        if not force and self._sqlite_unchanged():
            return
        pending = self._db_pending
        async with self._engine.connect() as conn:
            heads = await stores.heads(conn, names)
        self._db_seen = pending
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
                replaced = self._signal is not None and self._signal.check_file()
                await self.refresh(force=replaced)
                if self._idle_unload > 0 and time.monotonic() >= self._next_sweep:
                    self._next_sweep = time.monotonic() + self._idle_unload
                    self.unload_idle()
            except Exception:  # keep serving what is loaded; the log says why
                log.warning("policy store refresh failed", exc_info=True)

    @contextlib.asynccontextmanager
    async def refreshing(self, interval: float) -> AsyncIterator[Registry]:
        task = asyncio.create_task(self.run_refresh(interval))
        try:
            yield self
        finally:
            for t in (task, *self._building.values()):
                t.cancel()
            for t in (task, *self._building.values()):
                with contextlib.suppress(asyncio.CancelledError):
                    await t
