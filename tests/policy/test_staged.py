"""Evaluation against a staged (uploaded, not active) version, for the clients' warmers: answered
only on the warmer's option, labelled as staged, and every bad value a clear 400 — never an answer
from the active version labelled as staged, nor a staged one labelled as active."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from meshauth.client._announcements import KIND, KIND_ACTIVATED, KIND_STAGED, names
from meshauth.http import ApiError
from meshauth.policy.metrics import DECISIONS
from meshauth.policy.staged import AT_ONCE, QUEUED, CompileBudget, StagedVersions
from meshauth.redis_client import connect
from tests.bus.helpers import until
from tests.policy.conftest import ADMIN, push, running, settings_for

PERMIT = '@id("all") permit(principal, action == Action::"view", resource);'
FORBID = '@id("none") forbid(principal, action == Action::"view", resource);'
ITEM = {"subject": {"type": "User", "id": "a"}, "action": {"name": "view"}, "resource": {"type": "Doc", "id": "d"}}


def staged(version: Any, items: int = 1) -> dict[str, Any]:
    return {"evaluations": [ITEM] * items, "options": {"meshauth_staged_version": version}}


async def ask(client: httpx.AsyncClient, body: Any, store: str = "default") -> httpx.Response:
    return await client.post(f"/stores/{store}/access/v1/evaluations", json=body)


async def test_a_staged_version_is_answered_and_labelled_as_staged(client: httpx.AsyncClient) -> None:
    active = await push(client, PERMIT)
    stage = await push(client, FORBID, activate=False)
    r = await ask(client, staged(stage["version"], items=3))
    assert r.status_code == 200, r.text
    for d in r.json()["evaluations"]:
        ctx = d["context"]
        assert d["decision"] is False and ctx["policies"] == ["none"]
        assert ctx["revision"] == -1  # names no state that is or was active
        assert (ctx["staged_version"], ctx["staged_on"]) == (stage["version"], active["revision"])
        assert isinstance(ctx["entities_version"], int)
    # A normal evaluation still answers the active version, unlabelled.
    r = await ask(client, {"evaluations": [ITEM]})
    (d,) = r.json()["evaluations"]
    assert d["decision"] is True and d["context"]["revision"] == active["revision"]
    assert "staged_version" not in d["context"] and "staged_on" not in d["context"]


async def test_the_option_on_a_single_evaluation_is_not_a_staged_evaluation(client: httpx.AsyncClient) -> None:
    """Only ``…/evaluations`` takes the option; elsewhere it is an unknown field and ignored."""
    active = await push(client, PERMIT)
    stage = await push(client, FORBID, activate=False)
    body = {**ITEM, "options": {"meshauth_staged_version": stage["version"]}}
    r = await client.post("/access/v1/evaluation", json=body)
    assert r.status_code == 200
    assert r.json()["decision"] is True and r.json()["context"]["revision"] == active["revision"]
    assert "staged_version" not in r.json()["context"]


async def test_the_active_version_staged_is_labelled_as_staged(client: httpx.AsyncClient) -> None:
    active = await push(client, PERMIT)
    r = await ask(client, staged(active["version"]))
    ctx = r.json()["evaluations"][0]["context"]
    assert ctx["revision"] == -1 and ctx["staged_version"] == active["version"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (0, ">= 1"),
        (-3, ">= 1"),
        (2**31, "<= 2147483647"),
        (10**30, "<= 2147483647"),
        ("1", "got `str`"),
        (1.5, "got `float`"),
        (True, "got `bool`"),
        ([[[[1]]]], "got `array`"),
        ({"version": 1}, "got `object`"),
    ],
)
async def test_a_malformed_or_huge_version_is_a_400_naming_the_field(
    client: httpx.AsyncClient, value: Any, says: str
) -> None:
    await push(client, PERMIT)
    r = await ask(client, staged(value))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    assert "options.meshauth_staged_version" in r.json()["error_description"]
    assert says in r.json()["error_description"]


async def test_a_number_past_any_float_is_a_400(client: httpx.AsyncClient) -> None:
    await push(client, PERMIT)
    body = b'{"evaluations": [], "options": {"meshauth_staged_version": 1e400}}'
    r = await client.post("/access/v1/evaluations", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400


async def test_non_utf8_and_deeply_nested_values_are_400s(client: httpx.AsyncClient) -> None:
    await push(client, PERMIT)
    bad = b'{"evaluations": [], "options": {"meshauth_staged_version": "\xff"}}'
    r = await client.post("/access/v1/evaluations", content=bad, headers={"content-type": "application/json"})
    assert r.status_code == 400
    deep = '{"evaluations": [], "options": {"meshauth_staged_version": ' + "[" * 5000 + "]" * 5000 + "}}"
    r = await client.post("/access/v1/evaluations", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 400


async def test_an_unknown_version_is_a_400_not_an_answer(client: httpx.AsyncClient) -> None:
    active = await push(client, PERMIT)
    r = await ask(client, staged(active["version"] + 1))
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_staged_version"
    assert f"no policy version {active['version'] + 1}" in r.json()["error_description"]


async def test_another_stores_version_is_a_400(client: httpx.AsyncClient) -> None:
    """Version numbers are per store: store ``other``'s version 2 is not ``default``'s."""
    await push(client, PERMIT)  # default: version 1 only
    await push(client, PERMIT, store="other")
    other = await push(client, FORBID, store="other", activate=False)
    assert other["version"] == 2
    r = await ask(client, staged(2))
    assert r.status_code == 400 and r.json()["error"] == "invalid_staged_version"
    r = await ask(client, staged(2), store="other")
    assert r.status_code == 200 and r.json()["evaluations"][0]["decision"] is False


async def test_a_deleted_stores_versions_are_gone(client: httpx.AsyncClient) -> None:
    await push(client, PERMIT, store="gone")
    stage = await push(client, FORBID, store="gone", activate=False)
    r = await client.delete("/admin/stores/gone", headers=ADMIN)
    assert r.status_code == 200
    await push(client, PERMIT, store="gone")  # created again: version 3, the old ones deleted
    r = await ask(client, staged(stage["version"]), store="gone")
    assert r.status_code == 400 and r.json()["error"] == "invalid_staged_version"


async def test_staged_evaluation_is_not_counted_as_decisions(client: httpx.AsyncClient) -> None:
    """Counters of decisions are for answers that decide something; a warmer's are not."""
    await push(client, PERMIT)
    stage = await push(client, FORBID, activate=False)
    before = DECISIONS.value("evaluations", "deny")
    r = await ask(client, staged(stage["version"], items=5))
    assert r.status_code == 200 and r.json()["evaluations"][0]["decision"] is False
    assert DECISIONS.value("evaluations", "deny") == before


async def test_activation_announces_staged_then_activated(tmp_path: Path, valkey_url: str, sqlite_url: str) -> None:
    """With Redis and a warm window: ``policy_staged`` before the activation, then ``policy_activated``
    (the version, the revision, the entities version of that revision) and the plain state; an upload
    that is not activated is staged too; one that is activated is not (it is one transaction)."""
    prefix = f"t{tmp_path.name[-12:]}:"
    settings = settings_for(sqlite_url, tmp_path, redis_url=valkey_url, redis_prefix=prefix, policy_warm_window=0.05)
    redis = connect(valkey_url)
    stream = names(prefix)[0]
    try:
        async with running(settings) as (_app, client):
            first = await push(client, PERMIT)
            stage = await push(client, FORBID, activate=False)
            r = await client.post(f"/admin/stores/default/policies/{stage['version']}/activate", headers=ADMIN)
            assert r.status_code == 200
            assert set(r.json()) == {"store", "version", "revision", "active_version"}  # the contract
            entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(stream))
    finally:
        await redis.aclose()
    seen = [(f[b"k"].decode(), json.loads(f[b"v"])) for _id, f in entries]
    kinds = [k for k, _ in seen]
    assert kinds.count(KIND_STAGED) == 2  # the upload that was not activated, and the activation
    staged_at = [n for n, (k, v) in enumerate(seen) if k == KIND_STAGED and v == ["default", stage["version"]]]
    act = next(n for n, (k, _) in enumerate(seen) if k == KIND_ACTIVATED)
    assert staged_at[-1] < act
    revision = r.json()["revision"]
    assert revision == first["revision"] + 1
    _, (store, rev, ev, version) = seen[act]
    assert (store, rev, version) == ("default", revision, stage["version"]) and isinstance(ev, int)
    assert seen[act + 1] == (KIND, ["default", revision, ev])


async def test_no_window_no_staging_and_a_redis_that_is_down_does_not_hold_an_activation(
    tmp_path: Path, valkey_url: str, sqlite_url: str
) -> None:
    """``policy_warm_window`` 0: nothing is staged. Redis unreachable with a 5 s window: the staging
    announcement fails at once, so the activation does not wait (nobody could have warmed)."""
    prefix = f"n{tmp_path.name[-12:]}:"
    quiet = settings_for(sqlite_url, tmp_path, redis_url=valkey_url, redis_prefix=prefix, policy_warm_window=0)
    redis = connect(valkey_url)
    try:
        async with running(quiet) as (_app, client):
            await push(client, PERMIT)
            stage = await push(client, FORBID, activate=False)
            r = await client.post(f"/admin/stores/default/policies/{stage['version']}/activate", headers=ADMIN)
            assert r.status_code == 200
            kinds = [
                f[b"k"] for _id, f in cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(names(prefix)[0]))
            ]
    finally:
        await redis.aclose()
    assert KIND_STAGED.encode() not in kinds and KIND_ACTIVATED.encode() in kinds
    down = settings_for(sqlite_url, tmp_path, redis_url="redis://127.0.0.1:9/0", policy_warm_window=5)
    async with running(down) as (_app, client):
        stage = await push(client, PERMIT, activate=False)
        started = time.monotonic()
        r = await client.post(f"/admin/stores/default/policies/{stage['version']}/activate", headers=ADMIN)
        assert r.status_code == 200
        assert time.monotonic() - started < 2.5  # the publish timeout (0.5 s) at most, never the window


def test_the_compile_budget_pays_a_long_compile_with_a_long_pause() -> None:
    now = [0.0]
    budget = CompileBudget(duty=0.1, burst=2.0, clock=lambda: now[0])
    assert budget.wait() == 0.0
    budget.charge(0.005)  # a small store's compile: never meets the bound
    assert budget.wait() == 0.0
    budget.charge(20.0)  # 100,000 policies
    assert budget.wait() == pytest.approx(180.0, abs=0.1)  # (20 - 2) s of debt at 0.1 s per s
    now[0] = 179.0
    assert budget.wait() > 0
    now[0] = 181.0
    assert budget.wait() == 0.0
    now[0] = 10_000.0
    budget.charge(2.5)  # the balance never grows past the burst
    assert budget.wait() == pytest.approx(5.0, abs=0.01)


async def test_a_caller_cycling_through_versions_is_paced_and_kept_versions_still_answer(
    db_url: str, tmp_path: Path
) -> None:
    """Anyone on the decision API may name any uploaded version; what it costs the worker is bounded."""
    async with running(settings_for(db_url, tmp_path)) as (app, client):
        await push(client, PERMIT)
        kept = await push(client, FORBID, activate=False)
        assert (await ask(client, staged(kept["version"]))).status_code == 200
        app.state.api.registry.staged.budget.charge(30.0)  # as after a long compile
        again = await ask(client, staged(kept["version"]))
        assert again.status_code == 200, again.text  # compiled already: costs nothing
        other = await push(client, FORBID + "\n// another version", activate=False)
        r = await ask(client, staged(other["version"]))
        assert r.status_code == 429, r.text
        assert r.json()["error"] == "staged_compile_paced"
        assert 250 <= int(r.headers["retry-after"]) <= 281
        normal = await client.post("/stores/default/access/v1/evaluations", json={"evaluations": [ITEM]})
        assert normal.status_code == 200 and normal.json()["evaluations"][0]["decision"] is True


async def test_staged_batches_take_turns_and_too_many_waiting_are_refused() -> None:
    """Many replicas' warmers at once: AT_ONCE evaluated, QUEUED waiting, the rest a 429 at once."""
    versions = StagedVersions(cast(Any, None), cast(Any, None))
    release = asyncio.Event()
    inside = 0

    async def batch() -> None:
        nonlocal inside
        async with versions.turn():
            inside += 1
            await release.wait()

    holders = [asyncio.create_task(batch()) for _ in range(AT_ONCE + QUEUED)]
    await until(lambda: inside == AT_ONCE, what="the first batches inside")
    with pytest.raises(ApiError) as refused:
        async with versions.turn():
            pass
    assert refused.value.status == 429 and refused.value.headers == {"retry-after": "1"}
    release.set()
    await asyncio.gather(*holders)
    assert inside == AT_ONCE + QUEUED  # every queued one had its turn


async def test_a_paced_worker_reads_nothing_for_a_staged_version(db_url: str, tmp_path: Path) -> None:
    """Refused before the version's text is fetched: even a version that does not exist is a 429."""
    async with running(settings_for(db_url, tmp_path)) as (app, client):
        await push(client, PERMIT)
        app.state.api.registry.staged.budget.charge(30.0)
        r = await ask(client, staged(999))
        assert r.status_code == 429 and r.json()["error"] == "staged_compile_paced"


async def test_compiles_kept_for_an_earlier_revision_are_let_go(db_url: str, tmp_path: Path) -> None:
    """The revision only grows: a version compiled at an earlier one can never be asked for again."""
    async with running(settings_for(db_url, tmp_path)) as (app, client):
        await push(client, PERMIT)
        first = await push(client, FORBID, activate=False)
        assert (await ask(client, staged(first["version"]))).status_code == 200
        staged_versions = app.state.api.registry.staged
        (held,) = staged_versions.kept
        await push(client, PERMIT + "\n// a new revision")  # activated: the store's revision moves on
        second = await push(client, FORBID + "\n// again", activate=False)
        r = await ask(client, staged(second["version"]))
        assert r.status_code == 200, r.text
        assert held not in staged_versions.kept
        assert [k[1] for k in staged_versions.kept] == [second["version"]]


async def test_a_frozen_redis_does_not_hold_an_activation(
    tmp_path: Path, sqlite_url: str, valkey_server_factory: Callable[..., Any]
) -> None:
    """A SIGSTOPped Redis (no error, no answer) during an activation with a 5 s warm window: the
    staging announcement gives up after its publish timeout and the activation does not wait out the
    window (nobody could have warmed); the new version serves, and decisions go on."""
    server = valkey_server_factory()
    frozen = settings_for(sqlite_url, tmp_path, redis_url=server.connection_url, policy_warm_window=5)
    async with running(frozen) as (_app, client):
        await push(client, PERMIT)
        stage = await push(client, FORBID, activate=False)
        os.kill(server.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            r = await client.post(f"/admin/stores/default/policies/{stage['version']}/activate", headers=ADMIN)
            took = time.monotonic() - started
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert r.status_code == 200, r.text
        assert took < 4.0, took  # publish timeouts (0.5 s each) at most, never the 5 s window
        d = await client.post("/stores/default/access/v1/evaluations", json={"evaluations": [ITEM]})
        assert d.status_code == 200 and d.json()["evaluations"][0]["decision"] is False


@pytest.mark.parametrize(("semantic", "kept"), [("deny_on_first_deny", 1), ("permit_on_first_permit", 3)])
async def test_a_staged_batch_keeps_its_evaluations_semantic(
    client: httpx.AsyncClient, semantic: str, kept: int
) -> None:
    """Answered as an active batch is: cut after the first deny (or permit), AuthZEN 1.0 §7.2."""
    await push(client, PERMIT)
    stage = await push(client, FORBID, activate=False)
    body = staged(stage["version"], items=3)
    body["options"]["evaluations_semantic"] = semantic
    r = await ask(client, body)
    assert r.status_code == 200, r.text
    assert len(r.json()["evaluations"]) == kept
