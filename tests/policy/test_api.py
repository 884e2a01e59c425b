"""The AuthZEN decision API against real Cedar semantics: the contract external suites test."""

from __future__ import annotations

from typing import Any

import httpx

from tests.policy.conftest import ADMIN, ask, decide, entity, load, push

DOCS = """
@id("viewers-view")
permit(principal in Group::"viewers", action == Action::"view", resource);

@id("no-bob")
forbid(principal == User::"bob", action, resource);

permit(principal, action in Action::"write", resource is Doc) when { resource.owner == principal };
"""


async def test_permit_carries_revision_and_annotation_id(client: httpx.AsyncClient) -> None:
    """An allowed decision names the store revision and the determining policy's @id."""
    await push(client, DOCS)
    await load(client, [entity("User:alice", parents=("Group:viewers",))])
    d = await decide(client, ask("User:alice", "view", "Doc:d1"))
    assert d == {
        "decision": True,
        "context": {"revision": 1, "policies": ["viewers-view"], "errors": [], "entities_version": 1},
    }


async def test_forbid_overrides_permit(client: httpx.AsyncClient) -> None:
    """A matching forbid denies even when a permit matches, and is named as the reason."""
    await push(client, DOCS)
    await load(client, [entity("User:bob", parents=("Group:viewers",))])
    d = await decide(client, ask("User:bob", "view", "Doc:d1"))
    assert d["decision"] is False
    assert d["context"]["policies"] == ["no-bob"]


async def test_default_deny_names_no_policy(client: httpx.AsyncClient) -> None:
    """With no permit matching the answer is deny with an empty policy list."""
    await push(client, DOCS)
    d = await decide(client, ask("User:carol", "view", "Doc:d1"))
    assert d["decision"] is False
    assert d["context"]["policies"] == []


async def test_unannotated_policy_is_named_by_cedar_id(client: httpx.AsyncClient) -> None:
    """A policy without @id is named by Cedar's positional id."""
    await push(client, DOCS)
    await load(client, [entity("Doc:d1", {"owner": {"__entity": {"type": "User", "id": "dave"}}})])
    d = await decide(client, ask("User:dave", "write", "Doc:d1"))
    assert d["decision"] is True
    assert d["context"]["policies"] == ["policy2"]


async def test_hierarchy_in_follows_parents_transitively(client: httpx.AsyncClient) -> None:
    """``principal in Group`` holds through a chain of parents."""
    await push(client, 'permit(principal in Group::"all", action, resource);')
    await load(
        client,
        [
            entity("User:erin", parents=("Group:team",)),
            entity("Group:team", parents=("Group:dept",)),
            entity("Group:dept", parents=("Group:all",)),
        ],
    )
    assert (await decide(client, ask("User:erin", "view", "Doc:x")))["decision"] is True
    assert (await decide(client, ask("User:frank", "view", "Doc:x")))["decision"] is False


async def test_resource_hierarchy_in(client: httpx.AsyncClient) -> None:
    """``resource in Folder`` holds for a resource whose parent is that folder."""
    await push(client, 'permit(principal, action, resource in Folder::"shared");')
    await load(client, [entity("Doc:a", parents=("Folder:shared",))])
    assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is True
    assert (await decide(client, ask("User:u", "view", "Doc:b")))["decision"] is False


async def test_action_groups_from_entities(client: httpx.AsyncClient) -> None:
    """``action in Action::"read"`` matches an action whose entity lists "read" as a parent."""
    await push(client, 'permit(principal, action in Action::"read", resource);')
    await load(client, [entity("Action:view", parents=("Action:read",))])
    assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is True
    assert (await decide(client, ask("User:u", "delete", "Doc:a")))["decision"] is False


async def test_namespaced_types_and_full_action_uid(client: httpx.AsyncClient) -> None:
    """Namespaced entity types work, and an action name that is a Cedar uid is used as is."""
    await push(client, 'permit(principal is App::User, action == App::Action::"view", resource is App::Doc);')
    allowed = await decide(client, ask("App::User:a", 'App::Action::"view"', "App::Doc:d"))
    assert allowed["decision"] is True
    plain = await decide(client, ask("App::User:a", "view", "App::Doc:d"))
    assert plain["decision"] is False  # plain "view" means Action::"view", not App::Action::"view"


async def test_context_reaches_cedar(client: httpx.AsyncClient) -> None:
    """The AuthZEN context is the Cedar context."""
    await push(client, "permit(principal, action, resource) when { context.mfa == true };")
    yes = await decide(client, ask("User:u", "view", "Doc:a", context={"mfa": True}))
    no = await decide(client, ask("User:u", "view", "Doc:a", context={"mfa": False}))
    assert (yes["decision"], no["decision"]) == (True, False)


async def test_evaluation_error_is_reported(client: httpx.AsyncClient) -> None:
    """A policy that errors on a request is skipped and its error is listed."""
    await push(client, '@id("needs-level") permit(principal, action, resource) when { principal.level > 3 };')
    d = await decide(client, ask("User:nobody", "view", "Doc:a"))
    assert d["decision"] is False
    assert len(d["context"]["errors"]) == 1
    assert "needs-level" in d["context"]["errors"][0]


async def test_properties_merge_over_stored_attributes(client: httpx.AsyncClient) -> None:
    """Subject properties override the stored entity's attributes and keep the rest (and parents)."""
    await push(
        client,
        'permit(principal in Group::"g", action, resource) when { principal.level > 3 && principal.dept == "x" };',
    )
    await load(client, [entity("User:u", {"level": 1, "dept": "x"}, parents=("Group:g",))])
    assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is False
    body = ask("User:u", "view", "Doc:a")
    body["subject"]["properties"] = {"level": 5}
    assert (await decide(client, body))["decision"] is True


async def test_resource_properties_for_unknown_entity(client: httpx.AsyncClient) -> None:
    """Properties describe a resource the store does not hold."""
    await push(client, "permit(principal, action, resource) when { resource.public == true };")
    body = ask("User:u", "view", "Doc:new")
    body["resource"]["properties"] = {"public": True}
    assert (await decide(client, body))["decision"] is True


async def test_schema_types_strings_as_extensions(client: httpx.AsyncClient) -> None:
    """With a schema, a context string becomes an ipaddr where the schema says so."""
    schema = """
    entity User; entity Doc;
    action view appliesTo { principal: User, resource: Doc, context: { ip: ipaddr } };
    """
    r = await client.put("/admin/stores/default/schema", content=schema, headers=ADMIN)
    assert r.status_code == 200, r.text
    await push(client, 'permit(principal, action == Action::"view", resource) when { context.ip.isLoopback() };')
    local = await decide(client, ask("User:u", "view", "Doc:a", context={"ip": "127.0.0.1"}))
    remote = await decide(client, ask("User:u", "view", "Doc:a", context={"ip": "10.1.2.3"}))
    assert (local["decision"], remote["decision"]) == (True, False)


async def test_schema_action_groups(client: httpx.AsyncClient) -> None:
    """An action group declared in the schema (``action view in [read]``) is honoured."""
    schema = "entity User; entity Doc; action read; action view in [read] appliesTo { principal: User, resource: Doc };"
    r = await client.put("/admin/stores/default/schema", content=schema, headers=ADMIN)
    assert r.status_code == 200, r.text
    await push(client, 'permit(principal, action in Action::"read", resource);')
    assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is True


async def test_request_not_matching_schema_is_denied_with_error(client: httpx.AsyncClient) -> None:
    """A context the schema rejects yields deny with the engine's error, not a 500."""
    schema = "entity User; entity Doc; action view appliesTo { principal: User, resource: Doc, context: { n: Long } };"
    await client.put("/admin/stores/default/schema", content=schema, headers=ADMIN)
    await push(client, "permit(principal, action, resource);")
    d = await decide(client, ask("User:u", "view", "Doc:a", context={"n": "not a number"}))
    assert d["decision"] is False
    assert d["context"]["errors"]


async def test_named_store_is_isolated(client: httpx.AsyncClient) -> None:
    """Policies in one store do not answer for another."""
    await push(client, "permit(principal, action, resource);", store="open")
    assert (await decide(client, ask("User:u", "view", "Doc:a"), store="open"))["decision"] is True
    assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is False


async def test_unknown_store_is_404(client: httpx.AsyncClient) -> None:
    """Asking a store that does not exist is a 404 with the error shape."""
    r = await client.post("/stores/missing/access/v1/evaluation", json=ask("User:u", "view", "Doc:a"))
    assert r.status_code == 404
    assert r.json()["error"] == "store_not_found"


async def test_missing_field_is_400_naming_it(client: httpx.AsyncClient) -> None:
    """A request without subject.id is a 400 that names subject.id."""
    r = await client.post("/access/v1/evaluation", json={"subject": {"type": "User"}, "action": {"name": "v"}})
    assert r.status_code == 400
    assert r.json()["field"] == "subject.id"
    assert "subject.id" in r.json()["error_description"]


async def test_wrong_type_is_400_naming_it(client: httpx.AsyncClient) -> None:
    """A number where a string belongs is a 400 naming the field."""
    body = ask("User:u", "view", "Doc:a")
    body["resource"]["id"] = 7
    r = await client.post("/access/v1/evaluation", json=body)
    assert r.status_code == 400
    assert r.json()["field"] == "resource.id"


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    """Bytes that are not JSON are a 400, not a 500."""
    r = await client.post("/access/v1/evaluation", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


async def test_inexpressible_entity_type_is_400(client: httpx.AsyncClient) -> None:
    """An entity type Cedar cannot express (reserved word, spaces) is a 400 naming the field."""
    for bad in ("if", "User Name", "1User", "App::has", "__cedar::X"):
        body = ask("User:u", "view", "Doc:a")
        body["subject"]["type"] = bad
        r = await client.post("/access/v1/evaluation", json=body)
        assert r.status_code == 400, bad
        assert r.json()["field"] == "subject.type"


async def test_overlong_id_is_400(client: httpx.AsyncClient) -> None:
    """An entity id over the length limit is a 400 naming the field."""
    body = ask("User:u", "view", "Doc:a")
    body["resource"]["id"] = "x" * 5000
    r = await client.post("/access/v1/evaluation", json=body)
    assert r.status_code == 400
    assert r.json()["field"] == "resource.id"


async def test_body_over_limit_is_413(make_app) -> None:  # type: ignore[no-untyped-def]
    """A request body over policy_max_request_bytes is refused with 413."""
    async with make_app(policy_max_request_bytes=2048) as (_app, client):
        body = ask("User:u", "view", "Doc:a", context={"pad": "x" * 4096})
        r = await client.post("/access/v1/evaluation", json=body)
    assert r.status_code == 413
    assert r.json()["error"] == "request_too_large"


async def test_well_known_configuration(client: httpx.AsyncClient) -> None:
    """The AuthZEN metadata names the PDP and both evaluation endpoints."""
    r = await client.get("/.well-known/authzen-configuration")
    assert r.status_code == 200
    meta = r.json()
    assert meta["policy_decision_point"] == "http://pdp"
    assert meta["access_evaluation_endpoint"] == "http://pdp/access/v1/evaluation"
    assert meta["access_evaluations_endpoint"] == "http://pdp/access/v1/evaluations"


async def test_metadata_from_a_callers_host_is_never_cacheable(client: httpx.AsyncClient) -> None:
    """Without ``policy_public_url`` the metadata is made from the request's Host, which its sender
    chooses: ``no-store``, so no shared cache can keep ``Host: evil.example``'s answer for everyone
    (before: ``max-age=300`` — every client sent its decisions to the attacker's host)."""
    r = await client.get("/.well-known/authzen-configuration", headers={"host": "evil.example"})
    assert r.json()["policy_decision_point"] == "http://evil.example"
    assert r.headers["cache-control"] == "no-store"


async def test_metadata_from_the_public_url_ignores_the_host(make_app: Any) -> None:
    """With ``policy_public_url`` the metadata names it whatever the Host, and may be cached."""
    async with make_app(policy_public_url="https://pdp.mesh.example/") as (_app, client):
        r = await client.get("/stores/s1/.well-known/authzen-configuration", headers={"host": "evil.example"})
    meta = r.json()
    assert meta["policy_decision_point"] == "https://pdp.mesh.example/stores/s1"
    assert meta["access_evaluations_endpoint"] == "https://pdp.mesh.example/stores/s1/access/v1/evaluations"
    assert r.headers["cache-control"] == "max-age=300"


async def test_empty_store_denies(client: httpx.AsyncClient) -> None:
    """The default store exists from the start and, holding no policies, denies."""
    d = await decide(client, ask("User:u", "view", "Doc:a"))
    assert d == {"decision": False, "context": {"revision": 0, "policies": [], "errors": [], "entities_version": 0}}


async def test_get_on_decision_endpoint_is_405(client: httpx.AsyncClient) -> None:
    """The decision endpoints take POST only; other methods get 405 in the error shape."""
    r = await client.get("/access/v1/evaluation")
    assert r.status_code == 405
    assert r.json()["error"] == "method_not_allowed"


async def test_starlette_route_answers_like_the_front(make_app: Any) -> None:
    """The Starlette app alone (without the front) answers both decision endpoints identically."""
    from starlette.applications import Starlette

    from tests.policy.conftest import ADMIN

    async with make_app() as (front, client):
        await push(client, "permit(principal, action, resource);")
        inner: Starlette = front.app
        transport = httpx.ASGITransport(app=inner)
        batch = {"evaluations": [ask("User:u", "view", "Doc:a"), ask("User:v", "edit", "Doc:b")]}
        async with httpx.AsyncClient(transport=transport, base_url="http://pdp") as direct:
            via_front = await decide(client, ask("User:u", "view", "Doc:a"))
            via_starlette = await decide(direct, ask("User:u", "view", "Doc:a"))
            batch_front = (await client.post("/stores/default/access/v1/evaluations", json=batch)).json()
            batch_starlette = (await direct.post("/stores/default/access/v1/evaluations", json=batch)).json()
            bad = await direct.post("/stores/nope/access/v1/evaluations", json={"evaluations": []}, headers=ADMIN)
    assert via_front == via_starlette
    assert batch_front == batch_starlette
    assert [d["decision"] for d in batch_starlette["evaluations"]] == [True, True]
    assert bad.status_code == 404


async def test_metrics_count_decisions_and_show_store_revision(client: httpx.AsyncClient) -> None:
    """GET /metrics counts decisions by outcome and reports the revision each loaded store serves."""
    await push(client, "permit(principal, action, resource);", store="metered")
    await decide(client, ask("User:u", "view", "Doc:a"), store="metered")
    text = (await client.get("/metrics")).text
    assert 'meshauth_policy_decisions_total{endpoint="evaluation",outcome="allow"}' in text
    assert 'meshauth_policy_store_revision{store="metered"} 1.0' in text


async def test_metrics_count_each_decision_of_a_batch_by_outcome(client: httpx.AsyncClient) -> None:
    """A batch counts one decision per evaluation answered, under its own outcome."""
    from meshauth.policy.metrics import DECISIONS

    await push(client, 'permit(principal, action == Action::"view", resource);')
    before = dict(DECISIONS.counts)
    batch = {
        "evaluations": [ask("User:u", "view", "Doc:a"), ask("User:u", "view", "Doc:b"), ask("User:u", "edit", "Doc:a")]
    }
    r = await client.post("/access/v1/evaluations", json=batch)
    assert [d["decision"] for d in r.json()["evaluations"]] == [True, True, False]
    grown = {k: v - before.get(k, 0) for k, v in DECISIONS.counts.items() if v != before.get(k, 0)}
    assert grown == {("evaluations", "allow"): 2, ("evaluations", "deny"): 1}
