"""Issue 7 item 4: policies Cedar accepts but cannot convert to its typed nodes (an extension call
with the wrong number of arguments only errors when evaluated) upload, activate and decide exactly
as the whole set does — the index treats what it cannot analyse as "may match anything"."""

from __future__ import annotations

import httpx

from tests.policy.conftest import ADMIN, ask, decide, entity, load, push

ODD = """
@id("ok") permit(principal, action == Action::"view", resource is Doc);
@id("dec3") permit(principal, action == Action::"edit", resource is Doc)
  when { decimal("1.0", "2", "3") == decimal("1.0") };
@id("ip2") forbid(principal, action, resource) when { ip("10.0.0.1", 5).isIpv4() && context.block };
@id("range1") permit(principal, action == Action::"share", resource) when { principal.isInRange() };
@id("img") permit(principal is User, action, resource is Img);
"""

REQUESTS = [
    ("User::u1", "view", "Doc::d1", {}),
    ("User::u1", "edit", "Doc::d1", {}),
    ("User::u1", "share", "Doc::d1", {}),
    ("User::u1", "view", "Img::i1", {"block": False}),
    ("User::u1", "view", "Img::i1", {"block": True}),
    ("User::u1", "view", "Doc::d1", {"block": True}),
]


async def _answers(client: httpx.AsyncClient) -> list[tuple[bool, list[str], list[str]]]:
    out = []
    for subject, action, resource, context in REQUESTS:
        d = await decide(client, ask(subject, action, resource, context=context))
        out.append((d["decision"], sorted(d["context"]["policies"]), sorted(d["context"]["errors"])))
    return out


async def test_policies_cedar_evaluates_but_cannot_convert_upload_and_decide_like_the_full_set(make_app) -> None:  # type: ignore[no-untyped-def]
    """Upload answers 201 and every decision equals the unindexed full set's (errors included)."""
    ents = [entity("User::u1"), entity("Doc::d1"), entity("Img::i1")]
    async with make_app(policy_index_min_policies=0) as (_app, client):
        r = await client.post("/admin/stores/default/policies", json={"policies": ODD}, headers=ADMIN)
        assert r.status_code == 201, r.text
        await load(client, ents)
        indexed = await _answers(client)
    async with make_app(policy_index_enabled=False) as (_app, client):
        unindexed = await _answers(client)
    assert indexed == unindexed
    assert indexed[0][:2] == (True, ["ok"])
    assert any("ip2" in e for e in indexed[4][2])  # the odd forbid is evaluated (and errors, as in Cedar)
    assert any("decimal" in e for e in indexed[1][2])  # the three-argument call errors when evaluated


async def test_unconvertible_policy_failing_schema_validation_is_a_422(client: httpx.AsyncClient) -> None:
    """With a schema, a policy that fails validation and cannot be converted is named in a 422, not a 500."""
    schema = "entity User; entity Doc; action view appliesTo { principal: User, resource: Doc };"
    assert (await client.put("/admin/stores/default/schema", content=schema, headers=ADMIN)).status_code == 200
    text = (
        '@id("d") permit(principal, action == Action::"view", resource)\n'
        'when { decimal("1", "2", "3") == decimal("1") };'
    )
    r = await client.post("/admin/stores/default/policies", json={"policies": text}, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert r.json()["error"]


async def test_push_helper_accepts_unconvertible_policies(client: httpx.AsyncClient) -> None:
    """A store made only of such policies activates and answers (no 500 on the first decision)."""
    await push(client, 'permit(principal, action, resource) when { decimal("1", "2", "3") == decimal("1.0") };')
    d = await decide(client, ask("User::u", "view", "Doc::d"))
    assert d["decision"] is False
    assert len(d["context"]["errors"]) == 1
