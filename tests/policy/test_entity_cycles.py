"""A parent cycle closed across two uploads is refused, as Cedar refuses one within an upload:
once stored, every decision that reaches the cycle failed (deny with an entities error)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.policy.conftest import ADMIN, ask, entity, load, push

ENTITIES = "/admin/stores/default/entities"


async def test_a_cycle_closed_by_a_later_upload_is_refused(client: httpx.AsyncClient) -> None:
    await push(client, 'permit(principal in Group::"a", action, resource);')
    await load(client, [entity("Group:a", parents=("Group:b",)), entity("User:y", parents=("Group:a",))])
    await load(client, [entity("Group:b", parents=("Group:c",))])

    r = await client.post(ENTITIES, json=[entity("Group:c", parents=("Group:a",))], headers=ADMIN)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "invalid_request"
    assert body["field"] == "entities"
    assert 'Group::"c"' in body["error_description"]

    # Nothing was written: Group::"c" is not stored, and decisions still work.
    assert (await client.get("/admin/stores/default/entities/Group/c", headers=ADMIN)).status_code == 404
    r = await client.post("/access/v1/evaluation", json=ask("User:y", "view", "Doc:d"))
    assert r.json()["decision"] is True, r.text


async def test_a_self_parent_upload_over_a_stored_entity_is_refused(client: httpx.AsyncClient) -> None:
    await load(client, [entity("Group:a")])
    r = await client.post(ENTITIES, json=[entity("Group:a", parents=("Group:a",))], headers=ADMIN)
    assert r.status_code == 400, r.text


async def test_an_upload_that_breaks_a_cycle_and_an_acyclic_one_pass(client: httpx.AsyncClient) -> None:
    """Reaching a stored entity twice (a diamond) is no cycle; re-parenting away from one is fine."""
    await load(client, [entity("Group:top"), entity("Group:l", parents=("Group:top",))])
    await load(client, [entity("Group:r", parents=("Group:top",))])
    await load(client, [entity("User:u", parents=("Group:l", "Group:r", "Group:missing"))])
    await load(client, [entity("Group:top", parents=("Group:r2",)), entity("Group:r2")])


async def test_two_concurrent_uploads_cannot_each_close_half_a_cycle(client: httpx.AsyncClient) -> None:
    await push(client, 'permit(principal in Group::"a", action, resource);')
    await load(client, [entity("User:y", parents=("Group:a",))])

    async def up(items: list[dict[str, Any]]) -> int:
        r = await client.post(ENTITIES, json=items, headers=ADMIN)
        return r.status_code

    codes = await asyncio.gather(
        up([entity("Group:a", parents=("Group:b",))]), up([entity("Group:b", parents=("Group:a",))])
    )
    assert sorted(codes) == [200, 400], codes
    r = await client.post("/access/v1/evaluation", json=ask("User:y", "view", "Doc:d"))
    assert r.json()["context"]["errors"] == [], r.text
