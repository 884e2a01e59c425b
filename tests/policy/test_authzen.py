"""AuthZEN request parsing: hostile text in a request is a 400 naming the field, never a 500."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from meshauth.policy.authzen import DEFAULT_MAX_VALUES, MAX_VALUE_DEPTH
from tests.policy.conftest import ask, push

ALLOW_ALL = "permit(principal, action, resource);"


@pytest.mark.parametrize("escape", ["\\u{FFFFFFFFFFFF}", "\\u{110000}", "\\u{D800}", "\\u{DFFF}"])
async def test_action_escape_outside_unicode_is_a_400(client: httpx.AsyncClient, escape: str) -> None:
    """A ``\\u{…}`` escape in a Cedar-uid action name that is no Unicode scalar value is a 400."""
    await push(client, ALLOW_ALL)
    r = await client.post("/access/v1/evaluation", json=ask("User::a", f'App::Action::"{escape}"', "Doc::d"))
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "action.name"


async def test_action_escape_of_a_valid_code_point_still_works(client: httpx.AsyncClient) -> None:
    """The largest scalar value is still accepted."""
    await push(client, ALLOW_ALL)
    r = await client.post("/access/v1/evaluation", json=ask("User::a", 'App::Action::"\\u{10FFFF}"', "Doc::d"))
    assert r.status_code == 200, r.text
    assert r.json()["decision"] is True


async def test_hostile_action_fails_only_its_batch_item(client: httpx.AsyncClient) -> None:
    """In a batch, an action escape that overflows or names a surrogate fails its item alone (400)."""
    await push(client, ALLOW_ALL)
    body = {
        "subject": {"type": "User", "id": "a"},
        "resource": {"type": "Doc", "id": "d"},
        "evaluations": [
            {"action": {"name": "view"}},
            {"action": {"name": 'App::Action::"\\u{FFFFFFFFFFFF}"'}},
            {"action": {"name": 'App::Action::"\\u{D800}"'}},
            {"action": {"name": "view"}},
        ],
    }
    r = await client.post("/access/v1/evaluations", json=body)
    assert r.status_code == 200, r.text
    out = r.json()["evaluations"]
    assert out[0]["decision"] is True
    assert out[3]["decision"] is True
    for n in (1, 2):
        assert out[n]["decision"] is False
        assert out[n]["context"]["error"]["status"] == 400
    assert out[1]["context"]["error"]["message"].startswith("evaluations[1].action.name")
    assert out[2]["context"]["error"]["message"].startswith("evaluations[2].action.name")


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("path", ["/access/v1/evaluation", "/access/v1/evaluations"])
async def test_json_nested_past_the_recursion_limit_is_a_400(client: httpx.AsyncClient, path: str) -> None:
    """A body nested deeper than the decoder can follow is a 400 on ``body``, not a 500."""
    await push(client, ALLOW_ALL)
    body = (
        b'{"subject":{"type":"User","id":"a"},"action":{"name":"v"},"resource":{"type":"Doc","id":"d"},"context":{"x":'
    )
    r = await client.post(path, content=body + _deep(100_000) + b"}}", headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "body"


@pytest.mark.parametrize("body", [{}, {"evaluations": []}, {"action": {"name": "v"}, "evaluations": None}])
async def test_evaluations_without_items_or_subject_is_a_400(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    """No (or an empty) ``evaluations`` array makes the request one evaluation: without a subject
    it is a 400 naming ``subject``, as on ``…/evaluation``."""
    await push(client, ALLOW_ALL)
    r = await client.post("/access/v1/evaluations", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "subject"


async def test_evaluations_without_items_but_a_bad_item_field_is_a_400(client: httpx.AsyncClient) -> None:
    """The same through the loose parsing pass (a typed field is wrong): the 400 names it."""
    await push(client, ALLOW_ALL)
    body = {"subject": {"type": "User", "id": 5}, "action": {"name": "v"}, "resource": {"type": "Doc", "id": "d"}}
    r = await client.post("/access/v1/evaluations", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "subject.id"


@pytest.mark.parametrize("other", [{"action": {"name": "view"}}, {"subject": 5}])
async def test_item_subject_null_falls_back_to_the_default(client: httpx.AsyncClient, other: dict[str, object]) -> None:
    """``"subject": null`` in an item takes the batch's subject, whether the batch is parsed typed
    (all items well-formed) or loosely (another item is malformed)."""
    await push(client, '@id("a-only") permit(principal == User::"a", action, resource);')
    body = {
        "subject": {"type": "User", "id": "a"},
        "action": {"name": "view"},
        "resource": {"type": "Doc", "id": "d"},
        "evaluations": [{"subject": None}, other],
    }
    r = await client.post("/access/v1/evaluations", json=body)
    assert r.status_code == 200, r.text
    first = r.json()["evaluations"][0]
    assert first["decision"] is True, first
    assert first["context"]["policies"] == ["a-only"]


SELF = {"type": "User", "id": "a"}
NO_SUSPENDED = (
    "permit(principal, action, resource);\n"
    "forbid(principal, action, resource) when { principal has suspended && principal.suspended };"
)


@pytest.mark.parametrize("resource_properties", [None, {"team": "x"}, {"suspended": True}])
async def test_subject_properties_hold_when_the_resource_is_the_subject(
    client: httpx.AsyncClient, resource_properties: dict[str, object] | None
) -> None:
    """A user asking about their own entity: the subject's ``properties`` are not dropped for the
    resource's (the evaluator overrides the one entity once) — ``suspended: true`` still denies."""
    await push(client, NO_SUSPENDED)
    resource = {**SELF, "properties": resource_properties} if resource_properties is not None else SELF
    body = {"subject": {**SELF, "properties": {"suspended": True}}, "action": {"name": "view"}, "resource": resource}
    r = await client.post("/access/v1/evaluation", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["decision"] is False
    r = await client.post("/access/v1/evaluations", json={"evaluations": [body]})
    assert r.json()["evaluations"][0]["decision"] is False


async def test_subject_and_resource_properties_that_disagree_on_one_entity_are_a_400(
    client: httpx.AsyncClient,
) -> None:
    """Both sides describe the same entity and contradict each other: a 400 naming
    ``resource.properties``, and in a batch that item's own error, the others answered."""
    await push(client, NO_SUSPENDED)
    body = {
        "subject": {**SELF, "properties": {"suspended": True}},
        "action": {"name": "view"},
        "resource": {**SELF, "properties": {"suspended": False}},
    }
    r = await client.post("/access/v1/evaluation", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "resource.properties"
    plain = {"subject": SELF, "action": {"name": "view"}, "resource": {"type": "Doc", "id": "d"}}
    r = await client.post("/access/v1/evaluations", json={"evaluations": [plain, body, plain]})
    out = r.json()["evaluations"]
    assert [d["decision"] for d in out] == [True, False, True]
    assert out[1]["context"]["error"]["message"].startswith("evaluations[1].resource.properties")


def _inherited(default: dict[str, object], items: int = 1024) -> dict[str, object]:
    """A batch of ``items`` checks that all use ``default`` (plus a plain subject, action, resource)."""
    body: dict[str, object] = {
        "subject": {"type": "User", "id": "a"},
        "action": {"name": "view"},
        "evaluations": [{"resource": {"type": "Doc", "id": f"d{n}"}} for n in range(items)],
    }
    for name, value in default.items():
        if name == "context":
            body["context"] = value
        else:
            body[name] = {"type": "User" if name == "subject" else "Doc", "id": "a", "properties": value}
    return body


@pytest.mark.parametrize(
    ("default", "field"),
    [
        ({"context": {"n": list(range(2_000))}}, "context"),
        ({"subject": {"n": list(range(2_000))}}, "subject.properties"),
    ],
)
@pytest.mark.parametrize("loose", [False, True], ids=["typed", "loose"])
async def test_a_default_repeated_past_the_request_limit_is_a_413(
    client: httpx.AsyncClient, default: dict[str, object], field: str, loose: bool
) -> None:
    """A batch default (sent once, evaluated once per item) that 1,024 items use comes to ~9 MB
    written out: over the 1 MiB request limit, so a 413 naming it — not seconds of engine time."""
    await push(client, ALLOW_ALL)
    body = _inherited(default)
    if loose:  # a bad item sends the batch down the loose path, which must refuse the same
        evaluations = body["evaluations"]
        assert isinstance(evaluations, list)
        evaluations.append(7)
        evaluations.pop(0)
    r = await client.post("/access/v1/evaluations", json=body)
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "request_too_large"
    assert r.json()["field"] == field


async def test_a_small_default_for_many_items_is_answered(client: httpx.AsyncClient) -> None:
    """The gate's kind of default (a short scope list) for 1,024 items stays well inside the limit."""
    await push(client, ALLOW_ALL)
    r = await client.post("/access/v1/evaluations", json=_inherited({"context": {"scope": ["read", "write"]}}))
    assert r.status_code == 200, r.text
    assert all(d["decision"] for d in r.json()["evaluations"])


async def test_items_with_their_own_context_do_not_count_the_default(client: httpx.AsyncClient) -> None:
    """Only items that leave ``context`` out use the default: overridden everywhere, it costs nothing."""
    await push(client, ALLOW_ALL)
    body = _inherited({"context": {"n": list(range(2_000))}})
    evaluations = body["evaluations"]
    assert isinstance(evaluations, list)
    for item in evaluations:
        item["context"] = {"own": True}
    r = await client.post("/access/v1/evaluations", json=body)
    assert r.status_code == 200, r.text


async def test_subject_properties_hold_on_one_entity_when_coalesced(make_app: Any) -> None:
    """The same with coalescing on: self-checks carrying ``suspended: true`` deny, and the plain
    checks gathered with them in one batch allow."""
    async with make_app(policy_coalesce_enabled=True) as (app, client):
        await push(client, NO_SUSPENDED)
        view = {"action": {"name": "view"}, "resource": SELF}
        suspended = {**SELF, "properties": {"suspended": True}}
        bodies = [{**view, "subject": suspended if n % 2 else SELF} for n in range(16)]
        answers = await asyncio.gather(*(client.post("/access/v1/evaluation", json=b) for b in bodies))
        assert app.state.api.coalescer.largest > 1
        assert [r.json()["decision"] for r in answers] == [n % 2 == 0 for n in range(16)]


def _nested(levels: int) -> dict[str, Any]:
    """An object ``levels`` deep counting itself (``{}`` is one), alternating objects and arrays."""
    if levels == 1:
        return {}
    value: Any = {}
    for n in range(levels - 2):
        value = {"a": value} if n % 2 else [value]
    return {"a": value}


def _asked(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject": {"type": "User", "id": "a"},
        "action": {"name": "view"},
        "resource": {"type": "Doc", "id": "d"},
    }
    for name, value in fields.items():
        if name == "context":
            body["context"] = value
        else:
            body[name] = {**body[name], "properties": value}
    return body


@pytest.mark.parametrize(
    ("name", "field"),
    [("context", "context"), ("subject", "subject.properties"), ("resource", "resource.properties")],
)
async def test_a_value_nested_past_the_limit_is_a_400_naming_it(
    client: httpx.AsyncClient, name: str, field: str
) -> None:
    """Cedar's cost per value grows with its depth (a 1 MiB context of 100-deep lists held a worker
    4.4 s): a context or properties nesting past ``MAX_VALUE_DEPTH`` is refused before the engine."""
    await push(client, ALLOW_ALL)
    r = await client.post("/access/v1/evaluation", json=_asked(**{name: _nested(MAX_VALUE_DEPTH + 1)}))
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field
    assert f"at most {MAX_VALUE_DEPTH} levels" in r.json()["error_description"]
    r = await client.post("/access/v1/evaluation", json=_asked(**{name: _nested(MAX_VALUE_DEPTH)}))
    assert r.status_code == 200, r.text
    assert r.json()["decision"] is True


async def test_a_value_nested_past_the_limit_fails_only_its_batch_item(client: httpx.AsyncClient) -> None:
    await push(client, ALLOW_ALL)
    deep = _nested(MAX_VALUE_DEPTH + 1)
    body = {
        "action": {"name": "view"},
        "evaluations": [
            {k: v for k, v in _asked().items() if k != "action"},
            {k: v for k, v in _asked(context=deep).items() if k != "action"},
            {k: v for k, v in _asked(resource=deep).items() if k != "action"},
            {k: v for k, v in _asked(context={"flat": [1, 2]}).items() if k != "action"},
        ],
    }
    r = await client.post("/access/v1/evaluations", json=body)
    assert r.status_code == 200, r.text
    out = r.json()["evaluations"]
    assert [item["decision"] for item in out] == [True, False, False, True]
    assert out[1]["context"]["error"]["status"] == 400
    assert out[1]["context"]["error"]["message"].startswith("evaluations[1].context: ")
    assert out[2]["context"]["error"]["message"].startswith("evaluations[2].resource.properties: ")


async def test_a_deep_default_context_fails_the_items_that_inherit_it(client: httpx.AsyncClient) -> None:
    await push(client, ALLOW_ALL)
    body = {**_asked(context=_nested(MAX_VALUE_DEPTH + 1)), "evaluations": [{}, {"context": {}}]}
    r = await client.post("/access/v1/evaluations", json=body)
    assert r.status_code == 200, r.text
    out = r.json()["evaluations"]
    assert out[0]["decision"] is False
    assert out[0]["context"]["error"]["message"].startswith("evaluations[0].context: ")
    assert out[1]["decision"] is True  # its own (empty) context replaces the default


async def test_a_value_nested_past_the_limit_is_a_400_when_coalesced(make_app: Any) -> None:
    async with make_app(policy_coalesce_enabled=True) as (_app, client):
        await push(client, ALLOW_ALL)
        bodies = [_asked(context=_nested(MAX_VALUE_DEPTH + 1) if n % 2 else {"n": n}) for n in range(8)]
        answers = await asyncio.gather(*(client.post("/access/v1/evaluation", json=b) for b in bodies))
        assert [r.status_code for r in answers] == [400 if n % 2 else 200 for n in range(8)]
        assert {r.json().get("field") for r in answers if r.status_code == 400} == {"context"}


async def test_a_request_holding_more_values_than_the_limit_is_a_413(client: httpx.AsyncClient) -> None:
    """Bytes alone do not bound the engine's cost (it takes in every value, deep ones dearer): a
    request whose context and properties weigh more than ``policy_max_request_values`` is refused."""
    await push(client, ALLOW_ALL)
    flat = list(range(DEFAULT_MAX_VALUES // 2))  # the list 1, its numbers 2 each: one over the limit
    r = await client.post("/access/v1/evaluation", json=_asked(context={"ids": flat}))
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "request_too_large"
    assert "policy_max_request_values" in r.json()["error_description"]
    r = await client.post("/access/v1/evaluation", json=_asked(context={"ids": flat[1:]}))
    assert r.status_code == 200, r.text


async def test_values_are_weighed_across_a_batch_and_its_inherited_defaults(make_app: Any) -> None:
    async with make_app(policy_max_request_values=150) as (_app, client):
        await push(client, ALLOW_ALL)
        items = [{"context": {"ids": list(range(30))}} for _ in range(3)]  # 1 + 30 × 2 = 61 each
        body = {**_asked(), "evaluations": items}
        r = await client.post("/access/v1/evaluations", json=body)
        assert r.status_code == 413, r.text
        assert "weigh 183 (each value" in r.json()["error_description"]
        r = await client.post("/access/v1/evaluations", json={**body, "evaluations": items[:2]})
        assert r.status_code == 200, r.text
        # A default context is converted once per item that inherits it, so it counts once per item.
        inherited = {**_asked(context={"ids": list(range(30))}), "evaluations": [{}, {}, {}]}
        r = await client.post("/access/v1/evaluations", json=inherited)
        assert r.status_code == 413, r.text
        r = await client.post("/access/v1/evaluation", json=_asked(subject={"groups": list(range(100))}))
        assert r.status_code == 413, r.text
