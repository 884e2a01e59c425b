"""Admin writes that race each other: each transaction reads the store row under its write lock, so
the two land in some order and never leave a state neither order gives."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from meshauth.policy import stores
from tests.policy.conftest import ADMIN, entity, load, push

SCHEMA = "entity User; entity Doc { owner: User }; action view appliesTo { principal: User, resource: Doc };"


def held(monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold ``stores.<name>`` (inside its caller's transaction) until released: (reached, release)."""
    reached, release = asyncio.Event(), asyncio.Event()
    real: Callable[..., Awaitable[Any]] = getattr(stores, name)

    async def hold(*args: Any, **kwargs: Any) -> Any:
        reached.set()
        await release.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(stores, name, hold)
    return reached, release


async def test_a_store_deleted_during_an_activation_stays_deleted_and_empty(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await push(client, "permit(principal, action, resource);", store="s")
    await push(client, "forbid(principal, action, resource);", store="s", activate=False)
    reached, release = held(monkeypatch, "activated")
    activation = asyncio.create_task(client.post("/admin/stores/s/policies/2/activate", headers=ADMIN))
    await reached.wait()
    deletion = asyncio.create_task(client.delete("/admin/stores/s", headers=ADMIN))
    await asyncio.sleep(0.3)  # the deletion commits now unless the activation holds the store
    release.set()
    activated, deleted = await activation, await deletion
    assert deleted.status_code == 200, deleted.text
    assert activated.status_code in (200, 404), activated.text

    # Either order leaves a deleted store; brought back, it has no versions and nothing active.
    r = await client.put("/admin/stores/s", headers=ADMIN)
    assert r.json()["active_version"] is None, r.text
    r = await client.post(
        "/admin/stores/s/policies", json={"policies": "permit(principal, action, resource);"}, headers=ADMIN
    )
    assert r.json()["activated"] is True, r.text


async def test_the_default_store_emptied_during_an_activation_has_nothing_active(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await push(client, "permit(principal, action, resource);")
    await push(client, "forbid(principal, action, resource);", activate=False)
    reached, release = held(monkeypatch, "activated")
    activation = asyncio.create_task(client.post("/admin/stores/default/policies/2/activate", headers=ADMIN))
    await reached.wait()
    deletion = asyncio.create_task(client.delete("/admin/stores/default", headers=ADMIN))
    await asyncio.sleep(0.3)
    release.set()
    await activation
    assert (await deletion).status_code == 200
    r = await client.get("/admin/stores/default/policies", headers=ADMIN)
    assert (r.json()["active_version"], r.json()["versions"]) == (None, []), r.text


async def test_a_schema_set_during_an_activation_never_leaves_a_version_it_refuses_active(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await push(client, 'permit(principal, action == Action::"view", resource);', store="s")
    await push(client, 'permit(principal, action == Action::"edit", resource);', store="s", activate=False)
    reached, release = held(monkeypatch, "activated")
    activation = asyncio.create_task(client.post("/admin/stores/s/policies/2/activate", headers=ADMIN))
    await reached.wait()
    schema = asyncio.create_task(client.put("/admin/stores/s/schema?format=cedar", content=SCHEMA, headers=ADMIN))
    await asyncio.sleep(0.3)
    release.set()
    activated, schema_set = await activation, await schema
    # Version 2 names an action the schema does not have: at most one of the two may succeed.
    assert sorted([activated.status_code, schema_set.status_code]) in ([200, 422],), (activated.text, schema_set.text)


async def test_an_entity_deletion_during_an_upload_of_it_does_not_deadlock(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload holds the store's lock, then writes the entity rows; a deletion that locked the
    entity's row first and then waited for the store's was a deadlock (PostgreSQL aborts one: a 503)."""
    from meshauth.policy import admin, entity_store

    await load(client, [entity("User:x")])
    reached, release = asyncio.Event(), asyncio.Event()
    real = entity_store.find_cycle

    async def hold(*args: Any) -> Any:
        reached.set()
        await release.wait()
        return await real(*args)

    monkeypatch.setattr(admin, "find_cycle", hold)
    upload = asyncio.create_task(
        client.post("/admin/stores/default/entities", json=[entity("User:x", {"n": 1})], headers=ADMIN)
    )
    await reached.wait()
    deletion = asyncio.create_task(client.delete("/admin/stores/default/entities/User/x", headers=ADMIN))
    await asyncio.sleep(0.3)
    release.set()
    uploaded, deleted = await upload, await deletion
    assert (uploaded.status_code, deleted.status_code) == (200, 200), (uploaded.text, deleted.text)
    r = await client.get("/admin/stores/default/entities/User/x", headers=ADMIN)
    assert r.status_code == 404, r.text  # the upload, then the deletion
