"""The per-store cache of stored entities the loader read (uid → record, or known absent).

Consistency: writes through this process drop the written uids at once; writes through another
replica bump the store's ``entities_version``, and the registry's refresh loop clears the store's
cache when it sees that change (within ``policy_refresh_interval``). A read that was already
querying when a drop or clear came does not cache what it read (the store's generation).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

from meshauth.policy.cedar import Uid
from meshauth.policy.entity_record import EntityRecord
from meshauth.policy.metrics import ENTITY_CACHE


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
        if hits:
            ENTITY_CACHE.add_many(len(hits), "hit")
        if misses:
            ENTITY_CACHE.add_many(len(misses), "miss")
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
