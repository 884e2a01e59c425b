"""Entities of a policy store: validation of uploads, SQL storage, the batch loader and its cache.

A batch's entities come from :class:`EntityLoader`: it walks the entity graph from the batch's
principals, resources, actions and referenced entities level by level — one SQL query per level
for whatever the cache does not hold — following ``parents`` to the top (``max_depth`` levels)
and entity references in attributes and tags as many hops as the policies can follow (see
:meth:`EntityLoader.load`). The result feeds one Cedar ``Entities`` handle.

Cache consistency: writes through this process drop the written uids at once; writes through
another replica bump the store's ``entities_version``, and the registry's refresh loop clears the
store's cache when it sees that change (within ``policy_refresh_interval``). A read that was
already querying when a drop or clear came does not cache what it read (the store's generation).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from meshauth.db.tables import policy_entities, policy_stores
from meshauth.policy.cedar import Uid
from meshauth.policy.errors import bad_request
from meshauth.policy.metrics import ENTITY_QUERIES
from meshauth.policy.names import check_uid

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
QUERY_CHUNK = 2000  # uids per IN (…): under SQLite's and asyncpg's bind-parameter limits
WRITE_CHUNK = 10_000  # rows per executemany round trip


def uid_key(uid: Uid) -> str:
    """The canonical, collision-free SQL key of a uid (JSON of ``[type, id]``)."""
    return _encoder.encode(uid).decode()


@dataclass(frozen=True, slots=True)
class EntityRecord:
    """A stored entity, ready for the engine: its Cedar JSON, and the uids it points to."""

    uid: Uid
    json: bytes
    parents: tuple[Uid, ...]
    refs: tuple[Uid, ...]

    @classmethod
    def from_json(cls, raw: bytes | str) -> EntityRecord:
        data = _decoder.decode(raw)
        u = data["uid"]
        parents = tuple((p["type"], p["id"]) for p in data.get("parents", ()))
        refs = tuple(entity_refs([data.get("attrs", {}), data.get("tags", {})]))
        data_bytes = raw.encode() if isinstance(raw, str) else raw
        return cls((u["type"], u["id"]), data_bytes, parents, refs)

    def with_attrs(self, overrides: Mapping[str, Any], *, stored_wins: bool = False) -> bytes:
        """This entity's JSON with ``overrides`` merged over its attributes, or, with
        ``stored_wins``, under them (a request may add attributes, never replace a stored one)."""
        data = _decoder.decode(self.json)
        stored = data.get("attrs", {})
        data["attrs"] = {**overrides, **stored} if stored_wins else {**stored, **overrides}
        encoded: bytes = _encoder.encode(data)
        return encoded


def bare_entity(uid: Uid, attrs: Mapping[str, Any]) -> bytes:
    """JSON for an entity the store does not hold, built from request properties."""
    encoded: bytes = _encoder.encode({"uid": {"type": uid[0], "id": uid[1]}, "attrs": dict(attrs), "parents": []})
    return encoded


def entity_refs(value: Any) -> list[Uid]:
    """Entity uids referenced in a Cedar JSON value (``{"__entity": …}`` or a bare ``{type, id}``)."""
    found: list[Uid] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            inner = v.get("__entity")
            if isinstance(inner, dict):
                v = inner
            t, i = v.get("type"), v.get("id")
            if len(v) == 2 and isinstance(t, str) and isinstance(i, str):
                found.append((t, i))
                continue
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return found


def normalize_upload(items: object) -> list[tuple[Uid, bytes]]:
    """Check an upload in Cedar's JSON entity format; the last of duplicate uids wins.

    Raises a 400 naming the first bad field (``entities[3].uid.type``).
    """
    if not isinstance(items, list):
        raise bad_request("entities", "must be a JSON array of entities")
    out: dict[Uid, bytes] = {}
    for n, item in enumerate(items):
        field = f"entities[{n}]"
        if not isinstance(item, dict):
            raise bad_request(field, "must be an object with uid, attrs, parents")
        unknown = set(item) - {"uid", "attrs", "parents", "tags"}
        if unknown:
            raise bad_request(f"{field}.{sorted(unknown)[0]}", "is not a field of a Cedar entity")
        uid_obj = item.get("uid")
        if isinstance(uid_obj, dict) and "__entity" in uid_obj:
            uid_obj = uid_obj["__entity"]
        if not isinstance(uid_obj, dict):
            raise bad_request(f"{field}.uid", 'must be {"type": …, "id": …}')
        uid = check_uid(f"{field}.uid", uid_obj.get("type"), uid_obj.get("id"))
        attrs = item.get("attrs", {})
        if not isinstance(attrs, dict):
            raise bad_request(f"{field}.attrs", "must be an object")
        parents_in = item.get("parents", [])
        if not isinstance(parents_in, list):
            raise bad_request(f"{field}.parents", "must be an array of entity uids")
        parents = []
        for k, p in enumerate(parents_in):
            if isinstance(p, dict) and "__entity" in p:
                p = p["__entity"]
            if not isinstance(p, dict):
                raise bad_request(f"{field}.parents[{k}]", 'must be {"type": …, "id": …}')
            pt, pi = check_uid(f"{field}.parents[{k}]", p.get("type"), p.get("id"))
            parents.append({"type": pt, "id": pi})
        entity: dict[str, Any] = {"uid": {"type": uid[0], "id": uid[1]}, "attrs": attrs, "parents": parents}
        if "tags" in item:
            if not isinstance(item["tags"], dict):
                raise bad_request(f"{field}.tags", "must be an object")
            entity["tags"] = item["tags"]
        out.pop(uid, None)
        out[uid] = _encoder.encode(entity)
    return list(out.items())


class EntityCache:
    """uid → record (or None: known absent), per store, least recently used out first.

    Each store has a generation, bumped by every drop and clear: a reader that started its query
    before a write must not cache what it read (see :meth:`EntityLoader._fetch`).
    """

    def __init__(self, *, max_entries: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self._max = max_entries
        self._data: OrderedDict[tuple[str, Uid], EntityRecord | None] = OrderedDict()
        self._generations: dict[str, int] = {}
        # The cached uids of each store, so clearing one store costs its own entries, not a scan of
        # the whole cache (with 1,000 stores, each store's first load cleared by scanning them all).
        self._by_store: dict[str, set[Uid]] = {}

    def generation(self, store: str) -> int:
        return self._generations.get(store, 0)

    def get_many(self, store: str, uids: Iterable[Uid]) -> tuple[dict[Uid, EntityRecord | None], list[Uid]]:
        hits: dict[Uid, EntityRecord | None] = {}
        misses: list[Uid] = []
        if not self.enabled:
            return hits, list(uids)
        data = self._data
        for uid in uids:
            key = (store, uid)
            if key in data:
                hits[uid] = data[key]
            else:
                misses.append(uid)
        return hits, misses

    def put_many(self, store: str, found: Mapping[Uid, EntityRecord | None]) -> None:
        if not self.enabled:
            return
        data = self._data
        mine = self._by_store.setdefault(store, set())
        for uid, rec in found.items():
            data[(store, uid)] = rec
            mine.add(uid)
        while len(data) > self._max:
            (old_store, old_uid), _ = data.popitem(last=False)
            self._by_store[old_store].discard(old_uid)

    def drop(self, store: str, uids: Iterable[Uid]) -> None:
        self._generations[store] = self.generation(store) + 1
        mine = self._by_store.get(store, set())
        for uid in uids:
            self._data.pop((store, uid), None)
            mine.discard(uid)

    def clear_store(self, store: str) -> None:
        self._generations[store] = self.generation(store) + 1
        data = self._data
        for uid in self._by_store.pop(store, ()):
            data.pop((store, uid), None)

    def __len__(self) -> int:
        return len(self._data)


class EntityLoader:
    """DataLoader-style: everything a batch needs, one query per graph level, cache first."""

    def __init__(self, engine: AsyncEngine, cache: EntityCache, *, ref_depth: int, max_depth: int) -> None:
        self._engine = engine
        self.cache = cache
        self._ref_depth = ref_depth
        self._max_depth = max_depth
        self.queries = 0  # for tests and metrics: SQL round trips made

    async def load(self, store: str, roots: Iterable[Uid], *, ref_hops: int | None = None) -> dict[Uid, EntityRecord]:
        """Every stored entity reachable from ``roots`` through parents and attribute/tag references.

        References are followed ``ref_hops`` deep (how far the store's policies can follow them:
        ``resource.owner.manager.suspended`` needs 3), or as deep as parents (``max_depth``) when
        that is not known; never less than ``ref_depth``. An entity a policy reaches but cannot see
        makes it error and be skipped — for a ``forbid``, an allow the snapshot path would not give.
        """
        hops = self._max_depth if ref_hops is None else min(ref_hops, self._max_depth)
        found: dict[Uid, EntityRecord] = {}
        budget: dict[Uid, int] = {}
        frontier: dict[Uid, int] = dict.fromkeys(roots, max(self._ref_depth, hops))
        for _ in range(self._max_depth + 1):
            if not frontier:
                break
            for uid, b in frontier.items():
                budget[uid] = b
            records = await self._fetch(store, list(frontier))
            nxt: dict[Uid, int] = {}
            for uid, refs_left in frontier.items():
                rec = records.get(uid)
                if rec is None:
                    continue
                found[uid] = rec
                for p in rec.parents:
                    if budget.get(p, -1) < refs_left and nxt.get(p, -1) < refs_left:
                        nxt[p] = refs_left
                if refs_left > 0:
                    for r in rec.refs:
                        if budget.get(r, -1) < refs_left - 1 and nxt.get(r, -1) < refs_left - 1:
                            nxt[r] = refs_left - 1
            frontier = nxt
        return found

    async def _fetch(self, store: str, uids: Sequence[Uid]) -> dict[Uid, EntityRecord | None]:
        hits, misses = self.cache.get_many(store, uids)
        if not misses:
            return hits
        loaded: dict[Uid, EntityRecord | None] = dict.fromkeys(misses)
        keys = {uid_key(u): u for u in misses}
        key_list = list(keys)
        generation = self.cache.generation(store)
        self.queries += 1
        ENTITY_QUERIES.add()
        async with self._engine.connect() as conn:
            for i in range(0, len(key_list), QUERY_CHUNK):
                chunk = key_list[i : i + QUERY_CHUNK]
                rows = await conn.execute(
                    sa.select(policy_entities.c.uid, policy_entities.c.data).where(
                        policy_entities.c.store == store, policy_entities.c.uid.in_(chunk)
                    )
                )
                for key, data in rows:
                    loaded[keys[key]] = EntityRecord.from_json(data)
        if self.cache.generation(store) == generation:
            self.cache.put_many(store, loaded)  # else a write landed meanwhile: what we read may be stale
        hits.update(loaded)
        return hits


def _upsert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


async def upsert_entities(conn: AsyncConnection, store: str, entities: Sequence[tuple[Uid, bytes]]) -> int:
    """Write ``entities`` in the caller's transaction; returns the store's new ``entities_version``.

    One parameterised ``INSERT … ON CONFLICT DO UPDATE`` run with executemany: measured 2.6 s for
    100,000 rows on SQLite, against 14.6 s for the same rows as 1,000-row multi-VALUES statements.
    """
    now = int(time.time())
    insert = _upsert(conn.dialect.name)
    stmt = insert(policy_entities)
    stmt = stmt.on_conflict_do_update(
        index_elements=[policy_entities.c.store, policy_entities.c.uid],
        set_={"data": stmt.excluded.data, "updated_at": stmt.excluded.updated_at},
    )
    for i in range(0, len(entities), WRITE_CHUNK):
        rows = [
            {"store": store, "uid": uid_key(uid), "data": data.decode(), "updated_at": now}
            for uid, data in entities[i : i + WRITE_CHUNK]
        ]
        await conn.execute(stmt, rows)
    return await _bump_entities_version(conn, store)


async def delete_entity(conn: AsyncConnection, store: str, uid: Uid) -> int | None:
    """Delete one entity; returns the new ``entities_version``, or None when there was no such entity."""
    result = await conn.execute(
        sa.delete(policy_entities).where(policy_entities.c.store == store, policy_entities.c.uid == uid_key(uid))
    )
    if result.rowcount == 0:
        return None
    return await _bump_entities_version(conn, store)


async def _bump_entities_version(conn: AsyncConnection, store: str) -> int:
    row = await conn.execute(
        sa.update(policy_stores)
        .where(policy_stores.c.name == store)
        .values(entities_version=policy_stores.c.entities_version + 1)
        .returning(policy_stores.c.entities_version)
    )
    return int(row.scalar_one())


async def read_entity(engine: AsyncEngine, store: str, uid: Uid) -> bytes | None:
    async with engine.connect() as conn:
        data = await conn.scalar(
            sa.select(policy_entities.c.data).where(
                policy_entities.c.store == store, policy_entities.c.uid == uid_key(uid)
            )
        )
    return None if data is None else str(data).encode()
