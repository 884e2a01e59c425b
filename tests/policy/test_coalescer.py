"""Coalesced evaluation (issue 11): invisible to callers, one load and one engine call per group."""

from __future__ import annotations

import asyncio
import json
import random
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshauth import wire
from meshauth.policy.authzen import parse_evaluation
from meshauth.policy.coalescer import Coalescer
from tests.policy.conftest import ADMIN, push, running, settings_for
from tests.policy.test_equivalence import POLICIES, store

SUBJECTS = [f"u{n}" for n in range(32)]  # u30, u31 do not exist
ACTIONS = ["view", "edit", "write", "share", "delete"]
# Requests that fail before or inside evaluation, each in its own way.
_DOC = b'"action": {"name": "view"}, "resource": {"type": "Doc", "id": "r1"}}'
INVALID: list[bytes] = [
    b"{",
    b"\xff\xfe{}",
    b'{"subject": {"type": "User"}, ' + _DOC,
    b'{"subject": {"type": "bad type", "id": "u1"}, ' + _DOC,
    b'{"subject": {"type": "User", "id": "u\\u0000"}, ' + _DOC,
    b"[" * 5000 + b"]" * 5000,
    b"[]",
    b'{"subject": {"type": "User", "id": "u1"}, "action": {"name": "x::\\"y"}, '
    b'"resource": {"type": "Doc", "id": "r1"}}',
]
STORES = ["default", "other", "absent"]


def _valid(draw: st.DrawFn) -> bytes:
    body: dict[str, Any] = {
        "subject": {"type": "User", "id": draw(st.sampled_from(SUBJECTS))},
        "action": {"name": draw(st.sampled_from(ACTIONS))},
        "resource": {"type": draw(st.sampled_from(["Doc", "Img"])), "id": f"r{draw(st.integers(0, 41))}"},
    }
    if draw(st.booleans()):
        body["context"] = {"ok": draw(st.booleans())}
    if draw(st.integers(0, 4)) == 0:  # properties: an entity set of its own
        body["subject"]["properties"] = {"level": draw(st.integers(0, 6))}
    return json.dumps(body).encode()


@st.composite
def _request(draw: st.DrawFn) -> tuple[str, bytes]:
    store_name = draw(st.sampled_from(STORES))
    body = draw(st.sampled_from(INVALID)) if draw(st.integers(0, 3)) == 0 else _valid(draw)
    return store_name, body


def _path(store_name: str) -> str:
    return "/access/v1/evaluation" if store_name == "default" else f"/stores/{store_name}/access/v1/evaluation"


async def _seed(client: httpx.AsyncClient) -> None:
    entities = store(random.Random(11))
    for name in ("default", "other"):
        if name != "default":
            r = await client.put(f"/admin/stores/{name}", headers=ADMIN)
            assert r.status_code in (200, 201), r.text
        await push(client, POLICIES, store=name)
        r = await client.post(f"/admin/stores/{name}/entities", json=entities, headers=ADMIN)
        assert r.status_code == 200, r.text


async def _answer(client: httpx.AsyncClient, store_name: str, body: bytes) -> tuple[int, Any]:
    """Status and body; a decision's ``policies`` and ``errors`` sorted, as the engine reports them in
    no fixed order (the same request answered twice by one server may list them differently)."""
    r = await client.post(_path(store_name), content=body, headers={"content-type": "application/json"})
    if r.status_code != 200:
        return r.status_code, r.content
    answer = r.json()
    for key in ("policies", "errors"):
        answer["context"][key] = sorted(answer["context"][key])
    return r.status_code, answer


def test_coalesced_answers_equal_one_at_a_time(db_url: str, tmp_path: Path) -> None:
    """Random concurrent mixes of valid and invalid single requests, over two stores and a missing one,
    get byte-for-byte the responses the same requests get one at a time with coalescing off, on the
    snapshot path and on the entity-loader path."""
    loop = asyncio.new_event_loop()
    stack = AsyncExitStack()
    coalescers: list[Coalescer] = []
    clients: dict[str, httpx.AsyncClient] = {}

    apps: dict[str, Any] = {}

    async def start_with_apps() -> None:
        loader = {"policy_snapshot_max_entities": 0, "policy_entity_cache_enabled": False}
        for name, overrides in (
            ("off", {"policy_coalesce_enabled": False}),
            ("on", {"policy_coalesce_enabled": True}),
            ("off_loader", {**loader, "policy_coalesce_enabled": False}),
            ("on_loader", {**loader, "policy_coalesce_enabled": True}),
        ):
            app, client = await stack.enter_async_context(running(settings_for(db_url, tmp_path, **overrides)))
            clients[name], apps[name] = client, app
            if name == "off":
                await _seed(client)
            elif name.startswith("on"):
                coalescers.append(app.state.api.coalescer)
        for app_name in ("off", "on"):  # both on the snapshot path before any comparison
            registry = apps[app_name].state.api.registry
            for name in ("default", "other"):
                for _ in range(20):
                    if registry.snapshot_for(await registry.get(name)) is not None:
                        break
                    await registry.snapshots_built()
                assert registry.snapshot_for(await registry.get(name)) is not None

    async def compare(mix: list[tuple[str, bytes]]) -> None:
        # Each path against itself: the snapshot and loader paths list a decision's policies in
        # different orders (test_equivalence compares them as sets).
        for path in ("", "_loader"):
            expected = [await _answer(clients["off" + path], s, b) for s, b in mix]
            got = await asyncio.gather(*(_answer(clients["on" + path], s, b) for s, b in mix))
            assert got == expected, "on" + path

    try:
        loop.run_until_complete(start_with_apps())

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(st.lists(_request(), min_size=1, max_size=40))
        def check(mix: list[tuple[str, bytes]]) -> None:
            loop.run_until_complete(compare(mix))

        check()
        # The comparison meant something: requests were in fact answered in shared batches.
        assert all(c.largest > 1 for c in coalescers)
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


FORBID_ERRORS = """
@id("all") permit(principal, action, resource);
@id("suspended-owner") forbid(principal, action, resource) when { resource.owner.suspended };
"""


async def test_forbid_that_errors_denies_when_coalesced(make_app) -> None:  # type: ignore[no-untyped-def]
    """A forbid that errors (its entity is missing) denies every request of a coalesced batch it reaches,
    while the permit-only requests of the same batch are allowed."""
    async with make_app(policy_snapshot_max_entities=0, policy_coalesce_enabled=True) as (app, client):
        await push(client, FORBID_ERRORS)
        docs = [
            {
                "uid": {"type": "Doc", "id": f"d{n}"},
                "attrs": {"owner": {"__entity": {"type": "User", "id": f"gone{n}"}}},
            }
            for n in range(8)
        ] + [{"uid": {"type": "Img", "id": f"i{n}"}, "attrs": {}} for n in range(8)]
        r = await client.post("/admin/stores/default/entities", json=docs, headers=ADMIN)
        assert r.status_code == 200, r.text
        bodies = [
            {
                "subject": {"type": "User", "id": "a"},
                "action": {"name": "view"},
                "resource": {"type": t, "id": f"{p}{n}"},
            }
            for n in range(8)
            for t, p in (("Doc", "d"), ("Img", "i"))
        ]
        answers = await asyncio.gather(*(client.post("/access/v1/evaluation", json=b) for b in bodies))
        coalescer = app.state.api.coalescer
        assert coalescer.largest > 1
        for body, r in zip(bodies, answers, strict=True):
            assert r.status_code == 200
            d = r.json()
            if body["resource"]["type"] == "Doc":
                assert d["decision"] is False, d
                assert d["context"]["policies"] == ["suspended-owner"]
                assert any("is a forbid that needs a missing entity" in e for e in d["context"]["errors"])
            else:
                assert d["decision"] is True, d


async def test_loader_reads_one_query_per_level_for_the_whole_batch(make_app) -> None:  # type: ignore[no-untyped-def]
    """Sixteen concurrent requests on the entity-loader path share one SQL query per hierarchy level
    (off: one per level per request). The first arrives alone and is evaluated at once; the fifteen
    that arrive while it loads form one batch."""
    entities: list[dict[str, object]] = [{"uid": {"type": "Group", "id": "g"}, "attrs": {}, "parents": []}]
    entities += [
        {"uid": {"type": "User", "id": f"u{n}"}, "attrs": {}, "parents": [{"type": "Group", "id": "g"}]}
        for n in range(16)
    ]
    entities += [{"uid": {"type": "Doc", "id": f"d{n}"}, "attrs": {}, "parents": []} for n in range(16)]
    bodies = [
        {
            "subject": {"type": "User", "id": f"u{n}"},
            "action": {"name": "view"},
            "resource": {"type": "Doc", "id": f"d{n}"},
        }
        for n in range(16)
    ]
    policy = 'permit(principal in Group::"g", action == Action::"view", resource);'
    queries = {}
    for coalesce in (False, True):
        async with make_app(
            policy_snapshot_max_entities=0, policy_entity_cache_enabled=False, policy_coalesce_enabled=coalesce
        ) as (app, client):
            if not coalesce:
                await push(client, policy)
                r = await client.post("/admin/stores/default/entities", json=entities, headers=ADMIN)
                assert r.status_code == 200, r.text
            await client.post("/access/v1/evaluation", json=bodies[0])  # store loaded
            loader = app.state.api.evaluator.loader
            before = loader.queries
            answers = await asyncio.gather(*(client.post("/access/v1/evaluation", json=b) for b in bodies))
            assert all(r.json()["decision"] is True for r in answers)
            queries[coalesce] = loader.queries - before
            if coalesce:
                assert app.state.api.coalescer.largest >= 8
    # Off: users+docs, then their group (and the action), per request. On: the same two levels for
    # the lone first request, and once more for the batch of the others.
    assert queries[False] >= 16
    assert queries[True] <= 4


class _Evaluator:
    """Stands in for ``Evaluator.decide``: records the batches it is given; a query for resource id
    ``boom`` makes the whole call raise (as a poisoned group would)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def decide(self, _state: Any, items: list[Any], _snapshot: Any) -> list[wire.Decision]:
        self.calls.append(len(items))
        if any(q.resource[1] == "boom" for q in items):
            raise RuntimeError("boom")
        return [wire.Decision(decision=q.resource[1] == "yes", context=wire.DecisionContext(revision=1)) for q in items]


def _query(resource_id: str) -> Any:
    body = {"subject": {"type": "U", "id": "a"}, "action": {"name": "v"}, "resource": {"type": "R", "id": resource_id}}
    return parse_evaluation(json.dumps(body).encode())


async def test_lone_request_goes_out_alone_and_at_once() -> None:
    """Without an activity count, a request with nothing else pending goes out on the next loop turn,
    in a batch of one."""
    fake = _Evaluator()
    coalescer = Coalescer(fake, max_batch=64, max_wait=10.0)  # type: ignore[arg-type]
    decision = await asyncio.wait_for(coalescer.decide(object(), _query("yes"), None), timeout=5)  # type: ignore[arg-type]
    assert decision.decision is True
    assert fake.calls == [1]


async def test_a_failing_group_fails_only_its_own_request() -> None:
    """When a gathered group's evaluation raises, each request is answered alone: only the bad one fails."""
    fake = _Evaluator()
    coalescer = Coalescer(fake, max_batch=64, max_wait=0.001)  # type: ignore[arg-type]
    state = object()
    results = await asyncio.gather(
        *(coalescer.decide(state, _query(r), None) for r in ("yes", "boom", "no")),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert fake.calls[0] == 3  # gathered first
    assert isinstance(results[1], RuntimeError)
    assert [r.decision for r in (results[0], results[2])] == [True, False]  # type: ignore[union-attr]


async def test_batches_are_grouped_by_store_state() -> None:
    """Requests against different store states are evaluated in separate calls, each with its own."""
    fake = _Evaluator()
    coalescer = Coalescer(fake, max_batch=64, max_wait=0.001)  # type: ignore[arg-type]
    a, b = object(), object()
    await asyncio.gather(*(coalescer.decide(s, _query("yes"), None) for s in (a, b, a, b, a)))  # type: ignore[arg-type]
    assert sorted(fake.calls) == [2, 3]
    assert coalescer.batches == 1
