"""The per-store attribute precedence switch (issue 7 item 15): ``request`` (default: a request's
``properties`` are merged over the stored attributes) or ``stored`` (stored attributes win), set
with ``PUT /admin/stores/{store}``, kept in SQL, followed by every worker and replica."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.policy.conftest import ADMIN, ask, decide, entity, load, push, running, settings_for

POLICY = "permit(principal, action, resource) unless { principal has suspended && principal.suspended };"
FLIP = {"properties": {"suspended": False}}  # the attempt: "alice is not suspended"


def flip_attempt(**extra: Any) -> dict[str, Any]:
    body = ask("User:alice", "view", "Doc:d")
    body["subject"].update(FLIP)
    body.update(extra)
    return body


async def set_precedence(client: httpx.AsyncClient, store: str, value: Any) -> httpx.Response:
    return await client.put(f"/admin/stores/{store}", json={"attribute_precedence": value}, headers=ADMIN)


async def seed(client: httpx.AsyncClient, store: str = "default") -> None:
    await push(client, POLICY, store=store)
    await load(client, [entity("User:alice", {"suspended": True, "team": "a"})], store=store)


async def test_request_properties_win_by_default(client: httpx.AsyncClient) -> None:
    """Today's behaviour is kept: the request's ``suspended: false`` overrides the stored ``true``."""
    await seed(client)
    r = await client.get("/admin/stores/default", headers=ADMIN)
    assert r.json()["attribute_precedence"] == "request"
    assert (await decide(client, ask("User:alice", "view", "Doc:d")))["decision"] is False
    assert (await decide(client, flip_attempt()))["decision"] is True


async def test_stored_precedence_refuses_the_flip(client: httpx.AsyncClient) -> None:
    """With ``stored`` the stored ``suspended: true`` wins, singly and in a batch; attributes the
    store does not hold still come from the request."""
    await seed(client)
    r = await set_precedence(client, "default", "stored")
    assert r.status_code == 200, r.text
    assert r.json()["attribute_precedence"] == "stored"
    assert (await decide(client, flip_attempt()))["decision"] is False
    batch = {"evaluations": [flip_attempt(), flip_attempt(context={"x": 1})]}
    r = await client.post("/access/v1/evaluations", json=batch)
    assert [e["decision"] for e in r.json()["evaluations"]] == [False, False]
    await push(client, "permit(principal, action, resource) when { principal.level == 3 };")
    bob = ask("User:bob", "view", "Doc:d")
    bob["subject"]["properties"] = {"level": 3}  # bob is not stored: his request properties count
    assert (await decide(client, bob))["decision"] is True


async def test_switching_back_restores_request_precedence(client: httpx.AsyncClient) -> None:
    """``request`` again: the flip is answered as before, under a newer revision."""
    await seed(client)
    first = (await set_precedence(client, "default", "stored")).json()["revision"]
    assert (await decide(client, flip_attempt()))["decision"] is False
    second = (await set_precedence(client, "default", "request")).json()["revision"]
    decision = await decide(client, flip_attempt())
    assert decision["decision"] is True
    assert second > first
    assert decision["context"]["revision"] == second


async def test_store_scoped_switch(client: httpx.AsyncClient) -> None:
    """The switch is per store: ``s`` flips, ``default`` keeps request precedence."""
    await seed(client)
    await seed(client, "s")
    assert (await set_precedence(client, "s", "stored")).status_code == 200
    assert (await decide(client, flip_attempt(), store="s"))["decision"] is False
    assert (await decide(client, flip_attempt()))["decision"] is True


async def test_put_creates_a_store_with_the_switch(client: httpx.AsyncClient) -> None:
    """``PUT`` on a new store creates it with the given precedence; ``PUT`` without a body creates
    a store as before and leaves an existing store's precedence alone."""
    r = await set_precedence(client, "fresh", "stored")
    assert (r.status_code, r.json()["attribute_precedence"]) == (200, "stored")
    r = await client.put("/admin/stores/fresh", headers=ADMIN)
    assert (r.status_code, r.json()["attribute_precedence"]) == (200, "stored")
    r = await client.put("/admin/stores/other", headers=ADMIN)
    assert (r.status_code, r.json()["attribute_precedence"]) == (200, "request")


async def test_get_store_keeps_its_fields(client: httpx.AsyncClient) -> None:
    """``GET /admin/stores/{store}`` keeps ``revision``, ``active_version``, ``entities_version`` and
    adds ``attribute_precedence``; the store list shows it too."""
    await seed(client)
    await set_precedence(client, "default", "stored")
    info = (await client.get("/admin/stores/default", headers=ADMIN)).json()
    assert {"revision", "active_version", "entities_version", "attribute_precedence"} <= set(info)
    assert (info["active_version"], info["attribute_precedence"]) == (1, "stored")
    listed = (await client.get("/admin/stores", headers=ADMIN)).json()["stores"]
    assert [s["attribute_precedence"] for s in listed if s["store"] == "default"] == ["stored"]


async def test_same_value_changes_nothing(client: httpx.AsyncClient) -> None:
    """Setting the precedence a store already has does not bump its revision."""
    await seed(client)
    before = (await client.get("/admin/stores/default", headers=ADMIN)).json()["revision"]
    r = await set_precedence(client, "default", "request")
    assert r.json()["revision"] == before


async def test_bad_bodies_are_400_and_change_nothing(client: httpx.AsyncClient) -> None:
    """An unknown value, a misspelt key, a non-object or non-JSON body: 400 naming the problem."""
    await seed(client)
    cases: list[Any] = [
        {"json": {"attribute_precedence": "STORED"}},
        {"json": {"attribute_precedence": None}},
        {"json": {"attribute_precedance": "stored"}},
        {"json": ["stored"]},
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        {"content": b'{"attribute_precedence": "\xff"}', "headers": {"content-type": "application/json"}},
    ]
    for case in cases:
        headers = {**ADMIN, **case.pop("headers", {})}
        r = await client.put("/admin/stores/default", headers=headers, **case)
        assert r.status_code == 400, (case, r.text)
        assert r.json()["error"] == "invalid_request"
    info = (await client.get("/admin/stores/default", headers=ADMIN)).json()
    assert info["attribute_precedence"] == "request"


async def test_switch_needs_the_admin_token(client: httpx.AsyncClient) -> None:
    r = await client.put("/admin/stores/default", json={"attribute_precedence": "stored"})
    assert r.status_code == 401


async def test_switch_survives_a_new_app_instance(db_url: str, tmp_path: Path) -> None:
    """The switch lives in SQL: a freshly started app serves the store with stored precedence."""
    async with running(settings_for(db_url, tmp_path)) as (_app, client):
        await seed(client)
        await set_precedence(client, "default", "stored")
    async with running(settings_for(db_url, tmp_path / "restarted")) as (_app, client):
        info = (await client.get("/admin/stores/default", headers=ADMIN)).json()
        assert info["attribute_precedence"] == "stored"
        assert (await decide(client, flip_attempt()))["decision"] is False


async def test_other_replica_stops_answering_under_the_old_rule(
    db_url: str, tmp_path: Path, make_app: Callable[..., Any]
) -> None:
    """A replica that answered the flip (and holds the store, its entities and snapshot warm)
    answers the next one under the new rule within its refresh interval, at the new revision —
    through the database alone (its own ``var_dir``: no shared write signal)."""
    async with make_app() as (_a, writer), running(settings_for(db_url, tmp_path / "elsewhere")) as (_b, reader):
        await seed(writer)
        for _ in range(3):  # warm: loaded store, cached entities
            assert (await decide(reader, flip_attempt()))["decision"] is True
        assert (await decide(reader, ask("User:alice", "view", "Doc:d")))["decision"] is False
        revision = (await set_precedence(writer, "default", "stored")).json()["revision"]
        for _ in range(200):
            answer = await decide(reader, flip_attempt())
            if answer["context"]["revision"] == revision:
                break
            assert answer["decision"] is True  # still the old revision: the old rule, said so
            await asyncio.sleep(0.01)
        assert (answer["decision"], answer["context"]["revision"]) == (False, revision)


async def test_worker_on_the_same_host_follows_at_once(make_app: Callable[..., Any]) -> None:
    """A worker sharing ``var_dir`` answers the very next request under the new rule (write signal),
    even with a refresh tick of a minute."""
    async with (
        make_app(policy_refresh_interval=60) as (_a, writer),
        make_app(policy_refresh_interval=60) as (
            _b,
            reader,
        ),
    ):
        await seed(writer)
        assert (await decide(reader, flip_attempt()))["decision"] is True
        revision = (await set_precedence(writer, "default", "stored")).json()["revision"]
        answer = await decide(reader, flip_attempt())
        assert (answer["decision"], answer["context"]["revision"]) == (False, revision)
