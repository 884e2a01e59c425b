"""The admin API: policy lifecycle, validation errors with locations, rollback, schema, entities."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.policy.conftest import ADMIN, ask, decide, entity, load, push

ALLOW = '@id("all") permit(principal, action, resource);'
DENY_BOB = 'forbid(principal == User::"bob", action, resource);\n' + ALLOW


async def test_admin_needs_the_token(client: httpx.AsyncClient) -> None:
    """Without the admin bearer token the admin API answers 401."""
    r = await client.post("/admin/stores/default/policies", json={"policies": ALLOW})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_token"
    r = await client.get("/admin/stores", headers={"authorization": "Bearer wrong"})
    assert r.status_code == 401


async def test_upload_returns_version_and_revision(client: httpx.AsyncClient) -> None:
    """An activating upload answers with the new version and the new revision."""
    first = await push(client, ALLOW)
    second = await push(client, DENY_BOB)
    assert (first["version"], first["revision"]) == (1, 1)
    assert (second["version"], second["revision"]) == (2, 2)


async def test_text_plain_upload(client: httpx.AsyncClient) -> None:
    """Cedar text sent as text/plain is a version; ?activate=true activates it."""
    r = await client.post(
        "/admin/stores/default/policies?activate=true",
        content=ALLOW,
        headers={**ADMIN, "content-type": "text/plain"},
    )
    assert r.status_code == 201
    assert r.json()["activated"] is True
    assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is True


async def test_first_upload_activates_later_ones_wait(client: httpx.AsyncClient) -> None:
    """Without an explicit choice the first version goes live; later ones wait for activation."""
    first = await push(client, ALLOW, activate=None)
    second = await push(client, "forbid(principal, action, resource);", activate=None)
    assert first["activated"] is True
    assert second["activated"] is False
    assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is True


async def test_upload_without_activate_keeps_active_version(client: httpx.AsyncClient) -> None:
    """activate=false stores a version without changing decisions or the revision."""
    await push(client, ALLOW)
    staged = await push(client, "forbid(principal, action, resource);", activate=False)
    assert staged["revision"] == 1
    assert staged["active_version"] == 1
    assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is True


async def test_activate_and_rollback(client: httpx.AsyncClient) -> None:
    """Activating an older version rolls back; every activation raises the revision."""
    await push(client, ALLOW)
    await push(client, DENY_BOB)
    assert (await decide(client, ask("User:bob", "view", "Doc:a")))["decision"] is False
    r = await client.post("/admin/stores/default/policies/1/activate", headers=ADMIN)
    assert r.status_code == 200
    assert r.json() == {"store": "default", "version": 1, "revision": 3, "active_version": 1}
    d = await decide(client, ask("User:bob", "view", "Doc:a"))
    assert d["decision"] is True
    assert d["context"]["revision"] == 3


async def test_versions_listing(client: httpx.AsyncClient) -> None:
    """GET …/policies lists every version with author, hash, time and which one is active."""
    await push(client, ALLOW)
    await client.post(
        "/admin/stores/default/policies",
        json={"policies": DENY_BOB, "activate": False, "author": "alice"},
        headers=ADMIN,
    )
    r = await client.get("/admin/stores/default/policies", headers=ADMIN)
    listing = r.json()
    assert listing["active_version"] == 1
    assert [v["version"] for v in listing["versions"]] == [1, 2]
    assert [v["active"] for v in listing["versions"]] == [True, False]
    assert listing["versions"][1]["author"] == "alice"
    assert len(listing["versions"][0]["sha256"]) == 64
    text = (await client.get("/admin/stores/default/policies/2", headers=ADMIN)).json()["policies"]
    assert text == DENY_BOB


async def test_syntax_error_is_422_with_location(client: httpx.AsyncClient) -> None:
    """Invalid Cedar is refused with the parser's message and its line and column."""
    bad = ALLOW + "\n\npermit(principal, action, resource) when { 1 + };\n"
    r = await client.post("/admin/stores/default/policies", json={"policies": bad}, headers=ADMIN)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_policy"
    err = body["errors"][0]
    assert (err["line"], err["column"]) == (3, 48)
    assert "unexpected token" in err["message"]
    assert "line 3" in body["error_description"]


async def test_invalid_upload_leaves_active_version(client: httpx.AsyncClient) -> None:
    """A refused upload creates no version and changes no decision."""
    await push(client, ALLOW)
    body = {"policies": "permit(", "activate": True}
    r = await client.post("/admin/stores/default/policies", json=body, headers=ADMIN)
    assert r.status_code == 422
    listing = (await client.get("/admin/stores/default/policies", headers=ADMIN)).json()
    assert [v["version"] for v in listing["versions"]] == [1]
    assert listing["revision"] == 1
    assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is True


async def test_type_error_against_schema_is_422(client: httpx.AsyncClient) -> None:
    """With a schema, a policy that does not type-check is refused with the policy's location."""
    schema = "entity User { level: Long }; entity Doc; action view appliesTo { principal: User, resource: Doc };"
    assert (await client.put("/admin/stores/s/schema", content=schema, headers=ADMIN)).status_code == 200
    text = ALLOW + '\n@id("typo")\npermit(principal, action, resource) when { principal.level == "high" };'
    r = await client.post("/admin/stores/s/policies", json={"policies": text}, headers=ADMIN)
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["id"] == "typo"
    assert err["line"] == 2


async def test_schema_that_breaks_active_policies_is_refused(client: httpx.AsyncClient) -> None:
    """A schema under which the active policies would not type-check is refused (422)."""
    await push(client, "permit(principal, action, resource) when { principal.level > 1 };", store="s")
    schema = "entity User { level: String }; entity Doc; action view appliesTo { principal: User, resource: Doc };"
    r = await client.put("/admin/stores/s/schema", content=schema, headers=ADMIN)
    assert r.status_code == 422


async def test_unparsable_schema_is_422(client: httpx.AsyncClient) -> None:
    """A schema that does not parse is refused with the parser's message."""
    r = await client.put("/admin/stores/s/schema", content="entity User {", headers=ADMIN)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_schema"


async def test_json_schema_format(client: httpx.AsyncClient) -> None:
    """A schema in Cedar's JSON format is accepted and read back."""
    applies = {"appliesTo": {"principalTypes": ["User"], "resourceTypes": ["Doc"]}}
    schema = json.dumps({"": {"entityTypes": {"User": {}, "Doc": {}}, "actions": {"view": applies}}})
    headers = {**ADMIN, "content-type": "application/json"}
    r = await client.put("/admin/stores/s/schema", content=schema, headers=headers)
    assert r.status_code == 200, r.text
    got = (await client.get("/admin/stores/s/schema", headers=ADMIN)).json()
    assert got["format"] == "json"


async def test_unknown_version_is_404(client: httpx.AsyncClient) -> None:
    """Activating a version that does not exist is a 404."""
    await push(client, ALLOW)
    r = await client.post("/admin/stores/default/policies/9/activate", headers=ADMIN)
    assert r.status_code == 404


async def test_admin_on_unknown_store_is_404(client: httpx.AsyncClient) -> None:
    """Reading versions of a store that was never created is a 404."""
    r = await client.get("/admin/stores/ghost/policies", headers=ADMIN)
    assert r.status_code == 404
    assert r.json()["error"] == "store_not_found"


async def test_bad_store_name_is_400(client: httpx.AsyncClient) -> None:
    """A store name outside the allowed alphabet is a 400 naming the field."""
    r = await client.put("/admin/stores/bad%20name", headers=ADMIN)
    assert r.status_code == 400
    assert r.json()["field"] == "store"


async def test_put_store_creates_it(client: httpx.AsyncClient) -> None:
    """PUT /admin/stores/{store} creates an empty store that then answers (deny)."""
    r = await client.put("/admin/stores/fresh", headers=ADMIN)
    assert r.status_code == 200
    assert (await decide(client, ask("User:u", "view", "Doc:a"), store="fresh"))["decision"] is False


async def test_delete_store(client: httpx.AsyncClient) -> None:
    """A deleted store is gone (404); re-creating it continues the revision, never repeats it."""
    await push(client, ALLOW, store="tmp")
    r = await client.delete("/admin/stores/tmp", headers=ADMIN)
    assert r.status_code == 200
    r = await client.post("/stores/tmp/access/v1/evaluation", json=ask("User:u", "view", "Doc:a"))
    assert r.status_code == 404
    again = await push(client, ALLOW, store="tmp")
    assert again["revision"] > 1
    assert again["version"] == 2


async def test_delete_default_empties_it(client: httpx.AsyncClient) -> None:
    """The default store always exists: deleting it leaves it empty."""
    await push(client, ALLOW)
    assert (await client.delete("/admin/stores/default", headers=ADMIN)).status_code == 200
    d = await decide(client, ask("User:u", "view", "Doc:a"))
    assert d["decision"] is False


async def test_upload_over_limit_is_413(make_app) -> None:  # type: ignore[no-untyped-def]
    """An admin upload over policy_max_upload_bytes is refused with 413."""
    async with make_app(policy_max_upload_bytes=1024) as (_app, client):
        r = await client.post("/admin/stores/default/policies", json={"policies": ALLOW + " " * 2000}, headers=ADMIN)
    assert r.status_code == 413


async def test_entities_upsert_then_delete(client: httpx.AsyncClient) -> None:
    """Entities written through the admin API take effect at once, and so do deletions."""
    await push(client, 'permit(principal in Group::"g", action, resource);')
    await load(client, [entity("User:u", parents=("Group:g",))])
    assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is True
    r = await client.delete("/admin/stores/default/entities/User/u", headers=ADMIN)
    assert r.status_code == 200
    assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is False
    r = await client.delete("/admin/stores/default/entities/User/u", headers=ADMIN)
    assert r.status_code == 404


async def test_entity_upsert_replaces(client: httpx.AsyncClient) -> None:
    """Writing an entity again replaces its attributes and parents."""
    await push(client, 'permit(principal in Group::"g", action, resource);')
    await load(client, [entity("User:u", parents=("Group:g",))])
    await load(client, [entity("User:u", parents=("Group:other",))])
    assert (await decide(client, ask("User:u", "view", "Doc:a")))["decision"] is False
    got = await client.get("/admin/stores/default/entities/User/u", headers=ADMIN)
    assert got.json()["parents"] == [{"type": "Group", "id": "other"}]


async def test_entity_with_slash_in_id(client: httpx.AsyncClient) -> None:
    """Entity ids may hold '/' and namespaced types '::' in the admin paths."""
    await load(client, [entity("App::File:/etc/passwd")])
    r = await client.get("/admin/stores/default/entities/App::File/%2Fetc%2Fpasswd", headers=ADMIN)
    assert r.status_code == 200
    assert r.json()["uid"] == {"type": "App::File", "id": "/etc/passwd"}


async def test_entity_id_is_url_decoded_once(client: httpx.AsyncClient) -> None:
    """``…/User/a%2541`` names the id ``a%41``, not ``aA`` (path parameters arrive decoded)."""
    await load(client, [entity("User:a%41", {"n": 1}), entity("User:aA", {"n": 2})])
    r = await client.get("/admin/stores/default/entities/User/a%2541", headers=ADMIN)
    assert r.status_code == 200
    assert r.json()["uid"] == {"type": "User", "id": "a%41"}
    r = await client.delete("/admin/stores/default/entities/User/a%2541", headers=ADMIN)
    assert r.status_code == 200
    assert (await client.get("/admin/stores/default/entities/User/aA", headers=ADMIN)).status_code == 200


async def test_bad_entity_upload_is_400_and_writes_nothing(client: httpx.AsyncClient) -> None:
    """One bad entity refuses the whole upload (400 naming it); none of it is written."""
    good = entity("User:ok")
    bad = entity("User:x")
    bad["uid"]["type"] = "not a type"
    r = await client.post("/admin/stores/default/entities", json=[good, bad], headers=ADMIN)
    assert r.status_code == 400
    assert r.json()["field"] == "entities[1].uid.type"
    assert (await client.get("/admin/stores/default/entities/User/ok", headers=ADMIN)).status_code == 404


async def test_entity_not_matching_schema_is_400(client: httpx.AsyncClient) -> None:
    """With a schema, an entity whose attributes do not conform is refused."""
    schema = "entity User { level: Long }; entity Doc; action view appliesTo { principal: User, resource: Doc };"
    await client.put("/admin/stores/default/schema", content=schema, headers=ADMIN)
    r = await client.post("/admin/stores/default/entities", json=[entity("User:u", {"level": "high"})], headers=ADMIN)
    assert r.status_code == 400


async def test_entities_body_not_a_list_is_400(client: httpx.AsyncClient) -> None:
    """An entities upload that is not an array is a 400 naming the field."""
    r = await client.post("/admin/stores/default/entities", json={"uid": 1}, headers=ADMIN)
    assert r.status_code == 400
    assert r.json()["field"] == "entities"


async def test_list_stores(client: httpx.AsyncClient) -> None:
    """GET /admin/stores lists default and the created stores."""
    await push(client, ALLOW, store="b")
    names = [s["store"] for s in (await client.get("/admin/stores", headers=ADMIN)).json()["stores"]]
    assert "default" in names
    assert "b" in names


async def test_store_info_shows_what_this_process_serves(client: httpx.AsyncClient) -> None:
    """GET /admin/stores/{store} reports the revision loaded here and the policy count."""
    await push(client, ALLOW + "\n" + 'forbid(principal == User::"x", action, resource);')
    info = (await client.get("/admin/stores/default", headers=ADMIN)).json()
    assert info["revision"] == 1
    assert info["process"]["loaded_revision"] == 1
    assert info["process"]["policies"] == 2


async def test_store_info_process_view_has_its_whole_shape(make_app) -> None:  # type: ignore[no-untyped-def]
    """The ``process`` view names every field, the snapshot's included, once the snapshot is built."""
    async with make_app() as (app, client):
        await push(client, ALLOW)
        await load(client, [entity("User:u")])
        registry = app.state.api.registry
        registry.snapshot_for(await registry.get("default"))
        await registry.snapshots_built()
        info = (await client.get("/admin/stores/default", headers=ADMIN)).json()
    assert info["process"] == {
        "loaded_revision": 1,
        "unservable": None,
        "policies": 1,
        "snapshot": {"entities": 1, "entities_version": info["entities_version"], "current": True},
    }


async def test_entities_upload_nested_past_the_recursion_limit_is_a_400(client: httpx.AsyncClient) -> None:
    """An entity upload nested deeper than the decoder can follow is a 400 on ``body``, not a 500."""
    body = b"[" * 100_000 + b"]" * 100_000
    headers = {**ADMIN, "content-type": "application/json"}
    r = await client.post("/admin/stores/default/entities", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "body"


async def test_an_unlinked_template_is_refused_not_stored_to_never_apply(client: httpx.AsyncClient) -> None:
    """meshauth has no API to link a template, and an unlinked one applies to nothing: a ``forbid``
    template was accepted (201) and silently forbade nothing. Refused, located, nothing stored."""
    text = (
        'permit(principal, action, resource);\n@id("no-interns")\nforbid(principal == ?principal, action, resource);\n'
    )
    r = await client.post("/admin/stores/default/policies", json={"policies": text}, headers=ADMIN)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "invalid_policy"
    err = body["errors"][0]
    assert err["line"] == 2
    assert err["id"] == "no-interns"
    assert "template" in err["message"] and "?principal" in err["message"]
    r = await client.get("/admin/stores/default/policies", headers=ADMIN)
    assert "?principal" not in r.text


@pytest.mark.parametrize(
    ("text", "culprit", "line"),
    [
        ('@id("r") permit(principal, action, resource);\n@id("r") forbid(principal, action, resource);', "r", 2),
        # policy1 has no @id, so decisions name it "policy1": policy0 may not take that name.
        ('@id("policy1") permit(principal, action, resource);\nforbid(principal, action, resource);', "policy1", 1),
    ],
)
async def test_an_id_two_policies_would_answer_to_is_refused(
    client: httpx.AsyncClient, text: str, culprit: str, line: int
) -> None:
    """Decisions and the audit trail name policies by ``@id`` (else by position): two policies answering
    to one name made a decision's ``policies`` ambiguous — was it the permit or the forbid?"""
    r = await client.post("/admin/stores/default/policies", json={"policies": text}, headers=ADMIN)
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert culprit in err["message"] and err["line"] == line
