"""The evaluator on the entity-loader path: what a forbid sees, and failing closed when it cannot."""

from __future__ import annotations

from typing import Any

from tests.policy.conftest import decide, entity, load, push

ALLOW_ALL = '@id("allow") permit(principal, action, resource);\n'


def with_properties(body: dict[str, Any]) -> dict[str, Any]:
    """A request with subject properties: always answered through the loader."""
    return {**body, "subject": {**body["subject"], "properties": {"x": 1}}}


def doc_request() -> dict[str, Any]:
    return {
        "subject": {"type": "User", "id": "a"},
        "action": {"name": "view"},
        "resource": {"type": "Doc", "id": "d"},
    }


async def test_forbid_naming_an_entity_literally_applies_on_the_loader_path(make_app) -> None:  # type: ignore[no-untyped-def]
    """A forbid on ``Config::"global".lockdown`` denies through the loader: the literal is loaded."""
    async with make_app(policy_snapshot_max_entities=0) as (_app, client):
        await push(
            client,
            ALLOW_ALL + '@id("lockdown") forbid(principal, action, resource) when { Config::"global".lockdown };',
        )
        await load(client, [entity("Config::global", {"lockdown": True}), entity("Doc::d")])
        for body in (doc_request(), with_properties(doc_request())):
            d = await decide(client, body)
            assert d["decision"] is False
            assert d["context"]["policies"] == ["lockdown"]
            assert d["context"]["errors"] == []


async def test_forbid_following_a_three_hop_chain_applies_on_the_loader_path(make_app) -> None:  # type: ignore[no-untyped-def]
    """``resource.owner.manager.suspended`` is followed to its end, past ``policy_entity_ref_depth``."""
    async with make_app(policy_snapshot_max_entities=0) as (_app, client):
        await push(
            client,
            ALLOW_ALL + '@id("deep") forbid(principal, action, resource) when { resource.owner.manager.suspended };',
        )
        await load(
            client,
            [
                entity("Doc::d", {"owner": {"__entity": {"type": "User", "id": "o"}}}),
                entity("User::o", {"manager": {"__entity": {"type": "User", "id": "m"}}}),
                entity("User::m", {"suspended": True}),
            ],
        )
        d = await decide(client, with_properties(doc_request()))
        assert d["decision"] is False
        assert d["context"]["policies"] == ["deep"]
        assert d["context"]["errors"] == []


async def test_forbid_reaching_an_entity_through_tags_applies_on_the_loader_path(make_app) -> None:  # type: ignore[no-untyped-def]
    """An entity referenced from a tag value is loaded like one referenced from an attribute."""
    async with make_app(policy_snapshot_max_entities=0) as (_app, client):
        await push(
            client,
            ALLOW_ALL + '@id("tag") forbid(principal, action, resource) when { resource.getTag("owner").suspended };',
        )
        doc = {**entity("Doc::d"), "tags": {"owner": {"__entity": {"type": "User", "id": "o"}}}}
        await load(client, [doc, entity("User::o", {"suspended": True})])
        d = await decide(client, with_properties(doc_request()))
        assert d["decision"] is False
        assert d["context"]["policies"] == ["tag"]


async def test_forbid_erroring_on_a_missing_entity_fails_closed(make_app) -> None:  # type: ignore[no-untyped-def]
    """When a forbid cannot be evaluated because an entity does not exist, the answer is deny, and
    the errors say so — on the loader and the snapshot path alike."""
    policies = (
        ALLOW_ALL + '@id("owner-suspended") forbid(principal, action, resource) when { resource.owner.suspended };'
    )
    async with make_app() as (_app, client):
        await push(client, policies)
        await load(client, [entity("Doc::d", {"owner": {"__entity": {"type": "User", "id": "gone"}}})])
        for body in (doc_request(), with_properties(doc_request())):
            d = await decide(client, body)
            assert d["decision"] is False
            assert d["context"]["policies"] == ["owner-suspended"]
            assert any("does not exist" in e for e in d["context"]["errors"])
            assert any("missing entity: denied" in e for e in d["context"]["errors"])


async def test_permit_erroring_on_a_missing_entity_is_still_skipped(make_app) -> None:  # type: ignore[no-untyped-def]
    """Failing closed concerns forbids only: a permit that errors simply does not apply."""
    async with make_app() as (_app, client):
        await push(client, '@id("p") permit(principal, action, resource) when { resource.owner.ok };')
        await load(client, [entity("Doc::d", {"owner": {"__entity": {"type": "User", "id": "gone"}}})])
        d = await decide(client, doc_request())
        assert d["decision"] is False
        assert d["context"]["policies"] == []
        assert len(d["context"]["errors"]) == 1
