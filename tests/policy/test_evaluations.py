"""``POST …/evaluations``: defaults merging, order, the three semantics, per-item errors, limits."""

from __future__ import annotations

from typing import Any

import httpx

from tests.policy.conftest import ask, push

POLICIES = """
permit(principal, action == Action::"view", resource);
forbid(principal, action, resource == Doc::"secret");
"""


async def batch(client: httpx.AsyncClient, body: dict[str, Any], store: str = "default") -> dict[str, Any]:
    path = "/access/v1/evaluations" if store == "default" else f"/stores/{store}/access/v1/evaluations"
    r = await client.post(path, json=body)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


USER_VIEWS = {"subject": {"type": "User", "id": "u"}, "action": {"name": "view"}}


def docs(*ids: str) -> list[dict[str, Any]]:
    return [{"resource": {"type": "Doc", "id": i}} for i in ids]


async def test_results_in_request_order_with_defaults(client: httpx.AsyncClient) -> None:
    """Top-level subject and action apply to every item; answers come back in request order."""
    await push(client, POLICIES)
    body = {"subject": {"type": "User", "id": "u"}, "action": {"name": "view"}, "evaluations": docs("a", "secret", "b")}
    out = await batch(client, body)
    assert [e["decision"] for e in out["evaluations"]] == [True, False, True]
    assert all(e["context"]["revision"] == 1 for e in out["evaluations"])


async def test_item_field_replaces_default(client: httpx.AsyncClient) -> None:
    """An item's own action replaces the default action."""
    await push(client, POLICIES)
    body = {
        "subject": {"type": "User", "id": "u"},
        "action": {"name": "view"},
        "resource": {"type": "Doc", "id": "a"},
        "evaluations": [{}, {"action": {"name": "edit"}}],
    }
    out = await batch(client, body)
    assert [e["decision"] for e in out["evaluations"]] == [True, False]


async def test_default_context_applies_to_items(client: httpx.AsyncClient) -> None:
    """A top-level context is the context of items that give none."""
    await push(client, "permit(principal, action, resource) when { context.ok };")
    body = {
        "subject": {"type": "User", "id": "u"},
        "action": {"name": "view"},
        "context": {"ok": True},
        "evaluations": [*docs("a"), {"resource": {"type": "Doc", "id": "b"}, "context": {"ok": False}}],
    }
    out = await batch(client, body)
    assert [e["decision"] for e in out["evaluations"]] == [True, False]


async def test_bad_item_fails_alone(client: httpx.AsyncClient) -> None:
    """One malformed item yields an error for that item only, naming its field."""
    await push(client, POLICIES)
    body = {
        "subject": {"type": "User", "id": "u"},
        "action": {"name": "view"},
        "evaluations": [*docs("a"), {"resource": {"type": "Doc"}}, {"resource": {"type": "if", "id": "x"}}, *docs("b")],
    }
    out = (await batch(client, body))["evaluations"]
    assert [e["decision"] for e in out] == [True, False, False, True]
    assert out[1]["context"]["error"]["status"] == 400
    assert "evaluations[1].resource.id" in out[1]["context"]["error"]["message"]
    assert "evaluations[2].resource.type" in out[2]["context"]["error"]["message"]
    assert "error" not in out[0]["context"]


async def test_deny_on_first_deny_stops_after_the_deny(client: httpx.AsyncClient) -> None:
    """deny_on_first_deny returns the items up to and including the first deny."""
    await push(client, POLICIES)
    body = {
        "subject": {"type": "User", "id": "u"},
        "action": {"name": "view"},
        "options": {"evaluations_semantic": "deny_on_first_deny"},
        "evaluations": docs("a", "secret", "b"),
    }
    out = (await batch(client, body))["evaluations"]
    assert [e["decision"] for e in out] == [True, False]


async def test_permit_on_first_permit_stops_after_the_permit(client: httpx.AsyncClient) -> None:
    """permit_on_first_permit returns the items up to and including the first permit."""
    await push(client, POLICIES)
    body = {
        "subject": {"type": "User", "id": "u"},
        "action": {"name": "view"},
        "options": {"evaluations_semantic": "permit_on_first_permit"},
        "evaluations": docs("secret", "a", "b"),
    }
    out = (await batch(client, body))["evaluations"]
    assert [e["decision"] for e in out] == [False, True]


async def test_execute_all_runs_everything(client: httpx.AsyncClient) -> None:
    """execute_all (named explicitly) answers every item."""
    await push(client, POLICIES)
    body = {
        "subject": {"type": "User", "id": "u"},
        "action": {"name": "view"},
        "options": {"evaluations_semantic": "execute_all"},
        "evaluations": docs("secret", "a", "secret"),
    }
    out = (await batch(client, body))["evaluations"]
    assert [e["decision"] for e in out] == [False, True, False]


async def test_an_item_error_counts_as_deny_for_deny_on_first_deny(client: httpx.AsyncClient) -> None:
    """A failed item stops deny_on_first_deny like a deny does."""
    await push(client, POLICIES)
    body = {
        "subject": {"type": "User", "id": "u"},
        "action": {"name": "view"},
        "options": {"evaluations_semantic": "deny_on_first_deny"},
        "evaluations": [*docs("a"), {"resource": {"type": "Doc"}}, *docs("b")],
    }
    out = (await batch(client, body))["evaluations"]
    assert len(out) == 2


async def test_unknown_semantic_is_400(client: httpx.AsyncClient) -> None:
    """An evaluations_semantic outside the three is a 400 naming the field."""
    body = {"options": {"evaluations_semantic": "first_wins"}, "evaluations": []}
    r = await client.post("/access/v1/evaluations", json=body)
    assert r.status_code == 400
    assert r.json()["field"] == "options.evaluations_semantic"


async def test_no_evaluations_array_answers_like_evaluation(client: httpx.AsyncClient) -> None:
    """Without an evaluations array the request is one evaluation (AuthZEN §7.1)."""
    await push(client, POLICIES)
    r = await client.post("/access/v1/evaluations", json=ask("User:u", "view", "Doc:a"))
    assert r.status_code == 200
    assert r.json()["decision"] is True


async def test_duplicate_items_are_answered_each(client: httpx.AsyncClient) -> None:
    """Identical items are evaluated once but every position gets its answer."""
    await push(client, POLICIES)
    body = {**USER_VIEWS, "evaluations": docs("a", "a", "secret", "a")}
    out = (await batch(client, body))["evaluations"]
    assert [e["decision"] for e in out] == [True, True, False, True]


async def test_batch_over_item_limit_is_413(make_app) -> None:  # type: ignore[no-untyped-def]
    """More items than policy_max_evaluations is refused with 413."""
    async with make_app(policy_max_evaluations=3) as (_app, client):
        body = {**USER_VIEWS, "evaluations": docs("a", "b", "c", "d")}
        r = await client.post("/access/v1/evaluations", json=body)
    assert r.status_code == 413


async def test_evaluations_is_not_a_list_is_400(client: httpx.AsyncClient) -> None:
    """A non-array evaluations field is a 400 naming it."""
    r = await client.post("/access/v1/evaluations", json={"evaluations": {"a": 1}})
    assert r.status_code == 400
    assert r.json()["field"] == "evaluations"


async def test_batch_uses_one_engine_call_per_policy_subset(make_app) -> None:  # type: ignore[no-untyped-def]
    """Items sharing a policy subset are evaluated together: engine calls = distinct subsets.
    (Conditions, so the engine decides: scope-only sets are answered from their table.)"""
    async with make_app(policy_index_min_policies=0) as (app, client):
        await push(
            client,
            'permit(principal, action == Action::"view", resource is Doc) when { true };\n'
            'permit(principal, action == Action::"view", resource is Img) when { true };',
        )
        evaluator = app.state.api.evaluator
        before = evaluator.engine_calls
        items = [{"resource": {"type": t, "id": str(n)}} for n, t in enumerate(["Doc", "Img"] * 10)]
        body = {"subject": {"type": "User", "id": "u"}, "action": {"name": "view"}, "evaluations": items}
        out = await batch(client, body)
        assert all(e["decision"] for e in out["evaluations"])
        assert evaluator.engine_calls - before == 2


async def test_a_scope_only_store_is_answered_without_the_engine(make_app) -> None:  # type: ignore[no-untyped-def]
    """Policies with scope alone (scope_table.py): no engine call, the same answers and reasons as
    the engine gives; an item whose context the engine might refuse (a float) goes to the engine."""
    async with make_app() as (app, client):
        await push(
            client,
            '@id("view-all") permit(principal, action == Action::"view", resource);\n'
            '@id("no-mallory") forbid(principal == User::"mallory", action, resource);',
        )
        evaluator = app.state.api.evaluator
        before = evaluator.engine_calls
        items = [
            {"subject": {"type": "User", "id": "alice"}, "action": {"name": "view"}},
            {"subject": {"type": "User", "id": "mallory"}, "action": {"name": "view"}},
            {"subject": {"type": "User", "id": "alice"}, "action": {"name": "edit"}},
        ]
        body = {"resource": {"type": "Doc", "id": "d"}, "evaluations": items}
        out = (await batch(client, body))["evaluations"]
        assert [(e["decision"], e["context"]["policies"], e["context"]["errors"]) for e in out] == [
            (True, ["view-all"], []),
            (False, ["no-mallory"], []),
            (False, [], []),
        ]
        assert evaluator.engine_calls == before
        plain = {**body, "evaluations": [{**items[1], "context": {"scope": "read", "n": 2}}]}
        out = (await batch(client, plain))["evaluations"]
        assert [(e["decision"], e["context"]["policies"]) for e in out] == [(False, ["no-mallory"])]
        assert evaluator.engine_calls == before
        # The gate's context (``auth.authz``): scope as a list of tokens, and the client id.
        gate = {"scope": ["openid", "documents:read"], "client_id": "c1"}
        gates = {**body, "evaluations": [{**items[0], "context": gate}, {**items[1], "context": gate}]}
        out = (await batch(client, gates))["evaluations"]
        expected = [(True, ["view-all"]), (False, ["no-mallory"])]
        assert [(e["decision"], e["context"]["policies"]) for e in out] == expected
        assert evaluator.engine_calls == before
        floats = {**body, "evaluations": [{**items[0], "context": {"ratio": 0.5}}, items[1]]}
        out = (await batch(client, floats))["evaluations"]
        assert out[0]["decision"] is False
        assert out[0]["context"]["errors"] != []  # the engine's: Cedar has no floats
        assert [(out[1]["decision"], out[1]["context"]["policies"])] == [(False, ["no-mallory"])]
        assert evaluator.engine_calls == before + 1


async def test_batch_loads_entities_with_one_query_per_level(make_app) -> None:  # type: ignore[no-untyped-def]
    """A batch's entities come from one SQL query per hierarchy level, then from the cache."""
    from tests.policy.conftest import entity, load

    async with make_app(policy_snapshot_max_entities=0) as (app, client):
        await push(client, 'permit(principal in Group::"g", action, resource);')
        await load(client, [entity(f"User:u{n}", parents=("Group:g",)) for n in range(10)])
        loader = app.state.api.evaluator.loader
        body = {
            "action": {"name": "view"},
            "resource": {"type": "Doc", "id": "d"},
            "evaluations": [{"subject": {"type": "User", "id": f"u{n}"}} for n in range(10)],
        }
        before = loader.queries
        out = await batch(client, body)
        assert all(e["decision"] for e in out["evaluations"])
        assert loader.queries - before == 2  # users + resource, then their parent group
        before = loader.queries
        await batch(client, body)
        assert loader.queries == before  # all cached


async def test_item_without_subject_anywhere_fails_alone(client: httpx.AsyncClient) -> None:
    """An item with no subject of its own and no default names the missing field."""
    await push(client, POLICIES)
    body = {
        "action": {"name": "view"},
        "resource": {"type": "Doc", "id": "a"},
        "evaluations": [{"subject": {"type": "User", "id": "u"}}, {}],
    }
    out = (await batch(client, body))["evaluations"]
    assert out[0]["decision"] is True
    assert out[1]["context"]["error"] == {"status": 400, "message": "evaluations[1].subject: is required"}


async def test_item_that_is_not_an_object_fails_alone(client: httpx.AsyncClient) -> None:
    """A non-object item is an error for that item only."""
    await push(client, POLICIES)
    body = {**USER_VIEWS, "evaluations": [*docs("a"), 7]}
    out = (await batch(client, body))["evaluations"]
    assert out[0]["decision"] is True
    assert "evaluations[1]" in out[1]["context"]["error"]["message"]


async def test_outcome_counts_alike_for_small_and_large_batches(client: httpx.AsyncClient) -> None:
    """Batches up to 16 items are counted one by one, larger ones per shared answer object: both
    count every answered item once under its outcome (allow, deny, error)."""
    from meshauth.policy.metrics import DECISIONS

    await push(client, POLICIES)
    bad = {"subject": {"type": "User", "id": "u"}, "action": {"name": "view"}, "resource": {"type": "", "id": "x"}}
    for size in (4, 16, 17, 40):
        items = [ask("User:u", "view", f"Doc:d{n}") for n in range(size - 3)]
        items += [ask("User:u", "view", "Doc:secret"), ask("User:u", "edit", "Doc:a"), bad]
        before = dict(DECISIONS.counts)
        answers = (await batch(client, {"evaluations": items}))["evaluations"]
        assert [a["decision"] for a in answers[-3:]] == [False, False, False]
        assert "error" in answers[-1]["context"]
        grown = {k: v - before.get(k, 0) for k, v in DECISIONS.counts.items() if v != before.get(k, 0)}
        want = {("evaluations", "allow"): size - 3, ("evaluations", "deny"): 2, ("evaluations", "error"): 1}
        assert grown == want, size
