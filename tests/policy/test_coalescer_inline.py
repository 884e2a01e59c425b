"""Coalescing's lone-request path (issue 11): a request with nothing to share a batch with is decided
at once in its own task, exactly as with coalescing off; anything busier queues for a batch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from meshauth import wire
from meshauth.policy.coalescer import Activity, Coalescer
from meshauth.policy.metrics import COALESCED_INLINE
from tests.policy.conftest import push
from tests.policy.test_coalescer import _Evaluator, _query


def test_lone_request_is_evaluated_in_its_own_task_without_a_loop_turn() -> None:
    """With no other request in progress, a request is decided inside its own call: the coroutine
    finishes on its first step (no future, no task, no loop turn), as with coalescing off."""
    fake = _Evaluator()
    activity = Activity()
    coalescer = Coalescer(fake, max_batch=64, max_wait=10.0, activity=activity)  # type: ignore[arg-type]
    activity.active = 1  # the request itself, counted by the front
    step = coalescer.decide(object(), _query("yes"), None)  # type: ignore[arg-type]
    with pytest.raises(StopIteration) as done:
        step.send(None)  # no loop here: a request that waited for a turn would suspend, not finish
    assert done.value.value.decision is True
    assert fake.calls == [1]
    assert (coalescer.inline, coalescer.batches) == (1, 0)


async def test_requests_in_progress_together_are_batched() -> None:
    """When other requests are in progress (counted by the front), a request queues so that they can
    join it: the gathered ones form one batch."""
    fake = _Evaluator()
    activity = Activity()
    coalescer = Coalescer(fake, max_batch=64, max_wait=0.001, activity=activity)  # type: ignore[arg-type]
    activity.active = 5
    state = object()
    results = await asyncio.gather(*(coalescer.decide(state, _query("yes"), None) for _ in range(5)))  # type: ignore[arg-type]
    assert [r.decision for r in results] == [True] * 5
    assert fake.calls == [5]
    assert (coalescer.inline, coalescer.batches) == (0, 1)


async def test_a_request_alone_does_not_overtake_a_batch_in_flight() -> None:
    """A request that finds a batch being evaluated queues behind it, even when it is the only one in
    progress at the front: ``inline`` is for a worker with nothing else to do."""
    release = asyncio.Event()

    class _Slow(_Evaluator):
        async def decide(self, state: Any, items: list[Any], snapshot: Any) -> list[wire.Decision]:
            await release.wait()
            return await super().decide(state, items, snapshot)

    fake = _Slow()
    activity = Activity()
    coalescer = Coalescer(fake, max_batch=64, max_wait=0.001, activity=activity)  # type: ignore[arg-type]
    activity.active = 2
    first = asyncio.ensure_future(coalescer.decide(object(), _query("yes"), None))  # type: ignore[arg-type]
    for _ in range(3):  # its task starts, queues, and the batch goes out on the next turn
        await asyncio.sleep(0)
    assert coalescer.batches == 1
    activity.active = 1
    second = asyncio.ensure_future(coalescer.decide(object(), _query("no"), None))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert not second.done() and coalescer.inline == 0
    release.set()
    assert (await first).decision is True
    assert (await second).decision is False
    assert fake.calls == [1, 1]


async def test_the_front_counts_every_evaluation_out_again(make_app) -> None:  # type: ignore[no-untyped-def]
    """Requests that fail (bad JSON, too large, unknown store) and requests answered leave the count of
    single evaluations in progress at zero: a leak would stop lone requests from going at once."""
    async with make_app(policy_coalesce_enabled=True, policy_max_request_bytes=4096) as (app, client):
        await push(client, "permit(principal, action, resource);")
        good = {"subject": {"type": "User", "id": "a"}, "action": {"name": "v"}, "resource": {"type": "D", "id": "d"}}
        posts = [
            client.post("/access/v1/evaluation", content=b"{"),
            client.post("/access/v1/evaluation", content=b"x" * 10_000),
            client.post("/stores/absent/access/v1/evaluation", json=good),
            *(client.post("/access/v1/evaluation", json=good) for _ in range(8)),
        ]
        answers = await asyncio.gather(*posts)
        assert [r.status_code for r in answers] == [400, 413, 404, *[200] * 8]
        assert app.activity is not None and app.activity.active == 0
        await asyncio.sleep(0.01)  # idle for longer than max_wait (0.5 ms): the next request is alone
        before = COALESCED_INLINE.counts[()]
        r = await client.post("/access/v1/evaluation", json=good)
        assert r.json()["decision"] is True
        assert app.state.api.coalescer.inline >= 1
        assert COALESCED_INLINE.counts[()] == before + 1


def test_a_request_right_after_a_decision_lets_the_loop_turn_once_then_goes_alone() -> None:
    """Within ``max_wait`` of the last decision the worker may be busy (requests its loop scheduled and
    has not started): a request that looks alone yields one loop turn — a bare yield, no future and no
    task — and, nobody having come, is decided alone in its own coroutine. Once the worker has been
    idle that long, it goes at once again."""
    now = [100.0]
    fake = _Evaluator()
    activity = Activity()
    activity.active = 1
    coalescer = Coalescer(fake, max_batch=64, max_wait=0.001, activity=activity, clock=lambda: now[0])  # type: ignore[arg-type]
    first = coalescer.decide(object(), _query("yes"), None)  # type: ignore[arg-type]
    with pytest.raises(StopIteration):
        first.send(None)  # idle: at once, no suspension at all
    now[0] += 0.0005
    step = coalescer.decide(object(), _query("no"), None)  # type: ignore[arg-type]
    assert step.send(None) is None  # one loop turn (asyncio.sleep(0)), not a future to wait on
    with pytest.raises(StopIteration) as done:
        step.send(None)
    assert done.value.value.decision is False
    assert (coalescer.inline, coalescer.batches) == (2, 0)
    now[0] += 0.002
    last = coalescer.decide(object(), _query("yes"), None)  # type: ignore[arg-type]
    with pytest.raises(StopIteration):
        last.send(None)
    assert (coalescer.inline, coalescer.batches, fake.calls) == (3, 0, [1, 1, 1])


async def test_a_request_right_after_a_decision_joins_whoever_started_during_its_turn() -> None:
    """The request that let the loop turn finds another started meanwhile (counted in progress, queued):
    it queues too, and the two are decided as one batch."""
    now = [100.0]
    fake = _Evaluator()
    activity = Activity()
    activity.active = 1
    coalescer = Coalescer(fake, max_batch=64, max_wait=0.001, activity=activity, clock=lambda: now[0])  # type: ignore[arg-type]
    await coalescer.decide(object(), _query("yes"), None)  # type: ignore[arg-type]
    now[0] += 0.0005
    state = object()
    looks_alone = asyncio.ensure_future(coalescer.decide(state, _query("yes"), None))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # it runs, and yields its turn
    activity.active = 2  # another request started during that turn
    other = asyncio.ensure_future(coalescer.decide(state, _query("no"), None))  # type: ignore[arg-type]
    answers = await asyncio.gather(looks_alone, other)
    assert [a.decision for a in answers] == [True, False]
    assert (coalescer.inline, coalescer.batches, fake.calls) == (1, 1, [1, 2])
