"""An entity upload committing while a decision's entities are read level by level: the decision is
made on one state of the store, never half the old and half the new one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshauth.db import create_engine
from meshauth.policy import entity_loader, entity_store
from meshauth.policy.entity_cache import EntityCache
from meshauth.policy.entity_loader import EntityLoader
from tests.policy.conftest import ADMIN, ask, entity, load, push, seed_entities


def pause_after_first_read(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event]:
    """The loader's first SQL read returns, then waits for ``release``: (paused, release)."""
    real = entity_store.read_records_at
    paused, release = asyncio.Event(), asyncio.Event()

    async def first_then_wait(*args: Any) -> Any:
        out = await real(*args)
        if not paused.is_set():
            paused.set()
            await release.wait()
        return out

    monkeypatch.setattr(entity_loader, "read_records_at", first_then_wait)
    return paused, release


async def test_an_upload_between_two_levels_is_not_decided_half_old_half_new(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await push(client, 'permit(principal in Group::"admins", action, resource);')
    # Before: u -> g, and g is nobody's member. After (one upload): u -> h, and g -> admins.
    # Neither state lets u in; u's old parent g read with g's new parents did.
    await load(client, [entity("User:u", parents=("Group:g",)), entity("Group:g"), entity("Group:h")])
    paused, release = pause_after_first_read(monkeypatch)
    body = ask("User:u", "view", "Doc:d")
    body["subject"]["properties"] = {"team": "x"}  # through the loader, not a snapshot
    decision = asyncio.create_task(client.post("/access/v1/evaluation", json=body))
    await asyncio.wait_for(paused.wait(), 10)
    await load(client, [entity("User:u", parents=("Group:h",)), entity("Group:g", parents=("Group:admins",))])
    release.set()
    r = await decision
    assert r.status_code == 200, r.text
    assert r.json()["decision"] is False, r.text


async def test_a_deletion_between_two_levels_is_not_decided_half_old_half_new(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entity read as absent after its deletion, with the old parents of its child: a forbid missed."""
    await push(client, 'permit(principal, action, resource);\nforbid(principal in Group::"banned", action, resource);')
    await load(client, [entity("User:u", parents=("Group:g",)), entity("Group:g", parents=("Group:banned",))])
    paused, release = pause_after_first_read(monkeypatch)
    body = ask("User:u", "view", "Doc:d")
    body["subject"]["properties"] = {"team": "x"}
    decision = asyncio.create_task(client.post("/access/v1/evaluation", json=body))
    await asyncio.wait_for(paused.wait(), 10)
    await load(client, [entity("User:u", parents=("Group:h",)), entity("Group:h", parents=("Group:banned",))])
    assert (await client.delete("/admin/stores/default/entities/Group/g", headers=ADMIN)).status_code == 200
    release.set()
    r = await decision
    assert r.json()["decision"] is False, r.text


async def test_a_replica_does_not_mix_its_cached_entities_with_another_replicas_newer_write(
    client: httpx.AsyncClient, make_app: Any, tmp_path: Path
) -> None:
    """Replica B (another host: its own var_dir, not following yet) holds the child in its cache
    but not the parent (evicted); A's upload moves both. B read the parent's new parents with the
    child's cached old ones: an allow neither state gives. It now reads both from SQL."""
    await push(client, 'permit(principal in Group::"admins", action, resource);')
    await load(client, [entity("User:u", parents=("Group:g",)), entity("Group:g"), entity("Group:h")])
    other = tmp_path / "other-host"
    other.mkdir()
    async with make_app(
        var_dir=other, policy_refresh_interval=60, policy_entity_cache_size=4, policy_snapshot_max_entities=0
    ) as (_app, b):
        body = ask("User:u", "view", "Doc:d")
        body["subject"]["properties"] = {"team": "x"}  # through the loader, not a snapshot

        async def on_b(principal: str) -> bool:
            asked = {**body, "subject": {**body["subject"], "type": principal.split(":")[0]}}
            asked["subject"]["id"] = principal.split(":")[1]
            r = await b.post("/access/v1/evaluation", json=asked)
            assert r.status_code == 200, r.text
            decision: bool = r.json()["decision"]
            return decision

        # The cache (4 entries, oldest out first) ends up holding u but not its parent g.
        assert await on_b("Group:g") is False  # caches g, Doc::"d", Action::"view"
        assert await on_b("User:u") is False  # caches u (g a hit)
        assert await on_b("User:z") is False  # caches z (absent), evicting g
        await load(client, [entity("User:u", parents=("Group:h",)), entity("Group:g", parents=("Group:admins",))])
        assert await on_b("User:u") is False


async def test_what_is_read_ahead_of_the_version_the_cache_holds_is_not_cached(db_url: str) -> None:
    """A replica that has not followed a write yet reads an entity at the newer version: caching it
    would let a later walk answered from the cache alone join it to older cached entities."""
    await seed_entities(db_url, [entity("User:u", parents=("Group:g",)), entity("Group:g")])  # version 1
    engine = create_engine(db_url)
    cache = EntityCache(max_entries=100)
    loader = EntityLoader(engine, cache, ref_depth=1, max_depth=8)
    try:
        await loader.load("s", [("User", "u")], entities_version=1)
        assert cache.get_many("s", [("User", "u")])[1] == []  # read at the version it holds: cached
        await seed_entities(db_url, [entity("Group:g", parents=("Group:admins",))])  # version 2
        cache.drop("s", [("Group", "g")])  # say, evicted
        found = await loader.load("s", [("User", "u")], entities_version=1)
        assert found[("Group", "g")].parents == (("Group", "admins"),)  # read from SQL, after a retry
        assert cache.get_many("s", [("Group", "g")])[1] == [("Group", "g")]  # not cached
    finally:
        await engine.dispose()
