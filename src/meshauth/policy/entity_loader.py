"""The batch loader: every stored entity a batch of decisions can reach, one query per graph level.

It walks the entity graph from the batch's principals, resources, actions and referenced entities
level by level — one SQL query per level for whatever the cache does not hold — following
``parents`` to the top (``max_depth`` levels) and entity references in attributes and tags as many
hops as the policies can follow (see :meth:`EntityLoader.load`). The result feeds one Cedar
``Entities`` handle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from meshauth.policy.cedar import Uid
from meshauth.policy.entity_cache import EntityCache
from meshauth.policy.entity_record import EntityRecord, uid_key
from meshauth.policy.entity_store import read_records_at
from meshauth.policy.metrics import ENTITY_QUERIES


class HierarchyTooDeep(Exception):
    """Parents or references go on past ``max_depth`` levels: what was loaded is not all a policy can
    reach (``resource in Folder::"archive"`` would be false, and a forbid on it silently not apply)."""


class EntitiesChanging(HierarchyTooDeep):
    """Entity writes kept landing between the levels of every walk tried: no one state was read, so
    nothing is decided on it (denied, as a hierarchy too deep is)."""


# Walks tried when a write lands between two levels of one (the later ones read every level from SQL).
LOAD_ATTEMPTS = 3
_CHANGING = "the store's entities changed while they were read, on every try: denied (retry)"


# No uid in the message: it reaches callers (``/v1/authorize`` shows errors to end users).
_TOO_DEEP = "a hierarchy in the entity graph goes on past {} levels (policy_max_hierarchy_depth): denied"
_NOT = (-1, 0)


class EntityLoader:
    """DataLoader-style: everything a batch needs, one query per graph level, cache first."""

    def __init__(self, engine: AsyncEngine, cache: EntityCache, *, ref_depth: int, max_depth: int) -> None:
        self._engine = engine
        self.cache = cache
        self._ref_depth = ref_depth
        self._max_depth = max_depth
        self.queries = 0  # for tests and metrics: SQL round trips made

    async def load(
        self, store: str, roots: Iterable[Uid], *, ref_hops: int | None = None, entities_version: int | None = None
    ) -> dict[Uid, EntityRecord]:
        """Every stored entity reachable from ``roots`` through parents and attribute/tag references.

        References are followed ``ref_hops`` deep (how far the store's policies can follow them:
        ``resource.owner.manager.suspended`` needs 3), or as deep as parents (``max_depth``) when
        that is not known; never less than ``ref_depth``. An entity a policy reaches but cannot see
        makes it error and be skipped — for a ``forbid``, an allow the snapshot path would not give.
        A hierarchy (parents, counted again from each reference) going on past ``max_depth`` levels
        raises :class:`HierarchyTooDeep` (the evaluator denies: an ancestor left out could be what a
        forbid names). ``entities_version``: the version this process knows the store at, which its
        cache holds (None: not checked).
        """
        hops = self._max_depth if ref_hops is None else min(ref_hops, self._max_depth)
        roots = list(roots)  # walked again on a retry
        # Each level is its own query: an entity upload committing between two of them gave a walk
        # half before and half after it (a user's old parent read with that parent's new parents:
        # an allow neither state gives). Every statement also reads the store's entities_version;
        # a walk that saw two is read again, from SQL alone (the cache may hold the torn reads). So
        # is one that took entities from the cache and read SQL at another version than the cache
        # holds: another replica's write not yet followed (the cache is cleared only then), or one
        # that evicted a parent, mixed the cached old child with the parent's new parents.
        for attempt in range(LOAD_ATTEMPTS):
            versions: set[int | None] = set()
            cached = attempt == 0
            hits: list[bool] = []
            found = await self._walk(
                store, roots, max(self._ref_depth, hops), versions, cached=cached, hits=hits, known=entities_version
            )
            if len(versions) > 1:
                continue
            if hits and versions and entities_version is not None and versions != {entities_version}:
                continue
            return found
        raise EntitiesChanging(_CHANGING)

    async def _walk(
        self,
        store: str,
        roots: Iterable[Uid],
        start: int,
        versions: set[int | None],
        *,
        cached: bool,
        hits: list[bool],
        known: int | None,
    ) -> dict[Uid, EntityRecord]:
        """One walk; ``versions`` gets the version of every SQL read, ``hits`` an entry when the cache
        answered any uid."""
        found: dict[Uid, EntityRecord] = {}
        budget: dict[Uid, int] = {}
        # uid -> (references it may still follow, parent steps since its root or the reference that
        # reached it): the depth is a hierarchy's, so a reference starts counting again. A walk is at most
        # ``start`` references with at most ``max_depth`` parent steps around each.
        frontier: dict[Uid, tuple[int, int]] = dict.fromkeys(roots, (start, 0))
        for _ in range((start + 1) * (self._max_depth + 1)):
            if not frontier:
                break
            for uid, (b, _depth) in frontier.items():
                budget[uid] = b
            records = await self._fetch(store, list(frontier), versions, cached=cached, hits=hits, known=known)
            nxt: dict[Uid, tuple[int, int]] = {}
            for uid, (refs_left, depth) in frontier.items():
                rec = records.get(uid)
                if rec is None:
                    continue
                found[uid] = rec
                for p in rec.parents:
                    if budget.get(p, -1) < refs_left and nxt.get(p, _NOT)[0] < refs_left:
                        if depth >= self._max_depth:  # a parent left out could be what a forbid names
                            raise HierarchyTooDeep(_TOO_DEEP.format(self._max_depth))
                        nxt[p] = (refs_left, depth + 1)
                if refs_left > 0:
                    for r in rec.refs:
                        if budget.get(r, -1) < refs_left - 1 and nxt.get(r, _NOT)[0] < refs_left - 1:
                            nxt[r] = (refs_left - 1, 0)
            frontier = nxt
        if frontier:  # cannot happen by the bound above; if it did, what is left is not loaded
            raise HierarchyTooDeep(_TOO_DEEP.format(self._max_depth))
        return found

    async def _fetch(
        self,
        store: str,
        uids: Sequence[Uid],
        versions: set[int | None],
        *,
        cached: bool,
        hits: list[bool],
        known: int | None,
    ) -> dict[Uid, EntityRecord | None]:
        if cached:
            found, misses = self.cache.get_many(store, uids)
            if found:
                hits.append(True)
        else:
            found, misses = {}, list(uids)
        if not misses:
            return found
        loaded: dict[Uid, EntityRecord | None] = dict.fromkeys(misses)
        keys = {uid_key(u): u for u in misses}
        generation = self.cache.generation(store)
        self.queries += 1
        ENTITY_QUERIES.add()
        async with self._engine.connect() as conn:
            read_at, records = await read_records_at(conn, store, list(keys))
        versions.update(read_at)
        for key, record in records:
            loaded[keys[key]] = record
        # Cached only when read at the version the cache holds: else a write landed meanwhile (the
        # generation), or this replica has not followed one yet, and a later walk answered from the
        # cache alone would join this newer entity to older cached ones.
        current = versions == {known} or (known is None and len(versions) == 1)
        if current and self.cache.generation(store) == generation:
            self.cache.put_many(store, loaded)
        found.update(loaded)
        return found
