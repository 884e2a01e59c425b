"""Whole-store entity snapshots: used when current, never stale, off for big stores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tests.policy.conftest import ask, decide, entity, load, push


async def snapshot_ready(app: Any, store: str = "default") -> Any:
    """The store's current snapshot, once the build it needs (started here if none is) has ended."""
    registry = app.state.api.registry
    for _ in range(5):  # a build may land just as the store moves on: then it is built again
        snap = registry.snapshot_for(await registry.get(store))
        if snap is not None:
            return snap
        await registry.snapshots_built()
    raise AssertionError("no snapshot was built")


async def test_current_snapshot_serves_without_loading(make_app) -> None:  # type: ignore[no-untyped-def]
    """Once the snapshot is built, decisions need no entity queries, even for unseen entities."""
    async with make_app() as (app, client):
        await push(client, 'permit(principal in Group::"g", action, resource);')
        await load(client, [entity(f"User:u{n}", parents=("Group:g",)) for n in range(20)])
        await snapshot_ready(app)
        loader = app.state.api.evaluator.loader
        before = loader.queries
        for n in range(20):
            assert (await decide(client, ask(f"User:u{n}", "view", "Doc:a")))["decision"] is True
        assert loader.queries == before


async def test_write_bypasses_stale_snapshot(make_app) -> None:  # type: ignore[no-untyped-def]
    """Right after an entity write the next decision already sees it (the loader serves meanwhile)."""
    async with make_app() as (app, client):
        await push(client, 'permit(principal in Group::"g", action, resource);')
        await load(client, [entity("User:u")])
        await snapshot_ready(app)
        assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is False
        await load(client, [entity("User:u", parents=("Group:g",))])
        assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is True
        snap = await snapshot_ready(app)
        assert snap.size == 1


async def test_schema_change_rebuilds_snapshot(make_app) -> None:  # type: ignore[no-untyped-def]
    """Entities are re-read under a new schema (a string becomes an ipaddr)."""
    from tests.policy.conftest import ADMIN

    async with make_app() as (app, client):
        await load(client, [entity("Host:h", {"ip": "127.0.0.1"})])
        await snapshot_ready(app)
        schema = "entity User; entity Host { ip: ipaddr };action view appliesTo { principal: User, resource: Host };"
        assert (await client.put("/admin/stores/default/schema", content=schema, headers=ADMIN)).status_code == 200
        await push(client, "permit(principal, action, resource) when { resource.ip.isLoopback() };")
        assert (await decide(client, ask("User:u", "view", "Host:h")))["decision"] is True
        await snapshot_ready(app)
        assert (await decide(client, ask("User:u", "view", "Host:h")))["decision"] is True


async def test_store_over_limit_has_no_snapshot(make_app) -> None:  # type: ignore[no-untyped-def]
    """A store with more entities than policy_snapshot_max_entities is served by the loader only."""
    async with make_app(policy_snapshot_max_entities=3) as (app, client):
        await push(client, "permit(principal, action, resource);")
        await load(client, [entity(f"User:u{n}") for n in range(5)])
        registry = app.state.api.registry
        state = await registry.get("default")
        registry.snapshot_for(state)
        await registry.snapshots_built()
        assert registry.snapshot_for(await registry.get("default")) is None
        assert (await decide(client, ask("User:u1", "view", "Doc:a")))["decision"] is True


async def test_snapshot_knows_action_groups(make_app) -> None:  # type: ignore[no-untyped-def]
    """Action entities with parents in the store still group actions when served from the snapshot."""
    async with make_app() as (app, client):
        await push(client, 'permit(principal, action in Action::"read", resource);')
        await load(client, [entity("Action:view", parents=("Action:read",))])
        await snapshot_ready(app)
        assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is True
        assert (await decide(client, ask("User:u", "delete", "Doc:a")))["decision"] is False


async def test_rebuilds_are_spaced_under_a_stream_of_writes(make_app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A burst of entity writes does not rebuild the snapshot once per write; answers stay current."""
    from meshauth.policy import snapshot

    builds = 0
    real = snapshot.read_snapshot

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal builds
        builds += 1
        await asyncio.sleep(0.05)  # make each build take measurable time
        return await real(*args, **kwargs)

    monkeypatch.setattr(snapshot, "read_snapshot", counting)
    async with make_app() as (app, client):
        await push(client, "permit(principal, action, resource) when { principal.n > 0 };")
        await load(client, [entity("User:u", {"n": 0})])
        await snapshot_ready(app)
        builds = 0
        for n in range(1, 21):
            await load(client, [entity("User:u", {"n": n % 2})])
            expected = n % 2 == 1
            assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is expected
            await asyncio.sleep(0.03)  # writes spread over time, as a stream arrives: the spacing under test
        assert builds <= 6, builds  # measured: 2-3 spaced, 10 unspaced


@contextlib.asynccontextmanager
async def first_decision_in_a_fresh_worker(make_app: Any, users: int) -> AsyncIterator[tuple[Any, int]]:
    """Store ``s`` with ``users`` users written by one worker; a fresh worker (nothing loaded, as
    after a restart) answers one decision for it. Yields that worker and the entity queries it took."""
    async with make_app() as (_a, writer):
        await push(writer, 'permit(principal in Group::"g", action, resource);', store="s")
        await load(writer, [entity(f"User:u{n}", parents=("Group:g",)) for n in range(users)], store="s")
        async with make_app() as (app, reader):
            loader = app.state.api.evaluator.loader
            before = loader.queries
            assert (await decide(reader, ask("User:u3", "view", "Doc:a"), store="s"))["decision"] is True
            yield app, loader.queries - before


async def test_a_small_store_loads_with_its_snapshot(make_app) -> None:  # type: ignore[no-untyped-def]
    """A worker loading a small store reads its snapshot as part of the load: the very first
    decision is answered from it, with no entity queries, and no build is left to queue."""
    async with first_decision_in_a_fresh_worker(make_app, 20) as (app, queries):
        assert queries == 0
        view = app.state.api.registry.describe("s")
        assert view.snapshot is not None and view.snapshot.current and view.snapshot.entities == 20


async def test_a_bigger_store_gets_its_snapshot_in_the_background(make_app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Past the first-load bound the store loads without a snapshot (the loader answers) and its
    snapshot is built in the background, as for any write."""
    from meshauth.policy import snapshot_builds

    monkeypatch.setattr(snapshot_builds, "FIRST_LOAD_MAX_ENTITIES", 5)
    async with first_decision_in_a_fresh_worker(make_app, 6) as (app, queries):
        assert queries > 0
        snap = await snapshot_ready(app, "s")
        assert snap.size == 6
