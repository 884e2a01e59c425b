"""Decisions from entities loaded per request (the store past ``policy_snapshot_max_entities``) equal
the whole store's: what the loader leaves out must never turn a forbid into an allow."""

from __future__ import annotations

from typing import Any

from tests.policy.conftest import ask, decide, entity, load, push

GUARDED = (
    '@id("allow-all") permit(principal, action, resource);\n'
    '@id("lockdown") forbid(principal, action, resource) when { Config::"g" has lockdown && Config::"g".lockdown };\n'
    '@id("archived") forbid(principal, action, resource) when { resource in Folder::"archive" };'
)


def _folders(depth: int) -> list[dict[str, Any]]:
    """``Doc::d`` in ``Folder::f<depth-1>`` in … in ``Folder::f0`` in ``Folder::archive``."""
    chain = [entity(f"Folder:f{n}", parents=(f"Folder:f{n - 1}" if n else "Folder:archive",)) for n in range(depth)]
    return [*chain, entity("Folder:archive"), entity("Doc:d", parents=(f"Folder:f{depth - 1}",))]


async def test_a_literal_only_has_guards_is_loaded(make_app: Any) -> None:
    """``Config::"g" has lockdown`` is false *without an error* when the entity is not loaded: the
    literal must be a loader root, or the forbid silently does not apply."""
    for snapshot in (0, 1000):
        async with make_app(policy_snapshot_max_entities=snapshot) as (_app, client):
            await push(client, GUARDED)
            await load(client, [entity("Config:g", {"lockdown": True}), entity("Doc:d")])
            answer = await decide(client, ask("User:u", "read", "Doc:d"))
            assert answer["decision"] is False, (snapshot, answer)
            assert answer["context"]["policies"] == ["lockdown"]


async def test_a_hierarchy_deeper_than_the_loader_walks_fails_closed(make_app: Any) -> None:
    """A resource 40 folders below ``Folder::archive`` is in it (the snapshot path says so); the
    loader, which walks ``policy_max_hierarchy_depth`` (32) levels, must not answer allow."""
    for snapshot in (1000, 0):
        async with make_app(policy_snapshot_max_entities=snapshot) as (_app, client):
            await push(client, GUARDED)
            await load(client, _folders(40))
            answer = await decide(client, ask("User:u", "read", "Doc:d"))
            assert answer["decision"] is False, (snapshot, answer)


async def test_a_deep_graph_denies_its_own_item_of_a_batch_only(make_app: Any) -> None:
    """In a batch, the item whose resource sits too deep is denied with an error saying why; the
    other items are answered as alone."""
    async with make_app(policy_snapshot_max_entities=0) as (_app, client):
        await push(client, GUARDED)
        await load(client, [*_folders(40), entity("Doc:shallow", parents=("Folder:f39",)), entity("Doc:free")])
        items = [ask("User:u", "read", f"Doc:{d}") for d in ("d", "free", "shallow")]
        r = await client.post("/access/v1/evaluations", json={"evaluations": items})
        assert r.status_code == 200, r.text
        deep, free, shallow = r.json()["evaluations"]
        assert free["decision"] is True
        for denied in (deep, shallow):
            assert denied["decision"] is False
            assert "policy_max_hierarchy_depth" in denied["context"]["errors"][0]


async def test_a_reference_starts_a_hierarchy_of_its_own(make_app: Any) -> None:
    """The limit is a hierarchy's depth, not the walk's length: a resource 30 folders down whose top
    folder names an owner in a 2-level group chain is within it (each chain ≤ 32), so it is answered,
    not denied as too deep (a walk of 33 rounds was counted as one hierarchy)."""
    chain = [entity(f"Folder:f{n}", parents=(f"Folder:f{n - 1}",) if n else ()) for n in range(30)]
    chain[0]["attrs"] = {"owner": {"__entity": {"type": "User", "id": "o"}}}
    groups = [entity("User:o", parents=("Group:g1",)), entity("Group:g1", parents=("Group:g0",)), entity("Group:g0")]
    async with make_app(policy_snapshot_max_entities=0) as (_app, client):
        await push(client, GUARDED)
        await load(client, [*chain, *groups, entity("Folder:archive"), entity("Doc:d", parents=("Folder:f29",))])
        answer = await decide(client, ask("User:u", "read", "Doc:d"))
        assert answer["decision"] is True, answer
        assert not answer["context"].get("errors"), answer


async def test_one_deep_item_does_not_make_a_batch_one_engine_call_per_item(make_app: Any) -> None:
    """The batch is halved until the deep item is alone: 63 other items cost a handful of engine calls,
    not one each (a caller could otherwise turn one call into 1,024)."""
    async with make_app(policy_snapshot_max_entities=0) as (app, client):
        await push(client, GUARDED)
        await load(client, _folders(40))
        items = [ask("User:u", "read", "Doc:d"), *(ask("User:u", "read", f"Doc:free{n}") for n in range(63))]
        evaluator = app.state.api.evaluator
        before = evaluator.engine_calls
        r = await client.post("/access/v1/evaluations", json={"evaluations": items})
        assert r.status_code == 200, r.text
        out = r.json()["evaluations"]
        assert out[0]["decision"] is False and "policy_max_hierarchy_depth" in out[0]["context"]["errors"][0]
        assert all(e["decision"] is True for e in out[1:])
        assert evaluator.engine_calls - before <= 2 * 6  # two halves per level, log2(64) levels
