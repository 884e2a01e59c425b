"""Replicas follow each other through the database: activations, entity writes, deletions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from meshauth.policy.app import SIGNAL_FILE
from meshauth.policy.write_signal import WriteSignal
from tests.policy.conftest import ADMIN, ask, decide, entity, load, push


async def eventually(client: httpx.AsyncClient, body: dict[str, Any], want: bool, timeout: float = 2.0) -> float:
    """Seconds until ``client`` answers ``want``."""
    start = asyncio.get_running_loop().time()
    while True:
        if (await decide(client, body))["decision"] is want:
            return asyncio.get_running_loop().time() - start
        if asyncio.get_running_loop().time() - start > timeout:
            raise AssertionError(f"replica did not answer {want} within {timeout}s")
        await asyncio.sleep(0.01)


async def test_activation_reaches_other_replica(make_app) -> None:  # type: ignore[no-untyped-def]
    """A policy activated through one replica is honoured by another within the refresh interval."""
    async with make_app() as (_a, one), make_app() as (_b, two):
        await push(one, "forbid(principal, action, resource);")
        body = ask("User:u", "view", "Doc:a")
        assert (await decide(two, body))["decision"] is False
        await push(one, "permit(principal, action, resource);")
        await eventually(two, body, True)
        assert (await decide(two, body))["context"]["revision"] == 2


async def test_entity_write_reaches_other_replica_cache(make_app) -> None:  # type: ignore[no-untyped-def]
    """An entity cached by one replica is refreshed when another replica changes it."""
    async with make_app() as (_a, one), make_app() as (_b, two):
        await push(one, 'permit(principal in Group::"g", action, resource);')
        body = ask("User:u", "view", "Doc:a")
        assert (await decide(two, body))["decision"] is False  # caches "User:u absent"
        await load(one, [entity("User:u", parents=("Group:g",))])
        await eventually(two, body, True)


async def test_deleted_store_disappears_from_other_replica(make_app) -> None:  # type: ignore[no-untyped-def]
    """A store deleted through one replica becomes a 404 on another."""
    async with make_app() as (_a, one), make_app() as (_b, two):
        await push(one, "permit(principal, action, resource);", store="gone")
        path = "/stores/gone/access/v1/evaluation"
        assert (await two.post(path, json=ask("User:u", "v", "Doc:a"))).status_code == 200
        assert (await one.delete("/admin/stores/gone", headers=ADMIN)).status_code == 200
        for _ in range(200):
            if (await two.post(path, json=ask("User:u", "v", "Doc:a"))).status_code == 404:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("store still served by the other replica")


async def test_cache_off_reads_every_time(make_app) -> None:  # type: ignore[no-untyped-def]
    """With the entity cache switched off every request reads the database."""
    async with make_app(policy_entity_cache_enabled=False, policy_snapshot_max_entities=0) as (app, client):
        await push(client, "permit(principal, action, resource);")
        loader = app.state.api.evaluator.loader
        before = loader.queries
        for _ in range(3):
            await decide(client, ask("User:u", "view", "Doc:a"))
        assert loader.queries - before == 3


async def test_workers_on_one_host_read_each_others_writes(make_app) -> None:  # type: ignore[no-untyped-def]
    """Workers sharing var_dir see a write on their very next decision, without waiting for a tick."""
    slow = {"policy_refresh_interval": 60.0}
    async with make_app(**slow) as (_a, one), make_app(**slow) as (_b, two):
        body = ask("User:u", "view", "Doc:a")
        await push(one, "forbid(principal, action, resource);")
        assert (await decide(two, body))["decision"] is False
        await push(one, "permit(principal, action, resource);")
        assert (await decide(two, body))["decision"] is True
        await load(one, [entity("User:u", {"blocked": True})])
        await push(one, "permit(principal, action, resource) unless { principal.blocked };")
        assert (await decide(two, body))["decision"] is False


async def test_without_shared_var_dir_replicas_follow_on_the_tick(make_app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Replicas on different hosts (no shared var_dir) still follow through the refresh loop."""
    async with make_app() as (_a, one), make_app(var_dir=tmp_path / "other-host") as (_b, two):
        body = ask("User:u", "view", "Doc:a")
        await push(one, "forbid(principal, action, resource);")
        assert (await decide(two, body))["decision"] is False
        await push(one, "permit(principal, action, resource);")
        waited = await eventually(two, body, True)
        assert waited < 1.0


async def test_unknown_store_names_keep_no_lock(make_app) -> None:  # type: ignore[no-untyped-def]
    """Asking for stores that do not exist leaves no per-name lock behind (the API is unauthenticated)."""
    async with make_app() as (app, client):
        registry = app.state.api.registry
        for n in range(50):
            r = await client.post(f"/stores/nope{n}/access/v1/evaluation", json=ask("User:u", "v", "Doc:a"))
            assert r.status_code == 404
        assert not [name for name in registry.locked_names() if name.startswith("nope")]


async def test_unknown_store_is_remembered_briefly(make_app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A store found missing is answered 404 without a database read for a short while; creating
    it through the service makes it answer at once."""
    from meshauth.policy import stores

    reads: list[str] = []
    real_get = stores.get_with_text

    async def counting_get(conn: Any, name: str) -> Any:
        reads.append(name)
        return await real_get(conn, name)

    monkeypatch.setattr(stores, "get_with_text", counting_get)
    async with make_app() as (_app, client):
        path = "/stores/later/access/v1/evaluation"
        for _ in range(20):
            assert (await client.post(path, json=ask("User:u", "v", "Doc:a"))).status_code == 404
        assert reads.count("later") == 1
        await push(client, "permit(principal, action, resource);", store="later")
        assert (await client.post(path, json=ask("User:u", "v", "Doc:a"))).status_code == 200


async def test_a_replaced_signal_file_forces_a_refresh_on_the_tick(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Writes announced in a new signal file (var_dir wiped) were missed: the tick that maps the new
    file looks at the database even when the SQLite files look unchanged."""
    async with make_app(policy_refresh_interval=60.0) as (app, _client):
        registry = app.state.api.registry
        forced: list[bool] = []
        ticked, was_forced = asyncio.Event(), asyncio.Event()

        async def record(*, force: bool = False) -> None:
            forced.append(force)
            ticked.set()
            if force:
                was_forced.set()

        registry.refresh = record
        ticking = asyncio.create_task(registry.run_refresh(0.01))
        try:
            await asyncio.wait_for(ticked.wait(), 5)
            assert not any(forced)  # same file: ordinary ticks
            (tmp_path / SIGNAL_FILE).unlink()  # the fixture's var_dir is tmp_path
            WriteSignal(tmp_path / SIGNAL_FILE).bump()  # a new worker makes a new file
            await asyncio.wait_for(was_forced.wait(), 5)
        finally:
            ticking.cancel()


async def test_idle_store_is_unloaded_and_reloaded_on_demand(make_app) -> None:  # type: ignore[no-untyped-def]
    """A store asked for in neither of two sweeps is unloaded; its next request loads it again and
    answers as before. A store in use stays loaded."""
    async with make_app() as (app, client):
        registry = app.state.api.registry
        await push(client, 'permit(principal, action == Action::"v", resource);', store="idle")
        await push(client, 'permit(principal, action == Action::"v", resource);', store="busy")
        path = "/stores/{}/access/v1/evaluation"
        assert (await client.post(path.format("idle"), json=ask("User:u", "v", "Doc:a"))).json()["decision"]
        assert registry.unload_idle() == []  # first sweep: idle was used since the start
        await client.post(path.format("busy"), json=ask("User:u", "v", "Doc:a"))
        assert registry.unload_idle() == []  # idle unused for one sweep only
        await client.post(path.format("busy"), json=ask("User:u", "v", "Doc:a"))
        assert registry.unload_idle() == ["idle"]
        assert set(registry.loaded()) >= {"busy"} and "idle" not in registry.loaded()
        d = (await client.post(path.format("idle"), json=ask("User:u", "v", "Doc:a"))).json()
        assert d["decision"] is True
        assert "idle" in registry.loaded()


async def test_idle_unloading_runs_on_the_refresh_tick(make_app) -> None:  # type: ignore[no-untyped-def]
    """With the setting on, the refresh loop sweeps by itself."""
    async with make_app(policy_store_idle_unload_seconds=0.05) as (app, client):
        registry = app.state.api.registry
        await push(client, "permit(principal, action, resource);", store="s")
        for _ in range(200):
            if "s" not in registry.loaded():
                break
            await asyncio.sleep(0.01)
        assert "s" not in registry.loaded()


async def test_activation_compiles_the_previous_versions_hot_keys_first(make_app) -> None:  # type: ignore[no-untyped-def]
    """A new version starts with the subsets its predecessor was serving already compiled: its
    first request for a hot key is a cache hit (the hit/miss counts are served at /metrics)."""
    from meshauth.policy.metrics import INDEX_CACHE

    text = "\n".join(f'permit(principal, action == Action::"a{n}", resource is Doc);' for n in range(60))
    async with make_app() as (app, client):
        registry = app.state.api.registry
        await push(client, text, store="s")
        path = "/stores/s/access/v1/evaluation"
        for n in (3, 7):
            assert (await client.post(path, json=ask("User:u", f"a{n}", "Doc:d"))).json()["decision"]
        await push(client, text + '\nforbid(principal, action == Action::"a9", resource);', store="s")
        state = await registry.get("s")
        assert {k[0] for k in state.index.hot_keys(10)} == {("Action", "a3"), ("Action", "a7")}
        hits = INDEX_CACHE.counts[("hit",)]
        assert (await client.post(path, json=ask("User:u", "a7", "Doc:d"))).json()["decision"]
        assert INDEX_CACHE.counts[("hit",)] == hits + 1
        metrics = (await client.get("/metrics")).text
        assert 'meshauth_policy_index_cache_total{outcome="hit"}' in metrics
